package worker

// This file: the run records a worker acts on, each with its policy and registry client,
// cached per run.

import (
	"context"
	"fmt"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

// cachedRun returns the cached policy and client of a run, building them on first use. A
// client that cannot be built is not cached (the next shard tries again).
func (w *Worker) cachedRun(ctx context.Context, run proto.RunRecord) (*runEntry, error) {
	w.mu.Lock()
	e, ok := w.runs[run.RunID]
	w.mu.Unlock()
	if ok {
		return e, nil
	}
	rules, err := policy.New(run.Policy)
	if err != nil {
		return nil, permanent(fmt.Errorf("run policy: %w", err)) // for every shard of the run
	}
	client, err := w.cfg.Connect(ctx, run)
	if err != nil {
		return nil, retryable(fmt.Errorf("connecting to registry %s: %w", run.Registry, err))
	}
	if run.Mode == proto.ModeInventory {
		client = listOnly{c: client} // an inventory run never deletes, whatever its shards say
	}
	e = &runEntry{rules: rules, client: client}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.runs[run.RunID]; ok { // another slot got there first
		return old, nil
	}
	if len(w.runs) >= maxCachedRuns {
		clear(w.runs)
	}
	w.runs[run.RunID] = e
	return e, nil
}

// forget drops the cached client of a run, if it is still e, so that the next shard of the
// run connects anew.
func (w *Worker) forget(runID string, e *runEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.runs[runID] == e {
		delete(w.runs, runID)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
