package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// A shard record alone cannot say whether some delivery will still reach its shard: its
// attempt counts the deliveries that claimed it, not the ones given back before a claim, and a
// message queued afresh starts JetStream's count again. What the shard queue holds for the
// shard can, so the rescue of stuck shards asks the queue.

// queue is what the shard queue holds for one shard.
type queue int

const (
	// queueEmpty: no message; no delivery will reach the shard.
	queueEmpty queue = iota
	// queueWaiting: a message not handed to any worker yet; one will be, however long the
	// queue in front of it.
	queueWaiting
	// queueDelivered: a message handed out at least once. It comes back after a Nak or an
	// AckWait, unless that delivery was its last: JetStream then keeps it in the stream but
	// delivers it no more, and it refuses a new message on the shard's subject.
	queueDelivered
)

// queued reports what the shard queue holds for a shard, and the message's stream sequence.
func (l *Ledger) queued(ctx context.Context, runID, shardID string) (queue, uint64, error) {
	if l.cons == nil {
		return 0, 0, fmt.Errorf("consumer %s: %w", proto.ConsumerWorkers, jetstream.ErrConsumerNotFound)
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	stream, err := l.js.Stream(ctx, proto.StreamShards)
	if err != nil {
		return 0, 0, err
	}
	m, err := stream.GetLastMsgForSubject(ctx, proto.ShardSubject(runID, shardID))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return queueEmpty, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	// Read after the message: a delivery in between makes it look delivered, never waiting.
	info, err := l.cons.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	if m.Sequence > info.Delivered.Stream {
		return queueWaiting, m.Sequence, nil
	}
	return queueDelivered, m.Sequence, nil
}

// Rescued says what Rescue did to a shard.
type Rescued int

const (
	// RescueNone: the shard is finished, held, or will be delivered: nothing was done.
	RescueNone Rescued = iota
	// RescueRequeued: the shard got a fresh message.
	RescueRequeued
	// RescueFailed: the shard was failed as abandoned on its message's last delivery.
	RescueFailed
)

// Rescue makes sure that a shard that is not finished will be delivered again, judging from
// what the shard queue holds for it rather than from its record's attempt count. The
// coordinator calls it for shards whose records have not changed for a while.
//
//   - A message waiting in the queue will reach a worker: nothing is done, however long it
//     waits (the shard is never failed while it waits).
//   - A pending shard without a message (its publication was lost, or a requeue stopped
//     half-way) gets one.
//   - A pending shard whose message was delivered, and whose record was not written for
//     StaleAfter, gets a fresh message in place of the old one: the old one ran out of
//     deliveries (its last delivery was given back before a claim, or its worker died before
//     claiming), or it waits for a redelivery, which the fresh message stands in for.
//   - A running shard not written for StaleAfter is failed as abandoned when its claim was on
//     the message's last delivery (FailAbandoned), and given back with a fresh message when
//     the queue holds no message for it at all.
//
// Anything else is left to JetStream's redelivery and Claim's takeover of stale records.
func (l *Ledger) Rescue(ctx context.Context, runID, shardID string) (Rescued, error) {
	key := proto.ShardKey(runID, shardID)
	rec, rev, err := l.Shard(ctx, runID, shardID)
	if err != nil || rec.State.Terminal() {
		return RescueNone, err
	}
	stale := l.quiet(rec, l.now())
	if rec.State == proto.StateRunning && !stale {
		return RescueNone, nil
	}
	q, seq, err := l.queued(ctx, runID, shardID)
	if err != nil {
		return RescueNone, fmt.Errorf("rescuing %s: reading the shard queue: %w", key, err)
	}
	switch {
	case q == queueWaiting:
		return RescueNone, nil
	case rec.State == proto.StatePending && (q == queueEmpty || stale):
		if err := l.Requeue(ctx, runID, shardID, seq); err != nil {
			return RescueNone, err
		}
		return RescueRequeued, nil
	case l.abandoned(rec):
		failed, err := l.failAbandoned(ctx, key, rec, rev)
		if !failed || err != nil {
			return RescueNone, err
		}
		return RescueFailed, nil
	case rec.State == proto.StateRunning && q == queueEmpty:
		// Its holder's message is gone (termed after a write that did not land, or replaced
		// under it), so nothing would deliver the shard again: give it back and queue it.
		rec.LastError = fmt.Sprintf("given back by the coordinator: held by %s at attempt %d, not written since %s, and no message queued",
			rec.Owner, rec.Attempt, lastWrite(rec).Format(time.RFC3339))
		rec.State, rec.Owner, rec.Attempt, rec.Heartbeat = proto.StatePending, "", 0, l.now().UTC()
		rev, err := update(ctx, l.state, key, rec, rev)
		if errors.Is(err, ErrFenced) { // it moved: not stuck after all
			return RescueNone, nil
		}
		if err != nil {
			return RescueNone, fmt.Errorf("rescuing %s: %w", key, err)
		}
		return RescueRequeued, l.publish(ctx, runID, shardID, fmt.Sprintf("%s/r%d", proto.ShardMsgID(runID, shardID), rev))
	}
	return RescueNone, nil
}

// Requeue gives a pending shard a fresh message in place of the one at stream sequence oldSeq
// (0: none), which JetStream then delivers MaxDeliver times again. A worker that gives a shard
// back on its message's last delivery, claimed or not, uses it after Term: a Nak would strand
// the shard, as JetStream delivers that message no more. The old message is deleted first,
// because Term is processed asynchronously and the subject holds one message only.
//
// The record's attempt count restarts with the fresh message, in one update that also marks
// the record written (so the fresh message's ID, which names the new revision, cannot be
// swallowed by the de-duplication window). A shard that is not pending is left alone: someone
// else has it, or it is finished.
func (l *Ledger) Requeue(ctx context.Context, runID, shardID string, oldSeq uint64) error {
	key := proto.ShardKey(runID, shardID)
	if oldSeq != 0 {
		sctx, cancel := opContext(ctx)
		defer cancel()
		stream, err := l.js.Stream(sctx, proto.StreamShards)
		if err != nil {
			return fmt.Errorf("requeueing %s: %w", key, err)
		}
		if err := stream.DeleteMsg(sctx, oldSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) &&
			!errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return fmt.Errorf("requeueing %s: removing message %d: %w", key, oldSeq, err)
		}
	}
	for range casRetries {
		rec, rev, err := l.Shard(ctx, runID, shardID)
		if err != nil {
			return err
		}
		if rec.State != proto.StatePending {
			return nil
		}
		rec.Owner, rec.Attempt, rec.Heartbeat = "", 0, l.now().UTC()
		rev, err = update(ctx, l.state, key, rec, rev)
		if errors.Is(err, ErrFenced) {
			continue // changed between read and write: decide again on the new record
		}
		if err != nil {
			return fmt.Errorf("requeueing %s: %w", key, err)
		}
		return l.publish(ctx, runID, shardID, fmt.Sprintf("%s/r%d", proto.ShardMsgID(runID, shardID), rev))
	}
	return fmt.Errorf("requeueing %s: too many concurrent updates: %w", key, ErrFenced)
}

// abandoned reports whether rec is stale (see Stale) on its message's last delivery.
func (l *Ledger) abandoned(rec proto.ShardRecord) bool {
	return rec.Attempt >= l.cfg.MaxDeliver && l.Stale(rec, l.now())
}

// FailAbandoned fails a shard that no delivery will reach again because its holder died on
// the message's last delivery: the record is running at attempt >= MaxDeliver, has not been
// written for StaleAfter, and no message for it waits in the queue. A pending shard is never
// failed here, whatever its attempt count: Rescue queues it again instead. It reports whether
// it failed the shard.
func (l *Ledger) FailAbandoned(ctx context.Context, runID, shardID string) (bool, error) {
	rec, rev, err := l.Shard(ctx, runID, shardID)
	if err != nil || !l.abandoned(rec) {
		return false, err
	}
	key := proto.ShardKey(runID, shardID)
	q, _, err := l.queued(ctx, runID, shardID)
	if err != nil {
		return false, fmt.Errorf("checking %s for abandonment: reading the shard queue: %w", key, err)
	}
	if q == queueWaiting {
		return false, nil
	}
	return l.failAbandoned(ctx, key, rec, rev)
}

// failAbandoned fails rec, read at rev, as abandoned.
func (l *Ledger) failAbandoned(ctx context.Context, key string, rec proto.ShardRecord, rev uint64) (bool, error) {
	last := lastWrite(rec)
	why := fmt.Sprintf("abandoned after %d deliveries (no update since %s)", rec.Attempt, last.Format(time.RFC3339))
	if rec.LastError != "" {
		why += "; last error: " + rec.LastError
	}
	rec.State, rec.LastError, rec.FinishedAt = proto.StateFailed, why, l.now().UTC()
	if _, err := update(ctx, l.state, key, rec, rev); err != nil {
		if errors.Is(err, ErrFenced) { // it moved: not abandoned after all
			return false, nil
		}
		return false, err
	}
	return true, nil
}
