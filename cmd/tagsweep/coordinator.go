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
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
)

// runCoordinator plans, publishes and tracks one run against the NATS at cfg.NATSURL,
// prints the summary and writes the report. Exit status: nil when every shard is done,
// exitFailed when shards failed or the run was stopped or interrupted, and any other
// error (exit 1) when the run could not be carried out.
func runCoordinator(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config) error {
	nc, err := connectNATS(cfg.NATSURL, "tagsweep-coordinator", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	metrics := telemetry.New()
	waitHTTP := serveTelemetry(ctx, cancel, cfg.HTTPAddr, metrics, func() error {
		if !nc.IsConnected() {
			return errors.New("not connected to nats")
		}
		return nil
	}, log)
	err = coordinate(ctx, w, log, cfg, js, cfg.Registry, cfg.PlainHTTP, metrics)
	cancel()
	return errors.Join(err, waitHTTP())
}

// coordinate runs the coordinator for cfg against js and the registry at host, then
// prints the summary and writes the report (also for a failed run).
func coordinate(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, js jetstream.JetStream,
	host string, plainHTTP bool, m *telemetry.Metrics) error {
	ttl, err := cfg.TTLDuration()
	if err != nil {
		return withCode(exitError, &configError{err})
	}
	// The coordinator lists once per planned shard (n=1) and for the keyset probe.
	lister, err := registry.NewOCI(ociConfig(cfg, host, plainHTTP, 4, log))
	if err != nil {
		return err
	}
	co, err := coordinator.New(coordinator.Config{
		RunID:        cfg.RunID,
		Registry:     host,
		PlainHTTP:    plainHTTP,
		Repositories: cfg.Repositories,
		Policy:       cfg.Policy(),
		TTL:          ttl,
		Width:        cfg.ShardWidth(),
		Progress:     progressLogger(log),
		Observer:     runGauges{m: m},
		Ledger:       ledgerConfig(cfg),
	}, js, lister, log)
	if err != nil {
		return err
	}
	rep, err := co.Run(ctx)
	switch {
	case err == nil, errors.Is(err, coordinator.ErrShardsFailed):
		printSummary(w, rep)
		if cfg.Report != "" {
			if werr := writeReport(cfg.Report, rep); werr != nil {
				return errors.Join(withCode(exitFailed, err), werr)
			}
		}
		return withCode(exitFailed, err)
	case ctx.Err() != nil:
		fmt.Fprintf(w, "Interrupted: run %s is still recorded as running; its shards stay queued.\n"+
			"Resume it with --run-id %s.\n", co.RunID(), co.RunID())
		return withCode(exitFailed, fmt.Errorf("run %s interrupted: %w", co.RunID(), err))
	default:
		return err
	}
}

// progressLogger logs the coordinator's periodic partial reports with a rate and an ETA.
func progressLogger(log *slog.Logger) func(proto.Report) {
	var (
		lastAt      time.Time
		lastScanned int64
	)
	return func(r proto.Report) {
		now := time.Now()
		attrs := []any{
			slog.Int("shards_done", r.Shards.Done), slog.Int("shards_failed", r.Shards.Failed),
			slog.Int("shards", r.Shards.Total), slog.Int64("scanned", r.Tags.Scanned),
			slog.Int64("eligible", r.Tags.Eligible), slog.Int64("deleted", r.Tags.Deleted),
		}
		if !lastAt.IsZero() {
			if dt := now.Sub(lastAt).Seconds(); dt > 0 {
				attrs = append(attrs, slog.Int64("tags_per_second", int64(float64(r.Tags.Scanned-lastScanned)/dt)))
			}
		}
		if left := r.Shards.Total - r.Shards.Done - r.Shards.Failed; r.Shards.Done > 0 && left > 0 {
			perShard := time.Duration(r.DurationSeconds * float64(time.Second) / float64(r.Shards.Done+r.Shards.Failed))
			attrs = append(attrs, slog.String("eta", (perShard*time.Duration(left)).Round(time.Second).String()))
		}
		lastAt, lastScanned = now, r.Tags.Scanned
		log.Info("progress", attrs...)
	}
}
