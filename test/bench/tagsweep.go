package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/worker"
)

// stackConfig is one tagsweep run on a test rig: a coordinator and Workers workers, each
// worker with its own NATS connection and its own registry client (as separate pods would
// have).
type stackConfig struct {
	Registry    string // host:port of the sim (plain HTTP)
	Repo        string
	Policy      proto.Policy // Cutoff fixed by the caller, so both sides decide alike
	Workers     int
	Slots       int
	DeleteConc  int
	SplitAfter  time.Duration
	MaxRPS      float64                                                                    // per worker; 0 = unlimited
	RateControl registry.RateControlConfig                                                 // each worker's adaptive rate control
	WorkerProcs func(ctx context.Context, natsURL string) (wait func() []int64, err error) // nil: workers in process
	Log         *slog.Logger
	Inventory   bool // an inventory run (tagsweep ls) instead of a pruning run
}

// stackResult is what a run of the stack reports.
type stackResult struct {
	Report    proto.Report
	Shards    []proto.ShardRecord
	WorkerRSS []int64
}

// newClient returns the registry client a worker (or the coordinator) uses.
func newClient(host string, concurrency int, log *slog.Logger) (*registry.OCI, error) {
	return newClientRC(host, concurrency, registry.RateControlConfig{}, log)
}

func newClientRC(host string, concurrency int, rc registry.RateControlConfig, log *slog.Logger) (*registry.OCI, error) {
	return registry.NewOCI(registry.OCIConfig{Host: host, PlainHTTP: true, Concurrency: concurrency, Logger: log,
		RateControl: registry.NewRateControl(rc)})
}

// workerConfig is the configuration of every benchmark worker (of the workers of a rig, id
// is their IDs' prefix).
func (c stackConfig) workerConfig(id string) worker.Config {
	return worker.Config{
		ID:                id,
		Slots:             c.Slots,
		DeleteConcurrency: c.DeleteConc,
		MaxRPS:            c.MaxRPS,
		SplitAfter:        c.SplitAfter,
		IdleSplit:         noSplit(c.SplitAfter),
		Connect: func(_ context.Context, run proto.RunRecord) (registry.Client, error) {
			if run.Registry != c.Registry {
				return nil, fmt.Errorf("run names registry %q, the benchmark serves %q", run.Registry, c.Registry)
			}
			return newClientRC(run.Registry, max(c.DeleteConc, worker.DefaultDeleteConcurrency)+max(c.Slots, worker.DefaultSlots), c.RateControl, c.Log)
		},
	}
}

// runStack runs one whole run on rig and returns the coordinator's report and the shard
// records.
func runStack(ctx context.Context, rig *testrig.Rig, cfg stackConfig) (stackResult, error) {
	var res stackResult
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	stop, err := cfg.startWorkers(wctx, rig)
	if err != nil {
		return res, err
	}
	lister, err := newClient(cfg.Registry, keyspace.DefaultPlanConcurrency, cfg.Log) // as tagsweep coordinator
	if err != nil {
		return res, err
	}
	res.Report, err = rig.Run(ctx, coordinator.Config{
		RunID:        "bench",
		Registry:     cfg.Registry,
		PlainHTTP:    true,
		Repositories: []string{cfg.Repo},
		Policy:       cfg.Policy,
		PollInterval: time.Second,
		Inventory:    cfg.Inventory,
	}, lister, cfg.Log)
	if err == nil || errors.Is(err, coordinator.ErrRunFailed) {
		var lerr error
		res.Shards, lerr = rig.Ledger().Shards(ctx, "bench")
		err = errors.Join(err, lerr)
	}
	stopWorkers()
	rss, werr := stop()
	res.WorkerRSS = rss
	return res, errors.Join(err, werr)
}

// startWorkers starts the run's workers, in this process or in processes of their own; stop
// stops them and returns the processes' peak RSS, or the in-process workers' errors.
func (c stackConfig) startWorkers(ctx context.Context, rig *testrig.Rig) (stop func() ([]int64, error), err error) {
	if c.WorkerProcs != nil {
		wait, err := c.WorkerProcs(ctx, rig.URL())
		if err != nil {
			return nil, err
		}
		return func() ([]int64, error) { return wait(), nil }, nil
	}
	ws, err := rig.StartWorkers(ctx, c.Workers, c.workerConfig("bench-"), c.Log)
	if err != nil {
		return nil, err
	}
	return func() ([]int64, error) { return nil, ws.Stop() }, nil
}

// shardDurations returns the longest and the median time from claim to finish of the done
// shards, and how many shards were split off others.
func shardDurations(shards []proto.ShardRecord) (longest, median time.Duration, splits int) {
	var ds []time.Duration
	for _, s := range shards {
		if s.Parent != "" {
			splits++
		}
		if s.State == proto.StateDone && !s.StartedAt.IsZero() {
			ds = append(ds, s.FinishedAt.Sub(s.StartedAt))
		}
	}
	if len(ds) == 0 {
		return 0, 0, splits
	}
	slices.Sort(ds)
	return ds[len(ds)-1], ds[len(ds)/2], splits
}

// noSplit is the worker's IdleSplit: a side that never splits on time (split-after 0, the
// skewed scenario's tagsweep-nosplit) does not split for idle slots either.
func noSplit(splitAfter time.Duration) time.Duration {
	if splitAfter == 0 {
		return -1
	}
	return 0 // the worker's default
}
