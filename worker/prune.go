package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// errCapReached: the run's delete budget (Policy.MaxDeletes) is used up.
var errCapReached = errors.New("max deletes reached")

// listError is a failed tags/list call: the shard is retried on a later delivery.
type listError struct{ err error }

func (e *listError) Error() string { return "listing tags: " + e.err.Error() }
func (e *listError) Unwrap() error { return e.err }

// prune works through the claimed shard from its resume point to the end of its range.
// It returns nil at the end of the range, ctx's error on a graceful stop (every finished page
// checkpointed), errCapReached, a *listError, or a ledger error (ErrFenced: the shard is lost).
func (w *Worker) prune(ctx context.Context, claim *ledger.Claim, e *runEntry, run proto.RunRecord,
	l *ledger.Ledger, msg jetstream.Msg, log *slog.Logger) error {
	rec := claim.Record()
	repo := rec.Repository
	cursor := rec.Resume()
	budgetStart := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if w.cfg.SplitAfter > 0 && time.Since(budgetStart) >= w.cfg.SplitAfter {
			if err := w.split(ctx, claim, cursor, log); err != nil {
				return err
			}
			budgetStart = time.Now()
		}
		if err := w.wait(ctx); err != nil {
			return err
		}
		page, err := e.client.List(ctx, repo, cursor, w.cfg.PageSize)
		if err == nil {
			err = registry.CheckPage(cursor, page.Tags)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &listError{err}
		}
		through := claim.Record().Range.Through // a split may have moved it
		in := page.Tags
		end := len(page.Tags) == 0 || (!page.More && len(page.Tags) < w.cfg.PageSize)
		if i := slices.IndexFunc(in, func(t string) bool { return t > through }); i >= 0 {
			in, end = in[:i], true
		}
		if len(in) > 0 {
			n, delta, err := w.page(ctx, claim, e, run, l, in, log)
			if n > 0 {
				last := in[n-1]
				lctx, cancel := w.ledgerCtx(ctx)
				cerr := claim.Checkpoint(lctx, last, delta)
				cancel()
				if cerr != nil {
					return cerr
				}
				_ = msg.InProgress()
				cursor = last
			}
			if err != nil {
				return err
			}
		}
		if end {
			return nil
		}
	}
}

// split cuts off the second half of what is left of the shard for another worker.
func (w *Worker) split(ctx context.Context, claim *ledger.Claim, cursor string, log *slog.Logger) error {
	m, ok := keyspace.Split(claim.Record().Range, cursor)
	if !ok {
		return nil
	}
	lctx, cancel := w.ledgerCtx(ctx)
	defer cancel()
	child, err := claim.Split(lctx, m)
	switch {
	case errors.Is(err, ledger.ErrFenced):
		return err
	case err != nil && child.ShardID != "":
		log.Warn("split recorded but not yet published; the coordinator will publish it",
			slog.String("child", child.ShardID), slog.Any("err", err))
	case err != nil:
		log.Warn("splitting shard", slog.Any("err", err))
	default:
		log.Info("shard split", slog.String("at", m), slog.String("child", child.ShardID))
	}
	return nil
}

// wait takes a token from the worker-wide rate limiter.
func (w *Worker) wait(ctx context.Context) error {
	if w.limiter == nil {
		return nil
	}
	return w.limiter.Wait(ctx)
}

// page decides every tag of one listed page (all inside the shard's range, ascending),
// deletes the eligible ones and records their audit events. It returns how many leading tags
// of the page are finished (normally all; fewer when the delete budget ran out, with
// errCapReached) and their counters. Once started, a page's deletes run to the end even if ctx
// is done, so that the checkpoint is exact.
func (w *Worker) page(ctx context.Context, claim *ledger.Claim, e *runEntry, run proto.RunRecord,
	l *ledger.Ledger, tags []string, log *slog.Logger) (int, proto.Counters, error) {
	rules := e.rules
	rng := claim.Record().Range
	var eligible []int // indexes into tags
	for i, tag := range tags {
		if !rng.Contains(tag) { // cannot happen: the caller cut the page to the range
			return 0, proto.Counters{}, fmt.Errorf("tag %q outside shard range (%q, %q]", tag, rng.After, rng.Through)
		}
		if rules.Decide(tag).Verdict == policy.Delete {
			eligible = append(eligible, i)
		}
	}
	n := len(tags)
	var capErr error
	dry := run.Policy.DryRun
	if !dry && run.Policy.MaxDeletes > 0 && len(eligible) > 0 {
		lctx, cancel := w.ledgerCtx(ctx)
		granted, err := l.ReserveDeletes(lctx, run.RunID, int64(len(eligible)), run.Policy.MaxDeletes)
		cancel()
		if err != nil {
			return 0, proto.Counters{}, err
		}
		if granted < int64(len(eligible)) {
			// Finish the page only up to the first eligible tag we may not delete.
			n = eligible[granted]
			eligible = eligible[:granted]
			capErr = fmt.Errorf("%w: run %s may delete at most %d tags", errCapReached, run.RunID, run.Policy.MaxDeletes)
		}
	}

	var delta proto.Counters
	for _, tag := range tags[:n] {
		delta.Scanned++
		switch rules.Decide(tag).Verdict {
		case policy.Delete:
			delta.Eligible++
		case policy.Invalid:
			delta.Invalid++
		default:
			delta.Kept++
		}
	}

	outcomes := make([]proto.AuditEvent, len(eligible))
	if dry {
		for k, i := range eligible {
			outcomes[k] = proto.AuditEvent{Tag: tags[i], Outcome: proto.OutcomeDryRun}
		}
	} else {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.pageTimeout)
		var wg sync.WaitGroup
		for k, i := range eligible {
			w.deletes <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-w.deletes }()
				outcomes[k] = w.delete(dctx, e.client, claim.Record(), rules, tags[i])
			}()
		}
		wg.Wait()
		cancel()
	}
	for _, ev := range outcomes {
		switch ev.Outcome {
		case proto.OutcomeDeleted:
			delta.Deleted++
		case proto.OutcomeAlreadyGone:
			delta.AlreadyGone++
		case proto.OutcomeFailed:
			delta.DeleteFailed++
			log.Warn("delete failed", slog.String("tag", ev.Tag), slog.String("err", ev.Error))
		}
		if err := claim.Audit(ev); err != nil {
			return 0, proto.Counters{}, err
		}
	}
	return n, delta, capErr
}

// delete deletes one tag after checking, right before the call, that it lies in the shard's
// range and that the run's policy says it goes: the range alone is never trusted.
func (w *Worker) delete(ctx context.Context, client registry.Deleter, rec proto.ShardRecord, rules *policy.Rules, tag string) proto.AuditEvent {
	ev := proto.AuditEvent{Tag: tag}
	if !rec.Range.Contains(tag) || rules.Decide(tag).Verdict != policy.Delete {
		ev.Outcome, ev.Error = proto.OutcomeFailed, "refused: not eligible at delete time"
		return ev
	}
	if err := w.wait(ctx); err != nil {
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
		return ev
	}
	err := client.Delete(ctx, rec.Repository, tag)
	switch {
	case err == nil:
		ev.Outcome = proto.OutcomeDeleted
	case errors.Is(err, registry.ErrNotFound):
		ev.Outcome = proto.OutcomeAlreadyGone
	default:
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
	}
	ev.Time = time.Now().UTC()
	return ev
}
