package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/tagsweep/tagsweep/proto"
)

// CreateRun records a new run. A run with the same ID already recorded is ErrExists.
func (l *Ledger) CreateRun(ctx context.Context, rec proto.RunRecord) (uint64, error) {
	if !proto.ValidToken(rec.RunID) {
		return 0, fmt.Errorf("run id %q: want 1-64 of [A-Za-z0-9_-]", rec.RunID)
	}
	rec.V = proto.Version
	return create(ctx, l.state, proto.RunKey(rec.RunID), rec)
}

// Run reads a run record and its revision (for UpdateRun). A missing run is ErrNotFound.
func (l *Ledger) Run(ctx context.Context, runID string) (proto.RunRecord, uint64, error) {
	var rec proto.RunRecord
	rev, err := get(ctx, l.state, proto.RunKey(runID), &rec)
	return rec, rev, err
}

// UpdateRun writes rec if the stored run is still at revision rev; otherwise ErrFenced.
func (l *Ledger) UpdateRun(ctx context.Context, rec proto.RunRecord, rev uint64) (uint64, error) {
	rec.V = proto.Version
	return update(ctx, l.state, proto.RunKey(rec.RunID), rec, rev)
}

// ModifyRun applies change to the current run record and writes it by compare-and-swap,
// re-reading and re-applying change when another writer got there first. change may be called
// several times; if it returns an error nothing is written and that error is returned.
func (l *Ledger) ModifyRun(ctx context.Context, runID string, change func(*proto.RunRecord) error) (proto.RunRecord, error) {
	for range casRetries {
		rec, rev, err := l.Run(ctx, runID)
		if err != nil {
			return proto.RunRecord{}, err
		}
		if err := change(&rec); err != nil {
			return proto.RunRecord{}, err
		}
		_, err = l.UpdateRun(ctx, rec, rev)
		if errors.Is(err, ErrFenced) {
			continue
		}
		if err != nil {
			return proto.RunRecord{}, err
		}
		return rec, nil
	}
	return proto.RunRecord{}, fmt.Errorf("run %s: too many concurrent updates: %w", runID, ErrFenced)
}

// StopRun marks a running run as stopped: it sets the run's Reason (the first reason wins) and
// leaves its state to the coordinator, which ends the run as failed. Workers check Stopped
// before starting a shard.
func (l *Ledger) StopRun(ctx context.Context, runID, reason string) error {
	_, err := l.ModifyRun(ctx, runID, func(r *proto.RunRecord) error {
		if r.Reason == "" {
			r.Reason = reason
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("stopping run %s: %w", runID, err)
	}
	return nil
}

// Stopped reports whether no new shard work should start for run: it is finished, or it was
// stopped (StopRun).
func Stopped(run proto.RunRecord) bool { return run.State != proto.RunRunning || run.Reason != "" }

// ReserveDeletes reserves up to n deletions against the run's cap of max, by compare-and-swap
// on the run's delete budget, and returns how many it got (0 when the cap is reached). A
// worker reserves a page's deletions before deleting and deletes at most what it got, so the
// run never deletes more than max whatever the number of workers. max <= 0 means no cap: n is
// granted without touching the budget.
func (l *Ledger) ReserveDeletes(ctx context.Context, runID string, n, max int64) (int64, error) {
	if n <= 0 {
		return 0, nil
	}
	if max <= 0 {
		return n, nil
	}
	key := proto.DeleteBudgetKey(runID)
	for range casRetries {
		var b proto.DeleteBudget
		rev, err := get(ctx, l.state, key, &b)
		if errors.Is(err, ErrNotFound) {
			grant := min(n, max)
			_, err := create(ctx, l.state, key, proto.DeleteBudget{V: proto.Version, Reserved: grant})
			if errors.Is(err, ErrExists) {
				continue
			}
			if err != nil {
				return 0, fmt.Errorf("reserving deletes: %w", err)
			}
			return grant, nil
		}
		if err != nil {
			return 0, fmt.Errorf("reserving deletes: %w", err)
		}
		grant := min(n, max-b.Reserved)
		if grant <= 0 {
			return 0, nil
		}
		b.V, b.Reserved = proto.Version, b.Reserved+grant
		_, err = update(ctx, l.state, key, b, rev)
		if errors.Is(err, ErrFenced) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("reserving deletes: %w", err)
		}
		return grant, nil
	}
	return 0, fmt.Errorf("reserving deletes for run %s: too many concurrent updates: %w", runID, ErrFenced)
}
