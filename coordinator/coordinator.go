// Package coordinator runs one pruning run from start to end: it records the run (fixing its
// cutoff once), takes each repository's lease, plans every repository's tag namespace into
// key-range shards and publishes them, then watches the shard records until every one is
// terminal, and writes the run's summary.
//
// It never touches a tag: workers do. A coordinator started again with the same run ID
// re-attaches to the run: it plans only what no shard covers yet, so nothing is duplicated.
package coordinator

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// ErrShardsFailed: the run ended, but at least one shard failed, some eligible tags could not
// be deleted, or the run was stopped (by the max-deletes cap). The CLI maps it to exit code 2;
// any other error means the run could not be carried out (exit 1).
var ErrShardsFailed = errors.New("run finished with failed shards")

// ErrStopped: an operator stopped the run (ledger.RequestStop); its unfinished shards were
// handed back with their checkpoints, and resuming the run continues them. The CLI maps it to
// exit code 2, as ErrShardsFailed.
var ErrStopped = errors.New("run stopped")

// ErrClockSkew: this host's clock and the registry's disagree by more than MaxClockSkew, so a
// cutoff fixed from this clock could make tags eligible that are not old enough. No run is
// recorded.
var ErrClockSkew = errors.New("clock disagrees with the registry's")

// Defaults applied by New to zero Config fields.
const (
	DefaultPollInterval = 5 * time.Second
	DefaultObserveEvery = time.Second
	DefaultLeaseTTL     = 2 * time.Minute
	DefaultRetryDelay   = time.Second
	DefaultShards       = 32
	ledgerTimeout       = 30 * time.Second
	summaryTimeout      = 2 * time.Minute // how long the final summary is retried
	planAttempts        = 5               // planning tries before a run fails for good (a NATS outage)
	listAttempts        = 6               // tries of one planning list call (each failure waits twice as long)
	maxListDelay        = 30 * time.Second
	// DefaultMaxClockSkew is how far this host's clock may be from the registry's Date.
	DefaultMaxClockSkew = 5 * time.Minute
)

// Config describes a run. Zero values mean the documented defaults.
type Config struct {
	// RunID names the run (a valid token). Default: the UTC start time and a short random
	// suffix, "20261122T031500Z-3fa2". A run ID already recorded re-attaches to that run.
	RunID string
	// Registry (host[:port]) and PlainHTTP are recorded in the run for the workers.
	Registry  string
	PlainHTTP bool
	// Repositories to prune. Required for a new run; for a re-attached run, if set, it must
	// match the recorded list.
	Repositories []string
	// Policy of the run. Its Cutoff, when zero, is set once from the run start and TTL.
	Policy proto.Policy
	// TTL is how old a tag must be to go: Cutoff = start - TTL.
	TTL time.Duration
	// Given says which of these settings the command was given explicitly: re-attaching to
	// a recorded run, each of them must equal the record's (see Given).
	Given Given
	// MaxClockSkew is how far this host's clock may be from the registry's (its Date
	// header) when a new run fixes its start and cutoff; beyond it the run is refused with
	// ErrClockSkew. Default DefaultMaxClockSkew; negative = do not check.
	MaxClockSkew time.Duration
	// Shards is how many shards planning cuts each repository's range into at least, where it
	// holds that many pages of tags. Default: the slots of the workers registered in the
	// ledger (ledger.Slots), DefaultShards when none is. Shards are sized by the work in them,
	// whatever the calendar says.
	Shards int
	// PageSize is the n of planning's probes and the least work a shard is cut for (default
	// 100, the workers' default page).
	PageSize int
	// Progress, if set, is called with a partial report every PollInterval while shards run.
	Progress func(proto.Report)
	// Observer, if set, is told the run's status as the shard records change (see Observer).
	Observer Observer
	// ObserveEvery is the least time between two Observer calls while shards run, however
	// often records change (default 1s).
	ObserveEvery time.Duration
	// PollInterval is how often progress is reported and shard records are re-listed, so a
	// missed watch event cannot hang the run (default 5s).
	PollInterval time.Duration
	// LeaseTTL is the life of a repository lease, renewed every LeaseTTL/3 (default 2m).
	LeaseTTL time.Duration
	// RetryDelay is the first wait before a planning list call that failed in a way that may
	// pass (a 5xx after the client's own retries, a timeout) is made again; it doubles per
	// attempt, for 6 attempts in all, unless the registry says when (Retry-After). The same
	// delays apply to planning as a whole after NATS failed it; planning then resumes where
	// it stopped (default 1s).
	RetryDelay time.Duration
	// Holder names this coordinator in leases (default host/pid).
	Holder string
	// Ledger configures the JetStream state; it must match the workers'.
	Ledger ledger.Config
	// PreservePayloads plans, for each repository, a family shard that preserves its release
	// payloads and carries out their removal requests (package preserve). It is recorded
	// with the run: a coordinator re-attaching to a run keeps the run's setting.
	PreservePayloads bool
	// RepositoryAliases name the repositories under other registry names in payloads' image
	// references ("host/path" or "host/path=repository", see preserve.ParseAlias), recorded
	// with the run for the workers.
	RepositoryAliases []string
	// Inventory makes the run an inventory (proto.ModeInventory): the whole tag namespace is
	// planned into list shards, which workers only count (the Report's Tags and Inventory),
	// and nothing is deleted or preserved. It is recorded with the run; re-attaching to a
	// run of the other mode is refused.
	Inventory bool
}

// Status is the state of a run's shards as the coordinator last saw them.
type Status struct {
	// Report is the run's report so far: its Shards count done, failed and all shards, its
	// Tags sum every shard's counters. FinishedAt is zero until the run has ended.
	Report proto.Report
	// Pending and Running count the shards that are not terminal.
	Pending, Running int
	// LastProgress is the newest claim or checkpoint of any shard; zero = none yet.
	LastProgress time.Time
	// Prune counts the prune shards alone, without the release-payload shards (a family
	// shard and a preserve shard per payload), which are few and quick; PruneStarted is
	// when the first prune shard was claimed, zero = none yet. A progress display paces
	// its ETA by them.
	Prune        proto.ShardTotals
	PruneStarted time.Time
	// Final is true for the one status sent after the run's summary was written.
	Final bool
}

// Observer is told a run's status, for metrics and progress displays: once the shards are
// published, whenever shard records change (at most once per ObserveEvery), every
// PollInterval, and a Final status once the run has ended (also when Run re-attaches to a
// finished run). RunStatus is called from Run's goroutine and should return quickly.
type Observer interface {
	RunStatus(Status)
}

// Coordinator runs one run. Create it with New and call Run once.
type Coordinator struct {
	cfg    Config
	js     jetstream.JetStream
	lister registry.Lister
	log    *slog.Logger
	now    func() time.Time
	// capped is set by Run when the run ended having used its delete cap (CapReached).
	capped bool
}

// New checks cfg and applies defaults. lister is used for the keyset probe and for planning
// (one n=1 list call per shard). log may be nil (discard).
func New(cfg Config, js jetstream.JetStream, lister registry.Lister, log *slog.Logger) (*Coordinator, error) {
	if js == nil || lister == nil {
		return nil, errors.New("coordinator: nil JetStream or lister")
	}
	if cfg.TTL < 0 || cfg.PollInterval < 0 || cfg.LeaseTTL < 0 || cfg.Shards < 0 || cfg.PageSize < 0 || cfg.ObserveEvery < 0 || cfg.RetryDelay < 0 {
		return nil, errors.New("coordinator: negative TTL, poll interval, observe interval, lease TTL, shards or page size")
	}
	if cfg.RunID == "" {
		var b [2]byte
		_, _ = rand.Read(b[:])
		cfg.RunID = time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	if !proto.ValidToken(cfg.RunID) {
		return nil, fmt.Errorf("coordinator: run id %q: want 1-64 of [A-Za-z0-9_-]", cfg.RunID)
	}
	for _, a := range cfg.RepositoryAliases {
		if _, err := preserve.ParseAlias(a); err != nil {
			return nil, fmt.Errorf("coordinator: %w", err)
		}
	}
	cfg.PageSize = cmp.Or(cfg.PageSize, keyspace.DefaultPageSize)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, DefaultPollInterval)
	cfg.ObserveEvery = cmp.Or(cfg.ObserveEvery, DefaultObserveEvery)
	cfg.LeaseTTL = cmp.Or(cfg.LeaseTTL, DefaultLeaseTTL)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, DefaultRetryDelay)
	cfg.MaxClockSkew = cmp.Or(cfg.MaxClockSkew, DefaultMaxClockSkew)
	if cfg.Holder == "" {
		host, _ := os.Hostname()
		cfg.Holder = cmp.Or(host, "coordinator") + "/" + strconv.Itoa(os.Getpid())
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Coordinator{cfg: cfg, js: js, lister: lister, log: log.With(slog.String("run", cfg.RunID)), now: time.Now}, nil
}

// RunID is the run's ID (generated by New when Config.RunID was empty).
func (c *Coordinator) RunID() string { return c.cfg.RunID }

// Run carries out the run and returns its report. The error is ErrShardsFailed when the run
// ended with failed shards or was stopped, ctx's error when interrupted (the run stays
// recorded as running and a coordinator with the same RunID re-attaches to it), and any
// other error when the run could not be set up.
func (c *Coordinator) Run(ctx context.Context) (proto.Report, error) {
	l, err := ledger.Open(ctx, c.js, c.cfg.Ledger)
	if err != nil {
		return proto.Report{}, fmt.Errorf("coordinator: %w", err)
	}
	run, isNew, err := c.attach(ctx, l)
	if err != nil {
		return proto.Report{}, err
	}
	rules, err := policy.New(run.Policy)
	if err != nil {
		return proto.Report{}, fmt.Errorf("run %s: %w", run.RunID, err)
	}
	log := c.log
	if !isNew {
		resume := run.State != proto.RunDone
		if run.State == proto.RunFailed {
			if resume, err = c.resumable(ctx, l, run); err != nil {
				return proto.Report{}, err
			}
			c.capped = !resume
		}
		if !resume { // re-attached to a finished run: report it again
			shards, err := l.Shards(ctx, run.RunID)
			if err != nil {
				return proto.Report{}, err
			}
			c.observe(run, shards, run.FinishedAt)
			return c.report(run, shards, run.FinishedAt), outcome(run)
		}
	}

	leaseCtx, stopLeases := context.WithCancel(ctx)
	leaseErr, leasesDone, err := c.takeLeases(leaseCtx, l, run)
	if err != nil {
		stopLeases()
		if isNew && errors.Is(err, ledger.ErrLeaseHeld) {
			// Recorded, so that status says what became of the run.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
			if rerr := l.CreateRefused(rctx, run, err); rerr != nil {
				log.Warn("recording the run as refused", slog.Any("err", rerr))
			}
			cancel()
		}
		return proto.Report{}, err
	}
	keepLeases := true // on interruption the leases stay until they expire: shards may still run
	defer func() {
		stopLeases()
		<-leasesDone
		if !keepLeases {
			c.releaseLeases(l, run)
		}
	}()
	if isNew {
		run, err = c.create(ctx, l, run)
	} else {
		run, err = c.reopen(ctx, l, run)
	}
	if err != nil {
		keepLeases = ctx.Err() != nil
		return proto.Report{}, err
	}

	through := planEnd(run, rules)
	log.Info("planning", slog.Any("repositories", run.Repositories), slog.Time("cutoff", rules.Cutoff()),
		slog.String("cutoff_key", rules.CutoffKey()), slog.Bool("dry_run", run.Policy.DryRun),
		slog.String("mode", string(cmp.Or(run.Mode, proto.ModePrune))), slog.String("through", through))
	if err := c.planRetrying(ctx, l, run, through); err != nil {
		if ctx.Err() != nil {
			return proto.Report{}, err
		}
		keepLeases = false
		c.finish(l, run, nil, fmt.Sprintf("planning: %v", err))
		return proto.Report{}, err
	}
	shards, err := c.track(ctx, l, run, through, leaseErr)
	if errors.Is(err, errStopRequested) {
		keepLeases = false
		final := c.stopped(l, run)
		rep := c.report(final, shards, final.FinishedAt)
		c.observe(final, shards, final.FinishedAt)
		log.Warn("run stopped", slog.String("reason", final.Reason), slog.Int("shards", rep.Shards.Total),
			slog.Int("done", rep.Shards.Done), slog.Int64("deleted", rep.Tags.Deleted))
		return rep, outcome(final)
	}
	if err != nil {
		return proto.Report{}, err
	}
	keepLeases = false
	final := c.finish(l, run, shards, "")
	if final.State == proto.RunFailed {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
		c.capped, _ = c.capReached(rctx, l, final) // not knowing leaves the usual advice
		cancel()
	}
	rep := c.report(final, shards, final.FinishedAt)
	c.observe(final, shards, final.FinishedAt)
	log.Info("run finished", slog.String("state", string(final.State)), slog.String("reason", final.Reason),
		slog.Int("shards", rep.Shards.Total), slog.Int("failed", rep.Shards.Failed),
		slog.Int64("scanned", rep.Tags.Scanned), slog.Int64("eligible", rep.Tags.Eligible),
		slog.Int64("deleted", rep.Tags.Deleted), slog.Int64("delete_failed", rep.Tags.DeleteFailed))
	return rep, outcome(final)
}

// errStopRequested: track saw an operator's stop request and the run's shards handed back.
var errStopRequested = errors.New("stop requested")

// stopped marks the run stopped, retrying while NATS is unavailable for a while, as finish does.
func (c *Coordinator) stopped(l *ledger.Ledger, run proto.RunRecord) proto.RunRecord {
	ctx, cancel := context.WithTimeout(context.Background(), summaryTimeout)
	defer cancel()
	for {
		rec, err := l.MarkStopped(ctx, run.RunID, "stop requested")
		if err == nil || errors.Is(err, ledger.ErrNotRunning) {
			if err != nil {
				rec, _, err = l.Run(ctx, run.RunID)
			}
			if err == nil {
				return rec
			}
		}
		c.log.Warn("marking the run stopped; trying again", slog.Any("err", err))
		select {
		case <-ctx.Done():
			run.State, run.Reason, run.FinishedAt = proto.RunStopped, "stop requested (not recorded: "+err.Error()+")", c.now().UTC()
			return run
		case <-time.After(time.Second):
		}
	}
}

func outcome(run proto.RunRecord) error {
	if run.State == proto.RunStopped {
		return fmt.Errorf("run %s: %s: %w", run.RunID, run.Reason, ErrStopped)
	}
	if run.State == proto.RunFailed {
		if run.Reason != "" {
			return fmt.Errorf("run %s: %s: %w", run.RunID, run.Reason, ErrShardsFailed)
		}
		return fmt.Errorf("run %s: %w", run.RunID, ErrShardsFailed)
	}
	return nil
}

// resumable reports whether a failed run is resumed when a coordinator re-attaches to it: it
// is, unless it was stopped at its delete cap with the budget spent (resuming would stop at
// once; a higher cap needs a new run).
func (c *Coordinator) resumable(ctx context.Context, l *ledger.Ledger, run proto.RunRecord) (bool, error) {
	capped, err := c.capReached(ctx, l, run)
	if err != nil {
		return false, err
	}
	if capped {
		c.log.Warn("not resuming a run that used its delete cap; start a new run to delete more",
			slog.Int64("max_deletes", run.Policy.MaxDeletes))
	}
	return !capped, nil
}

// capReached reports whether run's workers have reserved its whole delete budget.
func (c *Coordinator) capReached(ctx context.Context, l *ledger.Ledger, run proto.RunRecord) (bool, error) {
	if run.Policy.DryRun || run.Policy.MaxDeletes <= 0 {
		return false, nil
	}
	reserved, err := l.Reserved(ctx, run.RunID)
	if err != nil {
		return false, err
	}
	return reserved >= run.Policy.MaxDeletes, nil
}

// CapReached reports, after Run, whether the run ended having used its whole delete cap
// (Policy.MaxDeletes). Such a run is not resumed: a coordinator re-attaching to it reports
// it again, as it would stop at once; deleting more takes a new run.
func (c *Coordinator) CapReached() bool { return c.capped }

// reopen takes up a recorded run (the caller holds its leases) with ledger.Resume: it is
// running again, its reason and stop request cleared. A run that had ended (failed, stopped,
// refused or abandoned) has every failed shard reopened from its cursor (ledger.ReopenShard),
// so workers continue where each stopped; done shards stay done. Planning then fills in
// whatever an interrupted plan left out and re-publishes the pending shards.
func (c *Coordinator) reopen(ctx context.Context, l *ledger.Ledger, run proto.RunRecord) (proto.RunRecord, error) {
	prev := run.Reason
	run, was, err := l.Resume(ctx, run.RunID)
	if err != nil {
		return run, err
	}
	if was == proto.RunRunning {
		return run, nil
	}
	shards, err := l.Shards(ctx, run.RunID)
	if err != nil {
		return run, err
	}
	n := 0
	for _, s := range shards {
		if s.State != proto.StateFailed {
			continue
		}
		ok, err := l.ReopenShard(ctx, s.RunID, s.ShardID)
		if err != nil {
			return run, fmt.Errorf("resuming run %s: %w", run.RunID, err)
		}
		if ok {
			n++
			c.log.Info("resuming failed shard from its cursor", slog.String("shard", s.ShardID),
				slog.String("cursor", s.Resume()), slog.String("last_error", s.LastError))
		}
	}
	c.log.Info("resuming run", slog.String("was", string(was)), slog.String("reason", prev), slog.Int("shards_reopened", n))
	return run, nil
}

// create records a new run (the caller holds its leases). Should another coordinator with the
// same run ID have recorded it just now, this one takes it up as well (reopen).
func (c *Coordinator) create(ctx context.Context, l *ledger.Ledger, run proto.RunRecord) (proto.RunRecord, error) {
	// The settings go first: a worker may take the run's first shard as soon as the run
	// record exists.
	if err := c.saveSettings(ctx, run.RunID); err != nil {
		return run, err
	}
	if _, err := l.CreateRun(ctx, run); errors.Is(err, ledger.ErrExists) {
		return c.reopen(ctx, l, run)
	} else if err != nil {
		return run, err
	}
	c.log.Info("run created", slog.String("registry", run.Registry), slog.Time("cutoff", run.Policy.Cutoff))
	return run, nil
}

// attach returns the recorded run, or a new one (isNew, not recorded yet: create does that
// once its leases are taken) with the cutoff fixed now.
func (c *Coordinator) attach(ctx context.Context, l *ledger.Ledger) (run proto.RunRecord, isNew bool, err error) {
	run, _, err = l.Run(ctx, c.cfg.RunID)
	if err == nil {
		if err := c.checkGiven(ctx, run); err != nil {
			return proto.RunRecord{}, false, err
		}
		if (run.Mode == proto.ModeInventory) != c.cfg.Inventory {
			return proto.RunRecord{}, false, fmt.Errorf("run %s exists as a %s run, not a %s run", run.RunID, modeName(run.Mode == proto.ModeInventory),
				modeName(c.cfg.Inventory))
		}
		c.log.Info("re-attaching to run", slog.String("state", string(run.State)))
		return run, false, nil
	}
	if !errors.Is(err, ledger.ErrNotFound) {
		return proto.RunRecord{}, false, err
	}
	if len(c.cfg.Repositories) == 0 {
		return proto.RunRecord{}, false, errors.New("coordinator: no repositories")
	}
	if err := c.checkClock(ctx, c.cfg.Repositories[0]); err != nil {
		return proto.RunRecord{}, false, err
	}
	start := c.now().UTC()
	p := c.cfg.Policy
	if p.Cutoff.IsZero() {
		p.Cutoff = policy.Cutoff(start, c.cfg.TTL)
	}
	mode := proto.ModePrune
	if c.cfg.Inventory {
		mode, p.DryRun, p.MaxDeletes = proto.ModeInventory, true, 0
	}
	if _, err := policy.New(p); err != nil {
		return proto.RunRecord{}, false, fmt.Errorf("run policy: %w", err)
	}
	return proto.RunRecord{
		RunID:        c.cfg.RunID,
		Registry:     c.cfg.Registry,
		PlainHTTP:    c.cfg.PlainHTTP,
		Repositories: slices.Clone(c.cfg.Repositories),
		Policy:       p,
		Mode:         mode,
		State:        proto.RunRunning,
		StartedAt:    start,
	}, true, nil
}

// checkClock compares this host's clock with the registry's Date header on one list call
// for repo, before a new run fixes its cutoff from this clock: a clock years ahead would make
// every prune tag eligible. Date has whole seconds and the answer takes time, so only a skew
// proven beyond that uncertainty counts. A registry that sends no Date cannot be checked: the
// run goes on, with a warning.
//
// A list call that fails in a way that may pass is tried again like planning is.
func (c *Coordinator) checkClock(ctx context.Context, repo string) error {
	if c.cfg.MaxClockSkew < 0 {
		return nil
	}
	var (
		page           registry.Page
		sent, received time.Time
		err            error
	)
	delay := c.cfg.RetryDelay
	for attempt := 1; ; attempt++ {
		sent = c.now()
		page, err = c.lister.List(ctx, repo, "", 1)
		received = c.now()
		if err == nil || ctx.Err() != nil || attempt == planAttempts || !mayPass(err) {
			break
		}
		c.log.Warn("checking the clock against the registry; trying again", slog.Any("err", err),
			slog.Int("attempt", attempt), slog.Duration("in", delay))
		if err := sleep(ctx, delay); err != nil {
			return err
		}
		delay *= 2
	}
	if err != nil {
		return fmt.Errorf("checking the clock against the registry: %w", err)
	}
	if page.Date.IsZero() {
		c.log.Warn("the registry sent no Date header; this host's clock alone fixes the cutoff",
			slog.String("repo", repo))
		return nil
	}
	// The registry's clock read something in [Date, Date+1s) while we waited in [sent, received].
	ahead := page.Date.Sub(received)               // registry ahead of us, at least
	behind := sent.Sub(page.Date.Add(time.Second)) // registry behind us, at least
	if skew := max(ahead, behind); skew > c.cfg.MaxClockSkew {
		return fmt.Errorf("%w: this host's clock reads %s, the registry's Date header %s: %s apart, more than the %s allowed",
			ErrClockSkew, received.UTC().Format(time.RFC3339), page.Date.UTC().Format(time.RFC3339),
			skew.Round(time.Second), c.cfg.MaxClockSkew)
	}
	return nil
}

// takeLeases takes every repository's lease (all or none) and keeps them renewed until ctx
// ends; done is closed when the renewing goroutine has ended. A lost lease is sent on lost.
func (c *Coordinator) takeLeases(ctx context.Context, l *ledger.Ledger, run proto.RunRecord) (lost <-chan error, done <-chan struct{}, err error) {
	for i, repo := range run.Repositories {
		if err := l.AcquireLease(ctx, repo, run.RunID, c.cfg.Holder, c.cfg.LeaseTTL); err != nil {
			for _, r := range run.Repositories[:i] {
				_ = l.ReleaseLease(context.WithoutCancel(ctx), r, run.RunID)
			}
			return nil, nil, fmt.Errorf("run %s: %w", run.RunID, err)
		}
	}
	lostc, donec := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(donec)
		t := time.NewTicker(c.cfg.LeaseTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for _, repo := range run.Repositories {
				err := l.RenewLease(ctx, repo, run.RunID, c.cfg.LeaseTTL)
				switch {
				case err == nil, ctx.Err() != nil:
				case errors.Is(err, ledger.ErrLeaseHeld), errors.Is(err, ledger.ErrNotFound):
					select {
					case lostc <- fmt.Errorf("lost the lease on %s: %w", repo, err):
					default:
					}
					return
				default:
					c.log.Warn("renewing lease", slog.String("repo", repo), slog.Any("err", err))
				}
			}
		}
	}()
	return lostc, donec, nil
}

func (c *Coordinator) releaseLeases(l *ledger.Ledger, run proto.RunRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), ledgerTimeout)
	defer cancel()
	for _, repo := range run.Repositories {
		if err := l.ReleaseLease(ctx, repo, run.RunID); err != nil {
			c.log.Warn("releasing lease", slog.String("repo", repo), slog.Any("err", err))
		}
	}
}

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
	settings, err := c.settings(ctx, run.RunID)
	if err != nil {
		return err
	}
	shards := c.planShards(ctx, l)
	total, created := len(existing), 0
	for i, repo := range run.Repositories {
		log := c.log.With(slog.String("repo", repo))
		if settings.Enabled {
			isNew, err := l.CreateShard(ctx, familyShard(run.RunID, i, repo))
			if err != nil {
				return err
			}
			if isNew {
				total++
				created++
			}
		}
		covered := ""
		for _, s := range byRepo[repo] {
			if isPrune(s) {
				covered = max(covered, s.Range.Through)
			}
			if s.State == proto.StatePending {
				if _, err := l.CreateShard(ctx, s); err != nil { // re-publish if its message is missing
					return err
				}
			}
		}
		if covered >= through {
			log.Info("repository already planned", slog.Int("shards", len(byRepo[repo])))
			continue
		}
		lister := &retryingLister{Lister: c.lister, delay: c.cfg.RetryDelay, log: log}
		if err := registry.ProbeKeyset(ctx, lister, repo); err != nil {
			return &planListError{err}
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
		for _, part := range planParts(run, covered, through) {
			rs, err := keyspace.Plan(ctx, page, part, keyspace.PlanConfig{Shards: shards, PageSize: c.cfg.PageSize})
			if err != nil {
				return &planListError{fmt.Errorf("planning %s: %w", repo, err)}
			}
			ranges = append(ranges, rs...)
		}
		slices.Sort(seen)
		seen = slices.Compact(seen)
		n := 0
		for _, r := range ranges {
			rec := proto.ShardRecord{RunID: run.RunID, ShardID: shardID(i, r), Kind: rangeKind(run), Repository: repo, Range: r,
				Seen: seenIn(seen, r)}
			isNew, err := l.CreateShard(ctx, rec)
			if err != nil {
				return err
			}
			if isNew {
				n++
			}
		}
		total += n
		created += n
		log.Info("repository planned", slog.Int("shards", n), slog.String("resumed_after", covered))
	}
	_, err = l.ModifyRun(ctx, run.RunID, func(r *proto.RunRecord) error { r.Shards = total; return nil })
	if err != nil {
		return err
	}
	c.log.Info("shards published", slog.Int("new", created), slog.Int("total", total))
	return nil
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
		if err := sleep(ctx, delay); err != nil {
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
		if err := sleep(ctx, wait); err != nil {
			return p, err
		}
		delay = min(2*delay, maxListDelay)
	}
}

// sleep waits for d, or returns ctx's error when ctx ends first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tracked is a shard record as last seen, and when it last changed.
type tracked struct {
	rec     proto.ShardRecord
	changed time.Time
	pokedAt time.Time // last ledger.Rescue
}

// track follows the run's shard records until every one is terminal and the shards cover
// each planned repository without gaps, and returns them.
func (c *Coordinator) track(ctx context.Context, l *ledger.Ledger, run proto.RunRecord, through string, leaseLost <-chan error) ([]proto.ShardRecord, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The watch is started in the background: creating it can hang while a clustered stream
	// changes leader, and re-listing every PollInterval sees every change meanwhile.
	var updates <-chan proto.ShardRecord
	watching := make(chan (<-chan proto.ShardRecord), 1)
	go func() {
		u, err := l.Watch(wctx, run.RunID)
		if err != nil {
			if wctx.Err() == nil {
				c.log.Warn("watching shard records; relying on re-listing", slog.Any("err", err))
			}
			return
		}
		watching <- u
	}()
	var mu sync.Mutex // guards seen and live against the watch goroutine
	seen := make(map[string]*tracked)
	// live counts the shards in seen that are not terminal. Every checkpoint is an update, so
	// the loop below must not walk every shard per update (that is shards x pages).
	live := 0
	observe := func(rec proto.ShardRecord) {
		mu.Lock()
		defer mu.Unlock()
		t, ok := seen[rec.ShardID]
		if !ok {
			seen[rec.ShardID] = &tracked{rec: rec, changed: c.now()}
			if !rec.State.Terminal() {
				live++
			}
			return
		}
		if !proto.SameShard(rec, t.rec) {
			switch was, is := t.rec.State.Terminal(), rec.State.Terminal(); {
			case was && !is:
				live++
			case !was && is:
				live--
			}
			t.rec, t.changed = rec, c.now()
		}
	}
	snapshot := func() []proto.ShardRecord {
		mu.Lock()
		defer mu.Unlock()
		all := make([]proto.ShardRecord, 0, len(seen))
		for _, t := range seen {
			all = append(all, t.rec)
		}
		return all
	}
	tick := time.NewTicker(c.cfg.PollInterval)
	defer tick.Stop()
	relist := func() error {
		shards, err := l.Shards(ctx, run.RunID)
		if err != nil {
			return err
		}
		for _, s := range shards {
			observe(s)
		}
		return nil
	}
	// The first listing must succeed: with nothing seen, the run would look finished.
	for err := relist(); err != nil; err = relist() {
		c.log.Warn("listing shard records; trying again", slog.Any("err", err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(c.cfg.PollInterval):
		}
	}
	lc := l.Config()
	// An operator's stop request (ledger.RequestStop) is seen on the run's record: then the
	// run ends once no shard is running any more (workers hand theirs back), or after an ack
	// wait for holders that never answer (dead, or cut off; a resume takes those shards over).
	var runUpdates <-chan proto.RunRecord
	runWatch := make(chan (<-chan proto.RunRecord), 1)
	go func() {
		if u, err := l.WatchRun(wctx, run.RunID); err == nil {
			runWatch <- u
		}
	}()
	var stopSeen time.Time
	sawRun := func(r proto.RunRecord) {
		if r.Stop != nil && stopSeen.IsZero() {
			stopSeen = c.now()
			c.log.Warn("stop requested; waiting for the workers to hand back their shards",
				slog.String("reason", r.Stop.Reason), slog.String("by", r.Stop.By))
		}
	}
	var observed time.Time // last Observer call
	for {
		if !stopSeen.IsZero() {
			mu.Lock()
			running, live := 0, live
			for _, t := range seen {
				if t.rec.State == proto.StateRunning {
					running++
				}
			}
			mu.Unlock()
			if live > 0 && (running == 0 || c.now().Sub(stopSeen) >= lc.AckWait) {
				if running > 0 {
					c.log.Warn("stopping with shards still held by workers that did not hand them back", slog.Int("running", running))
				}
				all := snapshot()
				sort.Slice(all, func(i, j int) bool { return all[i].ShardID < all[j].ShardID })
				return all, errStopRequested
			}
		}
		mu.Lock()
		finished := live == 0
		mu.Unlock()
		if c.cfg.Observer != nil && !finished && c.now().Sub(observed) >= c.cfg.ObserveEvery {
			c.observe(run, snapshot(), time.Time{})
			observed = c.now()
		}
		if finished {
			all := snapshot()
			gaps := coverageGaps(all, run.Repositories, through, rangeKind(run))
			if len(gaps) == 0 {
				sort.Slice(all, func(i, j int) bool { return all[i].ShardID < all[j].ShardID })
				return all, nil
			}
			// A failure that may pass (NATS losing a node) is tried again at the next tick.
			published := true
			for _, g := range gaps {
				c.log.Warn("range covered by no shard; publishing a shard for it", slog.String("repo", g.Repository),
					slog.String("after", g.Range.After), slog.String("through", g.Range.Through))
				if _, err := l.CreateShard(ctx, g); err != nil {
					if ctx.Err() != nil || !ledger.Transient(err) {
						return nil, err
					}
					c.log.Warn("publishing a shard for a gap; trying again", slog.Any("err", err))
					published = false
					break
				}
			}
			if published {
				err := relist()
				if err == nil {
					continue
				}
				if ctx.Err() != nil || !ledger.Transient(err) {
					return nil, err
				}
				c.log.Warn("re-listing shards; trying again", slog.Any("err", err))
			}
		}
		select {
		case updates = <-watching:
		case runUpdates = <-runWatch:
		case r, ok := <-runUpdates:
			if !ok {
				runUpdates = nil // the tick re-reads the run
				continue
			}
			sawRun(r)
		case rec, ok := <-updates:
			if !ok {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				c.log.Warn("shard watch ended; relying on re-listing")
				updates = nil
				continue
			}
			observe(rec)
		case err := <-leaseLost:
			return nil, fmt.Errorf("run %s: %w", run.RunID, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			if err := relist(); err != nil {
				c.log.Warn("re-listing shards", slog.Any("err", err))
			}
			if r, _, err := l.Run(ctx, run.RunID); err == nil {
				sawRun(r)
			}
			c.poke(ctx, l, seen, &mu, lc)
			if c.cfg.Progress != nil {
				c.cfg.Progress(c.report(run, snapshot(), time.Time{}))
			}
			observed = time.Time{} // at least every PollInterval, even with no record changing
		}
	}
}

// poke has the ledger rescue every shard whose record sat unchanged for an ack wait
// (ledger.Rescue): a pending shard whose message was lost, or ran out of deliveries without a
// claim, is queued afresh, and a shard whose holder died on its message's last delivery is
// failed. Whether a delivery will still reach a shard is read from the shard queue, never
// guessed from the record's attempt count, so a shard whose message waits in a long queue is
// left to wait.
func (c *Coordinator) poke(ctx context.Context, l *ledger.Ledger, seen map[string]*tracked, mu *sync.Mutex, lc ledger.Config) {
	now := c.now()
	mu.Lock()
	var quiet []proto.ShardRecord
	for _, t := range seen {
		if t.rec.State.Terminal() || now.Sub(t.changed) < lc.AckWait || now.Sub(t.pokedAt) < lc.AckWait {
			continue
		}
		t.pokedAt = now
		quiet = append(quiet, t.rec)
	}
	mu.Unlock()
	for _, s := range quiet {
		got, err := l.Rescue(ctx, s.RunID, s.ShardID)
		switch {
		case err != nil:
			c.log.Warn("checking a quiet shard", slog.String("shard", s.ShardID), slog.Any("err", err))
		case got == ledger.RescueRequeued:
			c.log.Warn("no delivery would reach the shard; queued it afresh", slog.String("shard", s.ShardID),
				slog.String("state", string(s.State)), slog.Int("attempt", s.Attempt))
		case got == ledger.RescueFailed:
			c.log.Error("shard abandoned on its last delivery; failed it", slog.String("shard", s.ShardID))
		}
	}
}

// coverageGaps returns shards for every stretch of ("", through] not covered by a shard of a
// repository that has shards (a split whose new shard was never recorded). Overlaps are only
// logged by the caller's counts: they cost double work, never a wrong deletion.
func coverageGaps(all []proto.ShardRecord, repos []string, through string, kind proto.ShardKind) []proto.ShardRecord {
	var gaps []proto.ShardRecord
	for i, repo := range repos {
		var rs []proto.Range
		var runID string
		for _, s := range all {
			if s.Repository == repo && isPrune(s) {
				rs, runID = append(rs, s.Range), s.RunID
			}
		}
		if len(rs) == 0 {
			continue
		}
		sort.Slice(rs, func(a, b int) bool { return rs[a].After < rs[b].After })
		cur := ""
		add := func(r proto.Range) {
			sum := sha256.Sum256([]byte(r.After + "\x00" + r.Through))
			gaps = append(gaps, proto.ShardRecord{RunID: runID, ShardID: fmt.Sprintf("%d-gap-%s", i, hex.EncodeToString(sum[:6])),
				Kind: kind, Repository: repo, Range: r})
		}
		for _, r := range rs {
			if r.After > cur {
				add(proto.Range{After: cur, Through: r.After})
			}
			cur = max(cur, r.Through)
		}
		if cur < through {
			add(proto.Range{After: cur, Through: through})
		}
	}
	return gaps
}

// finish writes the run's final state: done when every shard is done and nothing stopped
// the run, else failed with a reason.
func (c *Coordinator) finish(l *ledger.Ledger, run proto.RunRecord, shards []proto.ShardRecord, reason string) proto.RunRecord {
	runID := run.RunID
	preserveReason := ""
	// The summary decides the exit code: its reads and its write are tried again while NATS is
	// unavailable for a while (a cluster electing new leaders after losing a node).
	ctx, cancel := context.WithTimeout(context.Background(), summaryTimeout)
	defer cancel()
	pc, failures, err := c.preservationRetrying(ctx, runID)
	if err != nil {
		// Not knowing how preservation went is not success: a payload may be left
		// unpreserved or a removal half done. The next run reads its own results.
		c.log.Warn("reading preservation results", slog.Any("err", err))
		preserveReason = "preservation results unknown: " + err.Error()
	} else {
		preserveReason = preservationReason(pc, failures)
	}
	var totals proto.Counters
	failed := 0
	for _, s := range shards {
		totals.Add(s.Counters)
		if s.State == proto.StateFailed {
			failed++
		}
	}
	change := func(r *proto.RunRecord) error {
		r.Totals, r.FinishedAt = totals, c.now().UTC()
		if len(shards) > r.Shards {
			r.Shards = len(shards)
		}
		r.Reason = cmp.Or(r.Reason, reason)
		if failed > 0 && r.Reason == "" {
			r.Reason = fmt.Sprintf("%d of %d shards failed: %s", failed, len(shards), failedShards(shards))
		}
		// A tag whose delete failed after the client's retries is still there and still
		// eligible: the run did not do all it was asked to, so it must not exit 0. The next
		// run lists the tag again and retries it.
		if totals.DeleteFailed > 0 && r.Reason == "" {
			r.Reason = fmt.Sprintf("%d eligible tags could not be deleted", totals.DeleteFailed)
		}
		// Likewise a payload left unpreserved or a removal left half done: reported, and
		// the next run tries again.
		if r.Reason == "" {
			r.Reason = preserveReason
		}
		r.State = proto.RunDone
		if r.Reason != "" {
			r.State = proto.RunFailed
		}
		return nil
	}
	rec, err := l.ModifyRun(ctx, runID, change)
	for err != nil && ctx.Err() == nil {
		c.log.Warn("writing run summary; trying again", slog.Any("err", err))
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			rec, err = l.ModifyRun(ctx, runID, change)
		}
	}
	if err != nil {
		c.log.Error("writing run summary", slog.Any("err", err))
		rec = run // as last read: NATS is not answering
		rec.Totals, rec.FinishedAt = totals, c.now().UTC()
		rec.State = proto.RunFailed
		rec.Reason = cmp.Or(rec.Reason, reason, "run summary not written: "+err.Error())
	}
	return rec
}

// preservationRetrying reads the run's preservation results (see preservation), trying again
// every second while the failure may pass (ledger.Transient, but not a result that does not
// decode) and ctx lasts.
func (c *Coordinator) preservationRetrying(ctx context.Context, runID string) (proto.PreserveCounters, []string, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, ledgerTimeout)
		pc, failures, err := c.preservation(actx, runID)
		cancel()
		if err == nil || ctx.Err() != nil || !ledger.Transient(err) || errors.As(err, new(*json.SyntaxError)) ||
			errors.As(err, new(*json.UnmarshalTypeError)) { // a result no retry can decode
			return pc, failures, err
		}
		c.log.Warn("reading preservation results; trying again", slog.Any("err", err))
		if sleep(ctx, time.Second) != nil {
			return pc, failures, err
		}
	}
}

// observe sends the run's status to the Observer, if any. finished zero means "still
// running"; otherwise the status is the Final one.
func (c *Coordinator) observe(run proto.RunRecord, shards []proto.ShardRecord, finished time.Time) {
	if c.cfg.Observer == nil {
		return
	}
	s := Status{Report: c.report(run, shards, finished), Final: !finished.IsZero()}
	for _, sh := range shards {
		switch sh.State {
		case proto.StatePending:
			s.Pending++
		case proto.StateRunning:
			s.Running++
		}
		if sh.Heartbeat.After(s.LastProgress) {
			s.LastProgress = sh.Heartbeat
		}
		if sh.Kind != proto.KindPrune {
			continue
		}
		s.Prune.Total++
		switch sh.State {
		case proto.StateDone:
			s.Prune.Done++
		case proto.StateFailed:
			s.Prune.Failed++
		}
		if !sh.StartedAt.IsZero() && (s.PruneStarted.IsZero() || sh.StartedAt.Before(s.PruneStarted)) {
			s.PruneStarted = sh.StartedAt
		}
	}
	c.cfg.Observer.RunStatus(s)
}

// failedShards names the first few failed shards with their last errors, for a run's reason.
func failedShards(shards []proto.ShardRecord) string {
	const most = 3
	var parts []string
	n := 0
	for _, s := range shards {
		if s.State != proto.StateFailed {
			continue
		}
		if n++; n <= most {
			why := s.LastError
			if len(why) > 160 {
				why = why[:160] + "…"
			}
			parts = append(parts, fmt.Sprintf("%s (%s)", s.ShardID, cmp.Or(why, "no error recorded")))
		}
	}
	if n > most {
		parts = append(parts, fmt.Sprintf("and %d more", n-most))
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
	if run.Mode == proto.ModeInventory {
		rep.Inventory = &proto.Inventory{}
	}
	for _, s := range shards {
		rep.Shards.Total++
		rep.Tags.Add(s.Counters)
		if rep.Inventory != nil && s.Inventory != nil {
			rep.Inventory.Add(*s.Inventory)
		}
		switch s.State {
		case proto.StateDone:
			rep.Shards.Done++
		case proto.StateFailed:
			rep.Shards.Failed++
			rep.FailedShards = append(rep.FailedShards, s.ShardID)
		}
	}
	slices.Sort(rep.FailedShards)
	return rep
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
