package ledger

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

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

// StopRun records why a running run must stop (the first reason wins) and leaves its state to
// the coordinator, which ends the run as failed: the delete cap uses it. Workers check
// Stopped before starting a shard.
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

// Stopped reports whether no new shard work should start for run: it is finished (except
// abandoned: its shards may still be worked on, and a coordinator resuming it finds them
// done), it was stopped by StopRun, or an operator asked it to stop (RequestStop).
func Stopped(run proto.RunRecord) bool {
	switch run.State {
	case proto.RunRunning:
		return run.Reason != "" || run.Stop != nil
	case proto.RunAbandoned:
		return run.Stop != nil
	}
	return true
}

// HandBack reports whether a worker gives back the shards of run it holds or is handed,
// unfinished, for a later resume, instead of failing them: the run was stopped by an operator.
func HandBack(run proto.RunRecord) bool { return run.State == proto.RunStopped || run.Stop != nil }

// ErrNotRunning: a run was asked to stop, or to be marked stopped or abandoned, while it is
// not running.
var ErrNotRunning = errors.New("run is not running")

// RequestStop asks a running (or abandoned) run to stop gracefully: workers claim no more of
// its shards and hand back, with their checkpoints, the ones they hold; the coordinator then
// marks the run stopped (MarkStopped). A second request keeps the first one's reason. A run
// that has ended otherwise is ErrNotRunning.
func (l *Ledger) RequestStop(ctx context.Context, runID string, req proto.StopRequest) (proto.RunRecord, error) {
	rec, err := l.ModifyRun(ctx, runID, func(r *proto.RunRecord) error {
		if r.State != proto.RunRunning && r.State != proto.RunAbandoned {
			return fmt.Errorf("run %s is %s: %w", runID, r.State, ErrNotRunning)
		}
		if r.Stop == nil {
			req.At = req.At.UTC()
			r.Stop = &req
		}
		return nil
	})
	if err != nil {
		return rec, fmt.Errorf("stopping run %s: %w", runID, err)
	}
	return rec, nil
}

// MarkStopped ends a run as stopped, with the stop request's reason (or reason when there is
// none). Its unfinished shards keep their records and cursors: resuming the run (a coordinator
// with its ID) continues them. A run that is not running or abandoned is ErrNotRunning.
func (l *Ledger) MarkStopped(ctx context.Context, runID, reason string) (proto.RunRecord, error) {
	rec, err := l.ModifyRun(ctx, runID, func(r *proto.RunRecord) error {
		if r.State != proto.RunRunning && r.State != proto.RunAbandoned {
			return fmt.Errorf("run %s is %s: %w", runID, r.State, ErrNotRunning)
		}
		if r.Stop != nil {
			reason = cmp.Or(r.Stop.Reason, reason)
			if r.Stop.By != "" {
				reason += " (stopped by " + r.Stop.By + ")"
			}
		}
		r.State, r.Reason, r.FinishedAt = proto.RunStopped, cmp.Or(reason, "stopped"), l.now().UTC()
		return nil
	})
	if err != nil {
		return rec, fmt.Errorf("marking run %s stopped: %w", runID, err)
	}
	return rec, nil
}

// Resume takes a run back up for its coordinator, which holds the run's leases: the run is
// running again, with its reason, stop request and finish time cleared. It is one
// compare-and-swap write even for a run that is already running, so that a status that read
// the run before the coordinator took its leases cannot then mark it abandoned. It returns the
// record and the state the run was in.
func (l *Ledger) Resume(ctx context.Context, runID string) (proto.RunRecord, proto.RunState, error) {
	var was proto.RunState
	rec, err := l.ModifyRun(ctx, runID, func(r *proto.RunRecord) error {
		was = r.State
		r.State, r.Reason, r.Stop, r.FinishedAt = proto.RunRunning, "", nil, time.Time{}
		return nil
	})
	if err != nil {
		return rec, was, fmt.Errorf("resuming run %s: %w", runID, err)
	}
	return rec, was, nil
}

// CreateRefused records a run that never started because another run held a repository's
// lease: its state is refused, with held's error as its reason.
func (l *Ledger) CreateRefused(ctx context.Context, rec proto.RunRecord, held error) error {
	rec.State, rec.Reason, rec.FinishedAt = proto.RunRefused, held.Error(), l.now().UTC()
	_, err := l.CreateRun(ctx, rec)
	return err
}

// CheckAbandoned marks runID abandoned when it is running and its coordinator holds no
// unexpired lease on any of its repositories: the coordinator stopped renewing them (it was
// killed, or lost NATS) before the run ended. status and a coordinator taking over an expired
// lease call it. The write is a compare-and-swap at the revision read before the leases, so a
// coordinator that took the run up meanwhile (Resume) wins. It reports whether it marked it.
func (l *Ledger) CheckAbandoned(ctx context.Context, runID string) (proto.RunRecord, bool, error) {
	return l.checkAbandoned(ctx, runID, proto.Lease{})
}

// checkAbandoned is CheckAbandoned; lapsed is the run's lease as it was before another run
// took it over (zero when unknown), for the reason.
func (l *Ledger) checkAbandoned(ctx context.Context, runID string, lapsed proto.Lease) (proto.RunRecord, bool, error) {
	rec, rev, err := l.Run(ctx, runID)
	if err != nil || rec.State != proto.RunRunning {
		return rec, false, err
	}
	alive, lease, err := l.Coordinator(ctx, rec)
	if err != nil || alive {
		return rec, false, err
	}
	if lease.Holder == "" {
		lease = lapsed
	}
	rec.State, rec.FinishedAt = proto.RunAbandoned, l.now().UTC()
	rec.Reason = "its coordinator holds no lease on its repositories: it ended before the run did"
	if lease.Holder != "" {
		rec.FinishedAt = lease.Expires.UTC()
		rec.Reason = fmt.Sprintf("its coordinator %s stopped renewing its lease, which lapsed at %s",
			lease.Holder, lease.Expires.UTC().Format(time.RFC3339))
	}
	if rec.Stop != nil {
		rec.Reason += "; a stop was requested: " + rec.Stop.Reason
	}
	_, err = l.UpdateRun(ctx, rec, rev)
	if errors.Is(err, ErrFenced) {
		rec, _, err = l.Run(ctx, runID)
		return rec, false, err
	}
	if err != nil {
		return rec, false, fmt.Errorf("marking run %s abandoned: %w", runID, err)
	}
	return rec, true, nil
}

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
