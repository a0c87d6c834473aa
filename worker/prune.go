package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// prune works through the claimed shard from its resume point to the end of its range. A
// list shard (an inventory run) goes through the same listing and only counts each page
// (inventory), deleting nothing.
// It returns nil at the end of the range, ctx's error on a graceful stop (every finished page
// checkpointed), a failure (retryable: a list or delete to try again on a later delivery;
// permanent: the registry refuses deletes, or the delete cap, errCapReached), or a ledger
// error (ErrFenced: the shard is lost). final says this is the
// message's last delivery. Deletes in flight when ctx ends run on until grace ends; ledger
// writes use hard (see stopContexts).
func (w *Worker) prune(ctx, grace, hard context.Context, claim *ledger.Claim, e *runEntry, run proto.RunRecord,
	l *ledger.Ledger, msg jetstream.Msg, final bool, log *slog.Logger) error {
	rec := claim.Record()
	repo := rec.Repository
	cursor := rec.Resume()
	walk := registry.NewWalk(rec.Range, cursor)
	s := &session{w: w, run: run, e: e}
	budgetStart := time.Now()
	// What this claim listed since it started or last split, for the estimate of what is
	// left before a split for idle slots.
	var first string
	listed := 0
	list := func(last string) (registry.Page, error) {
		if err := w.wait(ctx); err != nil {
			return registry.Page{}, err
		}
		var page registry.Page
		err := s.do(ctx, func(c registry.Client) (err error) {
			page, err = c.List(ctx, repo, last, w.cfg.PageSize)
			return err
		})
		return page, err
	}
	// The next page is listed while this page's deletes run (keyset listing after the page's
	// last tag is not affected by deleting tags up to it), so that a page costs the longer of
	// a list and its deletes rather than both. next is the outstanding prefetch, if any.
	var next chan prefetched
	defer func() {
		if next != nil {
			<-next // never leave a List running behind
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		switch {
		case w.cfg.SplitAfter > 0 && time.Since(budgetStart) >= w.cfg.SplitAfter:
			if err := w.split(hard, claim, cursor, log); err != nil {
				return err
			}
			budgetStart = time.Now()
		case listed > 0 && w.worthSplitting(first, cursor, listed, claim.Record().Range.Through) && w.slotsIdle(ctx, l):
			// Every page so far was full and more follow: split now for the idle slots.
			if err := w.split(hard, claim, cursor, log); err != nil {
				return err
			}
			w.usedIdle()
			first, listed = "", 0
		}
		var page registry.Page
		var err error
		if next != nil {
			p := <-next
			next = nil
			if p.last == walk.Last() {
				page, err = p.page, p.err
			} else { // cannot happen: the prefetch starts where the walk goes on
				page, err = list(walk.Last())
			}
		} else {
			page, err = list(walk.Last())
		}
		var in []string
		end := false
		if err == nil {
			walk.Narrow(claim.Record().Range.Through) // a split may have moved it
			in, end, err = walk.Page(page)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return retryable(err)
		}
		if len(in) > 0 && first == "" {
			first = in[0]
		}
		listed += len(in)
		if end {
			if err := w.checkListed(ctx, s.entry().client, claim, len(in), log); err != nil {
				return err
			}
		} else {
			ch, last := make(chan prefetched, 1), walk.Last()
			next = ch
			go func() {
				p, err := list(last)
				ch <- prefetched{last: last, page: p, err: err}
			}()
		}
		if len(in) > 0 {
			var n int
			var delta proto.Counters
			var inv *proto.Inventory
			if rec.Kind == proto.KindList {
				n = len(in)
				delta, inv = w.inventory(claim, e.rules, in)
			} else {
				n, delta, err = w.page(ctx, grace, hard, claim, s, run, l, in, final, log)
			}
			if n > 0 || delta != (proto.Counters{}) {
				last := cursor
				if n > 0 {
					last = in[n-1]
				}
				w.freeze.wait(claim.Record().ShardID)
				checkpoint := func(c context.Context) error { return claim.CheckpointInventory(c, last, delta, inv) }
				if _, cerr := w.settle(hard, claim, checkpoint); cerr != nil {
					return cerr
				}
				if o, ok := w.cfg.Observer.(ListObserver); ok && n > 0 {
					o.Checkpointed(rec.RunID, rec.ShardID, in[:n])
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

// checkListed fails a shard whose listing, proven complete, found no tag at all in a range
// where planning saw one (proto.ShardRecord.Seen) that still exists, asked directly: the
// registry left tags out of its pages. pending is how many tags of the last page are still to
// be counted. A tag gone since planning (deleted by an earlier delivery whose checkpoint was
// lost, or by someone else) leaves the range truly empty.
func (w *Worker) checkListed(ctx context.Context, client registry.Client, claim *ledger.Claim, pending int, log *slog.Logger) error {
	rec := claim.Record()
	if rec.Seen == "" || !rec.Range.Contains(rec.Seen) || rec.Counters.Scanned > 0 || pending > 0 {
		return nil
	}
	incomplete := fmt.Errorf("%w: listing %s found no tag in (%q, %q], where planning saw %q",
		registry.ErrIncompleteListing, rec.Repository, rec.Range.After, rec.Range.Through, rec.Seen)
	checker, ok := client.(registry.Checker)
	if !ok {
		return retryable(fmt.Errorf("%w, and this registry client cannot check that it is gone", incomplete))
	}
	exists, err := checker.Exists(ctx, rec.Repository, rec.Seen)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err() // stopping: the shard is handed back, not retried
	case err != nil:
		return retryable(fmt.Errorf("%w; checking that it is gone: %w", incomplete, err))
	case exists:
		return retryable(fmt.Errorf("%w, and it still exists", incomplete))
	}
	log.Info("the tag planning saw in the shard is gone; the shard is empty", slog.String("tag", rec.Seen))
	return nil
}

// session is the registry client one delivery of a prune shard calls. A call the registry
// refuses for the client's credentials (registry.ErrUnauthorized) is made once more with a
// fresh client: a token the registry expired or revoked before the client expected stays
// refused until the client fetches another, and regclient fetches none on a 401 it thinks it
// has answered. Without the fresh client every call left in the delivery would fail, and on
// the shard's last delivery its deletes would be counted failed although a retry deletes them.
type session struct {
	w   *Worker
	run proto.RunRecord

	mu sync.Mutex
	e  *runEntry
}

// entry returns the run's entry the session calls through now.
func (s *session) entry() *runEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.e
}

// do calls f with the session's client, and once more with a fresh one if the registry
// refused the credentials. A second refusal is returned: the credentials themselves are bad.
func (s *session) do(ctx context.Context, f func(registry.Client) error) error {
	e := s.entry()
	err := f(e.client)
	if !errors.Is(err, registry.ErrUnauthorized) || ctx.Err() != nil {
		return err
	}
	fresh, rerr := s.renew(ctx, e)
	if rerr != nil {
		return err
	}
	return f(fresh.client)
}

// renew replaces stale, the entry whose client was refused, by one with a fresh client,
// unless another call (of this delivery or another slot's) did already: a refused token
// costs one reconnection, not one per call in flight.
func (s *session) renew(ctx context.Context, stale *runEntry) (*runEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != stale {
		return s.e, nil
	}
	s.w.forget(s.run.RunID, stale)
	e, err := s.w.runEntry(ctx, s.run)
	if err != nil {
		return nil, err
	}
	s.e = e
	return e, nil
}

// prefetched is a page listed ahead, after last.
type prefetched struct {
	last string
	page registry.Page
	err  error
}

// split cuts off the second half of what is left of the shard for another worker.
func (w *Worker) split(hard context.Context, claim *ledger.Claim, cursor string, log *slog.Logger) error {
	m, ok := keyspace.Split(claim.Record().Range, cursor)
	if !ok {
		return nil
	}
	lctx, cancel := w.ledgerCtx(hard)
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

// wait takes a token from the worker-wide rate limiter.
func (w *Worker) wait(ctx context.Context) error {
	if w.limiter == nil {
		return nil
	}
	return w.limiter.Wait(ctx)
}

// page decides every tag of one listed page (all inside the shard's range, ascending),
// deletes the eligible ones and records their audit events. It returns how many leading tags
// of the page are finished, and the counters to checkpoint with them, and why it stopped short
// of the page's end:
//
//   - a permanent failure wrapping errCapReached: the run's delete budget ran out before the
//     next eligible tag;
//   - a retryable failure: a delete failed after the client's retries (not on the final delivery,
//     where the failure is counted and the page goes on);
//   - a permanent failure: the registry (or an inventory run's client) refuses tag deletes;
//   - ctx's error: the worker is stopping and grace ended before every delete did, so the
//     rest of the page was abandoned.
//
// The finished prefix ends before the first tag that must be tried again. Its counters also
// count the tags after it that were deleted (or found gone) anyway: they are gone from the
// listing the next delivery sees, so they are counted here or never. For the same reason every
// deletion's audit event is appended, whatever else failed: an event that cannot be appended
// fails the page after the rest (its error is returned with the finished prefix and counters).
func (w *Worker) page(ctx, grace, hard context.Context, claim *ledger.Claim, s *session, run proto.RunRecord,
	l *ledger.Ledger, tags []string, final bool, log *slog.Logger) (int, proto.Counters, error) {
	rules := s.entry().rules
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
	var stopErr error
	dry := run.Policy.DryRun
	if !dry && run.Policy.MaxDeletes > 0 && len(eligible) > 0 {
		lctx, cancel := w.ledgerCtx(hard)
		granted, err := l.ReserveDeletes(lctx, run.RunID, int64(len(eligible)), run.Policy.MaxDeletes)
		cancel()
		if err != nil {
			return 0, proto.Counters{}, err
		}
		if granted < int64(len(eligible)) {
			// Finish the page only up to the first eligible tag we may not delete.
			n = eligible[granted]
			eligible = eligible[:granted]
			stopErr = permanent(fmt.Errorf("%w: run %s may delete at most %d tags", errCapReached, run.RunID, run.Policy.MaxDeletes))
		}
	}

	outcomes := make([]proto.AuditEvent, len(eligible))
	errs := make([]error, len(eligible))
	if dry {
		for k, i := range eligible {
			outcomes[k] = proto.AuditEvent{Tag: tags[i], Outcome: proto.OutcomeDryRun}
		}
	} else {
		// Deletes outlive ctx until grace ends, so that a stopping worker finishes its page
		// when it can; a hung registry is bounded by pageTimeout.
		dctx, cancel := context.WithTimeout(grace, w.pageTimeout)
		record := w.recordDigests(run)
		var wg sync.WaitGroup
		for k, i := range eligible {
			wg.Add(1)
			w.deletes <- func() {
				defer wg.Done()
				errs[k] = s.do(dctx, func(c registry.Client) (err error) {
					outcomes[k], err = w.delete(dctx, c, claim.Record(), rules, tags[i], record)
					return err
				})
			}
		}
		wg.Wait()
		cancel()
	}

	// Where the finished prefix ends: the first failed delete that is to be tried again.
	retry := -1 // index into eligible
	for k, i := range eligible {
		if outcomes[k].Outcome != proto.OutcomeFailed || errs[k] == nil {
			continue // done, or refused as not eligible (counted as failed)
		}
		switch {
		case grace.Err() != nil && ctx.Err() != nil: // abandoned on a stop
			stopErr = ctx.Err()
		case errors.Is(errs[k], registry.ErrDeleteUnsupported):
			stopErr = permanent(errs[k])
		case final:
			continue // counted as failed; the shard goes on
		case isPermanent(errs[k]): // a client that refuses deletes for good
			stopErr = errs[k]
		default:
			// The checkpoint stops before this tag: a later delivery lists it again. On the
			// last delivery the failure is counted instead, so that one tag the registry will
			// not delete cannot hold back the rest.
			stopErr = retryable(fmt.Errorf("deleting tag %s: %w", tags[i], errs[k]))
		}
		retry, n = k, i
		break
	}

	var delta proto.Counters
	rec := claim.Record()
	stats := PageStats{Run: rec.RunID, Shard: rec.ShardID, Repository: rec.Repository, Kept: make(map[policy.Reason]int)}
	count := func(tag string) {
		delta.Scanned++
		switch d := rules.Decide(tag); d.Verdict {
		case policy.Delete:
			delta.Eligible++
		case policy.Invalid:
			delta.Invalid++
			stats.Kept[d.Reason]++
		default:
			delta.Kept++
			stats.Kept[d.Reason]++
		}
	}
	for _, tag := range tags[:n] {
		count(tag)
	}
	var auditErr error
	for k, ev := range outcomes {
		after := retry >= 0 && k >= retry // past the finished prefix
		switch ev.Outcome {
		case proto.OutcomeDeleted:
			delta.Deleted++
		case proto.OutcomeAlreadyGone:
			delta.AlreadyGone++
		case proto.OutcomeDryRun:
			stats.DryRun++
		case proto.OutcomeFailed:
			if !after {
				delta.DeleteFailed++
				stats.Failed = append(stats.Failed, cmp.Or(errs[k], ErrNotEligible))
				log.Warn("delete failed", slog.String("tag", ev.Tag), slog.String("err", ev.Error))
			}
		}
		if after && (ev.Outcome == proto.OutcomeDeleted || ev.Outcome == proto.OutcomeAlreadyGone) {
			count(ev.Tag)
		}
		if err := claim.Audit(ev); err != nil && auditErr == nil {
			auditErr = err
		}
	}
	stats.Scanned = int(delta.Scanned)
	stats.Deleted, stats.AlreadyGone = int(delta.Deleted), int(delta.AlreadyGone)
	w.cfg.Observer.PageDone(stats)
	if auditErr != nil {
		return n, delta, auditErr
	}
	return n, delta, stopErr
}

// delete deletes one tag after checking, right before the call, that it lies in the shard's
// range and that the run's policy says it goes: the range alone is never trusted. With record,
// it first reads the tag's digest into the event (see digestBefore). The error is the
// registry's, for the caller to classify; a refusal has an outcome of failed and no error.
func (w *Worker) delete(ctx context.Context, client registry.Deleter, rec proto.ShardRecord, rules *policy.Rules,
	tag string, record bool) (proto.AuditEvent, error) {
	ev := proto.AuditEvent{Tag: tag}
	if !rec.Range.Contains(tag) || rules.Decide(tag).Verdict != policy.Delete {
		ev.Outcome, ev.Error = proto.OutcomeFailed, ErrNotEligible.Error()
		return ev, nil
	}
	if record {
		gone, err := w.digestBefore(ctx, client, rec.Repository, &ev)
		if gone || err != nil {
			return ev, err
		}
	}
	if err := w.wait(ctx); err != nil {
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
		return ev, err
	}
	err := client.Delete(ctx, rec.Repository, tag)
	switch {
	case err == nil:
		ev.Outcome = proto.OutcomeDeleted
	case errors.Is(err, registry.ErrNotFound):
		ev.Outcome, err = proto.OutcomeAlreadyGone, nil
	default:
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
	}
	ev.Time = time.Now().UTC()
	return ev, err
}

// digester reads the manifest digest a tag points at (registry.OCI.Digest): an absent tag is
// an error wrapping registry.ErrNotFound.
type digester interface {
	Digest(ctx context.Context, repo, tag string) (string, error)
}

// recordDigests reports whether deletes of run read and record each tag's digest first: the
// run asks for it, or this worker was told to for every run.
func (w *Worker) recordDigests(run proto.RunRecord) bool {
	return run.Policy.RecordDigests || w.cfg.RecordDigests
}

// digestBefore reads the digest of ev.Tag into ev.Digest, under the worker's rate bound, so
// that the deletion that follows can be undone (tagsweep restore). A tag that is already gone
// is reported gone, with ev's outcome set: nothing is left to delete. A digest that cannot be
// read fails the delete (ev's outcome set, the error returned): a tag is never deleted
// unrecorded when the run asked for its digest.
func (w *Worker) digestBefore(ctx context.Context, client registry.Deleter, repo string, ev *proto.AuditEvent) (gone bool, err error) {
	d, ok := client.(digester)
	if !ok {
		err = fmt.Errorf("reading the digest of %s before its delete: this registry client cannot", ev.Tag)
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
		return false, err
	}
	if err := w.wait(ctx); err != nil {
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
		return false, err
	}
	digest, err := d.Digest(ctx, repo, ev.Tag)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		ev.Outcome, ev.Time = proto.OutcomeAlreadyGone, time.Now().UTC()
		return true, nil
	case err != nil:
		err = fmt.Errorf("reading the digest before the delete: %w", err)
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
		return false, err
	}
	ev.Digest = digest
	return false, nil
}
