package test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/test/invariant"
	"github.com/tagsweep/tagsweep/worker"
)

// counting records, for the invariant, the tags each shard's stored checkpoints counted.
type counting struct {
	mu      sync.Mutex
	counted map[string][]string
}

func (c *counting) StartShard(string, string) func() { return func() {} }
func (c *counting) PageDone(worker.PageStats)        {}
func (c *counting) Checkpointed(_, shard string, tags []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counted[shard] = append(c.counted[shard], tags...)
}

// A splitting storm with workers killed in the middle: every shard splits on a time budget of
// a few pages and whenever a slot is idle, and three workers die one after another without
// handing their shards back (their shards go to others after the ack wait, which resume from
// the checkpoints and split again). The shards' final ranges still cover the listed range
// exactly once, no tag is counted by two shards or by none, and the run ends exact.
func TestSplitStormWithKills(t *testing.T) {
	r := newRig(t, rigConfig{tags: 4000})
	obs := &counting{counted: make(map[string][]string)}
	ctx := testCtx(t, 3*time.Minute)

	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	start := func(id string) (kill func()) {
		wctx, cancel := context.WithCancel(context.Background())
		w, err := r.Worker(r.workerConfig(worker.Config{
			ID: id, Slots: 3, PageSize: 20, Observer: obs,
			SplitAfter: 40 * time.Millisecond, IdleSplit: 5 * time.Millisecond,
			// A stop this short hands nothing back: the worker dies with its shards running.
			StopBound: time.Millisecond,
		}), testLog(t, id))
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			if err := w.Run(wctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", id, err))
				mu.Unlock()
			}
		})
		return cancel
	}
	kills := []func(){start("w0"), start("w1"), start("w2"), start("w3")}
	t.Cleanup(func() {
		for _, k := range kills {
			k()
		}
		wg.Wait()
	})

	done := make(chan error, 1)
	var rep proto.Report
	go func() {
		var err error
		rep, err = r.run(ctx, "storm")
		done <- err
	}()
	eligible := len(invariant.Eligible(t, r.policy, r.tags))
	for i := range 3 {
		r.waitDeletes(ctx, eligible*(i+1)/5)
		kills[i]()
		kills = append(kills, start(fmt.Sprintf("w%d", len(kills))))
	}
	if err := <-done; err != nil {
		t.Fatalf("run: %v (report %+v)", err, rep.Tags)
	}
	mu.Lock()
	for _, err := range errs {
		t.Errorf("worker: %v", err)
	}
	mu.Unlock()

	shards, err := r.Ledger().Shards(ctx, "storm")
	if err != nil {
		t.Fatal(err)
	}
	var ranges []proto.Range
	splits, takenOver := 0, 0
	for _, s := range shards {
		if s.Kind != proto.KindPrune {
			continue
		}
		ranges = append(ranges, s.Range)
		if s.Parent != "" {
			splits++
		}
		if s.Attempt > 1 {
			takenOver++
		}
	}
	rules, err := policy.New(r.policy)
	if err != nil {
		t.Fatal(err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	invariant.Check(t, invariant.State{Policy: r.policy, Initial: r.tags, Deleted: r.sim.DeletedTags(repo),
		Remaining: r.sim.Tags(repo), ExitOK: true, Through: rules.CutoffKey(), Ranges: ranges, Counted: obs.counted})
	if splits < 20 || takenOver == 0 {
		t.Errorf("%d splits, %d shards taken over from a dead worker: the storm or the kills did not happen", splits, takenOver)
	}
	t.Logf("%d prune shards, %d split off, %d taken over", len(ranges), splits, takenOver)
}
