package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/tagsweep/tagsweep/proto"
)

// The store of `tagsweep run` is reachable by one process only: its embedded server has no
// listener and its directory is locked. Whatever that store's previous process left in flight
// has no owner left, so it need not wait for JetStream's AckWait or a lease's expiry.

// HandBackOrphans gives back at once every shard of runID that a worker held or had been
// handed, for a caller that knows no worker of the run can be alive: the process that starts
// `tagsweep run` again on its store, before starting its workers. A running record goes back
// to pending with its cursor, and a message delivered and not acked is replaced by a fresh one
// (Requeue), which the next worker takes at once instead of after the AckWait. It returns how
// many shards it gave back.
func (l *Ledger) HandBackOrphans(ctx context.Context, runID string) (int, error) {
	shards, err := l.Shards(ctx, runID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range shards {
		if s.State.Terminal() {
			continue
		}
		key := proto.ShardKey(runID, s.ShardID)
		if s.State == proto.StateRunning {
			rec, rev, err := l.Shard(ctx, runID, s.ShardID)
			if err != nil {
				return n, err
			}
			if rec.State == proto.StateRunning {
				rec.LastError = fmt.Sprintf("handed back at a restart: held by %s at attempt %d, whose process ended", rec.Owner, rec.Attempt)
				rec.State, rec.Owner = proto.StatePending, ""
				if _, err := update(ctx, l.state, key, rec, rev); err != nil {
					return n, fmt.Errorf("handing back %s: %w", key, err)
				}
			}
		}
		q, seq, err := l.queued(ctx, runID, s.ShardID)
		if err != nil {
			return n, fmt.Errorf("handing back %s: reading the shard queue: %w", key, err)
		}
		if q == queueWaiting {
			continue // it will be delivered as it is
		}
		if err := l.Requeue(ctx, runID, s.ShardID, seq); err != nil {
			return n, fmt.Errorf("handing back %s: %w", key, err)
		}
		n++
	}
	return n, nil
}

// AbandonOrphan ends a running run as abandoned and gives up its leases, for a caller that
// knows its coordinator cannot be alive (see HandBackOrphans): its leases would otherwise
// refuse a new run on its repositories until they expire. It reports whether it did.
func (l *Ledger) AbandonOrphan(ctx context.Context, runID, reason string) (bool, error) {
	done := false
	rec, err := l.ModifyRun(ctx, runID, func(r *proto.RunRecord) error {
		done = r.State == proto.RunRunning
		if done {
			r.State, r.Reason, r.FinishedAt = proto.RunAbandoned, reason, l.now().UTC()
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("abandoning run %s: %w", runID, err)
	}
	var errs []error
	for _, repo := range rec.Repositories {
		errs = append(errs, l.ReleaseLease(ctx, repo, runID))
	}
	return done, errors.Join(errs...)
}
