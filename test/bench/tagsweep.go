package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/worker"
)

// stackConfig is one tagsweep deployment in a process: an embedded NATS server, a
// coordinator and Workers workers, each worker with its own NATS connection and its own
// registry client (as separate pods would have).
type stackConfig struct {
	Registry    string // host:port of the sim (plain HTTP)
	Repo        string
	Policy      proto.Policy // Cutoff fixed by the caller, so both sides decide alike
	Workers     int
	Slots       int
	DeleteConc  int
	SplitAfter  time.Duration
	MaxRPS      float64                    // per worker; 0 = unlimited
	RateControl registry.RateControlConfig // each worker's adaptive rate control
	NATSDir     string
	NATSURL     string                                                                     // a NATS server elsewhere; "" starts one in this process
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

// workerConfig is the configuration of every benchmark worker.
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

// runStack runs one whole run and returns the coordinator's report and the shard records.
func runStack(ctx context.Context, cfg stackConfig) (stackResult, error) {
	var res stackResult
	url := cfg.NATSURL
	dial := func() (*nats.Conn, error) { return nats.Connect(url) }
	if url == "" {
		listen := ""
		if cfg.WorkerProcs != nil {
			listen = "127.0.0.1:-1"
		}
		ns, err := natsserver.Start(natsserver.Config{Dir: cfg.NATSDir, Listen: listen})
		if err != nil {
			return res, err
		}
		defer ns.Close()
		url = ns.ClientURL()
		dial = func() (*nats.Conn, error) { return ns.Connect() }
	}
	connect := func() (jetstream.JetStream, func(), error) {
		nc, err := dial()
		if err != nil {
			return nil, nil, err
		}
		js, err := jetstream.New(nc)
		if err != nil {
			nc.Close()
			return nil, nil, err
		}
		return js, nc.Close, nil
	}

	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		werrs    []error
		waitProc func() []int64
	)
	if cfg.WorkerProcs != nil {
		// Open the ledger first so the stream and consumer exist before workers bind.
		js, closeNC, err := connect()
		if err != nil {
			return res, err
		}
		defer closeNC()
		if _, err := ledger.Open(ctx, js, ledger.Config{}); err != nil {
			return res, err
		}
		if waitProc, err = cfg.WorkerProcs(wctx, url); err != nil {
			return res, err
		}
	} else {
		for i := range cfg.Workers {
			js, closeNC, err := connect()
			if err != nil {
				return res, err
			}
			defer closeNC()
			w, err := worker.New(cfg.workerConfig("bench-"+strconv.Itoa(i+1)), js, cfg.Log)
			if err != nil {
				return res, err
			}
			wg.Go(func() {
				if err := w.Run(wctx); err != nil {
					mu.Lock()
					werrs = append(werrs, err)
					mu.Unlock()
				}
			})
		}
	}

	js, closeNC, err := connect()
	if err != nil {
		return res, err
	}
	defer closeNC()
	lister, err := newClient(cfg.Registry, keyspace.DefaultPlanConcurrency, cfg.Log) // as tagsweep coordinator
	if err != nil {
		return res, err
	}
	co, err := coordinator.New(coordinator.Config{
		RunID:        "bench",
		Registry:     cfg.Registry,
		PlainHTTP:    true,
		Repositories: []string{cfg.Repo},
		Policy:       cfg.Policy,
		PollInterval: time.Second,
		Inventory:    cfg.Inventory,
	}, js, lister, cfg.Log)
	if err != nil {
		return res, err
	}
	rep, err := co.Run(ctx)
	res.Report = rep
	if err == nil || errors.Is(err, coordinator.ErrShardsFailed) {
		l, lerr := ledger.Open(ctx, js, ledger.Config{})
		if lerr == nil {
			res.Shards, lerr = l.Shards(ctx, co.RunID())
		}
		err = errors.Join(err, lerr)
	}
	stopWorkers()
	wg.Wait()
	if waitProc != nil {
		res.WorkerRSS = waitProc()
	}
	return res, errors.Join(append([]error{err}, werrs...)...)
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
