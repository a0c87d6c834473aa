package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/worker"
)

// runWorker processes shards from the NATS at cfg.NATSURL until ctx ends, serving health
// and metrics on cfg.HTTPAddr. A stop (ctx done) is graceful: shards in hand are
// checkpointed and handed back, and it returns nil.
func runWorker(ctx context.Context, _ io.Writer, log *slog.Logger, cfg config.Config) error {
	// A worker outlives NATS being away, at its start too: it waits for a server, and its
	// Run reopens the queue once one answers.
	js, closeAll, err := connectJetStream(cfg, "tagsweep-worker", log, nats.RetryOnFailedConnect(true))
	if err != nil {
		return err
	}
	defer closeAll()
	metrics := newMetrics(false, cfg.Slots)
	regs := newRegistries(metrics)
	wk, err := worker.New(workerConfig(cfg, "", regs, log), js, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopRate := regs.publishRate(ctx, cfg.MaxRPS, time.Second)
	defer stopRate()
	// Ready: connected to NATS with the consumer bound. The server outlives the signal: it
	// stops only once the worker has handed its shards back (metrics and probes keep working
	// during the stop bound).
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	waitHTTP := serveTelemetry(httpCtx, cancel, cfg.HTTPAddr, metrics, func() error {
		if !js.Conn().IsConnected() {
			return errors.New("not connected to nats")
		}
		return wk.Ready()
	}, log)
	werr := wk.Run(ctx)
	stopHTTP()
	return errors.Join(werr, waitHTTP())
}

// workerConfig is a worker's configuration; id "" means the worker's default
// (host-pid-random).
func workerConfig(cfg config.Config, id string, regs *registries, log *slog.Logger) worker.Config {
	return worker.Config{
		ID:                id,
		Slots:             cfg.Slots,
		DeleteConcurrency: cfg.DeleteConc,
		MaxRPS:            cfg.MaxRPS,
		PageSize:          cfg.PageSize,
		SplitAfter:        cfg.SplitAfter,
		IdleSplit:         idleSplit(cfg.SplitIdle),
		Connect:           connector(cfg, regs, log),
		Preserver:         preserver(cfg, regs, log),
		Ledger:            ledgerConfig(cfg),
		Observer:          workerMetrics{m: regs.m},
		Floor:             workerFloor(cfg),
		RecordDigests:     cfg.RecordDigests,
	}
}

// workerFloor is the worker's own floor: its prune pattern, its repositories (if given) and
// its minimum TTL (if given, worker only), which a run record cannot widen.
func workerFloor(cfg config.Config) worker.Floor {
	f := worker.Floor{PrunePattern: cfg.PruneRegex, Repositories: cfg.Repositories}
	if cfg.MinTTL != "" {
		f.MinTTL, _ = policy.ParseTTL(cfg.MinTTL) // validated by config
	}
	return f
}

// idleSplit is worker.Config.IdleSplit for --split-idle: the default, or never.
func idleSplit(on bool) time.Duration {
	if on {
		return 0
	}
	return -1
}
