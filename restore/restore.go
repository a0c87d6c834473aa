// Package restore undoes a run: it puts back the tags the run deleted, each at the manifest
// digest it pointed at. What the run deleted comes from its audit events (package ledger);
// where each tag pointed comes from the event itself when the run recorded digests
// (proto.Policy.RecordDigests: the manifest is read by digest and written under the tag, on any
// OCI registry), else from Quay's tag history (API v1), restored through Quay's time machine.
//
// A restore is idempotent: a tag that exists again (restored earlier, or pushed since) is left
// alone and counted as skipped, so a restore that was interrupted is simply run again, and a
// second restore of the same run puts nothing back. Each outcome is an audit event of the
// restore's own ID (restored, skipped, failed with its reason, or dry_run).
package restore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"iter"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// Defaults of Config's zero values.
const (
	DefaultConcurrency = 64
	// DefaultDeletionSlack is how far past a deletion's audit time a Quay history row may end
	// and still be taken as the row that deletion ended: the audit time is the worker's
	// clock after the delete returned, the row's end Quay's clock during it.
	DefaultDeletionSlack = time.Minute
)

// maxFailures bounds the failures the report names.
const maxFailures = 20

// Manifests puts tags back by digest on any OCI registry (registry.Restorer).
type Manifests interface {
	// Digest returns the digest tag points at; an absent tag wraps registry.ErrNotFound.
	Digest(ctx context.Context, repo, tag string) (string, error)
	// Put writes the manifest at digest under tag; a manifest the registry no longer holds
	// wraps registry.ErrManifestGone.
	Put(ctx context.Context, repo, tag, digest string) error
}

// History restores tags through Quay's time machine (registry.Quay).
type History interface {
	// History returns the tag's rows that Quay keeps, alive and deleted.
	History(ctx context.Context, repo, tag string) ([]registry.TagRow, error)
	// Restore puts a deleted tag back at digest; a manifest Quay no longer holds wraps
	// registry.ErrManifestGone.
	Restore(ctx context.Context, repo, tag, digest string) error
}

// Config configures a restore. Zero values mean the documented defaults.
type Config struct {
	// RunID is the run to undo. Required.
	RunID string
	// ID is the restore's own ID: its audit events are stored under it. Required.
	ID string
	// TagRegex selects the deleted tags to restore; nil means all.
	TagRegex *regexp.Regexp
	// Confirm puts tags back; without it the restore is a dry run that only reads.
	Confirm bool
	// Concurrency is how many tags are restored at once (default 64).
	Concurrency int
	// MaxRPS bounds the registry calls started per second; 0 means unlimited (the clients'
	// adaptive rate control still paces them once the registry answers 429).
	MaxRPS float64
	// Manifests restores tags whose digest the run recorded. Nil: such tags fail.
	Manifests Manifests
	// History restores the other tags through Quay's API v1 (needs a token). Nil: they fail.
	History History
	// DeletionSlack: see DefaultDeletionSlack (the default).
	DeletionSlack time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Restore undoes one run. Create it with New and start it with Run.
type Restore struct {
	cfg     Config
	l       *ledger.Ledger
	log     *slog.Logger
	limiter *rate.Limiter // nil: unlimited
	now     func() time.Time
}

// New returns a restore of cfg.RunID reading the run and its audit events from l, and storing
// its own audit events there. A bound ledger (ledger.Bind) serves.
func New(cfg Config, l *ledger.Ledger, log *slog.Logger) (*Restore, error) {
	if !proto.ValidToken(cfg.RunID) {
		return nil, fmt.Errorf("restore: run id %q is not a valid token", cfg.RunID)
	}
	if !proto.ValidToken(cfg.ID) {
		return nil, fmt.Errorf("restore: restore id %q is not a valid token", cfg.ID)
	}
	if cfg.Concurrency < 0 || cfg.MaxRPS < 0 || cfg.DeletionSlack < 0 {
		return nil, errors.New("restore: concurrency, max rps and deletion slack must not be negative")
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	cfg.DeletionSlack = cmp.Or(cfg.DeletionSlack, DefaultDeletionSlack)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Restore{cfg: cfg, l: l, log: log.With(slog.String("run", cfg.RunID), slog.String("restore", cfg.ID)), now: cfg.Now}
	if r.now == nil {
		r.now = time.Now
	}
	if cfg.MaxRPS > 0 {
		r.limiter = rate.NewLimiter(rate.Limit(cfg.MaxRPS), 1)
	}
	return r, nil
}

// ErrNothingDeleted: the run deleted nothing (a dry run), so there is nothing to restore.
var ErrNothingDeleted = errors.New("the run was a dry run and deleted nothing")

// ErrOutsideWindow: Quay's history of a tag keeps no row that ended at its deletion; the
// namespace's time machine window has passed, and the tag can no longer be restored.
var ErrOutsideWindow = errors.New("outside Quay's time machine window")

// tagKey names a deleted tag.
type tagKey struct{ repo, tag string }

// survey is what a first reading of the run's audit events finds, holding no tag names, so
// that a restore's memory does not grow with the names of a run of millions of deletions:
// the deleted tags the filter selects, by hash, and which of them were deleted more than once
// (true). A tag whose hash collides with another's is taken for one deleted more than once,
// which costs it only its place in the order.
type survey struct {
	seed  maphash.Seed
	seen  map[uint64]bool
	repos map[string]bool
}

// hash is the survey's hash of a tag.
func (sv *survey) hash(repo, tag string) uint64 {
	return maphash.Comparable(sv.seed, tagKey{repo, tag})
}

// Run restores every tag the run deleted that the filter selects, and returns the report. It
// returns an error, with the report so far, when the run cannot be read, when the outcomes
// cannot be stored, or when ctx ends (the outcomes so far are stored: run again to finish).
// Tags that could not be put back are counted in the report, not returned as an error.
func (r *Restore) Run(ctx context.Context) (proto.RestoreReport, error) {
	rep := proto.RestoreReport{RestoreID: r.cfg.ID, Of: r.cfg.RunID, DryRun: !r.cfg.Confirm, StartedAt: r.now().UTC()}
	if r.cfg.TagRegex != nil {
		rep.TagRegex = r.cfg.TagRegex.String()
	}
	err := r.run(ctx, &rep)
	rep.FinishedAt = r.now().UTC()
	rep.DurationSeconds = rep.FinishedAt.Sub(rep.StartedAt).Seconds()
	if err != nil && rep.Reason == "" {
		rep.Reason = err.Error()
	}
	return rep, err
}

// run reads what the run deleted, puts it back and stores each outcome, filling in rep.
func (r *Restore) run(ctx context.Context, rep *proto.RestoreReport) error {
	sv, err := r.plan(ctx, rep)
	if err != nil {
		return err
	}
	// A failure to store the outcomes, or to read the deletions again, stops the restore: it
	// must not put back tags it cannot account for.
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	store := r.startStore(ctx, cancel, rep.StartedAt)
	var deleted int64
	for ev := range r.restoreAll(ctx, cancel, r.toRestore(ctx, sv, &deleted)) {
		if ev.Outcome == "" { // abandoned on a stop
			continue
		}
		count(rep, ev)
		store.add(ev)
	}
	stored, err := store.close()
	switch {
	case err != nil:
		return err
	case parent.Err() != nil:
		return fmt.Errorf("restore interrupted after %d of %d tags: %w", stored, rep.Tags.Deleted, context.Cause(parent))
	case context.Cause(ctx) != nil:
		return context.Cause(ctx)
	}
	rep.Tags.Deleted = deleted // exact, where the survey counted hashes
	return nil
}

// plan reads the run's record and surveys the tags it deleted that the filter selects, and
// enters what they say in rep. A dry run deleted nothing: ErrNothingDeleted.
func (r *Restore) plan(ctx context.Context, rep *proto.RestoreReport) (*survey, error) {
	run, _, err := r.l.Run(ctx, r.cfg.RunID)
	if err != nil {
		return nil, fmt.Errorf("reading run %s: %w", r.cfg.RunID, err)
	}
	rep.DigestsRecorded = run.Policy.RecordDigests
	if run.Policy.DryRun {
		return nil, fmt.Errorf("run %s: %w", run.RunID, ErrNothingDeleted)
	}
	if run.State == proto.RunRunning {
		r.log.Warn("the run is still recorded as running: tags its workers delete after this restore stay deleted")
	}
	sv := &survey{seed: maphash.MakeSeed(), seen: map[uint64]bool{}, repos: map[string]bool{}}
	for ev, err := range r.deletions(ctx) {
		if err != nil {
			return nil, err
		}
		h := sv.hash(ev.Repository, ev.Tag)
		_, again := sv.seen[h]
		sv.seen[h] = again
		sv.repos[ev.Repository] = true
	}
	rep.Repositories = slices.Sorted(maps.Keys(sv.repos))
	rep.Tags.Deleted = int64(len(sv.seen))
	r.log.Info("restoring the tags the run deleted", slog.Int("tags", len(sv.seen)), slog.Bool("dry_run", !r.cfg.Confirm),
		slog.Bool("digests_recorded", run.Policy.RecordDigests))
	return sv, nil
}

// restoreAll puts back the tags of items (each its deletion event), cfg.Concurrency at a
// time, and sends each outcome (one's restore audit event) on the channel it returns, which
// is closed once all are done. Once ctx ends no more items are started; an error from items
// cancels ctx with it as the cause.
func (r *Restore) restoreAll(ctx context.Context, cancel context.CancelCauseFunc, items iter.Seq2[proto.AuditEvent, error]) <-chan proto.AuditEvent {
	out := make(chan proto.AuditEvent, r.cfg.Concurrency)
	work := make(chan proto.AuditEvent)
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Go(func() {
			for del := range work {
				out <- r.one(ctx, del)
			}
		})
	}
	go func() {
		defer close(work)
		for del, err := range items {
			if err != nil {
				cancel(err)
				return
			}
			select {
			case work <- del:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// count enters one outcome in rep.
func count(rep *proto.RestoreReport, ev proto.AuditEvent) {
	switch ev.Outcome {
	case proto.OutcomeRestored, proto.OutcomeDryRun:
		rep.Tags.Restored++
	case proto.OutcomeSkipped:
		rep.Tags.Skipped++
	case proto.OutcomeFailed:
		rep.Tags.Failed++
		if len(rep.Failures) < maxFailures {
			rep.Failures = append(rep.Failures, ev.Repository+":"+ev.Tag+": "+ev.Error)
		}
	}
}

// deletions reads the run's audit events and yields the deletions of the tags the filter
// selects, in the order they were stored. An error is the last value.
func (r *Restore) deletions(ctx context.Context) iter.Seq2[proto.AuditEvent, error] {
	return func(yield func(proto.AuditEvent, error) bool) {
		for ev, err := range r.l.Audit(ctx, r.cfg.RunID) {
			if err != nil { // names the run, and a missing stream as such
				yield(proto.AuditEvent{}, err)
				return
			}
			if ev.Outcome != proto.OutcomeDeleted || (r.cfg.TagRegex != nil && !r.cfg.TagRegex.MatchString(ev.Tag)) {
				continue
			}
			if !yield(ev, nil) {
				return
			}
		}
	}
}

// toRestore reads the run's deletions again and yields one per tag, its last: the tags the
// survey saw deleted once as they come, then those deleted more than once (few; held until
// the end). It counts the tags it yields in *n.
func (r *Restore) toRestore(ctx context.Context, sv *survey, n *int64) iter.Seq2[proto.AuditEvent, error] {
	return func(yield func(proto.AuditEvent, error) bool) {
		last := map[tagKey]proto.AuditEvent{}
		var order []tagKey
		for ev, err := range r.deletions(ctx) {
			if err != nil {
				yield(proto.AuditEvent{}, err)
				return
			}
			if again, ok := sv.seen[sv.hash(ev.Repository, ev.Tag)]; ok && !again {
				*n++
				if !yield(ev, nil) {
					return
				}
				continue
			}
			// Deleted more than once, or stored after the survey (a run still running): held.
			k := tagKey{ev.Repository, ev.Tag}
			if _, held := last[k]; !held {
				order = append(order, k)
			}
			last[k] = ev
		}
		for _, k := range order {
			*n++
			if !yield(last[k], nil) {
				return
			}
		}
	}
}

// one puts one deleted tag back, or in a dry run finds whether it would, and returns the
// outcome as the restore's audit event: a zero event when ctx ended before the outcome was
// known.
func (r *Restore) one(ctx context.Context, del proto.AuditEvent) proto.AuditEvent {
	ev := proto.AuditEvent{Repository: del.Repository, Tag: del.Tag, Of: r.cfg.RunID, Digest: del.Digest}
	var err error
	if del.Digest != "" {
		ev.Outcome, err = r.byManifest(ctx, &ev)
	} else {
		ev.Outcome, err = r.byHistory(ctx, del, &ev)
	}
	if err != nil {
		if ctx.Err() != nil {
			return proto.AuditEvent{} // abandoned on a stop: neither done nor failed
		}
		ev.Outcome, ev.Error = proto.OutcomeFailed, err.Error()
	}
	ev.Time = r.now().UTC()
	return ev
}

// byManifest restores a tag whose digest the run recorded: unless the tag exists, the
// manifest is read by digest and written under the tag.
func (r *Restore) byManifest(ctx context.Context, ev *proto.AuditEvent) (proto.Outcome, error) {
	if r.cfg.Manifests == nil {
		return "", errors.New("no registry client for restoring by digest")
	}
	if err := r.wait(ctx); err != nil {
		return "", err
	}
	cur, err := r.cfg.Manifests.Digest(ctx, ev.Repository, ev.Tag)
	switch {
	case err == nil:
		ev.Error = existsAgain(cur, ev.Digest)
		return proto.OutcomeSkipped, nil
	case !errors.Is(err, registry.ErrNotFound):
		return "", fmt.Errorf("checking whether the tag exists: %w", err)
	}
	if !r.cfg.Confirm {
		return proto.OutcomeDryRun, nil
	}
	if err := r.wait(ctx); err != nil {
		return "", err
	}
	if err := r.cfg.Manifests.Put(ctx, ev.Repository, ev.Tag, ev.Digest); err != nil {
		return "", err
	}
	return proto.OutcomeRestored, nil
}

// byHistory restores a tag through Quay's time machine: its history row that ended at the
// deletion names the digest.
func (r *Restore) byHistory(ctx context.Context, del proto.AuditEvent, ev *proto.AuditEvent) (proto.Outcome, error) {
	if r.cfg.History == nil {
		return "", errors.New("the run recorded no digest (it ran without --record-digests) and " +
			"Quay's tag history needs --token: cannot tell which manifest the tag pointed at")
	}
	if err := r.wait(ctx); err != nil {
		return "", err
	}
	rows, err := r.cfg.History.History(ctx, ev.Repository, ev.Tag)
	if err != nil {
		return "", fmt.Errorf("reading the tag's history: %w", err)
	}
	now := r.now()
	var ended *registry.TagRow
	for i, row := range rows {
		if row.Alive(now) {
			ev.Digest = row.Digest
			ev.Error = existsAgain(row.Digest, "")
			return proto.OutcomeSkipped, nil
		}
		if !row.End.After(del.Time.Add(r.cfg.DeletionSlack)) && (ended == nil || row.End.After(ended.End)) {
			ended = &rows[i]
		}
	}
	if ended == nil {
		return "", fmt.Errorf("no row of the tag's history ended at its deletion (%s): %w",
			del.Time.UTC().Format(time.RFC3339), ErrOutsideWindow)
	}
	ev.Digest = ended.Digest
	if !r.cfg.Confirm {
		return proto.OutcomeDryRun, nil
	}
	if err := r.wait(ctx); err != nil {
		return "", err
	}
	if err := r.cfg.History.Restore(ctx, ev.Repository, ev.Tag, ended.Digest); err != nil {
		if errors.Is(err, registry.ErrManifestGone) {
			return "", fmt.Errorf("%w: %w", err, ErrOutsideWindow)
		}
		return "", err
	}
	return proto.OutcomeRestored, nil
}

// existsAgain is the note of a skipped tag: where it points now, and whether that is where
// it pointed before the run deleted it.
func existsAgain(cur, was string) string {
	switch {
	case was == "" || cur == was:
		return "" // nothing to note
	default:
		return fmt.Sprintf("exists again at %s (it was %s): left alone", cur, was)
	}
}

// wait takes a token from the restore's rate bound.
func (r *Restore) wait(ctx context.Context) error {
	if r.limiter == nil {
		return ctx.Err()
	}
	return r.limiter.Wait(ctx)
}
