package registry

import (
	"fmt"
	"testing"
)

// TestRedactorLearns: secrets learnt at runtime are redacted like configured ones, a secret
// containing another is replaced whole, too-short values are not learnt, and only the newest
// maxLearned are kept.
func TestRedactorLearns(t *testing.T) {
	r := newRedactor([]string{"configured-pass"})
	r.learn("token-abc")
	r.learn("token-abc-longer")
	r.learn("ab") // too short to learn
	got := r.apply("configured-pass token-abc-longer token-abc ab")
	if want := "[redacted] [redacted] [redacted] ab"; got != want {
		t.Errorf("apply = %q, want %q", got, want)
	}
	for i := range maxLearned {
		r.learn(fmt.Sprintf("later-secret-%03d", i))
	}
	got = r.apply("token-abc later-secret-000 later-secret-063 configured-pass")
	if want := "token-abc [redacted] [redacted] [redacted]"; got != want {
		t.Errorf("after %d more: apply = %q, want %q (the oldest learnt dropped, the configured kept)", maxLearned, got, want)
	}
}
