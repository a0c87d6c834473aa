package proto

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidTag(t *testing.T) {
	tests := []struct {
		tag  string
		want bool
	}{
		{"latest", true},
		{"20261101123045_prune_ci_a_latest", true},
		{"_x", true},
		{"A.b-C_9", true},
		{"", false},
		{".hidden", false},
		{"-dash", false},
		{"sha256:abc", false},
		{"a/b", false},
		{"tägs", false},
		{strings.Repeat("a", 128), true},
		{strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		if got := ValidTag(tt.tag); got != tt.want {
			t.Errorf("ValidTag(%q) = %v, want %v", tt.tag, got, tt.want)
		}
	}
}

// FuzzValidTag checks ValidTag against the spec's grammar written as a regular expression.
func FuzzValidTag(f *testing.F) {
	grammar := regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
	for _, s := range []string{"", "a", "a:b", ".a", "20261101_prune_x", strings.Repeat("z", 128)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidTag(s), grammar.MatchString(s); got != want {
			t.Fatalf("ValidTag(%q) = %v, grammar says %v", s, got, want)
		}
	})
}
