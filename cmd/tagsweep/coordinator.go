package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/registry"
)

// runCoordinator plans, publishes and tracks one run against the NATS at cfg.NATSURL,
// prints the summary and writes the report. Exit status: nil when every shard is done,
// exitFailed when shards failed or the run was stopped or interrupted, and any other
// error (exit 1) when the run could not be carried out. Progress goes to live (a
// terminal), or to log lines when live is nil.
func runCoordinator(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, live *liveLine) error {
	js, closeAll, err := connectJetStream(cfg, "tagsweep-coordinator", log)
	if err != nil {
		return err
	}
	defer closeAll()
	if cfg, err = resumeRecorded(ctx, w, js, cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metrics := newMetrics(true, 0)
	// The server outlives the signal until the coordinator has returned.
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	waitHTTP := serveTelemetry(httpCtx, cancel, cfg.HTTPAddr, metrics, func() error {
		if !js.Conn().IsConnected() {
			return errors.New("not connected to nats")
		}
		return nil
	}, log)
	regs := newRegistries(metrics)
	stopRate := regs.publishRate(ctx, 0, time.Second)
	defer stopRate()
	err = coordinate(ctx, w, log, cfg, js, regs, live)
	stopHTTP()
	return errors.Join(err, waitHTTP())
}

// coordinate runs the coordinator for cfg against js and the registry cfg names, showing
// its progress on live (nil: log lines), then prints the summary and writes the report
// (also for a failed run).
func coordinate(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, js jetstream.JetStream,
	regs *registries, live *liveLine) error {
	ttl, err := cfg.TTLDuration()
	if err != nil {
		return withCode(exitError, &configError{err})
	}
	// The coordinator lists for the keyset probe and planning's probes, a few at a time.
	lister, err := registry.NewOCI(regs.config(cfg, cfg.Registry, cfg.PlainHTTP, keyspace.DefaultPlanConcurrency, log))
	if err != nil {
		return err
	}
	display := newProgress(live, log)
	defer display.Stop()
	gauges := runGauges{m: regs.m}
	ccfg := coordinatorConfig(cfg)
	ccfg.TTL = ttl
	ccfg.Observer = observerFunc(func(s coordinator.Status) {
		gauges.RunStatus(s)
		display.RunStatus(s)
	})
	co, err := coordinator.New(ccfg, js, lister, log)
	if err != nil {
		return err
	}
	rep, err := co.Run(ctx)
	display.Stop() // before anything is printed
	switch {
	case errors.Is(err, coordinator.ErrStopped):
		printSummary(w, rep)
		adviceFor(cfg, rep.RunID).stopped(w)
		if cfg.Report != "" {
			if werr := writeReport(cfg.Report, runReport{Report: rep}); werr != nil {
				return errors.Join(withCode(exitFailed, err), werr)
			}
		}
		return withCode(exitFailed, err)
	case err == nil, errors.Is(err, coordinator.ErrRunFailed):
		full := runReport{Tagsweep: build(version), Report: rep}
		printSummary(w, rep)
		if rep.Preservation != nil {
			printPreservation(w, rep.DryRun, *rep.Preservation, rep.PreservationFailures)
		}
		adviceFor(cfg, rep.RunID).failed(w, len(rep.FailedShards), co.CapReached())
		if cfg.Report != "" {
			if werr := writeReport(cfg.Report, full); werr != nil {
				return errors.Join(withCode(exitFailed, err), werr)
			}
		}
		return withCode(exitFailed, err)
	case ctx.Err() != nil:
		if cfg.Command == config.CmdRun {
			stopInterrupted(js, cfg, co.RunID(), log)
		}
		adviceFor(cfg, co.RunID()).interrupted(w)
		return withCode(exitFailed, fmt.Errorf("run %s interrupted: %w", co.RunID(), err))
	default:
		return err
	}
}

// coordinatorConfig is the run cfg describes, as the coordinator takes it (without its
// observer); a --ttl that does not parse (refused by config.Validate) leaves TTL zero.
func coordinatorConfig(cfg config.Config) coordinator.Config {
	ttl, _ := cfg.TTLDuration()
	return coordinator.Config{
		RunID:             cfg.RunID,
		Registry:          cfg.Registry,
		PlainHTTP:         cfg.PlainHTTP,
		Repositories:      cfg.Repositories,
		Policy:            cfg.Policy(),
		TTL:               ttl,
		Given:             given(cfg),
		MaxClockSkew:      clockSkew(cfg.MaxClockSkew),
		Shards:            cfg.Shards,
		PageSize:          cfg.PageSize,
		Ledger:            ledgerConfig(cfg),
		PreservePayloads:  cfg.Preserve,
		RepositoryAliases: cfg.RepoAliases,
	}
}

// clockSkew is the coordinator's MaxClockSkew for --max-clock-skew, whose 0 means "do not
// check" (the coordinator's zero means its default).
func clockSkew(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// observerFunc is a coordinator.Observer made of a function.
type observerFunc func(coordinator.Status)

// RunStatus implements coordinator.Observer.
func (f observerFunc) RunStatus(s coordinator.Status) { f(s) }
