package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/telemetry"
	"github.com/tagsweep/tagsweep/worker"
)

// demoRepository is what --demo prunes when no --repository is given.
const demoRepository = "openshift/ci"

// runRun runs a whole run in this process: an embedded JetStream server (in process, no
// TCP listener), cfg.Workers workers and the coordinator; with --demo also a simulated
// registry to prune. It returns once the coordinator has finished and every worker has
// stopped.
//
// Progress goes to live (a terminal), or to log lines when live is nil. On a terminal
// the workers' per-shard info lines would scroll the progress line away: they show with
// --log-level debug only (their warnings and errors always show).
func runRun(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, live *liveLine) error {
	host, plainHTTP := cfg.Registry, cfg.PlainHTTP
	if cfg.Demo.Enabled {
		if len(cfg.Repositories) == 0 {
			cfg.Repositories = []string{demoRepository}
		}
		srv, err := startSim(ctx, "127.0.0.1:0", simNamespace{
			repos: cfg.Repositories, tags: cfg.Demo.Tags, days: cfg.Demo.Days, seed: 1,
			end: time.Now(), latency: cfg.Demo.Latency,
		}, nil)
		if err != nil {
			return err
		}
		defer srv.Close()
		host, plainHTTP = srv.Addr(), true
		cfg.Registry, cfg.PlainHTTP = host, true // workers only talk to this registry, as the run does
		fmt.Fprintf(w, "Demo: simulated registry at %s with %d tags in %v (%d days, %s latency per request)\n",
			host, cfg.Demo.Tags, cfg.Repositories, cfg.Demo.Days, cfg.Demo.Latency)
	}

	var natsLog *slog.Logger
	if log.Enabled(ctx, slog.LevelDebug) {
		natsLog = log.With("component", "nats")
	}
	ns, err := natsserver.Start(natsserver.Config{Dir: cfg.DataDir, Logger: natsLog})
	if err != nil {
		return err
	}
	defer ns.Close()
	nc, err := ns.Connect()
	if err != nil {
		return err
	}
	defer closeNATS(nc, log)
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}

	// Create the streams, buckets and the workers' consumer once, before any component
	// starts: each component's own ledger.Open then only updates them. (nats-server
	// v2.15.2 races a stream update against a consumer creation on the same file store,
	// which concurrent first Opens would trigger.)
	if _, err := ledger.Open(ctx, js, ledgerConfig(cfg)); err != nil {
		return err
	}

	metrics := telemetry.New()
	regs := newRegistries(metrics) // shared by the workers and the coordinator
	workerLog := log
	if live != nil && !log.Enabled(ctx, slog.LevelDebug) {
		workerLog = slog.New(levelFloor{log.Handler(), slog.LevelWarn})
	}
	workers := make([]*worker.Worker, cfg.Workers)
	for i := range workers {
		id := "local-" + strconv.Itoa(i+1)
		if workers[i], err = worker.New(workerConfig(cfg, id, regs, workerLog), js, workerLog); err != nil {
			return err
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every worker has its own limiter of --max-rps: the process allows their sum.
	stopRate := regs.publishRate(ctx, cfg.MaxRPS*float64(cfg.Workers), time.Second)
	defer stopRate()
	waitHTTP := serveTelemetry(ctx, cancel, cfg.HTTPAddr, metrics, func() error {
		for _, wk := range workers {
			if err := wk.Ready(); err != nil {
				return err
			}
		}
		return nil
	}, log)

	// Workers stop when the coordinator is done (or on a signal): wctx outlives the
	// coordinator's last write so that workers can hand back shards in hand.
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		werr []error
	)
	for _, wk := range workers {
		wg.Go(func() {
			if err := wk.Run(wctx); err != nil {
				mu.Lock()
				werr = append(werr, fmt.Errorf("worker %s: %w", wk.ID(), err))
				mu.Unlock()
				cancel() // a worker that cannot run: stop the run rather than wait forever
			}
		})
	}
	// The coordinator starts once the workers pull shards, so that the run's first shards
	// are taken at once and no worker is still setting up while the coordinator works.
	if err := waitPulling(ctx, js, cfg.Workers, 10*time.Second); err != nil {
		log.Debug("not every worker is pulling yet; starting the coordinator anyway", slog.Any("err", err))
	}
	err = coordinate(ctx, w, log, cfg, js, host, plainHTTP, regs, live)
	stopWorkers()
	wg.Wait()
	cancel()
	return errors.Join(append([]error{err, waitHTTP()}, werr...)...)
}

// waitPulling waits until the workers' consumer exists and has at least n pull requests
// waiting (one per started worker), polling its info, for at most limit.
func waitPulling(ctx context.Context, js jetstream.JetStream, n int, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		var waiting int
		cons, err := js.Consumer(ctx, proto.StreamShards, proto.ConsumerWorkers)
		if err == nil {
			var info *jetstream.ConsumerInfo
			if info, err = cons.Info(ctx); err == nil {
				if waiting = info.NumWaiting; waiting >= n {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%d of %d workers pulling", waiting, n)
			}
			return fmt.Errorf("waiting for workers: %w (%w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
