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
	"encoding/json"
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
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
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
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
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

// handle ends msg in exactly one of Ack, Nak, NakWithDelay or Term, or in nothing when the
// shard was taken over (fenced) or may have been. ctx ends when the worker stops; grace and
// hard outlive it (see stopContexts).
//
// JetStream applies an ack, nak or term to the message's current delivery, whoever holds it,
// so a worker that may have lost its delivery must not send one: after a ledger write that
// failed without being fenced (a timeout), the record is read back (Claim.Verify) and the
// message is touched only while the record still names this delivery.
func (w *Worker) handle(ctx, grace, hard context.Context, l *ledger.Ledger, msg jetstream.Msg) {
	received := time.Now()
	var m proto.ShardMessage
	if err := json.Unmarshal(msg.Data(), &m); err != nil || m.V > proto.Version || !proto.ValidToken(m.RunID) || !proto.ValidToken(m.ShardID) {
		w.log.Error("dropping undecodable shard message", slog.String("subject", msg.Subject()), slog.Any("err", err))
		_ = msg.TermWithReason("undecodable shard message")
		return
	}
	log := w.log.With(slog.String("run", m.RunID), slog.String("shard", m.ShardID))
	md, err := msg.Metadata()
	if err != nil {
		log.Error("dropping shard message without metadata", slog.Any("err", err))
		_ = msg.TermWithReason("no metadata")
		return
	}
	attempt := int(md.NumDelivered)
	maxDeliver := l.Config().MaxDeliver
	if info := l.Consumer().CachedInfo(); info != nil && info.Config.MaxDeliver > 0 {
		maxDeliver = info.Config.MaxDeliver
	}
	final := attempt >= maxDeliver
	// lctx bounds one ledger write; every write gets its own, as a shard may run for long.
	lctx := func() (context.Context, context.CancelFunc) { return w.ledgerCtx(hard) }
	// giveBack returns the message of a shard this delivery did not claim.
	giveBack := func(delay time.Duration, cause error) {
		w.giveBack(hard, log, l, msg, m, md.Sequence.Stream, received, final, delay, cause)
	}
	if ctx.Err() != nil { // handed out while stopping: give it straight back
		giveBack(0, nil)
		return
	}

	run, _, err := l.Run(ctx, m.RunID)
	if errors.Is(err, ledger.ErrNotFound) {
		log.Error("dropping shard of an unknown run", slog.Any("err", err))
		_ = msg.TermWithReason("unknown run")
		return
	}
	if err != nil {
		err = fmt.Errorf("reading run record: %w", err)
		giveBack(w.retryDelay(attempt, err), err)
		return
	}
	if ledger.HandBack(run) {
		// An operator stopped the run: its record stays as it is for the resume, which
		// queues the shard afresh.
		log.Info("run stopped; leaving the shard to its resume")
		_ = msg.TermWithReason("run stopped")
		return
	}
	claim, err := l.Claim(ctx, m.RunID, m.ShardID, w.cfg.ID, attempt)
	switch {
	case errors.Is(err, ledger.ErrTerminal):
		log.Info("shard already finished", slog.Any("err", err))
		c, cancel := lctx()
		_ = msg.DoubleAck(c)
		cancel()
		return
	case errors.Is(err, ledger.ErrNotFound):
		log.Error("dropping shard message without a record", slog.Any("err", err))
		_ = msg.TermWithReason("no shard record")
		return
	case errors.Is(err, ledger.ErrBusy):
		giveBack(l.Config().AckWait, err)
		return
	case err != nil:
		err = fmt.Errorf("claiming shard: %w", err)
		giveBack(w.retryDelay(attempt, err), err)
		return
	}
	// The shard's work ends when the worker stops (ctx) or an operator stops the run.
	ctx, endShard := context.WithCancel(ctx)
	defer endShard()
	go func() {
		select {
		case <-w.stops.signal(m.RunID):
			endShard()
		case <-ctx.Done():
		}
	}()
	rec := claim.Record()
	log = log.With(slog.String("repo", rec.Repository), slog.Int("attempt", attempt))
	defer w.cfg.Observer.StartShard(m.RunID, m.ShardID)()

	fail := func(cause error) {
		ours, err := w.settle(hard, claim, func(c context.Context) error { return claim.Fail(c, cause) })
		switch {
		case !ours:
			w.leave(log, "failing", err)
			return
		case err != nil && !final:
			log.Error("recording shard failure", slog.Any("err", err), slog.Any("cause", cause))
			_ = msg.NakWithDelay(w.retryDelay(attempt, err))
			return
		case err != nil: // the record names us on the last delivery: the coordinator fails it as abandoned
			log.Error("recording shard failure", slog.Any("err", err), slog.Any("cause", cause))
		default:
			log.Error("shard failed", slog.Any("err", cause))
		}
		_ = msg.TermWithReason(truncate(cause.Error(), 200))
	}
	if ledger.Stopped(run) {
		fail(fmt.Errorf("run %s stopped: %s", run.RunID, cmp.Or(run.Reason, string(run.State))))
		return
	}
	if err := checkKind(run, rec.Kind); err != nil {
		fail(err)
		return
	}
	if err := w.cfg.Floor.Check(run, rec.Repository, time.Now()); err != nil {
		fail(err) // before any client exists: nothing of the shard is listed, tagged or deleted
		return
	}
	entry, err := w.runEntry(ctx, run)
	var perr *policyError
	switch {
	case errors.As(err, &perr):
		fail(err)
		return
	case err != nil && ctx.Err() != nil:
		w.release(hard, log, l, msg, md, claim, final)
		return
	case err != nil:
		w.retryOrFail(hard, log, msg, claim, attempt, final, err)
		return
	}

	log.Info("shard claimed", slog.String("after", rec.Range.After), slog.String("through", rec.Range.Through),
		slog.String("resume", rec.Resume()))
	// The heartbeat goes on until the message is settled: the ledger writes after the work
	// may take a while, and the delivery must stay this worker's meanwhile.
	defer w.heartbeat(msg, l.Config().AckWait/3)()
	switch rec.Kind {
	case proto.KindFamily:
		err = w.family(ctx, hard, claim, entry, run, l, log)
	case proto.KindPreserve:
		err = w.preserveOne(ctx, hard, claim, entry, run, final, log)
	default:
		err = w.prune(ctx, grace, hard, claim, entry, run, l, msg, final, log)
	}
	if errors.Is(err, registry.ErrUnauthorized) {
		// The client's credentials were refused after its own retries, for instance a token
		// the registry expired or revoked before the client expected (regclient assumes 60 s
		// and does not refresh on a 401 it thinks it has answered). A prune shard already
		// made the call again with a fresh client (see session); the next delivery builds
		// one in any case, which fetches a fresh token.
		w.forget(run.RunID, entry)
	}

	var lerr *listError
	var derr *deleteError
	var perm *permanentError
	var rerr *retryError
	switch {
	case err == nil:
		ours, err := w.settle(hard, claim, claim.Done)
		if !ours {
			w.leave(log, "finishing", err)
			return
		}
		if err != nil {
			log.Warn("recording shard done", slog.Any("err", err))
			_ = msg.NakWithDelay(w.retryDelay(attempt, err))
			return
		}
		r := claim.Record()
		log.Info("shard done", slog.Int64("scanned", r.Counters.Scanned), slog.Int64("eligible", r.Counters.Eligible),
			slog.Int64("deleted", r.Counters.Deleted), slog.Int64("delete_failed", r.Counters.DeleteFailed))
		c, cancel := lctx()
		defer cancel()
		if err := msg.DoubleAck(c); err != nil {
			log.Warn("acking finished shard; it may be redelivered and will be acked then", slog.Any("err", err))
		}
	case errors.Is(err, ledger.ErrFenced):
		log.Warn("lost the shard to another worker; stopping without touching its message", slog.Any("err", err))
	case errors.Is(err, errCapReached):
		c, cancel := lctx()
		if serr := l.StopRun(c, run.RunID, err.Error()); serr != nil {
			log.Error("stopping run at the delete cap", slog.Any("err", serr))
		}
		cancel()
		fail(err)
	case errors.As(err, &perm):
		fail(perm.err)
	case ctx.Err() != nil: // graceful stop: finished pages are checkpointed
		w.release(hard, log, l, msg, md, claim, final)
	case errors.As(err, &lerr):
		w.retryOrFail(hard, log, msg, claim, attempt, final, lerr.err)
	case errors.As(err, &derr):
		w.retryOrFail(hard, log, msg, claim, attempt, final, derr)
	case errors.As(err, &rerr):
		w.retryOrFail(hard, log, msg, claim, attempt, final, rerr.err)
	default: // a ledger call failed, not fenced: go on only if the record still names us
		c, cancel := lctx()
		_, verr := claim.Verify(c)
		cancel()
		if verr != nil {
			w.leave(log, "working on", errors.Join(err, verr))
			return
		}
		log.Warn("shard interrupted", slog.Any("err", err))
		w.retryOrFail(hard, log, msg, claim, attempt, final, err)
	}
}

// settle makes one ledger write of claim (op). Should it fail without being fenced (a
// timeout: the write may or may not have been stored), it asks the record which
// (Claim.Verify), and makes the write again while it was lost, settleTries times in all.
//
// ours reports whether the record still names this claim, so that its message may be acked,
// naked or termed: with err nil the write is stored; with err set it could not be. !ours means
// the shard may be someone else's (fenced, or the record could not be read): the message must
// be left alone.
func (w *Worker) settle(hard context.Context, claim *ledger.Claim, op func(context.Context) error) (ours bool, err error) {
	ctx, cancel := w.ledgerCtx(hard)
	defer cancel()
	for try := 1; ; try++ {
		err = op(ctx)
		if err == nil {
			return true, nil
		}
		if errors.Is(err, ledger.ErrFenced) {
			return false, err
		}
		landed, verr := claim.Verify(ctx)
		switch {
		case verr != nil:
			return false, errors.Join(err, verr)
		case landed:
			return true, nil
		case try == settleTries:
			return true, err
		}
		t := time.NewTimer(time.Duration(try) * settleDelay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return true, err
		}
	}
}

// leave logs why a shard's message is left alone: the shard was lost (fenced), or could be.
// JetStream redelivers the message after its AckWait unless the shard's holder settles it.
func (w *Worker) leave(log *slog.Logger, doing string, err error) {
	if errors.Is(err, ledger.ErrFenced) {
		log.Warn("lost the shard while "+doing+" it; leaving its message alone", slog.Any("err", err))
		return
	}
	log.Warn("cannot tell whether the shard is still ours after a ledger error; leaving its message alone",
		slog.String("while", doing), slog.Any("err", err))
}

// release gives a shard back on a graceful stop, so that another worker resumes it from its
// checkpoint at once: Release, then Nak. On the message's last delivery a Nak would strand the
// shard (JetStream delivers that message no more), so the message is replaced by a fresh one
// instead (Term, then ledger.Requeue).
func (w *Worker) release(hard context.Context, log *slog.Logger, l *ledger.Ledger, msg jetstream.Msg, md *jetstream.MsgMetadata,
	claim *ledger.Claim, final bool) {
	ours, err := w.settle(hard, claim, claim.Release)
	if !ours {
		w.leave(log, "releasing", err)
		return
	}
	if err != nil {
		// The record still names us: the next delivery takes it over (a newer attempt), and
		// after a requeue the coordinator gives it back once it is stale.
		log.Warn("releasing shard", slog.Any("err", err))
	}
	if w.stops.stopped(claim.Record().RunID) {
		// The run was stopped: its resume queues the shard afresh.
		log.Info("run stopped; shard handed back for its resume", slog.String("cursor", claim.Record().Cursor))
		_ = msg.TermWithReason("run stopped; handed back")
		return
	}
	log.Info("shard released for another worker", slog.String("cursor", claim.Record().Cursor))
	if !final {
		_ = msg.Nak()
		return
	}
	_ = msg.TermWithReason("released on its last delivery; requeued")
	ctx, cancel := w.ledgerCtx(hard)
	defer cancel()
	rec := claim.Record()
	if err := l.Requeue(ctx, rec.RunID, rec.ShardID, md.Sequence.Stream); err != nil {
		log.Warn("requeueing released shard; the coordinator will", slog.Any("err", err))
	}
}

// giveBack returns the message of a shard this delivery did not claim, after delay (0: at
// once; cause says why, nil for a stop). On the message's last delivery a Nak would strand the
// shard (JetStream keeps the message but delivers it no more, and the message refuses a new
// one on the shard's subject), so the message is termed and the shard requeued with a fresh
// message instead; a shard that is not pending is left to whoever has it. Otherwise the
// message is naked, unless this delivery is old enough that JetStream may have handed the
// message to another worker since (a nak would then take it from that worker): it then comes
// back after its AckWait by itself.
func (w *Worker) giveBack(hard context.Context, log *slog.Logger, l *ledger.Ledger, msg jetstream.Msg, m proto.ShardMessage,
	seq uint64, received time.Time, final bool, delay time.Duration, cause error) {
	if cause != nil {
		log.Warn("shard not started; retrying later", slog.Any("err", cause), slog.Bool("last_delivery", final))
	}
	if final {
		_ = msg.TermWithReason("given back unclaimed on its last delivery; requeued")
		ctx, cancel := w.ledgerCtx(hard)
		defer cancel()
		if err := l.Requeue(ctx, m.RunID, m.ShardID, seq); err != nil {
			log.Warn("requeueing shard given back on its last delivery; the coordinator will", slog.Any("err", err))
		}
		return
	}
	if time.Since(received) > l.Config().AckWait/2 {
		log.Warn("shard not started for long; leaving its message to be redelivered")
		return
	}
	if delay <= 0 {
		_ = msg.Nak()
		return
	}
	_ = msg.NakWithDelay(delay)
}

// retryOrFail gives a shard back for a later delivery, or fails it on its last delivery.
func (w *Worker) retryOrFail(hard context.Context, log *slog.Logger, msg jetstream.Msg, claim *ledger.Claim, attempt int, final bool, cause error) {
	if final {
		ours, err := w.settle(hard, claim, func(c context.Context) error { return claim.Fail(c, cause) })
		if !ours {
			w.leave(log, "failing", err)
			return
		}
		if err != nil { // the record names us: the coordinator fails it as abandoned
			log.Error("recording shard failure", slog.Any("err", err), slog.Any("cause", cause))
		}
		log.Error("shard failed on its last delivery", slog.Any("err", cause))
		_ = msg.TermWithReason(truncate(cause.Error(), 200))
		return
	}
	ours, err := w.settle(hard, claim, func(c context.Context) error { return claim.Retry(c, cause) })
	if !ours {
		w.leave(log, "giving back", err)
		return
	}
	if err != nil {
		log.Warn("recording shard error", slog.Any("err", err))
	}
	delay := w.retryDelay(attempt, cause)
	log.Warn("shard will be retried", slog.Any("err", cause), slog.Duration("delay", delay))
	_ = msg.NakWithDelay(delay)
}

// unauthorizedRetryDelay is the first redelivery delay after refused credentials.
const unauthorizedRetryDelay = time.Second

// retryDelay is the redelivery delay after attempt failed with err: the registry's Retry-After
// if it gave one, else RetryDelay (at most unauthorizedRetryDelay after refused credentials)
// doubled per attempt, capped.
func (w *Worker) retryDelay(attempt int, err error) time.Duration {
	var ra *registry.RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		return min(ra.After, maxRetryDelay)
	}
	d := w.cfg.RetryDelay
	if errors.Is(err, registry.ErrUnauthorized) {
		// The client was rebuilt (see handle): a fresh one fetches a fresh token at once, so
		// a token the registry expired early costs a second, not a full retry delay.
		d = min(d, unauthorizedRetryDelay)
	}
	for i := 1; i < attempt && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

// ledgerCtx bounds one ledger write. hard is the worker's context that outlives a stop by the
// stop bound (see stopContexts), so that a stopping worker still checkpoints and releases.
func (w *Worker) ledgerCtx(hard context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(hard, ledgerTimeout)
}

// heartbeat sends InProgress every interval until stop is called; stop waits for it to end.
// A frozen worker (a test's SIGSTOP) sends nothing.
func (w *Worker) heartbeat(msg jetstream.Msg, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(interval, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if !w.freeze.frozen() {
					_ = msg.InProgress()
				}
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// policyError marks a run whose policy does not compile: permanent for every shard of it.
type policyError struct{ err error }

func (e *policyError) Error() string { return "run policy: " + e.err.Error() }
func (e *policyError) Unwrap() error { return e.err }

// runEntry returns the cached policy and client of a run, building them on first use. A
// client that cannot be built is not cached (the next shard tries again).
func (w *Worker) runEntry(ctx context.Context, run proto.RunRecord) (*runEntry, error) {
	w.mu.Lock()
	e, ok := w.runs[run.RunID]
	w.mu.Unlock()
	if ok {
		return e, nil
	}
	rules, err := policy.New(run.Policy)
	if err != nil {
		return nil, &policyError{err}
	}
	client, err := w.cfg.Connect(ctx, run)
	if err != nil {
		return nil, fmt.Errorf("connecting to registry %s: %w", run.Registry, err)
	}
	if run.Mode == proto.ModeInventory {
		client = listOnly{c: client} // an inventory run never deletes, whatever its shards say
	}
	e = &runEntry{rules: rules, client: client}
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.runs[run.RunID]; ok { // another slot got there first
		return old, nil
	}
	if len(w.runs) >= maxCachedRuns {
		clear(w.runs)
	}
	w.runs[run.RunID] = e
	return e, nil
}

// forget drops the cached client of a run, if it is still e, so that the next shard of the
// run connects anew.
func (w *Worker) forget(runID string, e *runEntry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.runs[runID] == e {
		delete(w.runs, runID)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
