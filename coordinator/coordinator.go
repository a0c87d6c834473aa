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
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// ErrRunFailed: the run ended, but did not do all it was asked to: a shard failed, an
// eligible tag could not be deleted, a release payload could not be preserved or its
// removal was left half done, preservation results could not be read, or the delete cap
// (max-deletes) stopped the run. The run's reason says which. The CLI maps it to exit code
// 2; any other error means the run could not be carried out (exit 1).
var ErrRunFailed = errors.New("run failed")

// ErrStopped: an operator stopped the run (ledger.RequestStop); its unfinished shards were
// handed back with their checkpoints, and resuming the run continues them. The CLI maps it to
// exit code 2, as ErrRunFailed.
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
	// Observer, if set, is told the run's status as the shard records change (see Observer).
	Observer Observer
	// ObserveEvery is the least time between two Observer calls while shards run, however
	// often records change (default 1s).
	ObserveEvery time.Duration
	// PollInterval is how often the Observer is told at least and shard records are
	// re-listed, so a missed watch event cannot hang the run (default 5s).
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

// Run carries out the run and returns its report, its preservation included. The error is
// ErrRunFailed when the run ended failed (see ErrRunFailed), ErrStopped when an operator
// stopped it, ctx's error when interrupted (the run stays recorded as running and a
// coordinator with the same RunID re-attaches to it), and any other error when the run could
// not be set up.
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
	if !isNew {
		if resume, err := c.resuming(ctx, l, run); err != nil || !resume {
			if err != nil {
				return proto.Report{}, err
			}
			return c.reportAgain(ctx, l, run)
		}
	}
	leases, err := c.lease(ctx, l, run, isNew)
	if err != nil {
		return proto.Report{}, err
	}
	defer leases.end()
	if isNew {
		run, err = c.create(ctx, l, run)
	} else {
		run, err = c.reopen(ctx, l, run)
	}
	if err != nil {
		leases.keep = ctx.Err() != nil
		return proto.Report{}, err
	}
	through := planEnd(run, rules)
	c.log.Info("planning", slog.Any("repositories", run.Repositories), slog.Time("cutoff", rules.Cutoff()),
		slog.String("cutoff_key", rules.CutoffKey()), slog.Bool("dry_run", run.Policy.DryRun),
		slog.String("mode", string(cmp.Or(run.Mode, proto.ModePrune))), slog.String("through", through))
	if err := c.planRetrying(ctx, l, run, through); err != nil {
		if ctx.Err() == nil {
			leases.keep = false
			c.finish(l, run, nil, fmt.Sprintf("planning: %v", err))
		}
		return proto.Report{}, err
	}
	shards, err := newTracker(c, l, run, through).follow(ctx, leases.lost)
	if err != nil && !errors.Is(err, errStopRequested) {
		return proto.Report{}, err
	}
	leases.keep = false
	if err != nil {
		return c.endStopped(l, run, shards)
	}
	return c.end(ctx, l, run, shards)
}

// resuming reports whether a recorded run is taken up again: a done run is not, nor a failed
// one that used its delete cap (resuming would stop at once; a higher cap needs a new run).
func (c *Coordinator) resuming(ctx context.Context, l *ledger.Ledger, run proto.RunRecord) (bool, error) {
	switch run.State {
	case proto.RunDone:
		return false, nil
	case proto.RunFailed:
		capped, err := c.capReached(ctx, l, run)
		if err != nil {
			return false, err
		}
		if capped {
			c.log.Warn("not resuming a run that used its delete cap; start a new run to delete more",
				slog.Int64("max_deletes", run.Policy.MaxDeletes))
		}
		c.capped = capped
		return !capped, nil
	}
	return true, nil
}

// reportAgain reports a finished run that is not taken up again, as it ended.
func (c *Coordinator) reportAgain(ctx context.Context, l *ledger.Ledger, run proto.RunRecord) (proto.Report, error) {
	shards, err := l.Shards(ctx, run.RunID)
	if err != nil {
		return proto.Report{}, err
	}
	c.tellObserver(run, shards, run.FinishedAt)
	rep := c.report(run, shards, run.FinishedAt)
	pctx, cancel := context.WithTimeout(ctx, summaryTimeout)
	defer cancel()
	c.preservationRetrying(pctx, l, run.RunID).addTo(&rep)
	return rep, outcome(run)
}

// end writes the final state of a run whose shards all finished and returns its report.
func (c *Coordinator) end(ctx context.Context, l *ledger.Ledger, run proto.RunRecord, shards []proto.ShardRecord) (proto.Report, error) {
	final, pres := c.finish(l, run, shards, "")
	if final.State == proto.RunFailed {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
		c.capped, _ = c.capReached(rctx, l, final) // not knowing leaves the usual advice
		cancel()
	}
	rep := c.report(final, shards, final.FinishedAt)
	pres.addTo(&rep)
	c.tellObserver(final, shards, final.FinishedAt)
	c.log.Info("run finished", slog.String("state", string(final.State)), slog.String("reason", final.Reason),
		slog.Int("shards", rep.Shards.Total), slog.Int("failed", rep.Shards.Failed),
		slog.Int64("scanned", rep.Tags.Scanned), slog.Int64("eligible", rep.Tags.Eligible),
		slog.Int64("deleted", rep.Tags.Deleted), slog.Int64("delete_failed", rep.Tags.DeleteFailed))
	return rep, outcome(final)
}

// endStopped marks a run an operator stopped as stopped and returns its report.
func (c *Coordinator) endStopped(l *ledger.Ledger, run proto.RunRecord, shards []proto.ShardRecord) (proto.Report, error) {
	final := c.stopped(l, run)
	rep := c.report(final, shards, final.FinishedAt)
	c.tellObserver(final, shards, final.FinishedAt)
	c.log.Warn("run stopped", slog.String("reason", final.Reason), slog.Int("shards", rep.Shards.Total),
		slog.Int("done", rep.Shards.Done), slog.Int64("deleted", rep.Tags.Deleted))
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
			return fmt.Errorf("run %s: %s: %w", run.RunID, run.Reason, ErrRunFailed)
		}
		return fmt.Errorf("run %s: %w", run.RunID, ErrRunFailed)
	}
	return nil
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
