package ledger

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// TestOpenAppliesRetention: the audit stream's age and size limits and the records' TTL are
// set on a new ledger and changed on one that exists, and a limit given back to zero is
// lifted again.
func TestOpenAppliesRetention(t *testing.T) {
	js := testServer(t).JS(t)
	base := Config{Storage: jetstream.MemoryStorage, AckWait: 2 * time.Second, MaxDeliver: 3}

	check := func(step string, wantAge time.Duration, wantBytes int64, wantTTL time.Duration) {
		t.Helper()
		audit, err := js.Stream(ctx(t), proto.StreamAudit)
		if err != nil {
			t.Fatal(err)
		}
		ac := audit.CachedInfo().Config
		state, err := js.Stream(ctx(t), "KV_"+proto.BucketState)
		if err != nil {
			t.Fatal(err)
		}
		sc := state.CachedInfo().Config
		if ac.MaxAge != wantAge || ac.MaxBytes != wantBytes || ac.Discard != jetstream.DiscardOld || sc.MaxAge != wantTTL {
			t.Errorf("%s: audit max age %v, max bytes %d, discard %v; records TTL %v; want %v, %d, old, %v",
				step, ac.MaxAge, ac.MaxBytes, ac.Discard, sc.MaxAge, wantAge, wantBytes, wantTTL)
		}
	}

	if _, err := Open(ctx(t), js, base); err != nil {
		t.Fatal(err)
	}
	check("defaults", DefaultAuditMaxAge, -1, 0)

	// Retention set on a ledger that exists already.
	limited := base
	limited.AuditMaxAge, limited.AuditMaxBytes, limited.RecordsMaxAge = 30*24*time.Hour, 64<<20, 14*24*time.Hour
	if _, err := Open(ctx(t), js, limited); err != nil {
		t.Fatal(err)
	}
	check("limited", 30*24*time.Hour, 64<<20, 14*24*time.Hour)

	// The same settings again change nothing, and back to the defaults lifts the limits.
	if _, err := Open(ctx(t), js, limited); err != nil {
		t.Fatal(err)
	}
	check("limited again", 30*24*time.Hour, 64<<20, 14*24*time.Hour)
	if _, err := Open(ctx(t), js, base); err != nil {
		t.Fatal(err)
	}
	check("defaults again", DefaultAuditMaxAge, -1, 0)
}

// TestNoDryRunAudit: with NoDryRunAudit a dry run's events are not stored; a real run's are.
func TestNoDryRunAudit(t *testing.T) {
	for _, skip := range []bool{false, true} {
		l, js := testLedger(t)
		l.cfg.NoDryRunAudit = skip
		cl := claimR1S1(t, l, l, "w", 1)
		for i, o := range []proto.Outcome{proto.OutcomeDryRun, proto.OutcomeDeleted, proto.OutcomeDryRun, proto.OutcomeFailed} {
			if err := cl.Audit(proto.AuditEvent{Tag: auditTag(i), Outcome: o}); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.Checkpoint(ctx(t), auditTag(3), proto.Counters{}); err != nil {
			t.Fatal(err)
		}
		got := readAudit(t, js, "r1")
		want := []string{auditTag(0), auditTag(1), auditTag(2), auditTag(3)}
		if skip {
			want = []string{auditTag(1), auditTag(3)}
		}
		if len(got) != len(want) || got[0] != want[0] || got[len(got)-1] != want[len(want)-1] {
			t.Errorf("NoDryRunAudit %v: audit holds %q, want %q", skip, got, want)
		}
	}
}

// TestOpenAuditCapTooLarge: a byte cap the server cannot reserve is refused with a word on
// which setting to lower.
func TestOpenAuditCapTooLarge(t *testing.T) {
	_, err := Open(ctx(t), testServer(t).JS(t), Config{AuditMaxBytes: 1 << 30})
	if err == nil || !strings.Contains(err.Error(), "audit-max-bytes") {
		t.Errorf("Open with a 1 GiB audit cap on a 64 MiB store = %v, want an error naming audit-max-bytes", err)
	}
}
