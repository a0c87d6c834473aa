package worker

// This file: how a delivery ends. Every message ends in exactly one of Ack, Nak (with a delay)
// or Term, or is left alone when the shard may be someone else's.

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/tagsweep/tagsweep/internal/pause"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/registry"
)

// settle ends a claimed delivery by how its work ended (err): done, lost to another worker,
// failed, released on a stop, or given back for a retry. ctx is the shard's: its end means
// the worker or the run stopped.
func (d *delivery) settle(ctx, hard context.Context, err error) {
	f := classify(err)
	switch {
	case err == nil:
		d.ack(hard)
	case errors.Is(err, ledger.ErrFenced):
		d.log.Warn("lost the shard to another worker; stopping without touching its message", slog.Any("err", err))
	case f != nil && f.permanent:
		if errors.Is(f.cause, errCapReached) {
			c, cancel := d.w.ledgerCtx(hard)
			if serr := d.l.StopRun(c, d.run.RunID, f.cause.Error()); serr != nil {
				d.log.Error("stopping run at the delete cap", slog.Any("err", serr))
			}
			cancel()
		}
		d.fail(hard, f.cause)
	case ctx.Err() != nil: // graceful stop: finished pages are checkpointed
		d.release(hard)
	case f != nil:
		d.retry(hard, f.cause)
	default: // a ledger call failed, not fenced: go on only if the record still names us
		c, cancel := d.w.ledgerCtx(hard)
		_, verr := d.claim.Verify(c)
		cancel()
		if verr != nil {
			d.leave("working on", errors.Join(err, verr))
			return
		}
		d.log.Warn("shard interrupted", slog.Any("err", err))
		d.retry(hard, err)
	}
}

// store makes one ledger write of the claim (op). Should it fail without being fenced (a
// timeout: the write may or may not have been stored), it asks the record which
// (Claim.Verify), and makes the write again while it was lost, settleTries times in all.
//
// ours reports whether the record still names this claim, so that its message may be acked,
// naked or termed: with err nil the write is stored; with err set it could not be. !ours means
// the shard may be someone else's (fenced, or the record could not be read): the message must
// be left alone.
func (d *delivery) store(hard context.Context, op func(context.Context) error) (ours bool, err error) {
	ctx, cancel := d.w.ledgerCtx(hard)
	defer cancel()
	for try := 1; ; try++ {
		err = op(ctx)
		if err == nil {
			return true, nil
		}
		if errors.Is(err, ledger.ErrFenced) {
			return false, err
		}
		landed, verr := d.claim.Verify(ctx)
		switch {
		case verr != nil:
			return false, errors.Join(err, verr)
		case landed:
			return true, nil
		case try == settleTries:
			return true, err
		}
		if pause.For(ctx, time.Duration(try)*settleDelay) != nil {
			return true, err
		}
	}
}

// ack records the shard done and acks its message.
func (d *delivery) ack(hard context.Context) {
	ours, err := d.store(hard, d.claim.Done)
	if !ours {
		d.leave("finishing", err)
		return
	}
	if err != nil {
		d.log.Warn("recording shard done", slog.Any("err", err))
		_ = d.msg.NakWithDelay(d.retryDelay(err))
		return
	}
	r := d.claim.Record()
	d.log.Info("shard done", slog.Int64("scanned", r.Counters.Scanned), slog.Int64("eligible", r.Counters.Eligible),
		slog.Int64("deleted", r.Counters.Deleted), slog.Int64("delete_failed", r.Counters.DeleteFailed))
	c, cancel := d.w.ledgerCtx(hard)
	defer cancel()
	if err := d.msg.DoubleAck(c); err != nil {
		d.log.Warn("acking finished shard; it may be redelivered and will be acked then", slog.Any("err", err))
	}
}

// fail records the shard failed with cause and terms its message. Should the record not take
// it, the message is naked for a later delivery to try again; on the last delivery it is
// termed all the same, and the coordinator fails the shard as abandoned.
func (d *delivery) fail(hard context.Context, cause error) {
	ours, err := d.store(hard, func(c context.Context) error { return d.claim.Fail(c, cause) })
	switch {
	case !ours:
		d.leave("failing", err)
		return
	case err != nil:
		d.log.Error("recording shard failure", slog.Any("err", err), slog.Any("cause", cause))
		if !d.final {
			_ = d.msg.NakWithDelay(d.retryDelay(err))
			return
		}
	default:
		d.log.Error("shard failed", slog.Any("err", cause), slog.Bool("last_delivery", d.final))
	}
	_ = d.msg.TermWithReason(truncate(cause.Error(), 200))
}

// retry gives the shard back for a later delivery, or fails it on its last delivery.
func (d *delivery) retry(hard context.Context, cause error) {
	if d.final {
		d.fail(hard, cause)
		return
	}
	ours, err := d.store(hard, func(c context.Context) error { return d.claim.Retry(c, cause) })
	if !ours {
		d.leave("giving back", err)
		return
	}
	if err != nil {
		d.log.Warn("recording shard error", slog.Any("err", err))
	}
	delay := d.retryDelay(cause)
	d.log.Warn("shard will be retried", slog.Any("err", cause), slog.Duration("delay", delay))
	_ = d.msg.NakWithDelay(delay)
}

// release gives a shard back on a graceful stop, so that another worker resumes it from its
// checkpoint at once: Release, then Nak (or a requeue on the message's last delivery).
func (d *delivery) release(hard context.Context) {
	ours, err := d.store(hard, d.claim.Release)
	if !ours {
		d.leave("releasing", err)
		return
	}
	if err != nil {
		// The record still names us: the next delivery takes it over (a newer attempt), and
		// after a requeue the coordinator gives it back once it is stale.
		d.log.Warn("releasing shard", slog.Any("err", err))
	}
	if d.w.stops.stopped(d.run.RunID) {
		// The run was stopped: its resume queues the shard afresh.
		d.log.Info("run stopped; shard handed back for its resume", slog.String("cursor", d.claim.Record().Cursor))
		_ = d.msg.TermWithReason("run stopped; handed back")
		return
	}
	d.log.Info("shard released for another worker", slog.String("cursor", d.claim.Record().Cursor))
	if d.final {
		d.requeue(hard, "released on its last delivery; requeued")
		return
	}
	_ = d.msg.Nak()
}

// giveBack returns the message of a shard this delivery did not claim, after delay (0: at
// once; cause says why, nil for a stop). On the message's last delivery it is requeued.
// Otherwise the message is naked, unless this delivery is old enough that JetStream may have
// handed the message to another worker since (a nak would then take it from that worker): it
// then comes back after its AckWait by itself.
func (d *delivery) giveBack(hard context.Context, delay time.Duration, cause error) {
	if cause != nil {
		d.log.Warn("shard not started; retrying later", slog.Any("err", cause), slog.Bool("last_delivery", d.final))
	}
	switch {
	case d.final:
		d.requeue(hard, "given back unclaimed on its last delivery; requeued")
	case time.Since(d.received) > d.l.Config().AckWait/2:
		d.log.Warn("shard not started for long; leaving its message to be redelivered")
	case delay <= 0:
		_ = d.msg.Nak()
	default:
		_ = d.msg.NakWithDelay(delay)
	}
}

// requeue replaces the message on its last delivery by a fresh one (Term, then
// ledger.Requeue): a Nak would strand the shard, as JetStream keeps the message but delivers
// it no more, and the message refuses a new one on the shard's subject. A shard that is not
// pending is left to whoever has it; should the requeue fail, the coordinator requeues the
// shard once it sees it stranded.
func (d *delivery) requeue(hard context.Context, reason string) {
	_ = d.msg.TermWithReason(reason)
	ctx, cancel := d.w.ledgerCtx(hard)
	defer cancel()
	if err := d.l.Requeue(ctx, d.m.RunID, d.m.ShardID, d.md.Sequence.Stream); err != nil {
		d.log.Warn("requeueing the shard on its last delivery; the coordinator will", slog.Any("err", err))
	}
}

// leave logs why a shard's message is left alone: the shard was lost (fenced), or could be.
// JetStream redelivers the message after its AckWait unless the shard's holder settles it.
func (d *delivery) leave(doing string, err error) {
	if errors.Is(err, ledger.ErrFenced) {
		d.log.Warn("lost the shard while "+doing+" it; leaving its message alone", slog.Any("err", err))
		return
	}
	d.log.Warn("cannot tell whether the shard is still ours after a ledger error; leaving its message alone",
		slog.String("while", doing), slog.Any("err", err))
}

// unauthorizedRetryDelay is the first redelivery delay after refused credentials.
const unauthorizedRetryDelay = time.Second

// retryDelay is the redelivery delay after this delivery failed with err: the registry's
// Retry-After if it gave one, else RetryDelay (at most unauthorizedRetryDelay after refused
// credentials) doubled per attempt, capped.
func (d *delivery) retryDelay(err error) time.Duration {
	var ra *registry.RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		return min(ra.After, maxRetryDelay)
	}
	delay := d.w.cfg.RetryDelay
	if errors.Is(err, registry.ErrUnauthorized) {
		// The client was rebuilt (see work): a fresh one fetches a fresh token at once, so a
		// token the registry expired early costs a second, not a full retry delay.
		delay = min(delay, unauthorizedRetryDelay)
	}
	for i := 1; i < d.attempt && delay < maxRetryDelay; i++ {
		delay *= 2
	}
	return min(delay, maxRetryDelay)
}

// ledgerCtx bounds one ledger write. hard is the worker's context that outlives a stop by the
// stop bound (see stopContexts), so that a stopping worker still checkpoints and releases.
func (w *Worker) ledgerCtx(hard context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(hard, ledgerTimeout)
}
