package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/tagsweep/tagsweep/config"
)

// runRun runs embedded NATS, the coordinator and cfg.Workers workers in one process.
func runRun(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config) error {
	return errNotWired("run")
}

// runCoordinator plans, publishes and tracks one run against external NATS.
func runCoordinator(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config) error {
	return errNotWired("coordinator")
}

// runWorker processes shards from external NATS until ctx ends.
func runWorker(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config) error {
	return errNotWired("worker")
}
