package coordinator_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// A failed run resumed with the same run ID: its failed shards are reopened (the others stay
// done), the run ends done, and no shard is added.
func TestResumeFailedRun(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(6, 2)})
	var failing atomic.Bool
	failing.Store(true)
	e.fakeWorker(t, f, func(s proto.ShardRecord) bool { return failing.Load() && s.Range.Contains("20261117") })
	cfg := e.config("run1", "ci/a")
	first, err := run(t, e, cfg, f)
	if !errors.Is(err, coordinator.ErrRunFailed) || len(first.FailedShards) != 1 {
		t.Fatalf("first Run: err %v, failed shards %v; want one failed shard", err, first.FailedShards)
	}
	if !strings.Contains(err.Error(), first.FailedShards[0]) || !strings.Contains(err.Error(), "injected failure") {
		t.Errorf("first Run error %q does not name the failed shard %s and its error", err, first.FailedShards[0])
	}
	failing.Store(false)
	again, err := run(t, e, cfg, f)
	if err != nil {
		t.Fatalf("resumed Run: %v", err)
	}
	if again.Shards.Total != first.Shards.Total || again.Shards.Done != again.Shards.Total || again.Reason != "" {
		t.Fatalf("resumed report %+v, want the same %d shards all done", again.Shards, first.Shards.Total)
	}
	failed, _, err := e.l.Shard(testCtx(t), "run1", first.FailedShards[0])
	if err != nil {
		t.Fatal(err)
	}
	in := int64(0)
	for _, tag := range f.tags["ci/a"] {
		if failed.Range.Contains(tag) {
			in++
		}
	}
	if in == 0 || again.Tags.Scanned != first.Tags.Scanned+in { // the failed shard's tags, scanned once
		t.Errorf("resumed run scanned %d tags, want %d (the first run's plus the failed shard's %d)", again.Tags.Scanned, first.Tags.Scanned+in, in)
	}
	rec, _, _ := e.l.Run(testCtx(t), "run1")
	if rec.State != proto.RunDone {
		t.Fatalf("run state %s (%s), want done", rec.State, rec.Reason)
	}
}

// A run stopped at its delete cap with the budget spent is not resumed: it would stop again at
// once. Re-attaching reports it again.
func TestCappedRunNotResumed(t *testing.T) {
	e := newEnv(t)
	f := newLister(map[string][]string{"ci/a": dayTags(4, 2)})
	cfg := e.config("run1", "ci/a")
	cfg.Policy.MaxDeletes = 3
	var stopped atomic.Bool
	e.fakeWorker(t, f, func(s proto.ShardRecord) bool {
		if stopped.CompareAndSwap(false, true) {
			if _, err := e.l.ReserveDeletes(testCtx(t), s.RunID, 5, 3); err != nil {
				t.Error(err)
			}
			_ = e.l.StopRun(testCtx(t), s.RunID, "max deletes reached: run run1 may delete at most 3 tags")
			return true
		}
		return false
	})
	_, err := run(t, e, cfg, f)
	if !errors.Is(err, coordinator.ErrRunFailed) {
		t.Fatalf("first Run: %v, want ErrRunFailed", err)
	}
	_, err = run(t, e, cfg, f)
	if !errors.Is(err, coordinator.ErrRunFailed) || !strings.Contains(err.Error(), "max deletes") {
		t.Fatalf("re-attached Run: %v, want the cap's failure reported again", err)
	}
	rec, _, _ := e.l.Run(testCtx(t), "run1")
	if rec.State != proto.RunFailed {
		t.Fatalf("run state %s, want still failed", rec.State)
	}
}

// flaky fails the list calls whose number (from 1) is in fail, as a registry does after the
// client's own retries ran out.
type flaky struct {
	*lister
	mu    sync.Mutex
	n     int
	fail  map[int]bool
	fails int
}

func (f *flaky) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	f.mu.Lock()
	f.n++
	bad := f.fail[f.n]
	if bad {
		f.fails++
	}
	f.mu.Unlock()
	if bad {
		return registry.Page{}, fmt.Errorf("list tags of %s after %q: http 503: unavailable", repo, last)
	}
	return f.lister.List(ctx, repo, last, n)
}

// A registry failing calls during planning (after the client's retries) does not fail the run:
// each failed call is made again after a delay, planning goes on where it was (it makes no
// call twice but the failed ones), and plans each range once.
func TestPlanningRetried(t *testing.T) {
	e := newEnv(t)
	tags := dayTags(8, 2)
	inner := newLister(map[string][]string{"ci/a": tags})
	f := &flaky{lister: inner, fail: map[int]bool{1: true, 5: true, 9: true}}
	e.fakeWorker(t, inner, nil)
	cfg := e.config("run1", "ci/a")
	cfg.RetryDelay = 10 * time.Millisecond
	c, err := coordinator.New(cfg, e.connect(t), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := c.Run(testCtx(t))
	if err != nil {
		t.Fatalf("Run with a flaky registry during planning: %v", err)
	}
	if f.fails != 3 {
		t.Fatalf("%d list calls failed, want 3: the test did not exercise retries", f.fails)
	}
	clean := newLister(map[string][]string{"ci/a": tags})
	counted := &flaky{lister: clean}
	c, err = coordinator.New(e.config("run2", "ci/a"), e.connect(t), counted, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Run(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if f.n != counted.n+f.fails {
		t.Errorf("planning made %d list calls with %d failures, %d without: it started over", f.n, f.fails, counted.n)
	}
	shards, _ := e.l.Shards(testCtx(t), "run1")
	rules, _ := policy.New(cfg.Policy)
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
