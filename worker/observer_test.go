package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/worker"
)

// recorder is an Observer that sums what it is told.
type recorder struct {
	mu          sync.Mutex
	pages       []worker.PageStats
	started     map[string]int
	inFlight    int
	maxInFlight int
	badEnd      string // a shard ended more often than started
}

func (r *recorder) StartShard(run, shard string) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started == nil {
		r.started = make(map[string]int)
	}
	r.started[run+"/"+shard]++
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	var once sync.Once
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		ended := false
		once.Do(func() { r.inFlight--; ended = true })
		if !ended {
			r.badEnd = shard
		}
	}
}

func (r *recorder) PageDone(s worker.PageStats) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pages = append(r.pages, s)
}

// The observer is told exactly what the shards' counters record, page by page, and every
// shard it was told of has ended by the time the workers stopped.
func TestObserver(t *testing.T) {
	tests := []struct {
		name string
		dry  bool
		// gone and broken: tags whose delete answers 404, or fails on every delivery.
		gone, broken func(tag string) bool
	}{
		{name: "confirm"},
		{name: "dry run", dry: true},
		{name: "already gone and failing deletes",
			gone:   func(tag string) bool { return strings.HasSuffix(tag, "3") },
			broken: func(tag string) bool { return strings.HasSuffix(tag, "7") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// One delivery: a failing delete is counted as failed and the shard goes on.
			e := newEnv(t, ledger.Config{MaxDeliver: 1})
			// Besides tagsFor's: a tag that is no prune tag, and one too new, inside the ranges.
			tags := append(tagsFor(300), "20261010000000_other", "20261101120000_prune_new")
			reg := newFake(tags)
			reg.onDelete = func(_ context.Context, tag string) error {
				switch {
				case tc.gone != nil && tc.gone(tag):
					return fmt.Errorf("%s: %w", tag, registry.ErrNotFound)
				case tc.broken != nil && tc.broken(tag):
					return errors.New("http 500: boom")
				}
				return nil
			}
			p := testPolicy()
			p.KeepPatterns = []string{"_img_1"}
			p.DryRun = tc.dry
			ranges := []proto.Range{{After: "", Through: "20261015"}, {After: "20261015", Through: "20261102"}}
			e.seed(t, "r1", p, ranges...)
			obs := &recorder{}
			stop := e.startWorkers(t, 2, worker.Config{PageSize: 9, Observer: obs}, reg, nil)
			shards := e.waitShards(t, "r1", len(ranges))
			if err := stop(); err != nil {
				t.Fatalf("worker Run: %v", err)
			}
			want := sum(shards)

			obs.mu.Lock()
			defer obs.mu.Unlock()
			var got proto.Counters
			var dryRun int64
			kept := make(map[policy.Reason]int)
			for _, s := range obs.pages {
				if s.Run != "r1" || s.Repository != "ci/x" || s.Shard == "" {
					t.Errorf("page stats name run %q shard %q repository %q", s.Run, s.Shard, s.Repository)
				}
				n := s.DryRun + s.Deleted + s.AlreadyGone + len(s.Failed)
				for r, k := range s.Kept {
					n += k
					kept[r] += k
				}
				if n != s.Scanned {
					t.Errorf("page %+v: its counts add up to %d, not its %d scanned", s, n, s.Scanned)
				}
				for _, err := range s.Failed {
					if err == nil || !strings.Contains(err.Error(), "boom") {
						t.Errorf("failed delete error %v, want the registry's", err)
					}
				}
				got.Scanned += int64(s.Scanned)
				got.Deleted += int64(s.Deleted)
				got.AlreadyGone += int64(s.AlreadyGone)
				got.DeleteFailed += int64(len(s.Failed))
				dryRun += int64(s.DryRun)
			}
			got.Invalid = int64(kept[policy.ReasonInvalidTimestamp])
			got.Kept = int64(kept[policy.ReasonKeepPattern] + kept[policy.ReasonNoPrunePattern] +
				kept[policy.ReasonNotOldEnough] + kept[policy.ReasonPreservationFamily])
			got.Eligible = dryRun + got.Deleted + got.AlreadyGone + got.DeleteFailed
			if got != want {
				t.Errorf("observed counters %+v, shard records say %+v", got, want)
			}
			if tc.dry != (dryRun > 0) || (tc.dry && dryRun != want.Eligible) {
				t.Errorf("observed %d dry-run tags of %d eligible in a dry run %v", dryRun, want.Eligible, tc.dry)
			}
			if kept[policy.ReasonKeepPattern] == 0 || kept[policy.ReasonNoPrunePattern] != 1 || kept[policy.ReasonNotOldEnough] != 1 || got.Invalid != 1 {
				t.Errorf("kept by reason %v: want keep-pattern tags, one no-prune-pattern, one not-old-enough and one invalid", kept)
			}
			if tc.broken != nil && (got.DeleteFailed == 0 || got.AlreadyGone == 0) {
				t.Errorf("observed %+v, want failed and already-gone deletes", got)
			}
			for _, s := range shards {
				if obs.started["r1/"+s.ShardID] == 0 {
					t.Errorf("shard %s was never started", s.ShardID)
				}
			}
			if obs.inFlight != 0 || obs.badEnd != "" || obs.maxInFlight == 0 {
				t.Errorf("shards in flight after the stop = %d (max %d, ended twice: %q), want 0", obs.inFlight, obs.maxInFlight, obs.badEnd)
			}
		})
	}
}

// Ready is nil only while the worker is bound to the shard queue.
func TestReady(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	w, err := worker.New(worker.Config{Ledger: e.lc, Connect: func(context.Context, proto.RunRecord) (registry.Client, error) {
		return newFake(nil), nil
	}}, e.connect(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if w.Ready() == nil {
		t.Fatal("Ready before Run = nil, want an error")
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for w.Ready() != nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := w.Ready(); err != nil {
		t.Fatalf("Ready while running = %v, want nil", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if w.Ready() == nil {
		t.Error("Ready after Run returned = nil, want an error")
	}
}
