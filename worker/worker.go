// Package worker takes shard messages from the work queue and prunes each shard: it lists the
// shard's key range page by page, decides every tag with the run's policy, deletes the eligible
// ones in parallel under a concurrency and rate bound, and checkpoints after every page, so that
// whoever holds the shard next resumes where it stopped.
//
// The shard lifecycle (claim, checkpoint, split, done, fail, release) is the ledger's; this
// package only decides when to call it and what to do with the message afterwards: every
// message ends in exactly one of Ack, Nak (with a delay) or Term, except when the worker was
// fenced off the shard, where it must not touch the message at all.
package worker

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/tagsweep/tagsweep/internal/pause"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultSlots             = 4
	DefaultDeleteConcurrency = 256
	DefaultPageSize          = 100
	DefaultRetryDelay        = 10 * time.Second
	DefaultIdleSplit         = 250 * time.Millisecond
	maxRetryDelay            = 5 * time.Minute
	minPageTimeout           = 5 * time.Minute  // bounds a page's deletes once started (see pageTimeout)
	ledgerTimeout            = 30 * time.Second // bounds one ledger write
	settleTries              = 3                // tries of a ledger write that failed unfenced and was not stored
	settleDelay              = 200 * time.Millisecond
	maxCachedRuns            = 64
	openRetryMin             = 500 * time.Millisecond // first wait before reopening the queue
	openRetryMax             = 30 * time.Second       // longest wait between reopening attempts
	// pullExpiry bounds a pull request. A request parked on a consumer leader that died is
	// lost, and the client notices by missing two heartbeats (half the expiry each): the
	// default of 30s left workers idle for as long after a NATS node was lost.
	pullExpiry = 5 * time.Second
)

// StopBound is the longest a worker takes to stop once its context ends: shards in hand
// finish their page or abandon it (deletes still running two thirds of the way into the bound
// are cancelled), checkpoint what finished, give the shard back and Nak its message, so
// another worker resumes it at once. Deployments give a worker's pod more than this to stop
// (terminationGracePeriodSeconds 60 in deploy/).
const StopBound = 30 * time.Second

// Config holds a worker's tunables. Zero values mean the documented defaults.
type Config struct {
	// ID names this worker as the owner of the shards it claims. Default host-pid-random.
	ID string
	// Slots is how many shards the worker processes at once, one message each (default 4).
	// Messages are pulled one at a time when a slot is free: never prefetched.
	Slots int
	// DeleteConcurrency bounds the tag deletes in flight across all slots (default 256).
	DeleteConcurrency int
	// MaxRPS bounds the registry calls (lists and deletes) the whole worker starts per second.
	// 0 means unlimited.
	MaxRPS float64
	// PageSize is the n of each tags/list call (default 100, Quay's cap).
	PageSize int
	// Connect returns the client for a run's registry (run.Registry, run.PlainHTTP). It is
	// called once per run; the client is cached. Required.
	Connect func(ctx context.Context, run proto.RunRecord) (registry.Client, error)
	// SplitAfter is the time budget of a shard: after holding one this long, the worker splits
	// off the second half of what is left for another worker. 0 means never split on time.
	SplitAfter time.Duration
	// IdleSplit is how often a worker holding shards asks the queue whether slots are idle
	// (some worker waits for a shard and none is queued). While they are, it splits off the
	// second half of what is left of a shard with at least two pages to go, one split per
	// answer, and the halves split again as long as slots stay idle: work stealing, so that a
	// run keeps every slot busy whatever its plan. Default 250ms; negative means never.
	IdleSplit time.Duration
	// RetryDelay is the first redelivery delay after a failed list (default 10s); it doubles
	// with each delivery, up to 5m. A registry's Retry-After takes precedence.
	RetryDelay time.Duration
	// Ledger configures the JetStream state; it must match the coordinator's.
	Ledger ledger.Config
	// StopBound bounds a stop (see the package constant StopBound, the default); tests
	// shorten it.
	StopBound time.Duration
	// Observer is told the shards the worker holds and what became of each page's tags
	// (metrics). nil means none.
	Observer Observer
	// Preserver returns what preserves a run's release payloads (package preserve): it reads
	// payload images and writes component tags and markers on run.Registry, recognising the
	// run's repository aliases. Called once per run, on its first preserve shard. nil: this
	// worker fails preserve shards (family shards, which only list and delete through
	// Connect's client, still run).
	Preserver func(ctx context.Context, run proto.RunRecord, aliases []preserve.Alias) (*preserve.Preserver, error)
	// Floor is what the worker refuses whatever a run record asks: a shard beyond it fails
	// at once, before any registry call. The zero Floor refuses nothing.
	Floor Floor
	// RecordDigests makes the worker read each tag's manifest digest (one HEAD) before its
	// delete and store it in the audit event, for every run, as a run's
	// Policy.RecordDigests asks for that run: `tagsweep restore` puts such tags back on any
	// registry. The Connect client must then read digests (registry.OCI does).
	RecordDigests bool
}

// Worker prunes shards. Create it with New and start it with Run.
type Worker struct {
	cfg     Config
	js      jetstream.JetStream
	log     *slog.Logger
	limiter *rate.Limiter // nil: unlimited
	// deletes hands tag deletes to Run's pool of DeleteConcurrency goroutines. The pool's
	// goroutines live as long as Run, so their stacks, grown once through the registry
	// client's deep calls, are reused: a goroutine per delete spent 5% of a worker's CPU
	// growing stacks.
	deletes chan func()
	// pageTimeout bounds a page's deletes once started, so a hung registry cannot hold a
	// shard forever.
	pageTimeout time.Duration

	mu   sync.Mutex
	runs map[string]*runEntry

	freeze freezer // a test's stand-in for SIGSTOP (export_test.go)

	idleMu   sync.Mutex
	idleAt   time.Time // when the queue was last asked (see slotsIdle)
	idleSeen bool      // its answer, until a split of this worker used it up

	bound atomic.Bool // a message iterator on the workers' consumer is open (Ready)

	stops runStops // the runs an operator stopped
}

// runEntry is what a worker caches per run: the compiled policy and the registry client.
type runEntry struct {
	rules  *policy.Rules
	client registry.Client

	pmu  sync.Mutex
	pres *preservation // built on the run's first preserve shard (preservationFor)
}

// New checks cfg, applies defaults and returns a worker. log may be nil (discard).
func New(cfg Config, js jetstream.JetStream, log *slog.Logger) (*Worker, error) {
	if js == nil {
		return nil, errors.New("worker: nil JetStream")
	}
	if cfg.Connect == nil {
		return nil, errors.New("worker: Config.Connect is required")
	}
	if cfg.Slots < 0 || cfg.DeleteConcurrency < 0 || cfg.PageSize < 0 || cfg.MaxRPS < 0 || cfg.SplitAfter < 0 ||
		cfg.RetryDelay < 0 || cfg.StopBound < 0 {
		return nil, fmt.Errorf("worker: negative setting in %+v", cfg)
	}
	cfg.Slots = cmp.Or(cfg.Slots, DefaultSlots)
	cfg.DeleteConcurrency = cmp.Or(cfg.DeleteConcurrency, DefaultDeleteConcurrency)
	cfg.PageSize = cmp.Or(cfg.PageSize, DefaultPageSize)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, DefaultRetryDelay)
	cfg.IdleSplit = cmp.Or(cfg.IdleSplit, DefaultIdleSplit)
	cfg.StopBound = cmp.Or(cfg.StopBound, StopBound)
	if cfg.ID == "" {
		cfg.ID = defaultID()
	}
	if cfg.Observer == nil {
		cfg.Observer = nopObserver{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		cfg:  cfg,
		js:   js,
		log:  log.With(slog.String("worker", cfg.ID)),
		runs: make(map[string]*runEntry),
	}
	w.pageTimeout = minPageTimeout
	if cfg.MaxRPS > 0 {
		w.limiter = rate.NewLimiter(rate.Limit(cfg.MaxRPS), max(1, int(cfg.MaxRPS/10)))
		// A full page of deletes at the rate limit, twice over, if that is longer.
		w.pageTimeout = max(w.pageTimeout, time.Duration(2*float64(cfg.PageSize+1)/cfg.MaxRPS*float64(time.Second)))
	}
	return w, nil
}

func defaultID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "worker"
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ID is the owner name this worker writes into the shards it claims.
func (w *Worker) ID() string { return w.cfg.ID }

// errNotBound is what Ready reports while the worker is not pulling from the queue.
var errNotBound = errors.New("worker: not bound to the consumer " + proto.ConsumerWorkers)

// Ready reports whether the worker is bound to the shard queue: Run has opened it and a
// message iterator on the workers' consumer is open. It is nil only while the worker can be
// handed shards, so it fits a readiness probe (with the NATS connection's own state). It is
// cheap and safe for concurrent use.
func (w *Worker) Ready() error {
	if !w.bound.Load() {
		return errNotBound
	}
	return nil
}

// Run takes shard messages until ctx is done, processing up to Slots at once. On ctx done it
// stops pulling and lets every shard in hand finish or abandon its page, checkpoint what
// finished and give the shard back (Release, then Nak, so another worker resumes it at once);
// it returns nil once all have ended, within the stop bound (Config.StopBound).
//
// A NATS outage does not end it: the connection reconnects on its own, and the worker reopens
// the queue (recreating the consumer if it is gone) with backoff until it works again. It
// returns an error only for a fault that waiting cannot mend: the connection was closed, or
// JetStream refused the queue's configuration.
func (w *Worker) Run(ctx context.Context) error {
	l, err := w.open(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return err
	}
	grace, hard, release := w.stopContexts(ctx)
	defer release()
	w.log.Info("worker started", slog.Int("slots", w.cfg.Slots), slog.Int("delete_concurrency", w.cfg.DeleteConcurrency),
		slog.Float64("max_rps", w.cfg.MaxRPS))
	defer w.register(ctx, hard, l)()
	w.deletes = make(chan func())
	var pool sync.WaitGroup
	for range w.cfg.DeleteConcurrency {
		pool.Go(func() {
			for del := range w.deletes {
				del()
			}
		})
	}
	defer pool.Wait()
	defer close(w.deletes) // after the shards in hand have ended (the defer below)
	watchCtx, stopWatch := context.WithCancel(hard)
	var watching sync.WaitGroup
	watching.Go(func() { w.stops.watch(watchCtx, l, w.log) })
	defer watching.Wait()
	defer stopWatch() // once the shards in hand have ended: a stop may come while they hand back
	sem := make(chan struct{}, w.cfg.Slots)
	var wg sync.WaitGroup
	defer wg.Wait() // before release: shards in hand use grace and hard until they end
	delay := openRetryMin
	for {
		began := time.Now()
		err := w.consume(ctx, grace, hard, l, sem, &wg)
		if ctx.Err() != nil {
			w.log.Info("worker stopping")
			return nil
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return fmt.Errorf("worker: %w", err)
		}
		if time.Since(began) > openRetryMax {
			delay = openRetryMin // it worked for a while: this is a new breakage
		}
		w.log.Warn("shard queue broke; reopening it", slog.Any("err", err), slog.Duration("in", delay))
		if pause.For(ctx, delay) != nil {
			w.log.Info("worker stopping")
			return nil
		}
		delay = min(2*delay, openRetryMax)
		if l, err = w.open(ctx); err != nil {
			if ctx.Err() != nil {
				w.log.Info("worker stopping")
				return nil
			}
			return err
		}
	}
}

// register records the worker's slots in the ledger, renewed every ledger.RegisterEvery
// until ctx ends, so that a coordinator plans a shard per slot. The function it returns waits
// stops the renewals and removes the registration (with hard, which outlives ctx).
func (w *Worker) register(ctx, hard context.Context, l *ledger.Ledger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(ledger.RegisterEvery)
		defer t.Stop()
		for {
			if err := l.Register(ctx, w.cfg.ID, w.cfg.Slots); err != nil && ctx.Err() == nil {
				w.log.Warn("registering the worker's slots; planning may count fewer", slog.Any("err", err))
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return func() {
		cancel()
		<-done
		c, cancel := w.ledgerCtx(hard)
		defer cancel()
		if err := l.Unregister(c, w.cfg.ID); err != nil {
			w.log.Warn("removing the worker's registration; it lapses by itself", slog.Any("err", err))
		}
	}
}

// open opens the ledger (creating the queue's stream and consumer if they are missing),
// retrying with backoff while the failure is one that waiting can mend: no connection, a
// timeout, JetStream unavailable during a restart or a leader election.
func (w *Worker) open(ctx context.Context) (*ledger.Ledger, error) {
	delay := openRetryMin
	for {
		l, err := ledger.Open(ctx, w.js, w.cfg.Ledger)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil || !ledger.Transient(err) {
			return nil, fmt.Errorf("worker: %w", err)
		}
		w.log.Warn("opening the shard queue; retrying", slog.Any("err", err), slog.Duration("in", delay))
		if pause.For(ctx, delay) != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		delay = min(2*delay, openRetryMax)
	}
}

// consume pulls messages, one per free slot, and hands each to handle in its own goroutine
// (counted in wg), until ctx ends or the message stream breaks.
func (w *Worker) consume(ctx, grace, hard context.Context, l *ledger.Ledger, sem chan struct{}, wg *sync.WaitGroup) error {
	iter, err := l.Consumer().Messages(jetstream.PullMaxMessages(1), jetstream.PullExpiry(pullExpiry))
	if err != nil {
		return fmt.Errorf("starting message iterator: %w", err)
	}
	defer iter.Stop()
	w.bound.Store(true)
	defer w.bound.Store(false)
	stopDrain := context.AfterFunc(ctx, iter.Drain) // stop pulling; hand out what is buffered
	defer stopDrain()
	for {
		select {
		case sem <- struct{}{}: // a free slot before pulling: one message per slot, nothing prefetched
		case <-ctx.Done():
			return ctx.Err()
		}
		msg, err := iter.Next()
		if err != nil {
			// The iterator closed (the consumer was deleted), or missed heartbeats: the pulls
			// go unanswered (a consumer deleted between two pulls, or one lost with a NATS
			// node). Reopening the queue recreates the consumer if it is gone.
			<-sem
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w.handle(ctx, grace, hard, l, msg)
		}()
	}
}

// stopContexts returns two contexts that outlive ctx: grace ends two thirds of the stop bound
// after ctx (pages in flight abandon their deletes then) and hard at the stop bound (the last
// ledger writes and acks of a stopping worker). release frees them.
func (w *Worker) stopContexts(ctx context.Context) (grace, hard context.Context, release func()) {
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	grace, cancelGrace := context.WithCancel(hard)
	var mu sync.Mutex
	var timers []*time.Timer
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		timers = append(timers, time.AfterFunc(w.cfg.StopBound*2/3, cancelGrace), time.AfterFunc(w.cfg.StopBound, cancelHard))
	})
	return grace, hard, func() {
		stop()
		mu.Lock()
		for _, t := range timers {
			t.Stop()
		}
		mu.Unlock()
		cancelGrace()
		cancelHard()
	}
}
