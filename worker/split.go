package worker

// This file: splitting a shard in hand, on its time budget or for idle slots.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/ledger"
)

// split cuts off the second half of what is left of the shard for another worker.
func (d *delivery) split(hard context.Context, cursor string) error {
	m, ok := keyspace.Split(d.claim.Record().Range, cursor)
	if !ok {
		return nil
	}
	lctx, cancel := d.w.ledgerCtx(hard)
	defer cancel()
	child, err := d.claim.Split(lctx, m)
	switch {
	case errors.Is(err, ledger.ErrFenced):
		return err
	case err != nil && child.ShardID != "":
		d.log.Warn("split recorded but not yet published; the coordinator will publish it",
			slog.String("child", child.ShardID), slog.Any("err", err))
	case err != nil:
		d.log.Warn("splitting shard", slog.Any("err", err))
	default:
		d.log.Info("shard split", slog.String("at", m), slog.String("child", child.ShardID))
	}
	return nil
}

// worthSplitting reports whether a shard that listed n tags from first to cursor since it
// started (or last split) has at least two pages left before through at that density, or
// cannot tell: a split for idle slots must hand them work, not a stub.
func (w *Worker) worthSplitting(first, cursor string, n int, through string) bool {
	if w.cfg.IdleSplit < 0 {
		return false
	}
	left, ok := keyspace.Remaining(first, cursor, n, through)
	return !ok || left >= float64(2*w.cfg.PageSize)
}

// slotsIdle reports whether some worker waits for a shard while none is queued
// (ledger.Idle), asking the queue at most once per IdleSplit for all the worker's slots.
func (w *Worker) slotsIdle(ctx context.Context, l *ledger.Ledger) bool {
	w.idleMu.Lock()
	defer w.idleMu.Unlock()
	if time.Since(w.idleAt) < w.cfg.IdleSplit {
		return w.idleSeen
	}
	ctx, cancel := context.WithTimeout(ctx, max(w.cfg.IdleSplit, time.Second))
	defer cancel()
	idle, err := l.Idle(ctx)
	w.idleAt, w.idleSeen = time.Now(), err == nil && idle
	return w.idleSeen
}

// usedIdle records that a split answered the last "idle": the other slots wait for the
// queue's next answer rather than split for the same idle slots.
func (w *Worker) usedIdle() {
	w.idleMu.Lock()
	w.idleSeen = false
	w.idleMu.Unlock()
}
