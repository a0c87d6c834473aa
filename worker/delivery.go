package worker

// This file: one delivery of a shard message, from decoding it to settling it (ack, retry,
// fail, release, give back), and its heartbeat.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

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
	switch {
	case isPermanent(err):
		fail(classify(err).cause)
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

	f := classify(err)
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
	case f != nil && f.permanent:
		if errors.Is(f.cause, errCapReached) {
			c, cancel := lctx()
			if serr := l.StopRun(c, run.RunID, f.cause.Error()); serr != nil {
				log.Error("stopping run at the delete cap", slog.Any("err", serr))
			}
			cancel()
		}
		fail(f.cause)
	case ctx.Err() != nil: // graceful stop: finished pages are checkpointed
		w.release(hard, log, l, msg, md, claim, final)
	case f != nil:
		w.retryOrFail(hard, log, msg, claim, attempt, final, f.cause)
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
