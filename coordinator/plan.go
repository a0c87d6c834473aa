package coordinator

// This file: cutting each repository's key range into shards, and the retrying lister
// planning uses.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/internal/pause"
	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// shardID names a planned shard: the repository's index and the range's end, which is unique
// within a repository's plan (a hash when the end is not a valid token).
func shardID(repoIndex int, r proto.Range) string {
	id := fmt.Sprintf("%d-%s", repoIndex, r.Through)
	if proto.ValidToken(id) {
		return id
	}
	sum := sha256.Sum256([]byte(r.Through))
	return fmt.Sprintf("%d-h%s", repoIndex, hex.EncodeToString(sum[:8]))
}

// plan creates the shards of every repository that no shard covers yet, and re-publishes
// existing pending ones. Shards are created in key order, so after an interruption the
// recorded shards of a repository cover a prefix ("", maxThrough] of its plan, and planning
// resumes after it.
func (c *Coordinator) plan(ctx context.Context, l *ledger.Ledger, run proto.RunRecord, through string) error {
	existing, err := l.Shards(ctx, run.RunID)
	if err != nil {
		return err
	}
	byRepo := make(map[string][]proto.ShardRecord)
	for _, s := range existing {
		byRepo[s.Repository] = append(byRepo[s.Repository], s)
	}
	target := c.planShards(ctx, l)
	created := 0
	for i, repo := range run.Repositories {
		n, err := c.planRepository(ctx, l, run, i, byRepo[repo], target, through)
		if err != nil {
			return err
		}
		created += n
	}
	total := len(existing) + created
	_, err = l.ModifyRun(ctx, run.RunID, func(r *proto.RunRecord) error { r.Shards = total; return nil })
	if err != nil {
		return err
	}
	c.log.Info("shards published", slog.Int("new", created), slog.Int("total", total))
	return nil
}

// planRepository plans run's repository i: its family shard when the run preserves release
// payloads, and shards for what of ("", through] its recorded shards do not cover yet, cut
// for at least target shards; its recorded pending shards are published again. It returns how
// many shards it created.
func (c *Coordinator) planRepository(ctx context.Context, l *ledger.Ledger, run proto.RunRecord, i int,
	recorded []proto.ShardRecord, target int, through string) (int, error) {
	repo := run.Repositories[i]
	log := c.log.With(slog.String("repo", repo))
	created := 0
	if run.Preservation.Enabled {
		isNew, err := l.CreateShard(ctx, familyShard(run.RunID, i, repo))
		if err != nil {
			return 0, err
		}
		if isNew {
			created++
		}
	}
	covered := ""
	for _, s := range recorded {
		if isPrune(s) {
			covered = max(covered, s.Range.Through)
		}
		if s.State == proto.StatePending {
			if _, err := l.CreateShard(ctx, s); err != nil { // re-publish if its message is missing
				return 0, err
			}
		}
	}
	if covered >= through {
		log.Info("repository already planned", slog.Int("shards", len(recorded)))
		return created, nil
	}
	ranges, seen, err := c.cut(ctx, run, repo, covered, through, target, log)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range ranges {
		rec := proto.ShardRecord{RunID: run.RunID, ShardID: shardID(i, r), Kind: rangeKind(run), Repository: repo, Range: r,
			Seen: seenIn(seen, r)}
		isNew, err := l.CreateShard(ctx, rec)
		if err != nil {
			return 0, err
		}
		if isNew {
			n++
		}
	}
	log.Info("repository planned", slog.Int("shards", n), slog.String("resumed_after", covered))
	return created + n, nil
}

// cut plans (after, through] of repo into ranges for at least target shards (keyspace.Plan),
// and returns them with the tags planning saw, in order.
func (c *Coordinator) cut(ctx context.Context, run proto.RunRecord, repo, after, through string, target int,
	log *slog.Logger) ([]proto.Range, []string, error) {
	lister := &retryingLister{Lister: c.lister, delay: c.cfg.RetryDelay, log: log}
	if err := registry.ProbeKeyset(ctx, lister, repo); err != nil {
		return nil, nil, &planListError{err}
	}
	var mu sync.Mutex
	var seen []string // the tags planning saw: each shard records one it holds
	page := func(ctx context.Context, after string, n int) ([]string, bool, error) {
		p, err := lister.List(ctx, repo, after, n)
		mu.Lock()
		seen = append(seen, p.Tags...)
		mu.Unlock()
		return p.Tags, p.More, err
	}
	var ranges []proto.Range
	for _, part := range planParts(run, after, through) {
		rs, err := keyspace.Plan(ctx, page, part, keyspace.PlanConfig{Shards: target, PageSize: c.cfg.PageSize})
		if err != nil {
			return nil, nil, &planListError{fmt.Errorf("planning %s: %w", repo, err)}
		}
		ranges = append(ranges, rs...)
	}
	slices.Sort(seen)
	return ranges, slices.Compact(seen), nil
}

// seenIn returns the first of the ascending tags seen that lies in r, "" when none does.
func seenIn(seen []string, r proto.Range) string {
	i, _ := slices.BinarySearch(seen, r.After)
	for ; i < len(seen); i++ {
		if r.Contains(seen[i]) {
			return seen[i]
		}
		if seen[i] > r.Through {
			break
		}
	}
	return ""
}

// planShards is how many shards a repository is cut into at least: Config.Shards, else the
// slots of the workers registered and alive, else DefaultShards (work stealing fills slots
// that a plan leaves idle all the same).
func (c *Coordinator) planShards(ctx context.Context, l *ledger.Ledger) int {
	if c.cfg.Shards > 0 {
		return c.cfg.Shards
	}
	slots, workers, err := l.Slots(ctx)
	switch {
	case err != nil:
		c.log.Warn("reading the workers' slots; planning for the default", slog.Any("err", err), slog.Int("shards", DefaultShards))
	case slots == 0:
		c.log.Info("no worker registered yet; planning for the default", slog.Int("shards", DefaultShards))
	default:
		c.log.Info("planning a shard per slot of the workers registered", slog.Int("workers", workers), slog.Int("slots", slots))
		return slots
	}
	return DefaultShards
}

// planRetrying plans, trying again after a NATS failure with a doubling delay. Planning is
// resumable (it skips what earlier attempts recorded), so a retry costs only the calls after
// the failure. A registry call is not retried here: each was retried where it failed (see
// retryingLister), so its error is final.
func (c *Coordinator) planRetrying(ctx context.Context, l *ledger.Ledger, run proto.RunRecord, through string) error {
	delay := c.cfg.RetryDelay
	for attempt := 1; ; attempt++ {
		err := c.plan(ctx, l, run, through)
		var lerr *planListError
		if err == nil || ctx.Err() != nil || attempt == planAttempts || !mayPass(err) || errors.As(err, &lerr) {
			return err
		}
		c.log.Warn("planning failed; trying again", slog.Any("err", err), slog.Int("attempt", attempt), slog.Duration("in", delay))
		if err := pause.For(ctx, delay); err != nil {
			return err
		}
		delay *= 2
	}
}

// mayPass reports whether a registry or NATS failure may pass when tried again: a registry
// that breaks the keyset contract, an unknown repository or refused credentials will not.
func mayPass(err error) bool {
	return !errors.Is(err, registry.ErrKeysetUnsupported) && !errors.Is(err, registry.ErrBadPage) &&
		!errors.Is(err, registry.ErrNotFound) && !errors.Is(err, registry.ErrUnauthorized)
}

// planListError is a registry call of planning that failed for good.
type planListError struct{ err error }

func (e *planListError) Error() string { return e.err.Error() }
func (e *planListError) Unwrap() error { return e.err }

// retryingLister makes a list call again, after a doubling delay, when it failed in a way that
// may pass: the way a worker gives a shard whose list failed back for a later delivery, but
// one call at a time, so that planning goes on where it was rather than starting over. The
// registry client has its own retries for some statuses (not 503); this layer covers what
// those leave, and never a failure that waiting cannot mend.
type retryingLister struct {
	registry.Lister
	delay time.Duration
	log   *slog.Logger
}

func (l *retryingLister) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	delay := l.delay
	for attempt := 1; ; attempt++ {
		p, err := l.Lister.List(ctx, repo, last, n)
		if err == nil || attempt == listAttempts || ctx.Err() != nil || !mayPass(err) {
			return p, err
		}
		wait := delay
		var ra *registry.RetryAfterError
		if errors.As(err, &ra) && ra.After > 0 {
			wait = min(ra.After, maxListDelay)
		}
		l.log.Warn("listing tags for planning; trying again", slog.Any("err", err), slog.Int("attempt", attempt), slog.Duration("in", wait))
		if err := pause.For(ctx, wait); err != nil {
			return p, err
		}
		delay = min(2*delay, maxListDelay)
	}
}

// planEnd is the end of the key range a run plans: every tag that can be deleted sorts at or
// below the cutoff key; an inventory lists the whole namespace (keyspace.End).
func planEnd(run proto.RunRecord, rules *policy.Rules) string {
	if run.Mode == proto.ModeInventory {
		return keyspace.End
	}
	return rules.CutoffKey()
}

// planParts is the range a run plans, (after, through], in the parts it is planned in. An
// inventory's range is the whole namespace: the tags named after a time up to now and, above
// them, names of any kind (floating tags, signatures, the payload family). Planned as one
// range, the planner reads the density of the dated tags against a byte scale that runs to
// '~' and cuts too few shards where the tags are; planned apart, the part up to the key of
// a day after the run's start is cut on the time scale like a pruning run's range, and the
// rest by its own pages. Any key may split a range: this one only makes the plan better.
func planParts(run proto.RunRecord, after, through string) []proto.Range {
	mid := run.StartedAt.Add(24 * time.Hour).UTC().Format("20060102150405")
	if run.Mode != proto.ModeInventory || after >= mid || through <= mid {
		return []proto.Range{{After: after, Through: through}}
	}
	return []proto.Range{{After: after, Through: mid}, {After: mid, Through: through}}
}

// rangeKind is the kind of the shards that partition a run's planned range.
func rangeKind(run proto.RunRecord) proto.ShardKind {
	if run.Mode == proto.ModeInventory {
		return proto.KindList
	}
	return proto.KindPrune
}

func modeName(inventory bool) string {
	if inventory {
		return "inventory"
	}
	return "pruning"
}
