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
	return runLocal(ctx, w, log, cfg, live, func(ctx context.Context, cfg config.Config, js jetstream.JetStream, regs *registries) error {
		return coordinate(ctx, w, log, cfg, js, regs, live)
	})
}

// lead is what runLocal runs once its workers pull shards: the coordinator of a run, or of an
// inventory, with cfg as runLocal completed it (--demo's registry and repositories, a resumed
// run's recorded settings), against js. It returns when its run has ended.
type lead func(ctx context.Context, cfg config.Config, js jetstream.JetStream, regs *registries) error

// runLocal starts, in this process, what a run needs (an embedded JetStream server, with
// --demo a simulated registry, cfg.Workers workers), runs lead, and stops everything once lead
// has returned. Notes for the user (the demo's address) go to w. On a terminal (live not
// nil) the workers' info lines show with --log-level debug only.
func runLocal(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, live *liveLine, lead lead) error {
	if cfg.Demo.Enabled {
		stopDemo, err := startDemo(ctx, w, &cfg)
		if err != nil {
			return err
		}
		defer stopDemo()
	}
	var natsLog *slog.Logger
	if log.Enabled(ctx, slog.LevelDebug) {
		natsLog = log.With("component", "nats")
	}
	js, stopNATS, err := startEmbedded(natsserver.Config{Dir: cfg.DataDir, Logger: natsLog}, log)
	if err != nil {
		return err
	}
	defer stopNATS()
	if cfg, err = openLocalLedger(ctx, w, js, cfg, log); err != nil {
		return err
	}

	metrics := newMetrics(true, cfg.Workers*cfg.Slots)
	regs := newRegistries(metrics) // shared by the workers and the coordinator
	workers, err := newLocalWorkers(ctx, cfg, js, regs, log, live)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every worker has its own limiter of --max-rps: the process allows their sum.
	stopRate := regs.publishRate(ctx, cfg.MaxRPS*float64(cfg.Workers), time.Second)
	defer stopRate()
	waitHTTP := serveTelemetry(ctx, cancel, cfg.HTTPAddr, metrics, workers.ready, log)

	// Workers stop when the coordinator is done (or on a signal): wctx outlives the
	// coordinator's last write so that workers can hand back shards in hand.
	wctx, stopWorkers := context.WithCancel(ctx)
	defer stopWorkers()
	waitWorkers := workers.run(wctx, cancel)
	// The coordinator starts once the workers pull shards, so that the run's first shards
	// are taken at once and no worker is still setting up while the coordinator works.
	if err := waitPulling(ctx, js, cfg.Workers, 10*time.Second); err != nil {
		log.Debug("not every worker is pulling yet; starting the coordinator anyway", slog.Any("err", err))
	}
	cfg.Shards = cfg.PlanShards(cfg.Command) // a shard for every slot of the workers started here
	err = lead(ctx, cfg, js, regs)
	stopWorkers()
	werr := waitWorkers()
	cancel()
	return errors.Join(err, waitHTTP(), werr)
}

// startDemo serves --demo's simulated registry, with a generated namespace in each of
// cfg.Repositories (demoRepository when none is given), and points cfg at it: the workers
// talk only to this registry, as the run does. stop stops it.
func startDemo(ctx context.Context, w io.Writer, cfg *config.Config) (stop func(), err error) {
	if len(cfg.Repositories) == 0 {
		cfg.Repositories = []string{demoRepository}
	}
	srv, err := startSim(ctx, "127.0.0.1:0", simNamespace{
		repos: cfg.Repositories, tags: cfg.Demo.Tags, days: cfg.Demo.Days, seed: 1,
		end: time.Now(), latency: cfg.Demo.Latency,
	}, nil)
	if err != nil {
		return nil, err
	}
	cfg.Registry, cfg.PlainHTTP = srv.Addr(), true
	fmt.Fprintf(w, "Demo: simulated registry at %s with %d tags in %v (%d days, %s latency per request)\n",
		srv.Addr(), cfg.Demo.Tags, cfg.Repositories, cfg.Demo.Days, cfg.Demo.Latency)
	return func() { srv.Close() }, nil
}

// openLocalLedger provisions the ledger on the embedded server js and returns cfg as the run
// takes it: a resumed run's settings come from its record. With a --data-dir it then adopts
// what an earlier process on the store left behind (adoptStore).
func openLocalLedger(ctx context.Context, w io.Writer, js jetstream.JetStream, cfg config.Config, log *slog.Logger) (config.Config, error) {
	// Create the streams, buckets and the workers' consumer once, before any component
	// starts: each component's own ledger.Open then only updates them. (nats-server
	// v2.15.2 races a stream update against a consumer creation on the same file store,
	// which concurrent first Opens would trigger.)
	l, err := ledger.Open(ctx, js, ledgerConfig(cfg))
	if err != nil {
		return cfg, err
	}
	// A resumed run takes its settings from its record, before any worker can take a shard.
	if cfg, err = resumeRecorded(ctx, w, js, cfg); err != nil {
		return cfg, err
	}
	if cfg.DataDir != "" { // once the resume is accepted: a refused one changes nothing
		if err := adoptStore(ctx, l, cfg.RunID, log); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// localWorkers are the workers a `tagsweep run` or `tagsweep ls` starts in its own process.
type localWorkers []*worker.Worker

// newLocalWorkers makes cfg.Workers workers on js, sharing regs. On a terminal (live not nil)
// their info lines are left out unless the log level is debug: they would scroll the
// progress line away.
func newLocalWorkers(ctx context.Context, cfg config.Config, js jetstream.JetStream, regs *registries, log *slog.Logger,
	live *liveLine) (localWorkers, error) {
	if live != nil && !log.Enabled(ctx, slog.LevelDebug) {
		log = slog.New(levelFloor{log.Handler(), slog.LevelWarn})
	}
	workers := make(localWorkers, cfg.Workers)
	for i := range workers {
		id := "local-" + strconv.Itoa(i+1)
		wk, err := worker.New(workerConfig(cfg, id, regs, log), js, log)
		if err != nil {
			return nil, err
		}
		workers[i] = wk
	}
	return workers, nil
}

// ready is the workers' readiness: the first error of one not ready.
func (ws localWorkers) ready() error {
	for _, wk := range ws {
		if err := wk.Ready(); err != nil {
			return err
		}
	}
	return nil
}

// run runs every worker until ctx ends; a worker that cannot run calls fail, which should
// stop the run rather than let it wait forever. wait waits for them all and returns their
// errors.
func (ws localWorkers) run(ctx context.Context, fail context.CancelFunc) (wait func() error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, wk := range ws {
		wg.Go(func() {
			if err := wk.Run(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("worker %s: %w", wk.ID(), err))
				mu.Unlock()
				fail()
			}
		})
	}
	return func() error {
		wg.Wait()
		return errors.Join(errs...)
	}
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

// adoptStore takes over what the previous process on this --data-dir left behind. The store
// is this process's alone (locked, and its server has no listener), so nothing in it has an
// owner left: the shards of the run being resumed that the previous process held or had been
// handed are given back at once (ledger.HandBackOrphans), instead of after --ack-wait, and any
// other run it left running is ended abandoned, its leases given up, so that they do not
// refuse this run until they expire.
func adoptStore(ctx context.Context, l *ledger.Ledger, runID string, log *slog.Logger) error {
	runs, err := l.Runs(ctx)
	if err != nil {
		return err
	}
	for _, r := range runs {
		switch {
		case r.RunID == runID && r.State != proto.RunDone:
			n, err := l.HandBackOrphans(ctx, r.RunID)
			if err != nil {
				return fmt.Errorf("resuming run %s: %w", r.RunID, err)
			}
			if n > 0 {
				log.Info("handed back the shards the previous process left in flight", slog.String("run", r.RunID), slog.Int("shards", n))
			}
		case r.RunID != runID && r.State == proto.RunRunning:
			if _, err := l.AbandonOrphan(ctx, r.RunID, "its tagsweep run process ended before the run did"); err != nil {
				return err
			}
			log.Warn("a run the previous process on this store left running is abandoned; resume it with its --run-id",
				slog.String("run", r.RunID))
		}
	}
	return nil
}

// stopInterrupted records a run that this `tagsweep run` was interrupted in as stopped and
// gives up its leases: its workers were this process's and hand back their shards, so the
// run does not go on until it is resumed, and another run may take its repositories.
func stopInterrupted(js jetstream.JetStream, cfg config.Config, runID string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := ledger.Bind(ctx, js, ledgerConfig(cfg))
	if err == nil {
		var rec proto.RunRecord
		if rec, err = l.MarkStopped(ctx, runID, "interrupted: tagsweep run was stopped by a signal"); err == nil {
			for _, repo := range rec.Repositories {
				err = errors.Join(err, l.ReleaseLease(ctx, repo, runID))
			}
		}
	}
	if err != nil && !errors.Is(err, ledger.ErrNotRunning) && !errors.Is(err, ledger.ErrNotFound) {
		log.Warn("recording the interrupted run as stopped", slog.String("run", runID), slog.Any("err", err))
	}
}
