package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// ReopenShard gives a failed shard another go: in one update its record goes back to pending,
// keeping its cursor, counters and last error (owner, attempt and finish time cleared), and a
// fresh message is published, so the next delivery resumes where the shard stopped. Before
// that, any message of the shard still in the stream is removed: a message that ran out of
// deliveries stays there (JetStream keeps it, and the consumer has moved past it) and would
// refuse the new one, as a subject holds one pending message only. It reports whether it
// reopened the shard; a shard that is not failed is left alone.
func (l *Ledger) ReopenShard(ctx context.Context, runID, shardID string) (bool, error) {
	key := proto.ShardKey(runID, shardID)
	rec, rev, err := l.Shard(ctx, runID, shardID)
	if err != nil {
		return false, err
	}
	if rec.State != proto.StateFailed {
		return false, nil
	}
	// A failed shard has no live message: nothing can be working on one. Purge first, so that
	// a crash after the update leaves a pending record without a message, which the
	// coordinator re-publishes, never a pending record behind a dead message.
	sctx, cancel := opContext(ctx)
	defer cancel()
	stream, err := l.js.Stream(sctx, proto.StreamShards)
	if err != nil {
		return false, fmt.Errorf("reopening %s: %w", key, err)
	}
	if err := stream.Purge(sctx, jetstream.WithPurgeSubject(proto.ShardSubject(runID, shardID))); err != nil {
		return false, fmt.Errorf("reopening %s: removing its old message: %w", key, err)
	}
	rec.State, rec.Owner, rec.Attempt = proto.StatePending, "", 0
	rec.StartedAt, rec.FinishedAt = time.Time{}, time.Time{}
	rev, err = update(ctx, l.state, key, rec, rev)
	if errors.Is(err, ErrFenced) {
		return false, nil // someone else reopened or changed it meanwhile
	}
	if err != nil {
		return false, fmt.Errorf("reopening %s: %w", key, err)
	}
	return true, l.publish(ctx, runID, shardID, fmt.Sprintf("%s/r%d", proto.ShardMsgID(runID, shardID), rev))
}

// Reserved returns how many deletions the run's workers have reserved against its cap so far
// (0 when none, or when the run has no cap).
func (l *Ledger) Reserved(ctx context.Context, runID string) (int64, error) {
	var b proto.DeleteBudget
	_, err := get(ctx, l.state, proto.DeleteBudgetKey(runID), &b)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return b.Reserved, nil
}
