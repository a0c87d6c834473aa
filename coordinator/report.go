package coordinator

// This file: the run's final state, its metrics and its report.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/internal/pause"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// finish writes the run's final state and returns it with the run's preservation: done when
// every shard is done and nothing stopped the run, else failed with a reason.
func (c *Coordinator) finish(l *ledger.Ledger, run proto.RunRecord, shards []proto.ShardRecord, reason string) (proto.RunRecord, preserved) {
	// The summary decides the exit code: its reads and its write are tried again while NATS is
	// unavailable for a while (a cluster electing new leaders after losing a node).
	ctx, cancel := context.WithTimeout(context.Background(), summaryTimeout)
	defer cancel()
	pres := c.preservationRetrying(ctx, l, run.RunID)
	sum := ledger.Summarize(shards)
	change := func(r *proto.RunRecord) error {
		r.Totals, r.FinishedAt = sum.Tags, c.now().UTC()
		r.Shards = max(r.Shards, len(shards))
		r.Reason = cmp.Or(r.Reason, reason, failureReason(sum, pres))
		r.State = proto.RunDone
		if r.Reason != "" {
			r.State = proto.RunFailed
		}
		return nil
	}
	rec, err := l.ModifyRun(ctx, run.RunID, change)
	for err != nil && ctx.Err() == nil {
		c.log.Warn("writing run summary; trying again", slog.Any("err", err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			rec, err = l.ModifyRun(ctx, run.RunID, change)
		}
	}
	if err != nil {
		c.log.Error("writing run summary", slog.Any("err", err))
		rec = run // as last read: NATS is not answering
		rec.Totals, rec.FinishedAt = sum.Tags, c.now().UTC()
		rec.State = proto.RunFailed
		rec.Reason = cmp.Or(rec.Reason, reason, "run summary not written: "+err.Error())
	}
	return rec, pres
}

// failureReason is why a run whose shards are all finished failed, or "" when it did all it
// was asked to: failed shards first, then deletes that failed, then preservation.
func failureReason(sum ledger.Summary, pres preserved) string {
	switch {
	case len(sum.Failed) > 0:
		return fmt.Sprintf("%d of %d shards failed: %s", len(sum.Failed), sum.Shards.Total, failedShards(sum.Failed))
	case sum.Tags.DeleteFailed > 0:
		// A tag whose delete failed after the client's retries is still there and still
		// eligible: the run did not do all it was asked to, so it must not exit 0. The next
		// run lists the tag again and retries it.
		return fmt.Sprintf("%d eligible tags could not be deleted", sum.Tags.DeleteFailed)
	}
	// Likewise a payload left unpreserved or a removal left half done: reported, and the
	// next run tries again.
	return pres.reason()
}

// preservationRetrying reads the run's preservation results (see preservation), trying again
// every second while the failure may pass (ledger.Transient, but not a result that does not
// decode) and ctx lasts.
func (c *Coordinator) preservationRetrying(ctx context.Context, l *ledger.Ledger, runID string) preserved {
	for {
		actx, cancel := context.WithTimeout(ctx, ledgerTimeout)
		counters, failures, err := preservation(actx, l, runID)
		cancel()
		if err == nil || ctx.Err() != nil || !ledger.Transient(err) || errors.Is(err, ledger.ErrBadRecord) {
			if err != nil {
				c.log.Warn("reading preservation results", slog.Any("err", err))
			}
			return preserved{counters: counters, failures: failures, err: err}
		}
		c.log.Warn("reading preservation results; trying again", slog.Any("err", err))
		if pause.For(ctx, time.Second) != nil {
			return preserved{err: err}
		}
	}
}

// tellObserver sends the run's status to the Observer, if any. finished zero means "still
// running"; otherwise the status is the Final one.
func (c *Coordinator) tellObserver(run proto.RunRecord, shards []proto.ShardRecord, finished time.Time) {
	if c.cfg.Observer == nil {
		return
	}
	sum := ledger.Summarize(shards)
	s := Status{Report: c.report(run, shards, finished), Final: !finished.IsZero(), Pending: sum.Pending, Running: sum.Running,
		LastProgress: sum.LastProgress, Prune: sum.Prune, PruneStarted: sum.PruneStarted}
	c.cfg.Observer.RunStatus(s)
}

// failedShards names the first few of the failed shards with their last errors, for a run's
// reason.
func failedShards(failed []proto.ShardRecord) string {
	const most = 3
	var parts []string
	for _, s := range failed[:min(len(failed), most)] {
		why := s.LastError
		if len(why) > 160 {
			why = why[:160] + "…"
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", s.ShardID, cmp.Or(why, "no error recorded")))
	}
	if len(failed) > most {
		parts = append(parts, fmt.Sprintf("and %d more", len(failed)-most))
	}
	return strings.Join(parts, "; ")
}

// report summarises a run from its shard records. finished zero means "still running".
func (c *Coordinator) report(run proto.RunRecord, shards []proto.ShardRecord, finished time.Time) proto.Report {
	rep := proto.Report{
		RunID:        run.RunID,
		Registry:     run.Registry,
		State:        run.State,
		DryRun:       run.Policy.DryRun,
		Policy:       run.Policy,
		TTLSeconds:   int64(run.StartedAt.Sub(run.Policy.Cutoff) / time.Second),
		Cutoff:       run.Policy.Cutoff,
		StartedAt:    run.StartedAt,
		FinishedAt:   finished,
		Repositories: slices.Clone(run.Repositories),
		Reason:       run.Reason,
	}
	end := finished
	if end.IsZero() {
		end = c.now().UTC()
	}
	rep.DurationSeconds = end.Sub(run.StartedAt).Seconds()
	sum := ledger.Summarize(shards)
	rep.Shards, rep.Tags, rep.FailedShards = sum.Shards, sum.Tags, sum.FailedIDs()
	if run.Mode == proto.ModeInventory {
		rep.Inventory = &sum.Inventory
	}
	return rep
}
