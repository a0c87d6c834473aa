package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// simNamespace is what to generate in a simulated registry.
type simNamespace struct {
	repos   []string
	tags    int
	days    int
	seed    uint64
	end     time.Time
	latency time.Duration
}

// startSim serves a simulated registry on addr with a generated namespace in each
// repository. It stops when ctx ends or on Close.
func startSim(ctx context.Context, addr string, ns simNamespace, log *slog.Logger) (*sim.Server, error) {
	srv, err := sim.Start(ctx, addr, sim.Config{Latency: ns.latency, Logger: log})
	if err != nil {
		return nil, err
	}
	for i, repo := range ns.repos {
		tags := sim.Generate(sim.GenConfig{Seed: ns.seed + uint64(i), Tags: ns.tags, Days: ns.days, End: ns.end})
		if err := srv.AddTags(repo, "", tags...); err != nil {
			srv.Close()
			return nil, fmt.Errorf("loading simulated repository %s: %w", repo, err)
		}
	}
	return srv, nil
}

// runSim serves a simulated registry until ctx ends.
func runSim(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config) error {
	if cfg.Sim.Admin {
		return runSimAdmin(ctx, w, log, cfg)
	}
	srv, err := startSim(ctx, cfg.Sim.Addr, simNamespace{
		repos: cfg.Repositories, tags: cfg.Sim.Tags, days: cfg.Sim.Days,
		seed: uint64(cfg.Sim.Seed), end: time.Now(), latency: cfg.Sim.Latency,
	}, log)
	if err != nil {
		return err
	}
	for _, repo := range cfg.Repositories {
		fmt.Fprintf(w, "serving %s/%s with %d tags\n", srv.Addr(), repo, srv.Len(repo))
	}
	fmt.Fprintf(w, "try: tagsweep run --registry %s --plain-http --repository %s\n", srv.Addr(), cfg.Repositories[0])
	log.Info("simulated registry serving", "addr", srv.Addr(), "latency", cfg.Sim.Latency)
	<-ctx.Done()
	log.Info("simulated registry stopping")
	return srv.Close()
}
