package coordinator_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// lister is an in-memory keyset registry (List only). ignoreLast imitates Quay before 3.12.
type lister struct {
	mu         sync.Mutex
	tags       map[string][]string // repo -> sorted tags
	ignoreLast bool
	calls      int
}

func (f *lister) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	tags := f.tags[repo]
	i := 0
	if !f.ignoreLast {
		i, _ = slices.BinarySearch(tags, last)
		if i < len(tags) && tags[i] == last {
			i++
		}
	}
	j := min(i+n, len(tags))
	return registry.Page{Tags: slices.Clone(tags[i:j]), More: j < len(tags)}, nil
}

func newLister(repoTags map[string][]string) *lister {
	f := &lister{tags: make(map[string][]string)}
	for r, ts := range repoTags {
		ts = slices.Clone(ts)
		sort.Strings(ts)
		f.tags[r] = ts
	}
	return f
}

var start = time.Date(2026, 11, 22, 3, 15, 0, 0, time.UTC)

// dayTags makes n prune tags per day for the given days before start.
func dayTags(days, n int) []string {
	var out []string
	for d := range days {
		day := start.AddDate(0, 0, -d)
		for i := range n {
			out = append(out, fmt.Sprintf("%s_prune_x_%d", day.Add(-time.Duration(i)*time.Hour).Format("20060102150405"), i))
		}
	}
	return append(out, "latest")
}

type env struct {
	rig *testrig.Rig
	js  jetstream.JetStream
	l   *ledger.Ledger
	lc  ledger.Config

	// deleteFailed, when set, says how many of a shard's tags the fake worker reports as
	// eligible but not deleted (the delete failed after the client's retries).
	deleteFailed func(proto.ShardRecord) int64
	// onShard, when set, is called as the fake worker takes each shard message.
	onShard func()
}

func newEnv(t *testing.T) *env {
	t.Helper()
	lc := ledger.Config{Storage: jetstream.MemoryStorage, AckWait: 2 * time.Second, MaxDeliver: 2}
	r := testrig.New(t, testrig.Config{MaxMemory: 64 << 20, MaxStore: 64 << 20, Ledger: lc})
	return &env{rig: r, js: r.JS(t), l: r.Ledger(), lc: lc}
}

func (e *env) connect(t *testing.T) jetstream.JetStream { return e.rig.JS(t) }

func testCtx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// fakeWorker finishes every shard it receives through the ledger, without a registry: it
// counts the lister's tags in the range as scanned, and fails shards for which fail says so.
func (e *env) fakeWorker(t *testing.T, f *lister, fail func(proto.ShardRecord) bool) {
	t.Helper()
	e.consumeShards(t, func(ctx context.Context, msg jetstream.Msg, m proto.ShardMessage, md *jetstream.MsgMetadata) {
		if e.onShard != nil {
			e.onShard()
		}
		claim, err := e.l.Claim(ctx, m.RunID, m.ShardID, "fake", int(md.NumDelivered))
		if errors.Is(err, ledger.ErrTerminal) {
			_ = msg.Ack()
			return
		}
		if err != nil {
			_ = msg.Nak()
			return
		}
		rec := claim.Record()
		if fail != nil && fail(rec) {
			_ = claim.Fail(ctx, errors.New("injected failure"))
			_ = msg.Term()
			return
		}
		var n int64
		f.mu.Lock()
		for _, tag := range f.tags[rec.Repository] {
			if rec.Range.Contains(tag) {
				n++
			}
		}
		f.mu.Unlock()
		counts := proto.Counters{Scanned: n, Kept: n}
		if e.deleteFailed != nil {
			k := min(e.deleteFailed(rec), n)
			counts.Kept, counts.Eligible, counts.DeleteFailed = n-k, k, k
		}
		if err := claim.Checkpoint(ctx, rec.Range.Through, counts); err != nil {
			return
		}
		if claim.Done(ctx) == nil {
			_ = msg.Ack()
		}
	})
}

// consumeShards hands every shard message of the queue to handle, with its metadata, until
// the test ends; a message that is not a shard message is terminated.
func (e *env) consumeShards(t *testing.T, handle func(ctx context.Context, msg jetstream.Msg, m proto.ShardMessage, md *jetstream.MsgMetadata)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	cons := e.l.Consumer()
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			msg, err := cons.Next(jetstream.FetchMaxWait(200 * time.Millisecond))
			if err != nil {
				continue
			}
			var m proto.ShardMessage
			if json.Unmarshal(msg.Data(), &m) != nil {
				_ = msg.Term()
				continue
			}
			md, err := msg.Metadata()
			if err != nil {
				_ = msg.Nak()
				continue
			}
			handle(ctx, msg, m, md)
		}
	}()
}

func (e *env) config(runID string, repos ...string) coordinator.Config {
	p := policy.Defaults()
	p.Cutoff = start.AddDate(0, 0, -3)
	// Pages of 2 tags, so that the small namespaces of the tests are cut into several shards.
	return coordinator.Config{RunID: runID, Registry: "registry.test", Repositories: repos, Policy: p,
		PollInterval: 50 * time.Millisecond, Ledger: e.lc, Holder: "test-coordinator", Shards: 8, PageSize: 2}
}

func run(t *testing.T, e *env, cfg coordinator.Config, f *lister) (proto.Report, error) {
	t.Helper()
	c, err := coordinator.New(cfg, e.connect(t), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.Run(testCtx(t))
}

// checkPartition fails unless the repository's shards partition ("", through].
func checkPartition(t *testing.T, shards []proto.ShardRecord, repo, through string) {
	t.Helper()
	var rs []proto.Range
	for _, s := range shards {
		if s.Repository == repo {
			rs = append(rs, s.Range)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].After < rs[j].After })
	cur := ""
	for _, r := range rs {
		if r.After != cur || r.Through <= r.After {
			t.Fatalf("%s: shards %v do not partition (\"\", %q]", repo, rs, through)
		}
		cur = r.Through
	}
	if cur != through {
		t.Fatalf("%s: shards %v end at %q, want %q", repo, rs, cur, through)
	}
}

func TestRun(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{
		"ci/a": dayTags(10, 5),
		"ci/b": append(dayTags(2, 3), "19990101000000_prune_stray"),
		"ci/c": {"latest"}, // nothing at or below the cutoff
	})
	e.fakeWorker(t, f, nil)
	cfg := e.config("run1", "ci/a", "ci/b", "ci/c")
	rep, err := run(t, e, cfg, f)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	rules, _ := policy.New(cfg.Policy)
	cutKey := rules.CutoffKey()
	var want int64
	for _, repo := range []string{"ci/a", "ci/b", "ci/c"} {
		for _, tag := range f.tags[repo] {
			if tag <= cutKey {
				want++
			}
		}
	}
	if rep.Tags.Scanned != want || rep.Shards.Failed != 0 || rep.Shards.Done != rep.Shards.Total || rep.RunID != "run1" {
		t.Fatalf("report %+v: want %d scanned, every shard done", rep, want)
	}
	if !rep.Cutoff.Equal(cfg.Policy.Cutoff) || rep.FinishedAt.IsZero() {
		t.Errorf("report cutoff %v finished %v, want the policy cutoff and a finish time", rep.Cutoff, rep.FinishedAt)
	}
	shards, err := e.l.Shards(testCtx(t), "run1")
	if err != nil {
		t.Fatal(err)
	}
	if len(shards) != rep.Shards.Total {
		t.Fatalf("%d shard records, report says %d", len(shards), rep.Shards.Total)
	}
	checkPartition(t, shards, "ci/a", cutKey)
	checkPartition(t, shards, "ci/b", cutKey)
	for _, s := range shards {
		if s.Repository == "ci/c" {
			t.Errorf("shard %v planned for a repository with nothing to prune", s)
		}
	}
	// ci/b: the stray 1999 tag costs one shard, not 27 years of days.
	nb := 0
	for _, s := range shards {
		if s.Repository == "ci/b" {
			nb++
		}
	}
	if nb > 3 {
		t.Errorf("ci/b planned into %d shards, want at most 3 (stray tag, one day, rest)", nb)
	}
	rec, _, err := e.l.Run(testCtx(t), "run1")
	if err != nil || rec.State != proto.RunDone || rec.Totals != rep.Tags || rec.Shards != len(shards) {
		t.Fatalf("run record %+v, %v: want done with the report's totals", rec, err)
	}
	for _, repo := range cfg.Repositories {
		if _, err := e.l.Lease(testCtx(t), repo); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("lease on %s after the run: %v, want released", repo, err)
		}
	}

	// The same run again: re-attaches, adds no shards, reports the same.
	again, err := run(t, e, cfg, f)
	if err != nil {
		t.Fatalf("second Run: %v", err)
	}
	after, _ := e.l.Shards(testCtx(t), "run1")
	if len(after) != len(shards) || again.Tags != rep.Tags || again.Shards != rep.Shards {
		t.Fatalf("second Run: %d shards (was %d), report %+v (was %+v)", len(after), len(shards), again, rep)
	}
	cfg.Repositories = []string{"ci/other"}
	if _, err := run(t, e, cfg, f); err == nil {
		t.Errorf("re-attaching with other repositories: err = nil, want an error")
	}
}

func TestCutoffFixedFromTTL(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(3, 2)})
	e.fakeWorker(t, f, nil)
	cfg := e.config("run1", "ci/a")
	cfg.Policy.Cutoff = time.Time{}
	cfg.TTL = 48 * time.Hour
	before := time.Now().UTC().Add(-cfg.TTL)
	rep, err := run(t, e, cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Cutoff.Before(before.Add(-time.Second)) || rep.Cutoff.After(time.Now().UTC().Add(-cfg.TTL)) {
		t.Fatalf("cutoff %v, want start - 48h (about %v)", rep.Cutoff, before)
	}
	rec, _, _ := e.l.Run(testCtx(t), "run1")
	if !rec.Policy.Cutoff.Equal(rep.Cutoff) {
		t.Fatalf("recorded cutoff %v, reported %v", rec.Policy.Cutoff, rep.Cutoff)
	}
}

func TestLeaseHeld(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(3, 2)})
	if err := e.l.AcquireLease(testCtx(t), "ci/a", "other-run", "host-x/42", time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, e, e.config("run1", "ci/a"), f)
	if !errors.Is(err, ledger.ErrLeaseHeld) || !strings.Contains(err.Error(), "other-run") || !strings.Contains(err.Error(), "host-x/42") {
		t.Fatalf("Run while another run holds the lease: err = %v, want ErrLeaseHeld naming other-run and its holder", err)
	}
	if errors.Is(err, coordinator.ErrRunFailed) {
		t.Fatalf("a refused run is not a run with failed shards: %v", err)
	}
	if shards, _ := e.l.Shards(testCtx(t), "run1"); len(shards) != 0 {
		t.Fatalf("refused run planned %d shards", len(shards))
	}
	// The refusal is recorded: the run does not stay "running" forever.
	rec, _, err := e.l.Run(testCtx(t), "run1")
	if err != nil || rec.State != proto.RunRefused || !strings.Contains(rec.Reason, "other-run") || rec.FinishedAt.IsZero() {
		t.Fatalf("refused run recorded as %+v, %v; want refused, naming the holder", rec, err)
	}
}

// TestLapsedLeaseAbandonsRun: a coordinator that takes over the lapsed lease of a run whose
// coordinator died records that run as abandoned, and resuming the abandoned run later
// finishes it.
func TestLapsedLeaseAbandonsRun(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	f := newLister(map[string][]string{"ci/a": dayTags(10, 2)})
	e.fakeWorker(t, f, nil)
	// A run whose coordinator died: recorded running, its lease lapsed.
	if err := e.l.AcquireLease(ctx, "ci/a", "dead", "host-x/42", time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if _, err := e.l.CreateRun(ctx, proto.RunRecord{RunID: "dead", Registry: "registry.test", Repositories: []string{"ci/a"},
		Policy: e.config("dead").Policy, State: proto.RunRunning, StartedAt: start}); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, e, e.config("next", "ci/a"), f); err != nil {
		t.Fatalf("next run: %v", err)
	}
	rec, _, err := e.l.Run(ctx, "dead")
	if err != nil || rec.State != proto.RunAbandoned || !strings.Contains(rec.Reason, "host-x/42") {
		t.Fatalf("dead run recorded as %+v, %v; want abandoned, naming its coordinator", rec, err)
	}
	rep, err := run(t, e, e.config("dead", "ci/a"), f)
	if err != nil || rep.Shards.Total == 0 || rep.Shards.Done != rep.Shards.Total {
		t.Fatalf("resuming the abandoned run: %+v, %v; want every shard done", rep.Shards, err)
	}
	if rec, _, _ = e.l.Run(ctx, "dead"); rec.State != proto.RunDone {
		t.Fatalf("resumed run ended %s, want done", rec.State)
	}
}

func TestFailedShards(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(6, 2)})
	e.fakeWorker(t, f, func(s proto.ShardRecord) bool { return s.Range.Contains("20261117") })
	rep, err := run(t, e, e.config("run1", "ci/a"), f)
	if !errors.Is(err, coordinator.ErrRunFailed) {
		t.Fatalf("Run with a failing shard: err = %v, want ErrRunFailed", err)
	}
	if rep.Shards.Failed != 1 || len(rep.FailedShards) != 1 || rep.Reason == "" {
		t.Fatalf("report %+v, want one failed shard named, and a reason", rep)
	}
	rec, _, _ := e.l.Run(testCtx(t), "run1")
	if rec.State != proto.RunFailed {
		t.Fatalf("run state %s, want failed", rec.State)
	}
}

// A run whose shards all finish but some of whose eligible tags could not be deleted has not
// done what it was asked: the tags are still there. It must not end as done (exit 0).
func TestFailedDeletesFailTheRun(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(4, 2)})
	var once sync.Once
	e.deleteFailed = func(proto.ShardRecord) (n int64) {
		once.Do(func() { n = 1 })
		return n
	}
	e.fakeWorker(t, f, nil)
	rep, err := run(t, e, e.config("run1", "ci/a"), f)
	if !errors.Is(err, coordinator.ErrRunFailed) || !strings.Contains(err.Error(), "could not be deleted") {
		t.Fatalf("Run with a failed delete: err = %v, want ErrRunFailed saying tags could not be deleted", err)
	}
	if rep.Shards.Failed != 0 || rep.Tags.DeleteFailed != 1 {
		t.Fatalf("report shards %+v tags %+v, want no failed shard and one failed delete", rep.Shards, rep.Tags)
	}
	rec, _, _ := e.l.Run(testCtx(t), "run1")
	if rec.State != proto.RunFailed {
		t.Fatalf("run state %s, want failed", rec.State)
	}
}

// A run must not end as done (exit 0) unless it knows how its preservation went: a result
// that cannot be read is an unknown, like a failed preservation.
func TestPreservationResultsDecideTheRun(t *testing.T) {
	good, _ := json.Marshal(proto.PreserveResult{V: proto.Version, RunID: "run1", ShardID: "0-family",
		Counters: proto.PreserveCounters{Preserved: 2}})
	bad, _ := json.Marshal(proto.PreserveResult{V: proto.Version, RunID: "run1", ShardID: "0-family",
		Counters: proto.PreserveCounters{PreserveFailed: 1}, Failures: []string{"4.1: boom"}})
	tests := []struct {
		name      string
		result    []byte // at the key of a preservation result of run1
		reason    string // "" for a run done
		preserved int64  // the report's Preservation.Preserved; -1: no Preservation
	}{
		{"no result", nil, "", -1},
		{"all preserved", good, "", 2},
		{"a payload not preserved", bad, "1 release payloads could not be preserved (4.1: boom)", 0},
		{"an unreadable result", []byte("{not json"), "preservation results unknown: listing preservation results of run run1: " +
			"preserve.run1.0-family: " + ledger.ErrBadRecord.Error(), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.result != nil {
				kv, err := e.js.KeyValue(testCtx(t), proto.BucketState)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := kv.Put(testCtx(t), proto.PreserveResultKey("run1", "0-family"), tc.result); err != nil {
					t.Fatal(err)
				}
			}
			f := newLister(map[string][]string{"ci/a": dayTags(3, 2)})
			e.fakeWorker(t, f, nil)
			rep, err := run(t, e, e.config("run1", "ci/a"), f)
			rec, _, rerr := e.l.Run(testCtx(t), "run1")
			if rerr != nil {
				t.Fatal(rerr)
			}
			switch p := rep.Preservation; {
			case tc.preserved < 0 && p != nil, tc.preserved >= 0 && (p == nil || p.Preserved != tc.preserved):
				t.Errorf("report's preservation = %+v, want Preserved %d (-1: none)", p, tc.preserved)
			case tc.preserved == 0 && !slices.Equal(rep.PreservationFailures, []string{"4.1: boom"}):
				t.Errorf("report's preservation failures = %q, want the result's", rep.PreservationFailures)
			}
			if tc.reason == "" {
				if err != nil || rec.State != proto.RunDone {
					t.Fatalf("Run: err = %v, run %s (%q), want done", err, rec.State, rec.Reason)
				}
				return
			}
			if !errors.Is(err, coordinator.ErrRunFailed) || rec.State != proto.RunFailed || !strings.Contains(rec.Reason, tc.reason) {
				t.Fatalf("Run: err = %v, run %s (%q), want failed with a reason containing %q", err, rec.State, rec.Reason, tc.reason)
			}
		})
	}
}

func TestStoppedRunFails(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(4, 2)})
	// The "worker" hits the delete cap on its first shard and stops the run.
	var once sync.Once
	e.fakeWorker(t, f, func(s proto.ShardRecord) bool {
		once.Do(func() { _ = e.l.StopRun(context.Background(), s.RunID, "max deletes reached") })
		return false
	})
	_, err := run(t, e, e.config("run1", "ci/a"), f)
	if !errors.Is(err, coordinator.ErrRunFailed) || !strings.Contains(err.Error(), "max deletes") {
		t.Fatalf("Run stopped by the cap: err = %v, want ErrRunFailed with the reason", err)
	}
}

func TestKeysetUnsupported(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(3, 2)})
	f.ignoreLast = true
	_, err := run(t, e, e.config("run1", "ci/a"), f)
	if !errors.Is(err, registry.ErrKeysetUnsupported) {
		t.Fatalf("Run against a registry ignoring last: err = %v, want ErrKeysetUnsupported", err)
	}
	rec, _, _ := e.l.Run(testCtx(t), "run1")
	if rec.State != proto.RunFailed || !strings.Contains(rec.Reason, "planning") {
		t.Fatalf("run record %+v, want failed with the planning error", rec)
	}
	if _, err := e.l.Lease(testCtx(t), "ci/a"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("lease kept after a failed plan: %v", err)
	}
}

func TestResumesInterruptedPlanning(t *testing.T) {
	e := newEnv(t)
	tags := dayTags(8, 2)
	f := newLister(map[string][]string{"ci/a": tags})
	cfg := e.config("run1", "ci/a")
	rules, _ := policy.New(cfg.Policy)
	// An earlier coordinator recorded the run and the first two shards of its plan, then died.
	ranges, err := keyspace.Plan(testCtx(t), func(ctx context.Context, after string, n int) ([]string, bool, error) {
		p, err := f.List(ctx, "ci/a", after, n)
		return p.Tags, p.More, err
	}, proto.Range{Through: rules.CutoffKey()}, keyspace.PlanConfig{Shards: 8, PageSize: 2})
	if err != nil || len(ranges) < 4 {
		t.Fatalf("Plan = %d ranges, %v", len(ranges), err)
	}
	if _, err := e.l.CreateRun(testCtx(t), proto.RunRecord{RunID: "run1", Registry: "registry.test", Repositories: []string{"ci/a"},
		Policy: cfg.Policy, State: proto.RunRunning, StartedAt: start}); err != nil {
		t.Fatal(err)
	}
	for i, r := range ranges[:2] {
		if _, err := e.l.CreateShard(testCtx(t), proto.ShardRecord{RunID: "run1", ShardID: fmt.Sprintf("old%d", i),
			Repository: "ci/a", Range: r}); err != nil {
			t.Fatal(err)
		}
	}
	e.fakeWorker(t, f, nil)
	rep, err := run(t, e, cfg, f)
	if err != nil {
		t.Fatal(err)
	}
	shards, _ := e.l.Shards(testCtx(t), "run1")
	checkPartition(t, shards, "ci/a", rules.CutoffKey())
	if len(shards) < 3 || shards[len(shards)-2].ShardID != "old0" || shards[len(shards)-1].ShardID != "old1" {
		t.Errorf("shards after resuming = %v, want the two recorded and more", shards)
	}
	var want int64
	for _, tag := range tags {
		if tag <= rules.CutoffKey() {
			want++
		}
	}
	if rep.Tags.Scanned != want {
		t.Errorf("scanned %d, want %d: a range was covered twice or not at all", rep.Tags.Scanned, want)
	}
}

func TestFillsCoverageGap(t *testing.T) {
	for _, fails := range []int{0, 2} {
		// With fails, publishing the gap's shard meets NATS answering no responders first
		// (a node lost): the coordinator publishes it when NATS answers again.
		t.Run(fmt.Sprintf("publishes failing %d times", fails), func(t *testing.T) { fillsCoverageGap(t, fails) })
	}
}

func fillsCoverageGap(t *testing.T, publishFails int) {
	e := newEnv(t)
	tags := dayTags(4, 2)
	f := newLister(map[string][]string{"ci/a": tags})
	cfg := e.config("run1", "ci/a")
	rules, _ := policy.New(cfg.Policy)
	// A split whose new half was never recorded: the run's shards stop short of the cutoff.
	if _, err := e.l.CreateRun(testCtx(t), proto.RunRecord{RunID: "run1", Registry: "registry.test", Repositories: []string{"ci/a"},
		Policy: cfg.Policy, State: proto.RunRunning, StartedAt: start}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []proto.Range{{After: "", Through: "20261118"}, {After: "20261119", Through: rules.CutoffKey()}} {
		if _, err := e.l.CreateShard(testCtx(t), proto.ShardRecord{RunID: "run1", ShardID: "s" + r.Through,
			Repository: "ci/a", Range: r}); err != nil {
			t.Fatal(err)
		}
	}
	js := &flakyJS{JetStream: e.connect(t), publishFails: publishFails}
	e.onShard = js.arm // once planning is over
	c, err := coordinator.New(cfg, js, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.fakeWorker(t, f, nil)
	rep, err := c.Run(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if failed := js.failures(); failed != publishFails {
		t.Fatalf("%d publications answered no responders, want %d", failed, publishFails)
	}
	shards, _ := e.l.Shards(testCtx(t), "run1")
	checkPartition(t, shards, "ci/a", rules.CutoffKey())
	var want int64
	for _, tag := range tags {
		if tag <= rules.CutoffKey() {
			want++
		}
	}
	if rep.Tags.Scanned != want {
		t.Errorf("scanned %d, want %d", rep.Tags.Scanned, want)
	}
}

// statuses records what an Observer is told.
type statuses struct {
	mu  sync.Mutex
	all []coordinator.Status
}

func (s *statuses) RunStatus(st coordinator.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, st)
}

func (s *statuses) get() []coordinator.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.all)
}

// The Observer sees the shards pending before any worker runs, then one final status that
// is the run's report.
func TestObserver(t *testing.T) {
	tests := []struct {
		name       string
		fail       func(proto.ShardRecord) bool
		wantFailed int
	}{
		{name: "all done"},
		{name: "a shard fails", fail: func(s proto.ShardRecord) bool { return s.Range.Contains("20261117") }, wantFailed: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			f := newLister(map[string][]string{"ci/a": dayTags(6, 2)})
			cfg := e.config("run1", "ci/a")
			obs := &statuses{}
			cfg.Observer, cfg.ObserveEvery = obs, 10*time.Millisecond
			c, err := coordinator.New(cfg, e.connect(t), f, nil)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				rep proto.Report
				err error
			}
			done := make(chan result, 1)
			go func() {
				rep, err := c.Run(testCtx(t))
				done <- result{rep, err}
			}()
			// No worker yet: the observer must see the published shards waiting.
			ctx := testCtx(t)
			for ctx.Err() == nil {
				if st := obs.get(); len(st) > 0 && st[len(st)-1].Pending > 0 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			first := obs.get()
			if len(first) == 0 {
				t.Fatal("no status before any worker ran")
			}
			if st := first[len(first)-1]; st.Final || st.Pending != st.Report.Shards.Total || st.Running+st.Report.Shards.Done != 0 {
				t.Fatalf("status before any worker = %+v, want every shard pending", st)
			}
			e.fakeWorker(t, f, tc.fail)
			res := <-done
			if (res.err != nil) != (tc.wantFailed > 0) {
				t.Fatalf("Run: %v", res.err)
			}
			all := obs.get()
			last := all[len(all)-1]
			for i, st := range all[:len(all)-1] {
				if st.Final {
					t.Errorf("status %d of %d is final", i, len(all))
				}
				if sum := st.Pending + st.Running + st.Report.Shards.Done + st.Report.Shards.Failed; sum != st.Report.Shards.Total {
					t.Errorf("status %d: %d pending, %d running, %+v: the states do not add up", i, st.Pending, st.Running, st.Report.Shards)
				}
			}
			if !last.Final || last.Pending+last.Running != 0 || last.Report.Shards.Failed != tc.wantFailed || last.LastProgress.IsZero() {
				t.Errorf("final status = %+v, want final, nothing left, %d failed, a last progress time", last, tc.wantFailed)
			}
			if last.Report.RunID != res.rep.RunID || last.Report.Tags != res.rep.Tags || last.Report.Shards != res.rep.Shards ||
				!last.Report.FinishedAt.Equal(res.rep.FinishedAt) || last.Report.Reason != res.rep.Reason {
				t.Errorf("final status report = %+v, Run returned %+v", last.Report, res.rep)
			}

			// Re-attaching to the finished run reports it again, ending with a final status. A
			// run that failed reopens its failed shards from their cursors on re-attach, so it
			// may report progress before its final status; a run that succeeded reports only
			// the final status.
			again := &statuses{}
			cfg.Observer = again
			rep, _ := run(t, e, cfg, f)
			st := again.get()
			if len(st) == 0 || !st[len(st)-1].Final || st[len(st)-1].Report.Tags != rep.Tags {
				t.Fatalf("re-attached statuses = %+v, want them to end with one final status", st)
			}
			for i, s := range st[:len(st)-1] {
				if s.Final {
					t.Errorf("re-attached status %d of %d is final", i, len(st))
				}
			}
			if tc.wantFailed == 0 && len(st) != 1 {
				t.Errorf("re-attached to a done run: statuses = %+v, want only the final one", st)
			}
		})
	}
}

// TestStopRequest: a stop request ends the run stopped (ErrStopped, not failed shards) once no
// shard runs, and after an ack wait even when a worker never hands its shard back.
func TestStopRequest(t *testing.T) {
	e := newEnv(t)
	ctx := testCtx(t)
	f := newLister(map[string][]string{"ci/a": dayTags(10, 2)})
	// A worker that claims every shard and never lets go (it hangs, or cannot be reached).
	e.consumeShards(t, func(ctx context.Context, _ jetstream.Msg, m proto.ShardMessage, md *jetstream.MsgMetadata) {
		_, _ = e.l.Claim(ctx, m.RunID, m.ShardID, "stuck", int(md.NumDelivered))
	})
	c, err := coordinator.New(e.config("stopme", "ci/a"), e.connect(t), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		rep proto.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := c.Run(ctx)
		done <- result{rep, err}
	}()
	for running := 0; running == 0; {
		select {
		case r := <-done:
			t.Fatalf("the run ended before it could be stopped: %v", r.err)
		case <-ctx.Done():
			t.Fatal("no shard was claimed")
		case <-time.After(20 * time.Millisecond):
		}
		shards, _ := e.l.Shards(ctx, "stopme")
		for _, s := range shards {
			if s.State == proto.StateRunning {
				running++
			}
		}
	}
	if _, err := e.l.RequestStop(ctx, "stopme", proto.StopRequest{Reason: "maintenance", By: "ops@host"}); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if !errors.Is(r.err, coordinator.ErrStopped) || errors.Is(r.err, coordinator.ErrRunFailed) {
		t.Fatalf("Run after a stop request = %v, want ErrStopped", r.err)
	}
	rec, _, err := e.l.Run(ctx, "stopme")
	if err != nil || rec.State != proto.RunStopped || !strings.Contains(rec.Reason, "maintenance") || rec.FinishedAt.IsZero() {
		t.Fatalf("run recorded %+v, %v; want stopped with the reason", rec, err)
	}
	if r.rep.Reason != rec.Reason || r.rep.Shards.Total == 0 {
		t.Errorf("report = %+v, want the run's shards and its reason", r.rep)
	}
	if _, err := e.l.Lease(ctx, "ci/a"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("a stopped run kept its lease: %v", err)
	}
}

// Without Config.Shards, planning cuts one shard per slot of the workers registered, or so: not
// the default's count, which a namespace of this many pages would get otherwise.
func TestPlansAShardPerRegisteredSlot(t *testing.T) {
	for _, tc := range []struct {
		slots    map[string]int
		min, max int
	}{
		{slots: map[string]int{"w1": 2, "w2": 3}, min: 5, max: 8},
		{slots: nil, min: 20, max: 40}, // none registered: coordinator.DefaultShards
	} {
		t.Run(fmt.Sprint(tc.slots), func(t *testing.T) {
			e := newEnv(t)
			tags := dayTags(12, 6) // 27 pages of 2 below the cutoff, and more above
			f := newLister(map[string][]string{"ci/a": tags})
			for id, slots := range tc.slots {
				if err := e.l.Register(testCtx(t), id, slots); err != nil {
					t.Fatal(err)
				}
			}
			e.fakeWorker(t, f, nil)
			cfg := e.config("run1", "ci/a")
			cfg.Shards = 0
			if _, err := run(t, e, cfg, f); err != nil {
				t.Fatal(err)
			}
			shards, _ := e.l.Shards(testCtx(t), "run1")
			rules, _ := policy.New(cfg.Policy)
			checkPartition(t, shards, "ci/a", rules.CutoffKey())
			if len(shards) < tc.min || len(shards) > tc.max {
				t.Errorf("%d shards, want %d to %d", len(shards), tc.min, tc.max)
			}
		})
	}
}

// flakyJS is a JetStream that, once armed, answers "no responders" to its next fails
// listings of a run's preservation results (the first thing a run's summary reads) and its
// next publishFails shard publications, as NATS does while a cluster elects leaders after
// losing a node.
type flakyJS struct {
	jetstream.JetStream
	mu           sync.Mutex
	armed        bool
	fails        int
	publishFails int
	failed       int // calls answered no responders
}

func (j *flakyJS) arm() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.armed = true
}

func (j *flakyJS) failures() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// fail reports whether to fail this call, counting it down from *left.
func (j *flakyJS) fail(left *int) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.armed || *left == 0 {
		return false
	}
	*left--
	j.failed++
	return true
}

func (j *flakyJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	kv, err := j.JetStream.KeyValue(ctx, bucket)
	if err != nil {
		return nil, err
	}
	return &flakyKV{KeyValue: kv, j: j}, nil
}

func (j *flakyJS) CreateOrUpdateKeyValue(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := j.JetStream.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &flakyKV{KeyValue: kv, j: j}, nil
}

// flakyKV is a bucket of a flakyJS.
type flakyKV struct {
	jetstream.KeyValue
	j *flakyJS
}

func (kv *flakyKV) Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	if strings.HasPrefix(keys, "preserve.") && kv.j.fail(&kv.j.fails) {
		return nil, fmt.Errorf("watching %s: %w", keys, nats.ErrNoResponders)
	}
	return kv.KeyValue.Watch(ctx, keys, opts...)
}

func (j *flakyJS) Publish(ctx context.Context, subject string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if strings.HasPrefix(subject, proto.SubjectShardsPrefix+".") && j.fail(&j.publishFails) {
		return nil, jetstream.ErrNoStreamResponse
	}
	return j.JetStream.Publish(ctx, subject, data, opts...)
}

// NATS losing a node while the run's shards are tracked answers "no responders" for a while:
// the coordinator rides it out, and the run ends done, not failed for want of its summary.
func TestRidesOutNATSUnavailable(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(6, 2)})
	js := &flakyJS{JetStream: e.connect(t), fails: 2}
	// Armed once shards run (planning is over): what fails is what the coordinator asks of
	// NATS from then on.
	e.onShard = js.arm
	c, err := coordinator.New(e.config("run1", "ci/a"), js, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.fakeWorker(t, f, nil)
	rep, err := c.Run(testCtx(t))
	if err != nil {
		t.Fatalf("Run: %v (reason %q), want the run done", err, rep.Reason)
	}
	rec, _, err := e.l.Run(testCtx(t), "run1")
	if err != nil {
		t.Fatal(err)
	}
	if failed := js.failures(); rec.State != proto.RunDone || failed == 0 {
		t.Fatalf("run %s (%q) after %d lookups answered no responders, want done after at least one", rec.State, rec.Reason, failed)
	}
}
