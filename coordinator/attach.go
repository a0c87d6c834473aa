package coordinator

// This file: recording a new run or taking up a recorded one, the clock check, and the
// repositories' leases.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tagsweep/tagsweep/internal/pause"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

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
		if err := c.checkGiven(run); err != nil {
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
		Preservation: proto.PreserveSettings{Enabled: c.cfg.PreservePayloads && !c.cfg.Inventory,
			Aliases: slices.Clone(c.cfg.RepositoryAliases)},
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
		if err := pause.For(ctx, delay); err != nil {
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

// heldLeases are a run's repository leases while its coordinator runs it, renewed in the
// background.
type heldLeases struct {
	c    *Coordinator
	l    *ledger.Ledger
	run  proto.RunRecord
	lost <-chan error // a lease lost to another run
	stop context.CancelFunc
	done <-chan struct{}
	// keep leaves the leases to expire by themselves, as an interrupted run's shards may
	// still be running; Run clears it once the run has ended.
	keep bool
}

// lease takes every repository's lease of run (all or none) and keeps them renewed. A new
// run refused because another run holds a lease is recorded as refused, so that status says
// what became of it.
func (c *Coordinator) lease(ctx context.Context, l *ledger.Ledger, run proto.RunRecord, isNew bool) (*heldLeases, error) {
	leaseCtx, stop := context.WithCancel(ctx)
	lost, done, err := c.takeLeases(leaseCtx, l, run)
	if err != nil {
		stop()
		if isNew && errors.Is(err, ledger.ErrLeaseHeld) {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
			if rerr := l.CreateRefused(rctx, run, err); rerr != nil {
				c.log.Warn("recording the run as refused", slog.Any("err", rerr))
			}
			cancel()
		}
		return nil, err
	}
	return &heldLeases{c: c, l: l, run: run, lost: lost, stop: stop, done: done, keep: true}, nil
}

// end stops renewing the leases, and releases them unless keep is set.
func (h *heldLeases) end() {
	h.stop()
	<-h.done
	if !h.keep {
		h.c.releaseLeases(h.l, h.run)
	}
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
