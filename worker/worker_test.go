package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/test/invariant"
	"github.com/tagsweep/tagsweep/worker"
)

// fakeRegistry is an in-memory keyset registry: List answers like Quay (Link only when more
// tags exist), Delete removes one tag (ErrNotFound when absent). Hooks let a test block or
// fail calls.
type fakeRegistry struct {
	mu      sync.Mutex
	tags    []string // sorted
	deleted []string
	lists   int
	onList  func(last string) error // called before answering; an error fails the call
	// onDelete is called before a delete is served; an error fails the call (the tag stays).
	onDelete func(ctx context.Context, tag string) error
}

func newFake(tags []string) *fakeRegistry {
	t := slices.Clone(tags)
	sort.Strings(t)
	return &fakeRegistry{tags: slices.Compact(t)}
}

func (f *fakeRegistry) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	f.mu.Lock()
	hook := f.onList
	f.lists++
	f.mu.Unlock()
	if hook != nil {
		if err := hook(last); err != nil {
			return registry.Page{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return registry.Page{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i, _ := slices.BinarySearch(f.tags, last)
	if i < len(f.tags) && f.tags[i] == last {
		i++
	}
	j := min(i+n, len(f.tags))
	return registry.Page{Tags: slices.Clone(f.tags[i:j]), More: j < len(f.tags)}, nil
}

func (f *fakeRegistry) Delete(ctx context.Context, repo, tag string) error {
	f.mu.Lock()
	hook := f.onDelete
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, tag); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	i, ok := slices.BinarySearch(f.tags, tag)
	if !ok {
		return fmt.Errorf("%s:%s: %w", repo, tag, registry.ErrNotFound)
	}
	f.tags = slices.Delete(f.tags, i, i+1)
	f.deleted = append(f.deleted, tag)
	return nil
}

// Exists reports whether tag is present (registry.Checker).
func (f *fakeRegistry) Exists(ctx context.Context, repo, tag string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := slices.BinarySearch(f.tags, tag)
	return ok, nil
}

func (f *fakeRegistry) snapshot() (remaining, deleted []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := slices.Clone(f.deleted)
	sort.Strings(d)
	return slices.Clone(f.tags), d
}

// env is a test rig (a JetStream server and the ledger) for one test.
type env struct {
	rig *testrig.Rig
	js  jetstream.JetStream
	l   *ledger.Ledger
	lc  ledger.Config
}

func newEnv(t *testing.T, lc ledger.Config) *env {
	t.Helper()
	lc.Storage = jetstream.MemoryStorage
	if lc.AckWait == 0 {
		lc.AckWait = 3 * time.Second
	}
	if lc.MaxDeliver == 0 {
		lc.MaxDeliver = 5
	}
	return attachEnv(t, testrig.New(t, testrig.Config{MaxMemory: 128 << 20, MaxStore: 128 << 20, Ledger: lc}))
}

// attachEnv is the env of rig r.
func attachEnv(t *testing.T, r *testrig.Rig) *env {
	return &env{rig: r, js: r.JS(t), l: r.Ledger(), lc: r.LedgerConfig()}
}

func (e *env) connect(t *testing.T) jetstream.JetStream { return e.rig.JS(t) }

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

var cutoff = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// tagsFor makes prune tags spread over days before and after the cutoff, plus tags the
// policy keeps or finds invalid.
func tagsFor(n int) []string {
	var out []string
	start := cutoff.AddDate(0, 0, -20)
	for i := range n {
		ts := start.Add(time.Duration(i) * 37 * time.Minute)
		out = append(out, fmt.Sprintf("%s_prune_ns_img_%d", ts.Format("20060102150405"), i))
	}
	return append(out, "latest", "v1.2.3", "20261030999999_prune_bad_date", "rc_payload__4.18.0",
		"20261001000000_prune_a", "20261001000000_prune_b")
}

// eligible is what the policy says goes, decided by test/invariant apart from the worker, and
// what stays; both sorted.
func eligible(t *testing.T, p proto.Policy, tags []string) (del, keep []string) {
	t.Helper()
	del = invariant.Eligible(t, p, tags)
	for _, tag := range tags {
		if _, ok := slices.BinarySearch(del, tag); !ok {
			keep = append(keep, tag)
		}
	}
	sort.Strings(keep)
	return del, keep
}

func testPolicy() proto.Policy {
	p := policy.Defaults()
	p.Cutoff = cutoff
	return p
}

// seed records a run and one prune shard per range, each published.
func (e *env) seed(t *testing.T, runID string, p proto.Policy, ranges ...proto.Range) {
	t.Helper()
	c := testCtx(t)
	if _, err := e.l.CreateRun(c, proto.RunRecord{RunID: runID, Registry: "fake", Repositories: []string{"ci/x"},
		Policy: p, State: proto.RunRunning, StartedAt: time.Now().UTC(), Shards: len(ranges)}); err != nil {
		t.Fatal(err)
	}
	for i, r := range ranges {
		if _, err := e.l.CreateShard(c, proto.ShardRecord{RunID: runID, ShardID: fmt.Sprintf("s%03d", i),
			Kind: proto.KindPrune, Repository: "ci/x", Range: r}); err != nil {
			t.Fatal(err)
		}
	}
}

// waitShards polls until every shard of the run is terminal (and at least min exist).
func (e *env) waitShards(t *testing.T, runID string, min int) []proto.ShardRecord {
	t.Helper()
	c := testCtx(t)
	for {
		shards, err := e.l.Shards(c, runID)
		if err != nil {
			t.Fatalf("Shards: %v", err)
		}
		if len(shards) >= min && !slices.ContainsFunc(shards, func(s proto.ShardRecord) bool { return !s.State.Terminal() }) {
			return shards
		}
		select {
		case <-c.Done():
			t.Fatalf("shards of %s not all finished: %+v", runID, shards)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startWorkers runs n workers, each on its own connection, until the test ends; the returned
// function stops them and returns their Run errors.
func (e *env) startWorkers(t *testing.T, n int, cfg worker.Config, reg registry.Client, log *slog.Logger) func() error {
	t.Helper()
	return e.startWorkersCtx(t, context.Background(), n, cfg, reg, log)
}

func (e *env) startWorkersCtx(t *testing.T, parent context.Context, n int, cfg worker.Config, reg registry.Client, log *slog.Logger) func() error {
	t.Helper()
	cfg.Connect = func(context.Context, proto.RunRecord) (registry.Client, error) { return reg, nil }
	ws, err := e.rig.StartWorkers(parent, n, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Stop() })
	return ws.Stop
}

func sum(shards []proto.ShardRecord) proto.Counters {
	var c proto.Counters
	for _, s := range shards {
		c.Add(s.Counters)
	}
	return c
}

func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(testCtx(t), proto.StreamShards)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPrune(t *testing.T) {
	tests := []struct {
		name    string
		dry     bool
		ranges  []proto.Range
		workers int
		cfg     worker.Config
	}{
		{name: "one shard", ranges: []proto.Range{{After: "", Through: "20261101000000"}}, workers: 1,
			cfg: worker.Config{PageSize: 7}},
		{name: "dry run", dry: true, ranges: []proto.Range{{After: "", Through: "20261101000000"}}, workers: 1},
		{name: "many shards, boundaries on existing tags, empty shards", workers: 3,
			cfg: worker.Config{PageSize: 5, Slots: 2, DeleteConcurrency: 3, MaxRPS: 5000},
			ranges: []proto.Range{
				{After: "", Through: "19990101"}, // empty
				{After: "19990101", Through: "20261001000000_prune_a"},
				{After: "20261001000000_prune_a", Through: "20261001000000_prune_b"}, // holds one tag
				{After: "20261001000000_prune_b", Through: "20261020"},
				{After: "20261020", Through: "20261020000001"}, // empty
				{After: "20261020000001", Through: "20261101000000"},
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, ledger.Config{})
			tags := tagsFor(400)
			reg := newFake(tags)
			p := testPolicy()
			p.DryRun = tc.dry
			e.seed(t, "r1", p, tc.ranges...)
			e.startWorkers(t, tc.workers, tc.cfg, reg, nil)
			shards := e.waitShards(t, "r1", len(tc.ranges))

			wantDel, wantKeep := eligible(t, p, tags)
			remaining, deleted := reg.snapshot()
			got := sum(shards)
			for _, s := range shards {
				if s.State != proto.StateDone {
					t.Errorf("shard %s ended %s (%s), want done", s.ShardID, s.State, s.LastError)
				}
			}
			if got.Eligible != int64(len(wantDel)) {
				t.Errorf("eligible = %d, want %d", got.Eligible, len(wantDel))
			}
			var inRange int64
			for _, tag := range tags {
				if tag <= "20261101000000" {
					inRange++
				}
			}
			if got.Scanned != inRange || got.Scanned != got.Eligible+got.Kept+got.Invalid {
				t.Errorf("counters %+v: scanned want %d = eligible + kept + invalid", got, inRange)
			}
			if got.Invalid != 1 {
				t.Errorf("invalid = %d, want 1 (the impossible date)", got.Invalid)
			}
			if tc.dry {
				if len(deleted) != 0 || got.Deleted != 0 {
					t.Fatalf("dry run deleted %d tags (counter %d), want none", len(deleted), got.Deleted)
				}
				return
			}
			if !slices.Equal(deleted, wantDel) {
				t.Errorf("deleted %d tags, want exactly the %d eligible ones", len(deleted), len(wantDel))
			}
			if !slices.Equal(remaining, wantKeep) {
				t.Errorf("remaining %d tags, want the %d kept ones", len(remaining), len(wantKeep))
			}
			if got.Deleted != int64(len(wantDel)) || got.AlreadyGone != 0 || got.DeleteFailed != 0 {
				t.Errorf("counters %+v, want deleted = %d", got, len(wantDel))
			}
			if n := streamMsgs(t, e.js); n != 0 {
				t.Errorf("%d shard messages left in the stream, want all acked", n)
			}
			audit := 0
			for ev, err := range e.l.Audit(testCtx(t), "r1") {
				if err != nil {
					t.Fatal(err)
				}
				if ev.Outcome != proto.OutcomeDeleted {
					t.Errorf("audit event %+v, want deleted", ev)
				}
				audit++
			}
			if audit != len(wantDel) {
				t.Errorf("%d audit events, want %d", audit, len(wantDel))
			}
		})
	}
}

func TestTagDeletedBetweenPages(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	tags := tagsFor(60)
	reg := newFake(tags)
	// After the first page, someone else deletes the tag the next call names as last.
	var once sync.Once
	reg.onList = func(last string) error {
		if last != "" {
			once.Do(func() { _ = reg.Delete(context.Background(), "ci/x", last) })
		}
		return nil
	}
	p := testPolicy()
	e.seed(t, "r1", p, proto.Range{After: "", Through: "20261101000000"})
	e.startWorkers(t, 1, worker.Config{PageSize: 10}, reg, nil)
	shards := e.waitShards(t, "r1", 1)
	wantDel, wantKeep := eligible(t, p, tags)
	remaining, _ := reg.snapshot()
	if !slices.Equal(remaining, wantKeep) {
		t.Fatalf("remaining %d tags, want %d", len(remaining), len(wantKeep))
	}
	if got := sum(shards); got.Eligible != int64(len(wantDel)) {
		t.Fatalf("eligible %d, want %d: a page was skipped or repeated", got.Eligible, len(wantDel))
	}
}

// logCapture records log messages so a test can wait for a worker to reach a point.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			msg += " (" + a.Value.String() + ")"
		}
		return true
	})
	c.msgs = append(c.msgs, msg)
	c.mu.Unlock()
	return nil
}
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }
func (c *logCapture) waitFor(t *testing.T, prefix string) {
	t.Helper()
	ctx := testCtx(t)
	for {
		c.mu.Lock()
		ok := slices.ContainsFunc(c.msgs, func(m string) bool { return strings.HasPrefix(m, prefix) })
		c.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no log message %q; got %q", prefix, c.msgs)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestFencedWorkerLeavesMessageAlone(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	reg := newFake(tagsFor(50))
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	reg.onList = func(last string) error {
		if last != "" { // second page: wait until the shard was taken over
			once.Do(func() { close(entered); <-release })
		}
		return nil
	}
	e.seed(t, "r1", testPolicy(), proto.Range{After: "", Through: "20261101000000"})
	logs := &logCapture{}
	e.startWorkers(t, 1, worker.Config{PageSize: 10}, reg, slog.New(logs))
	select {
	case <-entered:
	case <-testCtx(t).Done():
		t.Fatal("worker never listed a second page")
	}
	// A newer delivery elsewhere takes the shard over.
	thief, err := e.l.Claim(testCtx(t), "r1", "s000", "thief", 99)
	if err != nil {
		t.Fatal(err)
	}
	close(release)
	logs.waitFor(t, "lost the shard")
	if n := streamMsgs(t, e.js); n != 1 {
		t.Fatalf("fenced worker acked or termed the message: stream holds %d, want 1", n)
	}
	if rec, _, _ := e.l.Shard(testCtx(t), "r1", "s000"); rec.Owner != "thief" || rec.Cursor != thief.Record().Cursor {
		t.Fatalf("fenced worker wrote the record: %+v", rec)
	}
}

func TestListErrorsRetryThenFail(t *testing.T) {
	e := newEnv(t, ledger.Config{MaxDeliver: 3})
	reg := newFake(tagsFor(10))
	reg.onList = func(string) error { return errors.New("registry on fire") }
	e.seed(t, "r1", testPolicy(), proto.Range{After: "", Through: "20261101000000"})
	e.startWorkers(t, 1, worker.Config{RetryDelay: 10 * time.Millisecond}, reg, nil)
	shards := e.waitShards(t, "r1", 1)
	s := shards[0]
	if s.State != proto.StateFailed || !strings.Contains(s.LastError, "registry on fire") || s.Attempt != 3 {
		t.Fatalf("shard = %s attempt %d (%q), want failed on attempt 3 with the list error", s.State, s.Attempt, s.LastError)
	}
	reg.mu.Lock()
	lists := reg.lists
	reg.mu.Unlock()
	if lists != 3 {
		t.Errorf("listed %d times, want one per delivery (3)", lists)
	}
	// The Term follows the record's update and is asynchronous: poll for it.
	ctx := testCtx(t)
	for n := streamMsgs(t, e.js); n != 0; n = streamMsgs(t, e.js) {
		select {
		case <-ctx.Done():
			t.Fatalf("failed shard's message still in the stream (%d), want it termed", n)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestGracefulStop(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	tags := tagsFor(80)
	reg := newFake(tags)
	runCtx, stopRun := context.WithCancel(context.Background())
	entered := make(chan struct{})
	var once sync.Once
	var firstLast string
	reg.onList = func(last string) error {
		if last != "" {
			// Second page: stop the worker while this call is in flight.
			once.Do(func() { firstLast = last; close(entered); <-runCtx.Done() })
		}
		return nil
	}
	e.seed(t, "r1", testPolicy(), proto.Range{After: "", Through: "20261101000000"})
	stop := e.startWorkersCtx(t, runCtx, 1, worker.Config{PageSize: 10}, reg, nil)
	<-entered
	stopRun()
	if err := stop(); err != nil {
		t.Fatalf("Run after graceful stop = %v, want nil", err)
	}
	rec, _, err := e.l.Shard(testCtx(t), "r1", "s000")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != proto.StatePending || rec.Cursor != firstLast || rec.Counters.Scanned != 10 {
		t.Fatalf("after stop: %s cursor %q scanned %d, want pending at the first page's end %q with 10 scanned",
			rec.State, rec.Cursor, rec.Counters.Scanned, firstLast)
	}
	if n := streamMsgs(t, e.js); n != 1 {
		t.Fatalf("stream holds %d messages, want the released shard's 1", n)
	}
	// Another worker resumes from the checkpoint and finishes.
	reg.onList = nil
	e.startWorkers(t, 1, worker.Config{PageSize: 10}, reg, nil)
	shards := e.waitShards(t, "r1", 1)
	wantDel, _ := eligible(t, testPolicy(), tags)
	if got := sum(shards); got.Eligible != int64(len(wantDel)) || got.Deleted != int64(len(wantDel)) {
		t.Fatalf("after resume: %+v, want eligible = deleted = %d", got, len(wantDel))
	}
}

func TestMaxDeletesAcrossWorkers(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	tags := tagsFor(300)
	reg := newFake(tags)
	p := testPolicy()
	p.MaxDeletes = 25
	e.seed(t, "r1", p,
		proto.Range{After: "", Through: "20261020"},
		proto.Range{After: "20261020", Through: "20261101000000"})
	e.startWorkers(t, 2, worker.Config{PageSize: 10}, reg, nil)
	shards := e.waitShards(t, "r1", 2)
	_, deleted := reg.snapshot()
	if len(deleted) != 25 {
		t.Fatalf("deleted %d tags, want exactly the cap 25", len(deleted))
	}
	run, _, err := e.l.Run(testCtx(t), "r1")
	if err != nil {
		t.Fatal(err)
	}
	if !ledger.Stopped(run) || !strings.Contains(run.Reason, "max deletes") {
		t.Fatalf("run = %+v, want stopped for max deletes", run)
	}
	got := sum(shards)
	if got.Deleted != 25 {
		t.Errorf("deleted counter %d, want 25", got.Deleted)
	}
	failed := 0
	for _, s := range shards {
		if s.State == proto.StateFailed {
			failed++
		}
	}
	if failed == 0 {
		t.Errorf("no shard failed at the cap: %+v", shards)
	}
	// What was deleted is exactly the first eligible tags of each shard's checkpointed prefix.
	wantDel, _ := eligible(t, p, tags)
	for _, d := range deleted {
		if _, ok := slices.BinarySearch(wantDel, d); !ok {
			t.Errorf("deleted %q, which is not eligible", d)
		}
	}
}

func TestUndecodableMessageTermed(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	if _, err := e.js.Publish(testCtx(t), proto.ShardSubject("r1", "junk"), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	logs := &logCapture{}
	e.startWorkers(t, 1, worker.Config{}, newFake(nil), slog.New(logs))
	logs.waitFor(t, "dropping undecodable")
	ctx := testCtx(t)
	for streamMsgs(t, e.js) != 0 {
		select {
		case <-ctx.Done():
			t.Fatal("undecodable message not removed")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestSplitUnderTimeBudget(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	tags := tagsFor(600)
	reg := newFake(tags)
	var mu sync.Mutex
	calls := 0
	reg.onList = func(string) error {
		mu.Lock()
		calls++
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // a slow registry, so the split budget runs out
		return nil
	}
	p := testPolicy()
	whole := proto.Range{After: "", Through: "20261101000000"}
	e.seed(t, "r1", p, whole)
	e.startWorkers(t, 2, worker.Config{PageSize: 5, SplitAfter: 20 * time.Millisecond}, reg, nil)
	shards := e.waitShards(t, "r1", 1)
	if len(shards) < 2 {
		t.Fatalf("%d shards, want the slow shard split at least once", len(shards))
	}
	checkSplits(t, shards, whole)
	wantDel, wantKeep := eligible(t, p, tags)
	remaining, deleted := reg.snapshot()
	if !slices.Equal(deleted, wantDel) || !slices.Equal(remaining, wantKeep) {
		t.Fatalf("after splits deleted %d (want %d), remaining %d (want %d)", len(deleted), len(wantDel), len(remaining), len(wantKeep))
	}
	if got := sum(shards); got.Deleted != int64(len(wantDel)) || got.Eligible != int64(len(wantDel)) {
		t.Fatalf("counters %+v, want deleted = eligible = %d", got, len(wantDel))
	}
}

// checkSplits checks that shards, all done, partition whole.
func checkSplits(t *testing.T, shards []proto.ShardRecord, whole proto.Range) {
	t.Helper()
	rs := make([]proto.Range, 0, len(shards))
	for _, s := range shards {
		if s.State != proto.StateDone {
			t.Errorf("shard %s %s: %s", s.ShardID, s.State, s.LastError)
		}
		rs = append(rs, s.Range)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].After < rs[j].After })
	if rs[0].After != whole.After || rs[len(rs)-1].Through != whole.Through {
		t.Fatalf("split ranges %v do not span %v", rs, whole)
	}
	for i := 1; i < len(rs); i++ {
		if rs[i-1].Through != rs[i].After {
			t.Fatalf("split ranges %v and %v leave a gap or overlap", rs[i-1], rs[i])
		}
	}
}

// One shard and idle slots: the worker holding it splits it for them, and the halves split
// again while slots stay idle (work stealing), without a time budget. With idle splitting
// off, the shard stays whole.
func TestSplitForIdleSlots(t *testing.T) {
	for _, idle := range []time.Duration{10 * time.Millisecond, -1} {
		t.Run(fmt.Sprintf("IdleSplit=%s", idle), func(t *testing.T) {
			e := newEnv(t, ledger.Config{})
			tags := tagsFor(1200)
			reg := newFake(tags)
			reg.onList = func(string) error {
				time.Sleep(2 * time.Millisecond) // a registry slow enough for the slots to go idle
				return nil
			}
			p := testPolicy()
			whole := proto.Range{After: "", Through: "20261101000000"}
			e.seed(t, "r1", p, whole)
			e.startWorkers(t, 3, worker.Config{PageSize: 5, Slots: 2, IdleSplit: idle}, reg, nil)
			shards := e.waitShards(t, "r1", 1)
			checkSplits(t, shards, whole)
			if idle < 0 && len(shards) != 1 {
				t.Errorf("%d shards with idle splitting off, want the one", len(shards))
			}
			if idle >= 0 && len(shards) < 6 {
				t.Errorf("%d shards, want the one split at least once per slot", len(shards))
			}
			wantDel, _ := eligible(t, p, tags)
			if _, deleted := reg.snapshot(); !slices.Equal(deleted, wantDel) {
				t.Errorf("deleted %d, want %d", len(deleted), len(wantDel))
			}
		})
	}
}

func TestOneMessagePerSlot(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	reg := newFake(tagsFor(20))
	entered, release := make(chan struct{}, 8), make(chan struct{})
	reg.onList = func(string) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return nil
	}
	e.seed(t, "r1", testPolicy(),
		proto.Range{After: "", Through: "2026"},
		proto.Range{After: "2026", Through: "20261020"},
		proto.Range{After: "20261020", Through: "20261101000000"})
	e.startWorkers(t, 1, worker.Config{Slots: 1}, reg, nil)
	// Registered after startWorkers, so it runs before the workers are stopped: a failed
	// check below must not leave the blocked listing holding the workers' shutdown.
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	<-entered
	info, err := e.l.Consumer().Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 1 || info.NumPending != 2 {
		t.Fatalf("one busy slot: ack pending %d, pending %d; want 1 and 2 (nothing prefetched)", info.NumAckPending, info.NumPending)
	}
	unblock()
	e.waitShards(t, "r1", 3)
}

// TestEmptyShardWherePlanningSawATag: a shard whose listing, proven complete, finds no tag
// where planning saw one fails while that tag still exists (the registry left it out of its
// pages), and finishes when the tag is gone (deleted since planning: the shard is empty).
func TestEmptyShardWherePlanningSawATag(t *testing.T) {
	tests := []struct {
		name      string
		seen      string
		wantState proto.ShardState
	}{
		{name: "seen tag still exists", seen: "20261030000000_prune_hidden", wantState: proto.StateFailed},
		{name: "seen tag gone", seen: "20261030000000_prune_gone", wantState: proto.StateDone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, ledger.Config{MaxDeliver: 1})
			// The registry holds the hidden tag but never lists it.
			reg := newFake([]string{"20261030000000_prune_hidden"})
			lister := hidingLister{fakeRegistry: reg, hide: "20261030000000_prune_hidden"}
			c := testCtx(t)
			if _, err := e.l.CreateRun(c, proto.RunRecord{RunID: "r1", Registry: "fake", Repositories: []string{"ci/x"},
				Policy: testPolicy(), State: proto.RunRunning, StartedAt: time.Now().UTC(), Shards: 1}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.l.CreateShard(c, proto.ShardRecord{RunID: "r1", ShardID: "s0", Kind: proto.KindPrune, Repository: "ci/x",
				Range: proto.Range{After: "20261029", Through: "20261031"}, Seen: tc.seen}); err != nil {
				t.Fatal(err)
			}
			e.startWorkers(t, 1, worker.Config{RetryDelay: 10 * time.Millisecond}, lister, nil)
			s := e.waitShards(t, "r1", 1)[0]
			if s.State != tc.wantState {
				t.Fatalf("shard = %s (%q), want %s", s.State, s.LastError, tc.wantState)
			}
			if tc.wantState == proto.StateFailed && !strings.Contains(s.LastError, "where planning saw") {
				t.Errorf("shard error = %q, want it to say planning saw a tag there", s.LastError)
			}
			if _, deleted := reg.snapshot(); len(deleted) != 0 {
				t.Errorf("deleted %q, want nothing", deleted)
			}
		})
	}
}

// hidingLister is a fake registry whose listing leaves one tag out.
type hidingLister struct {
	*fakeRegistry
	hide string
}

func (h hidingLister) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	p, err := h.fakeRegistry.List(ctx, repo, last, n)
	p.Tags = slices.DeleteFunc(p.Tags, func(t string) bool { return t == h.hide })
	return p, err
}
