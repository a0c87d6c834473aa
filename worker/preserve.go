package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// Release-payload preservation shards (see package preserve): a family shard lists a
// repository's family key ranges, publishes a preserve shard for each payload needing
// preservation and carries out removal requests and orphan removals; a preserve shard
// preserves one payload. Their outcomes are PreserveResults in the ledger
// (ledger.Claim.SavePreserveResult), not shard counters, which stay the prune rule's.

// maxFailures bounds the failures a PreserveResult names.
const maxFailures = 20

// preservation is what a run's preserve shards share in a worker: the Preserver built from
// the run's settings (proto.RunRecord.Preservation).
type preservation struct {
	preserver *preserve.Preserver
}

// preservationFor returns the run's Preserver, building it on first use (cached in the run's
// entry).
func (w *Worker) preservationFor(ctx context.Context, e *runEntry, run proto.RunRecord) (*preservation, error) {
	e.pmu.Lock()
	defer e.pmu.Unlock()
	if e.pres != nil {
		return e.pres, nil
	}
	if w.cfg.Preserver == nil {
		return nil, permanent(errors.New("this worker is not configured for release payload preservation"))
	}
	var aliases []preserve.Alias
	for _, a := range run.Preservation.Aliases {
		al, err := preserve.ParseAlias(a)
		if err != nil {
			return nil, permanent(fmt.Errorf("run %s: %w", run.RunID, err))
		}
		aliases = append(aliases, al)
	}
	p, err := w.cfg.Preserver(ctx, run, aliases)
	if err != nil {
		return nil, fmt.Errorf("preparing preservation: %w", err)
	}
	e.pres = &preservation{preserver: p}
	return e.pres, nil
}

// listRange lists every tag of r, page by page under the worker's rate bound, until the
// registry.Walk proves its end. A listing that fails is a retryable failure.
func (w *Worker) listRange(ctx context.Context, client registry.Lister, repo string, r proto.Range, each func(tag string)) (int, error) {
	n := 0
	for in, err := range registry.NewWalk(r, "").Pages(ctx, paced{w: w, l: client}, repo, w.cfg.PageSize) {
		if err != nil {
			return n, retryable(err)
		}
		for _, t := range in {
			each(t)
		}
		n += len(in)
	}
	return n, nil
}

// family works a family shard: it lists the repository's release payload families, records
// a preserve shard for each payload needing preservation, and carries out removal requests
// and orphan removals. It returns nil when done, or an error for settle.
func (d *delivery) family(ctx, hard context.Context) error {
	rec := d.claim.Record()
	if rec.Range != preserve.Span() {
		return permanent(fmt.Errorf("family shard range %v is not the family's span", rec.Range))
	}
	var fs preserve.Families
	scanned := 0
	for _, r := range preserve.Ranges() {
		n, err := d.w.listRange(ctx, d.entry.client, rec.Repository, r, func(t string) { fs.Add(t) })
		scanned += n
		if err != nil {
			return err
		}
	}
	actions := preserve.Plan(fs.List())
	res := proto.PreserveResult{V: proto.Version, RunID: rec.RunID, ShardID: rec.ShardID, Counters: actions.Counters()}
	res.Counters.FamilyTags = int64(scanned)
	d.log.Info("release payloads listed", slog.Int("family_tags", scanned), slog.Int("versions", fs.Len()),
		slog.Int("preserved", actions.Preserved), slog.Int("needing_preservation", len(actions.Preserve)),
		slog.Int("removal_requests", len(actions.Remove)), slog.Int("orphaned_versions", len(actions.Orphans)))

	// One preserve shard per payload, recorded before this shard is done, so that the
	// coordinator waits for them.
	for _, t := range actions.Preserve {
		child := proto.ShardRecord{RunID: rec.RunID, ShardID: preserveShardID(rec.ShardID, t.Version), Kind: proto.KindPreserve,
			Repository: rec.Repository, Range: preserve.ComponentRange(t.Version), Parent: rec.ShardID}
		lctx, cancel := d.w.ledgerCtx(hard)
		_, err := d.l.CreateShard(lctx, child)
		cancel()
		if err != nil {
			return fmt.Errorf("publishing the preservation of %s: %w", t.Version, err)
		}
	}

	rm := &familyRemoval{d: d, res: &res, conc: max(1, min(d.w.cfg.DeleteConcurrency, 16)),
		del: &auditedDeleter{client: d.entry.client, w: d.w, dry: d.run.Policy.DryRun, digests: d.w.recordDigests(d.run)}}
	for _, r := range actions.Remove {
		rm.remove(ctx, r, false)
	}
	for _, o := range actions.Orphans {
		rm.removeOrphan(ctx, o)
	}
	for _, ev := range rm.del.take() {
		if err := d.claim.Audit(ev); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := rm.retry(); err != nil {
		return err
	}
	return d.saveResult(hard, res)
}

// familyRemoval carries out a family shard's removals (removal requests and orphans) through
// an auditedDeleter, counting them into the shard's PreserveResult.
type familyRemoval struct {
	d    *delivery
	del  *auditedDeleter
	res  *proto.PreserveResult
	conc int // deletes in flight per removal

	refused     error // a removal the registry refused for our credentials
	unconfirmed error // an orphan whose payload was not confirmed gone
}

// remove removes one version's tags (an orphan's, or those a removal request asks for).
func (f *familyRemoval) remove(ctx context.Context, rm preserve.Removal, orphan bool) {
	dry := f.d.run.Policy.DryRun
	r := preserve.Remove(ctx, f.del, f.d.claim.Record().Repository, rm, f.conc, dry)
	f.res.Counters.Add(r.Counters(orphan))
	if dry {
		for _, tag := range append(slices.Clone(rm.Tags), rm.Request) {
			if tag != "" {
				f.del.record(proto.AuditEvent{Tag: tag, Outcome: proto.OutcomeDryRun})
			}
		}
	}
	if r.Err == nil {
		return
	}
	if errors.Is(r.Err, registry.ErrUnauthorized) && f.refused == nil {
		f.refused = r.Err
	}
	f.res.Failures = appendBounded(f.res.Failures, fmt.Sprintf("%s: %v", rm.Version, r.Err))
	f.d.log.Warn("release payload removal incomplete", slog.String("tag", preserve.PayloadTag(rm.Version)),
		slog.Bool("request_kept", r.RequestKept), slog.Any("err", r.Err))
}

// removeOrphan removes an orphan's tags once its payload is confirmed gone. An orphan is an
// orphan only if its payload is gone: the listing, proven complete, says so, and a direct
// manifest HEAD just before deleting must agree. A payload the listing left out keeps its
// marker and components, and the shard is tried again.
func (f *familyRemoval) removeOrphan(ctx context.Context, o preserve.Removal) {
	if err := confirmOrphan(ctx, f.d.entry.client, f.d.claim.Record().Repository, o.Version); err != nil {
		f.res.Failures = appendBounded(f.res.Failures, fmt.Sprintf("%s: %v", o.Version, err))
		f.d.log.Error("orphaned release payload tags kept", slog.String("tag", preserve.PayloadTag(o.Version)), slog.Any("err", err))
		if f.unconfirmed == nil {
			f.unconfirmed = err
		}
		return
	}
	f.remove(ctx, o, true)
}

// retry returns the retryable failure of removals a later delivery is to do again, nil when
// none is.
func (f *familyRemoval) retry() error {
	if f.unconfirmed != nil {
		return retryable(fmt.Errorf("removing orphaned release payload tags: %w", f.unconfirmed))
	}
	if f.refused != nil {
		// The credentials were refused (a token the registry expired before the client
		// expected): the next delivery lists the family again with a fresh client and repeats
		// the removals, which are idempotent (a tag already gone counts as removed). On the
		// last delivery the shard fails with this error.
		return retryable(fmt.Errorf("removing release payload tags: %w", f.refused))
	}
	return nil
}

// errPayloadPresent: a payload tag the listing did not show exists when asked directly.
var errPayloadPresent = errors.New("the payload exists, although the listing did not show it")

// confirmOrphan checks, with a manifest HEAD, that the payload of version v is absent from
// repo, so that its marker and components may be deleted as orphans.
func confirmOrphan(ctx context.Context, client registry.Client, repo, v string) error {
	checker, ok := client.(registry.Checker)
	if !ok {
		return errors.New("this registry client cannot check that the payload is gone")
	}
	payload := preserve.PayloadTag(v)
	exists, err := checker.Exists(ctx, repo, payload)
	switch {
	case err != nil:
		return fmt.Errorf("checking that %s is gone: %w", payload, err)
	case exists:
		return fmt.Errorf("%s: %w", payload, errPayloadPresent)
	}
	return nil
}

// preserveOne works a preserve shard: it preserves one payload. A fault of the payload
// (preserve.ErrPayload, a payload gone or without image references), or any failure on the
// last delivery, is recorded in the shard's PreserveResult and the shard is done; another
// failure is retried on a later delivery.
func (d *delivery) preserveOne(ctx, hard context.Context) error {
	rec := d.claim.Record()
	v, ok := preserve.VersionOf(rec.Range)
	if !ok {
		return permanent(fmt.Errorf("preserve shard range %v names no payload version", rec.Range))
	}
	pres, err := d.w.preservationFor(ctx, d.entry, d.run)
	if err != nil {
		return err
	}
	task := preserve.Task{Version: v, Payload: preserve.PayloadTag(v)}
	if _, err := d.w.listRange(ctx, d.entry.client, rec.Repository, rec.Range, func(t string) {
		if role, tv, c := preserve.Classify(t); role == preserve.RoleComponent && tv == v {
			task.Existing = append(task.Existing, c)
		}
	}); err != nil {
		return err
	}
	dry := d.run.Policy.DryRun
	r, err := pres.preserver.Preserve(ctx, rec.Repository, task, dry)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	payloadFault := errors.Is(err, preserve.ErrPayload) || errors.Is(err, registry.ErrNotFound) ||
		errors.Is(err, registry.ErrNoImageReferences)
	if err != nil && !payloadFault && !d.final {
		return retryable(err)
	}
	res := proto.PreserveResult{V: proto.Version, RunID: rec.RunID, ShardID: rec.ShardID, Counters: r.Counters(err)}
	if err != nil {
		res.Failures = []string{fmt.Sprintf("%s: %v", v, err)}
		d.log.Error("release payload not preserved; the next run tries again", slog.String("tag", task.Payload), slog.Any("err", err))
	} else {
		d.log.Info("release payload preserved", slog.String("tag", task.Payload), slog.Int("components", r.Components),
			slog.Int("tagged", r.Tagged), slog.Int("already_tagged", r.Present), slog.Int("elsewhere", r.Elsewhere),
			slog.Bool("dry_run", dry))
	}
	return d.saveResult(hard, res)
}

// saveResult records the shard's PreserveResult through its claim, replacing an earlier
// attempt's.
func (d *delivery) saveResult(hard context.Context, res proto.PreserveResult) error {
	ctx, cancel := d.w.ledgerCtx(hard)
	defer cancel()
	return d.claim.SavePreserveResult(ctx, res)
}

// preserveShardID names the shard preserving version v, published by family shard parent:
// derived, so that a redelivered family shard names the same shards.
func preserveShardID(parent, v string) string {
	return ledger.ChildID(parent, preserve.PayloadTag(v))
}

func appendBounded(list []string, s string) []string {
	if len(list) < maxFailures {
		return append(list, truncate(s, 500))
	}
	return list
}

// auditedDeleter deletes family tags through the worker's rate bound and records an audit
// event per delete. It refuses any tag outside the preservation family.
type auditedDeleter struct {
	client  registry.Deleter
	w       *Worker
	dry     bool
	digests bool // read each tag's digest into its event before the delete

	mu     sync.Mutex
	events []proto.AuditEvent
}

func (d *auditedDeleter) Delete(ctx context.Context, repo, tag string) error {
	if !preserve.Protected(tag) {
		err := fmt.Errorf("refused to delete %s: not a release payload family tag", tag)
		d.record(proto.AuditEvent{Tag: tag, Outcome: proto.OutcomeFailed, Error: err.Error()})
		return err
	}
	ev := proto.AuditEvent{Tag: tag}
	if d.digests {
		gone, err := d.w.digestBefore(ctx, d.client, repo, &ev)
		if gone || err != nil {
			d.record(ev)
			if gone {
				return fmt.Errorf("delete %s: %w", tag, registry.ErrNotFound)
			}
			return err
		}
	}
	if err := d.w.wait(ctx); err != nil {
		return err
	}
	err := d.client.Delete(ctx, repo, tag)
	ev.Time = time.Now().UTC()
	switch {
	case err == nil:
		ev.Outcome = proto.OutcomeDeleted
	case errors.Is(err, registry.ErrNotFound):
		ev.Outcome = proto.OutcomeAlreadyGone
	default:
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
	}
	d.record(ev)
	return err
}

func (d *auditedDeleter) record(ev proto.AuditEvent) {
	d.mu.Lock()
	d.events = append(d.events, ev)
	d.mu.Unlock()
}

func (d *auditedDeleter) take() []proto.AuditEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := d.events
	d.events = nil
	return out
}
