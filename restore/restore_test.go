package restore_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/registry/sim"
	"github.com/tagsweep/tagsweep/restore"
)

const repo = "ns/app"

// newJS is an embedded JetStream with the ledger's streams and buckets.
func newJS(t testing.TB) jetstream.JetStream {
	t.Helper()
	r := testrig.New(t, testrig.Config{MaxMemory: 64 << 20, MaxStore: 64 << 20, Ledger: ledger.Config{Storage: jetstream.MemoryStorage}})
	return r.JS(t)
}

// bound is the ledger on js, bound as the restore command binds it.
func bound(t testing.TB, js jetstream.JetStream) *ledger.Ledger {
	t.Helper()
	l, err := ledger.Bind(t.Context(), js, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// seedRun records run with policy p and its audit events.
func seedRun(t testing.TB, js jetstream.JetStream, run string, p proto.Policy, events ...proto.AuditEvent) {
	t.Helper()
	l, err := ledger.Open(t.Context(), js, ledger.Config{Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateRun(t.Context(), proto.RunRecord{RunID: run, Registry: "quay.example", Repositories: []string{repo},
		Policy: p, State: proto.RunDone, StartedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	for i := range events {
		events[i].Repository = repo
		events[i].ShardID = "s1"
	}
	if err := l.AppendAudit(t.Context(), run, "seed", events); err != nil {
		t.Fatal(err)
	}
}

// fakeQuay is a tag history and time machine: rows per tag, newest first.
type fakeQuay struct {
	mu       sync.Mutex
	rows     map[string][]registry.TagRow
	restored map[string]string
	gone     map[string]bool // digests Quay no longer holds
}

func (f *fakeQuay) History(_ context.Context, _, tag string) ([]registry.TagRow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rows[tag], nil
}

func (f *fakeQuay) Restore(_ context.Context, _, tag, digest string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone[digest] {
		return fmt.Errorf("restore %s: %w: %w", tag, registry.ErrNotFound, registry.ErrManifestGone)
	}
	f.restored[tag] = digest
	return nil
}

func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// TestHistoryRows: the digest a tag is restored at is that of the history row that ended at
// the run's deletion: not a later deletion's, not an earlier one's; a live row means the tag
// exists again (skipped); no such row, or a manifest Quay dropped, fails with the window as
// the reason; the rest are restored.
func TestHistoryRows(t *testing.T) {
	js := newJS(t)
	deletedAt := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return deletedAt.Add(d) }
	q := &fakeQuay{restored: map[string]string{}, gone: map[string]bool{digest(9): true}, rows: map[string][]registry.TagRow{
		// Re-pushed and deleted again after the run: the run's deletion is the older row.
		"later": {
			{Digest: digest(2), Start: at(time.Hour), End: at(2 * time.Hour)},
			{Digest: digest(1), Start: at(-time.Hour), End: at(-time.Second)},
			{Digest: digest(3), Start: at(-3 * time.Hour), End: at(-2 * time.Hour)},
		},
		"alive":   {{Digest: digest(4), Start: at(time.Hour)}, {Digest: digest(5), End: at(0)}},
		"expired": nil,
		"dropped": {{Digest: digest(9), End: at(0)}},
		"plain":   {{Digest: digest(6), End: at(time.Second)}}, // Quay's clock a second ahead
	}}
	var evs []proto.AuditEvent
	for _, tag := range []string{"later", "alive", "expired", "dropped", "plain"} {
		evs = append(evs, proto.AuditEvent{Tag: tag, Outcome: proto.OutcomeDeleted, Time: deletedAt})
	}
	evs = append(evs, proto.AuditEvent{Tag: "kept", Outcome: proto.OutcomeFailed, Time: deletedAt},
		proto.AuditEvent{Tag: "plain", Outcome: proto.OutcomeAlreadyGone, Time: at(time.Minute)})
	seedRun(t, js, "r1", proto.Policy{}, evs...)

	r, err := restore.New(restore.Config{RunID: "r1", ID: "r1-restore", Confirm: true, History: q,
		Now: func() time.Time { return at(24 * time.Hour) }}, bound(t, js), nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"later": digest(1), "plain": digest(6)}
	if fmt.Sprint(q.restored) != fmt.Sprint(want) {
		t.Errorf("restored %v, want %v", q.restored, want)
	}
	if rep.Tags != (proto.RestoreCounts{Deleted: 5, Restored: 2, Skipped: 1, Failed: 2}) {
		t.Errorf("counts = %+v", rep.Tags)
	}
	outcomes := map[string]proto.AuditEvent{}
	for ev, err := range bound(t, js).Audit(t.Context(), "r1-restore") {
		if err != nil {
			t.Fatal(err)
		}
		outcomes[ev.Tag] = ev
	}
	for tag, w := range map[string]proto.Outcome{"later": proto.OutcomeRestored, "plain": proto.OutcomeRestored,
		"alive": proto.OutcomeSkipped, "expired": proto.OutcomeFailed, "dropped": proto.OutcomeFailed} {
		ev := outcomes[tag]
		if ev.Outcome != w || ev.Of != "r1" {
			t.Errorf("%s: event %+v, want %s of r1", tag, ev, w)
		}
		if w == proto.OutcomeFailed && !strings.Contains(ev.Error, "outside Quay's time machine window") {
			t.Errorf("%s: failure %q does not name the window", tag, ev.Error)
		}
	}
	if len(outcomes) != 5 {
		t.Errorf("%d restore events, want 5: %v", len(outcomes), outcomes)
	}
}

// fakeManifests is an OCI registry's tags and manifests for Restorer's two calls.
type fakeManifests struct {
	mu        sync.Mutex
	tags      map[string]string
	manifests map[string]bool
	puts      int
	digests   int
}

func (f *fakeManifests) Digest(_ context.Context, _, tag string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.digests++
	d, ok := f.tags[tag]
	if !ok {
		return "", registry.ErrNotFound
	}
	return d, nil
}

func (f *fakeManifests) Put(_ context.Context, _, tag, d string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts++
	if !f.manifests[d] {
		return registry.ErrManifestGone
	}
	f.tags[tag] = d
	return nil
}

// TestRecordedDigests: tags are put back at their recorded digests, filtered by TagRegex; a
// tag pushed again since is left alone whatever it points at; a dry run writes nothing; a
// dry run of the run is refused.
func TestRecordedDigests(t *testing.T) {
	js := newJS(t)
	var evs []proto.AuditEvent
	for i := range 50 {
		evs = append(evs, proto.AuditEvent{Tag: fmt.Sprintf("2026_%02d", i), Outcome: proto.OutcomeDeleted, Digest: digest(i % 5)})
	}
	seedRun(t, js, "r2", proto.Policy{RecordDigests: true}, evs...)
	seedRun(t, js, "dry", proto.Policy{DryRun: true})
	newReg := func() *fakeManifests {
		return &fakeManifests{tags: map[string]string{"2026_07": digest(42)},
			manifests: map[string]bool{digest(0): true, digest(1): true, digest(2): true, digest(3): true}}
	}
	tests := []struct {
		name                               string
		confirm                            bool
		re                                 string
		restored, skipped, failed, written int64
	}{
		{name: "dry run", restored: 49, skipped: 1},
		{name: "confirm", confirm: true, restored: 39, skipped: 1, failed: 10, written: 49},
		{name: "filtered", confirm: true, re: `^2026_1`, restored: 8, failed: 2, written: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := newReg()
			cfg := restore.Config{RunID: "r2", ID: "r2-" + strings.ReplaceAll(tc.name, " ", "-"), Confirm: tc.confirm,
				Manifests: reg, Concurrency: 7}
			if tc.re != "" {
				cfg.TagRegex = regexp.MustCompile(tc.re)
			}
			r, err := restore.New(cfg, bound(t, js), nil)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := r.Run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if rep.Tags.Restored != tc.restored || rep.Tags.Skipped != tc.skipped || rep.Tags.Failed != tc.failed ||
				int64(reg.puts) != tc.written || !rep.DigestsRecorded {
				t.Errorf("report %+v, %d puts; want restored %d skipped %d failed %d, %d puts", rep, reg.puts,
					tc.restored, tc.skipped, tc.failed, tc.written)
			}
			if reg.tags["2026_07"] != digest(42) {
				t.Error("a tag pushed again since was overwritten")
			}
			for tag, d := range reg.tags {
				if tag != "2026_07" && d != evs[mustAtoi(t, tag[5:])].Digest {
					t.Errorf("%s put back at %s", tag, d)
				}
			}
		})
	}
	r, err := restore.New(restore.Config{RunID: "dry", ID: "dry-restore", Confirm: true, Manifests: newReg()}, bound(t, js), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(t.Context()); !errors.Is(err, restore.ErrNothingDeleted) {
		t.Errorf("restore of a dry run = %v, want ErrNothingDeleted", err)
	}
}

// TestDeletedTwice: a tag the run deleted twice (pushed again while it ran) is put back once,
// at the digest of its last deletion, after the others, and counted once; events that are not
// deletions are not restored.
func TestDeletedTwice(t *testing.T) {
	js := newJS(t)
	seedRun(t, js, "r3", proto.Policy{RecordDigests: true},
		proto.AuditEvent{Tag: "a", Outcome: proto.OutcomeDeleted, Digest: digest(1)},
		proto.AuditEvent{Tag: "b", Outcome: proto.OutcomeDeleted, Digest: digest(2)},
		proto.AuditEvent{Tag: "c", Outcome: proto.OutcomeFailed, Digest: digest(3)},
		proto.AuditEvent{Tag: "d", Outcome: proto.OutcomeAlreadyGone},
		proto.AuditEvent{Tag: "a", Outcome: proto.OutcomeDeleted, Digest: digest(4)},
	)
	reg := &fakeManifests{tags: map[string]string{}, manifests: map[string]bool{digest(1): true, digest(2): true, digest(4): true}}
	r, err := restore.New(restore.Config{RunID: "r3", ID: "r3-restore", Confirm: true, Manifests: reg, Concurrency: 1}, bound(t, js), nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if want := (proto.RestoreCounts{Deleted: 2, Restored: 2}); rep.Tags != want || reg.puts != 2 {
		t.Errorf("counts %+v, %d puts; want %+v, 2 puts", rep.Tags, reg.puts, want)
	}
	if want := map[string]string{"a": digest(4), "b": digest(2)}; !maps.Equal(reg.tags, want) {
		t.Errorf("tags after the restore %v, want %v", reg.tags, want)
	}
	var order []string
	for ev, err := range bound(t, js).Audit(t.Context(), "r3-restore") {
		if err != nil {
			t.Fatal(err)
		}
		order = append(order, ev.Tag)
	}
	if !slices.Equal(order, []string{"b", "a"}) {
		t.Errorf("restored in the order %v, want [b a]: the tag deleted twice after the others", order)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRateLimited: against a registry that answers 429 without Retry-After above its limit,
// the restore's requests are paced by the registry client's rate control and retried by
// regclient: every tag comes back, none fails.
func TestRateLimited(t *testing.T) {
	js := newJS(t)
	s, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{TimeMachine: -1, Faults: sim.Faults{
		Limits: []sim.Limit{{Kinds: []sim.Kind{sim.KindManifestGet, sim.KindManifestHead, sim.KindManifestPut}, PerSecond: 300, Burst: 10}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var evs []proto.AuditEvent
	for i := range 150 {
		evs = append(evs, proto.AuditEvent{Tag: fmt.Sprintf("20260101%06d_prune_x", i), Outcome: proto.OutcomeDeleted, Digest: s.DefaultDigest()})
	}
	if err := s.CreateRepo(repo); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTags(repo, "", "latest"); err != nil {
		t.Fatal(err)
	}
	seedRun(t, js, "limited", proto.Policy{RecordDigests: true}, evs...)
	manifests, err := registry.NewRestorer(registry.OCIConfig{Host: s.Addr(), PlainHTTP: true,
		RetryDelay: time.Millisecond, RetryDelayMax: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r, err := restore.New(restore.Config{RunID: "limited", ID: "limited-restore", Confirm: true, Manifests: manifests, Concurrency: 32}, bound(t, js), nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(t.Context())
	if err != nil || rep.Tags.Restored != 150 || rep.Tags.Failed != 0 {
		t.Fatalf("restore: %v, %+v (%q)", err, rep.Tags, rep.Failures)
	}
	if n := s.Stats().Statuses[http.StatusTooManyRequests]; n == 0 {
		t.Error("the registry never answered 429: the test did not reach its limit")
	}
	for _, ev := range evs {
		if d, ok := s.TagDigest(repo, ev.Tag); !ok || d != ev.Digest {
			t.Errorf("%s: %q, %v", ev.Tag, d, ok)
		}
	}
}

// blockingManifests deletes the audit stream on the first Put (so that storing the outcomes
// fails) and holds every Put after the first limit until the restore gives up.
type blockingManifests struct {
	js    jetstream.JetStream
	limit int
	mu    sync.Mutex
	puts  int
}

func (b *blockingManifests) Digest(context.Context, string, string) (string, error) {
	return "", registry.ErrNotFound
}

func (b *blockingManifests) Put(ctx context.Context, _, _, _ string) error {
	b.mu.Lock()
	b.puts++
	n := b.puts
	b.mu.Unlock()
	if n == 1 {
		if err := b.js.DeleteStream(ctx, proto.StreamAudit); err != nil {
			return err
		}
	}
	if n > b.limit {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

// TestStoreFailureStops: a restore that cannot store its outcomes stops putting tags back
// and fails, rather than restore tags it cannot account for.
func TestStoreFailureStops(t *testing.T) {
	js := newJS(t)
	var evs []proto.AuditEvent
	for i := range 1500 {
		evs = append(evs, proto.AuditEvent{Tag: fmt.Sprintf("t%04d", i), Outcome: proto.OutcomeDeleted, Digest: digest(1)})
	}
	seedRun(t, js, "unstored", proto.Policy{RecordDigests: true}, evs...)
	m := &blockingManifests{js: js, limit: 1000}
	r, err := restore.New(restore.Config{RunID: "unstored", ID: "unstored-restore", Confirm: true, Manifests: m, Concurrency: 4}, bound(t, js), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rep, err := r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "storing the restore's audit events") || ctx.Err() != nil {
		t.Fatalf("Run = %v (ctx %v), want the store failure", err, ctx.Err())
	}
	if m.puts > 1000+4 || rep.Tags.Restored > 1000 {
		t.Errorf("%d puts, %d restored after the store failed", m.puts, rep.Tags.Restored)
	}
}
