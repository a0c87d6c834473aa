package worker

// This file: one page of a prune shard: its tags decided, the eligible ones deleted (each
// after a last check) and counted, and every deletion's audit event appended.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// page decides every tag of one listed page (all inside the shard's range, ascending),
// deletes the eligible ones and records their audit events. It returns how many leading tags
// of the page are finished, and the counters to checkpoint with them, and why it stopped short
// of the page's end:
//
//   - a permanent failure wrapping errCapReached: the run's delete budget ran out before the
//     next eligible tag;
//   - a retryable failure: a delete failed after the client's retries (not on the final
//     delivery, where the failure is counted and the page goes on);
//   - a permanent failure: the registry (or an inventory run's client) refuses tag deletes;
//   - ctx's error: the worker is stopping and grace ended before every delete did, so the
//     rest of the page was abandoned.
//
// The finished prefix ends before the first tag that must be tried again. Its counters also
// count the tags after it that were deleted (or found gone) anyway: they are gone from the
// listing the next delivery sees, so they are counted here or never. For the same reason every
// deletion's audit event is appended, whatever else failed: an event that cannot be appended
// fails the page after the rest (its error is returned with the finished prefix and counters).
func (d *delivery) page(ctx, grace, hard context.Context, s *session, tags []string) (int, proto.Counters, error) {
	p := &pageWork{tags: tags, rules: s.entry().rules, n: len(tags), retry: -1}
	if err := p.decide(d.claim.Record().Range); err != nil {
		return 0, proto.Counters{}, err
	}
	stopErr, err := d.reserve(hard, p)
	if err != nil {
		return 0, proto.Counters{}, err
	}
	p.outcomes = make([]proto.AuditEvent, len(p.eligible))
	p.errs = make([]error, len(p.eligible))
	if d.run.Policy.DryRun {
		for k, i := range p.eligible {
			p.outcomes[k] = proto.AuditEvent{Tag: tags[i], Outcome: proto.OutcomeDryRun}
		}
	} else {
		d.deleteEligible(grace, s, p)
	}
	if err := p.firstRetry(ctx, grace, d.final); err != nil {
		stopErr = err
	}
	delta, auditErr := d.count(p)
	if auditErr != nil {
		return p.n, delta, auditErr
	}
	return p.n, delta, stopErr
}

// pageWork is one listed page on its way through page: which of its tags are eligible, what
// became of each delete, and how much of the page is finished.
type pageWork struct {
	tags     []string
	rules    *policy.Rules
	eligible []int              // indexes into tags of the tags the policy deletes
	outcomes []proto.AuditEvent // per eligible tag
	errs     []error            // per eligible tag: the registry's error, if any
	n        int                // tags[:n] are finished
	retry    int                // index into eligible of the first delete to try again; -1: none
}

// decide finds the page's eligible tags.
func (p *pageWork) decide(rng proto.Range) error {
	for i, tag := range p.tags {
		if !rng.Contains(tag) { // cannot happen: the caller cut the page to the range
			return fmt.Errorf("tag %q outside shard range (%q, %q]", tag, rng.After, rng.Through)
		}
		if p.rules.Decide(tag).Verdict == policy.Delete {
			p.eligible = append(p.eligible, i)
		}
	}
	return nil
}

// reserve takes the page's deletes from the run's delete budget (Policy.MaxDeletes), if the
// run has one and deletes. Granted fewer, the page is finished only up to the first eligible
// tag it may not delete, and stop is the permanent failure of the cap.
func (d *delivery) reserve(hard context.Context, p *pageWork) (stop, err error) {
	run := d.run
	if run.Policy.DryRun || run.Policy.MaxDeletes <= 0 || len(p.eligible) == 0 {
		return nil, nil
	}
	lctx, cancel := d.w.ledgerCtx(hard)
	granted, err := d.l.ReserveDeletes(lctx, run.RunID, int64(len(p.eligible)), run.Policy.MaxDeletes)
	cancel()
	if err != nil {
		return nil, err
	}
	if granted >= int64(len(p.eligible)) {
		return nil, nil
	}
	p.n = p.eligible[granted]
	p.eligible = p.eligible[:granted]
	return permanent(fmt.Errorf("%w: run %s may delete at most %d tags", errCapReached, run.RunID, run.Policy.MaxDeletes)), nil
}

// deleteEligible deletes the page's eligible tags on the worker's delete pool. The deletes
// outlive the shard's context until grace ends, so that a stopping worker finishes its page
// when it can; a hung registry is bounded by pageTimeout.
func (d *delivery) deleteEligible(grace context.Context, s *session, p *pageWork) {
	dctx, cancel := context.WithTimeout(grace, d.w.pageTimeout)
	defer cancel()
	record := d.w.recordDigests(d.run)
	var wg sync.WaitGroup
	for k, i := range p.eligible {
		wg.Add(1)
		d.w.deletes <- func() {
			defer wg.Done()
			p.errs[k] = s.do(dctx, func(c registry.Client) (err error) {
				p.outcomes[k], err = d.w.delete(dctx, c, d.claim.Record(), p.rules, p.tags[i], record)
				return err
			})
		}
	}
	wg.Wait()
}

// firstRetry ends the finished prefix at the first failed delete that is to be tried again,
// and returns why the page stops there; nil when none is.
func (p *pageWork) firstRetry(ctx, grace context.Context, final bool) error {
	for k, i := range p.eligible {
		if p.outcomes[k].Outcome != proto.OutcomeFailed || p.errs[k] == nil {
			continue // done, or refused as not eligible (counted as failed)
		}
		var stop error
		switch {
		case grace.Err() != nil && ctx.Err() != nil: // abandoned on a stop
			stop = ctx.Err()
		case errors.Is(p.errs[k], registry.ErrDeleteUnsupported):
			stop = permanent(p.errs[k])
		case final:
			continue // counted as failed; the shard goes on
		case isPermanent(p.errs[k]): // a client that refuses deletes for good
			stop = p.errs[k]
		default:
			// The checkpoint stops before this tag: a later delivery lists it again. On the
			// last delivery the failure is counted instead, so that one tag the registry will
			// not delete cannot hold back the rest.
			stop = retryable(fmt.Errorf("deleting tag %s: %w", p.tags[i], p.errs[k]))
		}
		p.retry, p.n = k, i
		return stop
	}
	return nil
}

// count counts the page's finished tags and the deletes that succeeded past them into the
// counters to checkpoint, tells the observer, and appends every delete's audit event. Its
// error is the first event that could not be appended.
func (d *delivery) count(p *pageWork) (proto.Counters, error) {
	t := newTally(d.claim.Record())
	for _, tag := range p.tags[:p.n] {
		t.decide(p.rules, tag)
	}
	var auditErr error
	for k, ev := range p.outcomes {
		after := p.retry >= 0 && k >= p.retry // past the finished prefix
		switch ev.Outcome {
		case proto.OutcomeDeleted:
			t.delta.Deleted++
		case proto.OutcomeAlreadyGone:
			t.delta.AlreadyGone++
		case proto.OutcomeDryRun:
			t.stats.DryRun++
		case proto.OutcomeFailed:
			if !after {
				t.delta.DeleteFailed++
				t.stats.Failed = append(t.stats.Failed, cmp.Or(p.errs[k], ErrNotEligible))
				d.log.Warn("delete failed", slog.String("tag", ev.Tag), slog.String("err", ev.Error))
			}
		}
		if after && (ev.Outcome == proto.OutcomeDeleted || ev.Outcome == proto.OutcomeAlreadyGone) {
			t.decide(p.rules, ev.Tag)
		}
		if err := d.claim.Audit(ev); err != nil && auditErr == nil {
			auditErr = err
		}
	}
	t.stats.Scanned = int(t.delta.Scanned)
	t.stats.Deleted, t.stats.AlreadyGone = int(t.delta.Deleted), int(t.delta.AlreadyGone)
	d.w.cfg.Observer.PageDone(t.stats)
	return t.delta, auditErr
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
