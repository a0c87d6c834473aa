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
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultSlots             = 4
	DefaultDeleteConcurrency = 64
	DefaultPageSize          = 100
	DefaultRetryDelay        = 10 * time.Second
	maxRetryDelay            = 5 * time.Minute
	minPageTimeout           = 5 * time.Minute  // bounds a page's deletes once started (see pageTimeout)
	ledgerTimeout            = 30 * time.Second // bounds a ledger write made after ctx ended
	maxCachedRuns            = 64
)

// Config holds a worker's tunables. Zero values mean the documented defaults.
type Config struct {
	// ID names this worker as the owner of the shards it claims. Default host-pid-random.
	ID string
	// Slots is how many shards the worker processes at once, one message each (default 4).
	// Messages are pulled one at a time when a slot is free: never prefetched.
	Slots int
	// DeleteConcurrency bounds the tag deletes in flight across all slots (default 64).
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
	// off the second half of what is left for another worker. 0 means never split.
	SplitAfter time.Duration
	// RetryDelay is the first redelivery delay after a failed list (default 10s); it doubles
	// with each delivery, up to 5m. A registry's Retry-After takes precedence.
	RetryDelay time.Duration
	// Ledger configures the JetStream state; it must match the coordinator's.
	Ledger ledger.Config
}

// Worker prunes shards. Create it with New and start it with Run.
type Worker struct {
	cfg     Config
	js      jetstream.JetStream
	log     *slog.Logger
	limiter *rate.Limiter // nil: unlimited
	deletes chan struct{} // DeleteConcurrency semaphore
	// pageTimeout bounds a page's deletes once started, so a hung registry cannot hold a
	// stopping worker forever.
	pageTimeout time.Duration

	mu   sync.Mutex
	runs map[string]*runEntry
}

// runEntry is what a worker caches per run: the compiled policy and the registry client.
type runEntry struct {
	rules  *policy.Rules
	client registry.Client
}

// New checks cfg, applies defaults and returns a worker. log may be nil (discard).
func New(cfg Config, js jetstream.JetStream, log *slog.Logger) (*Worker, error) {
	if js == nil {
		return nil, errors.New("worker: nil JetStream")
	}
	if cfg.Connect == nil {
		return nil, errors.New("worker: Config.Connect is required")
	}
	if cfg.Slots < 0 || cfg.DeleteConcurrency < 0 || cfg.PageSize < 0 || cfg.MaxRPS < 0 || cfg.SplitAfter < 0 || cfg.RetryDelay < 0 {
		return nil, fmt.Errorf("worker: negative setting in %+v", cfg)
	}
	cfg.Slots = cmp.Or(cfg.Slots, DefaultSlots)
	cfg.DeleteConcurrency = cmp.Or(cfg.DeleteConcurrency, DefaultDeleteConcurrency)
	cfg.PageSize = cmp.Or(cfg.PageSize, DefaultPageSize)
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, DefaultRetryDelay)
	if cfg.ID == "" {
		cfg.ID = defaultID()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Worker{
		cfg:     cfg,
		js:      js,
		log:     log.With(slog.String("worker", cfg.ID)),
		deletes: make(chan struct{}, cfg.DeleteConcurrency),
		runs:    make(map[string]*runEntry),
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

// Run takes shard messages until ctx is done, processing up to Slots at once. On ctx done it
// stops pulling, lets every shard in hand checkpoint its finished pages and give the shard back
// (Release, then Nak, so another worker resumes it at once), and returns nil once all have
// ended. It returns an error if the queue cannot be opened or the message stream breaks.
func (w *Worker) Run(ctx context.Context) error {
	l, err := ledger.Open(ctx, w.js, w.cfg.Ledger)
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	iter, err := l.Consumer().Messages(jetstream.PullMaxMessages(1))
	if err != nil {
		return fmt.Errorf("worker: starting message iterator: %w", err)
	}
	defer iter.Stop()
	stopDrain := context.AfterFunc(ctx, iter.Drain) // stop pulling; hand out what is buffered
	defer stopDrain()

	w.log.Info("worker started", slog.Int("slots", w.cfg.Slots), slog.Int("delete_concurrency", w.cfg.DeleteConcurrency),
		slog.Float64("max_rps", w.cfg.MaxRPS))
	sem := make(chan struct{}, w.cfg.Slots)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		sem <- struct{}{} // a free slot before pulling: one message per slot, nothing prefetched
		msg, err := iter.Next()
		if err != nil {
			<-sem
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if ctx.Err() != nil {
					w.log.Info("worker stopping")
					return nil
				}
				return fmt.Errorf("worker: message stream closed: %w", err)
			}
			w.log.Warn("pulling next shard", slog.Any("err", err))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			w.handle(ctx, l, msg)
		}()
	}
}

// handle ends msg in exactly one of Ack, Nak, NakWithDelay or Term, or in nothing when the
// shard was taken over (fenced).
func (w *Worker) handle(ctx context.Context, l *ledger.Ledger, msg jetstream.Msg) {
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
	if ctx.Err() != nil { // handed out while stopping: give it straight back
		_ = msg.Nak()
		return
	}
	attempt := int(md.NumDelivered)
	maxDeliver := l.Config().MaxDeliver
	if info := l.Consumer().CachedInfo(); info != nil && info.Config.MaxDeliver > 0 {
		maxDeliver = info.Config.MaxDeliver
	}
	lctx, cancel := w.ledgerCtx(ctx)
	defer cancel()

	run, _, err := l.Run(ctx, m.RunID)
	if errors.Is(err, ledger.ErrNotFound) {
		log.Error("dropping shard of an unknown run", slog.Any("err", err))
		_ = msg.TermWithReason("unknown run")
		return
	}
	if err != nil {
		w.giveBack(ctx, log, msg, attempt, fmt.Errorf("reading run record: %w", err))
		return
	}
	claim, err := l.Claim(ctx, m.RunID, m.ShardID, w.cfg.ID, attempt)
	switch {
	case errors.Is(err, ledger.ErrTerminal):
		log.Info("shard already finished", slog.Any("err", err))
		_ = msg.DoubleAck(lctx)
		return
	case errors.Is(err, ledger.ErrNotFound):
		log.Error("dropping shard message without a record", slog.Any("err", err))
		_ = msg.TermWithReason("no shard record")
		return
	case errors.Is(err, ledger.ErrBusy):
		log.Warn("shard held by a live worker; retrying later", slog.Any("err", err))
		_ = msg.NakWithDelay(l.Config().AckWait)
		return
	case err != nil:
		w.giveBack(ctx, log, msg, attempt, fmt.Errorf("claiming shard: %w", err))
		return
	}
	rec := claim.Record()
	log = log.With(slog.String("repo", rec.Repository), slog.Int("attempt", attempt))

	fail := func(cause error) {
		if err := claim.Fail(lctx, cause); err != nil {
			if errors.Is(err, ledger.ErrFenced) {
				log.Warn("lost the shard while failing it", slog.Any("err", err))
				return
			}
			log.Error("recording shard failure", slog.Any("err", err), slog.Any("cause", cause))
			_ = msg.NakWithDelay(w.retryDelay(attempt, err))
			return
		}
		log.Error("shard failed", slog.Any("err", cause))
		_ = msg.TermWithReason(truncate(cause.Error(), 200))
	}
	if ledger.Stopped(run) {
		fail(fmt.Errorf("run %s stopped: %s", run.RunID, cmp.Or(run.Reason, string(run.State))))
		return
	}
	if rec.Kind != proto.KindPrune {
		fail(fmt.Errorf("shard kind %q is not supported by this worker", rec.Kind))
		return
	}
	entry, err := w.runEntry(ctx, run)
	var perr *policyError
	switch {
	case errors.As(err, &perr):
		fail(err)
		return
	case err != nil:
		w.retryOrFail(lctx, log, msg, claim, attempt, maxDeliver, err)
		return
	}

	log.Info("shard claimed", slog.String("after", rec.Range.After), slog.String("through", rec.Range.Through),
		slog.String("resume", rec.Resume()))
	stopBeat := heartbeat(msg, l.Config().AckWait/3)
	err = w.prune(ctx, claim, entry, run, l, msg, log)
	stopBeat()

	var lerr *listError
	switch {
	case err == nil:
		if err := claim.Done(lctx); err != nil {
			if errors.Is(err, ledger.ErrFenced) {
				log.Warn("lost the shard at its end", slog.Any("err", err))
				return
			}
			log.Warn("recording shard done", slog.Any("err", err))
			_ = msg.NakWithDelay(w.retryDelay(attempt, err))
			return
		}
		r := claim.Record()
		log.Info("shard done", slog.Int64("scanned", r.Counters.Scanned), slog.Int64("eligible", r.Counters.Eligible),
			slog.Int64("deleted", r.Counters.Deleted), slog.Int64("delete_failed", r.Counters.DeleteFailed))
		if err := msg.DoubleAck(lctx); err != nil {
			log.Warn("acking finished shard; it may be redelivered and will be acked then", slog.Any("err", err))
		}
	case errors.Is(err, ledger.ErrFenced):
		log.Warn("lost the shard to another worker; stopping without touching its message", slog.Any("err", err))
	case errors.Is(err, errCapReached):
		if serr := l.StopRun(lctx, run.RunID, err.Error()); serr != nil {
			log.Error("stopping run at the delete cap", slog.Any("err", serr))
		}
		fail(err)
	case ctx.Err() != nil: // graceful stop: finished pages are checkpointed
		if err := claim.Release(lctx); err != nil {
			if errors.Is(err, ledger.ErrFenced) {
				log.Warn("lost the shard while releasing it", slog.Any("err", err))
				return
			}
			log.Warn("releasing shard", slog.Any("err", err))
		}
		log.Info("shard released for another worker", slog.String("cursor", claim.Record().Cursor))
		_ = msg.Nak()
	case errors.As(err, &lerr):
		w.retryOrFail(lctx, log, msg, claim, attempt, maxDeliver, lerr.err)
	default: // a ledger write failed (not fenced): the record still names us; let it be redelivered
		log.Warn("shard interrupted", slog.Any("err", err))
		_ = msg.NakWithDelay(w.retryDelay(attempt, err))
	}
}

// giveBack returns a message whose shard was not claimed: at once when stopping, else after
// a delay.
func (w *Worker) giveBack(ctx context.Context, log *slog.Logger, msg jetstream.Msg, attempt int, err error) {
	if ctx.Err() != nil {
		_ = msg.Nak()
		return
	}
	log.Warn("shard not started; retrying later", slog.Any("err", err))
	_ = msg.NakWithDelay(w.retryDelay(attempt, err))
}

// retryOrFail gives a shard back for a later delivery, or fails it on its last delivery.
func (w *Worker) retryOrFail(ctx context.Context, log *slog.Logger, msg jetstream.Msg, claim *ledger.Claim, attempt, maxDeliver int, cause error) {
	if attempt >= maxDeliver {
		if err := claim.Fail(ctx, cause); err != nil {
			if errors.Is(err, ledger.ErrFenced) {
				log.Warn("lost the shard while failing it", slog.Any("err", err))
				return
			}
			log.Error("recording shard failure", slog.Any("err", err), slog.Any("cause", cause))
		}
		log.Error("shard failed on its last delivery", slog.Any("err", cause))
		_ = msg.TermWithReason(truncate(cause.Error(), 200))
		return
	}
	if err := claim.Retry(ctx, cause); errors.Is(err, ledger.ErrFenced) {
		log.Warn("lost the shard while giving it back", slog.Any("err", err))
		return
	} else if err != nil {
		log.Warn("recording shard error", slog.Any("err", err))
	}
	delay := w.retryDelay(attempt, cause)
	log.Warn("shard will be retried", slog.Any("err", cause), slog.Duration("delay", delay))
	_ = msg.NakWithDelay(delay)
}

// retryDelay is the redelivery delay after attempt failed with err: the registry's Retry-After
// if it gave one, else RetryDelay doubled per attempt, capped.
func (w *Worker) retryDelay(attempt int, err error) time.Duration {
	var ra *registry.RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		return min(ra.After, maxRetryDelay)
	}
	d := w.cfg.RetryDelay
	for i := 1; i < attempt && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

// ledgerCtx is for ledger writes that must happen even after ctx ended (checkpoint and
// release on a graceful stop), bounded on their own.
func (w *Worker) ledgerCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), ledgerTimeout)
}

// heartbeat sends InProgress every interval until stop is called; stop waits for it to end.
func heartbeat(msg jetstream.Msg, interval time.Duration) (stop func()) {
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
				_ = msg.InProgress()
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
