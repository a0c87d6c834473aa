package ledger

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// CreateShard records a shard and publishes its message, in that order, so that a message
// never names a shard without a record. It is idempotent: for a shard already recorded it
// re-publishes the message only while the record is pending (a message already queued is
// refused by the one-pending-message-per-subject limit and the de-duplication window), and
// never for a running, done or failed shard. created reports whether the record is new.
//
// The record's V, State (pending), Attempt, Owner and CreatedAt are set here.
func (l *Ledger) CreateShard(ctx context.Context, rec proto.ShardRecord) (created bool, err error) {
	if !proto.ValidToken(rec.RunID) || !proto.ValidToken(rec.ShardID) {
		return false, fmt.Errorf("shard %q of run %q: ids must be 1-64 of [A-Za-z0-9_-]", rec.ShardID, rec.RunID)
	}
	if rec.Range.Through <= rec.Range.After {
		return false, fmt.Errorf("shard %s: empty range (%q, %q]", rec.ShardID, rec.Range.After, rec.Range.Through)
	}
	if rec.Kind == "" {
		rec.Kind = proto.KindPrune
	}
	rec.V, rec.State, rec.Owner, rec.Attempt = proto.Version, proto.StatePending, "", 0
	rec.StartedAt, rec.Heartbeat, rec.FinishedAt = time.Time{}, time.Time{}, time.Time{}
	if rec.CreatedAt.IsZero() {
		rec.CreatedAt = l.now().UTC()
	}
	key := proto.ShardKey(rec.RunID, rec.ShardID)
	_, err = create(ctx, l.state, key, rec)
	switch {
	case err == nil:
	case errors.Is(err, ErrExists):
		var old proto.ShardRecord
		rev, err := get(ctx, l.state, key, &old)
		if err != nil {
			return false, err
		}
		if old.State != proto.StatePending {
			return false, nil
		}
		// Re-publish. The one-message-per-subject limit refuses it while the shard's message is
		// queued; a fresh message ID (per record revision) keeps the de-duplication window, which
		// remembers IDs after their message is gone, from swallowing a needed re-publication.
		return false, l.publish(ctx, rec.RunID, rec.ShardID, fmt.Sprintf("%s/r%d", proto.ShardMsgID(rec.RunID, rec.ShardID), rev))
	default:
		return false, err
	}
	return true, l.publish(ctx, rec.RunID, rec.ShardID, proto.ShardMsgID(rec.RunID, rec.ShardID))
}

// publish enqueues a shard's message. A message for the shard that is already pending in the
// stream (per-subject limit) or was published inside the de-duplication window is not an error.
func (l *Ledger) publish(ctx context.Context, runID, shardID, msgID string) error {
	data, err := json.Marshal(proto.ShardMessage{V: proto.Version, RunID: runID, ShardID: shardID})
	if err != nil {
		return fmt.Errorf("encoding shard message: %w", err)
	}
	ctx, cancel := opContext(ctx)
	defer cancel()
	_, err = l.js.Publish(ctx, proto.ShardSubject(runID, shardID), data,
		jetstream.WithMsgID(msgID),
		jetstream.WithExpectStream(proto.StreamShards))
	if err != nil && !alreadyQueued(err) {
		return fmt.Errorf("publishing shard %s/%s: %w", runID, shardID, err)
	}
	return nil
}

// alreadyQueued reports whether a publish was refused because the subject already holds its
// one message (DiscardNewPerSubject): nats-server answers 10077 "maximum messages per subject
// exceeded".
func alreadyQueued(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == 10077 &&
		strings.Contains(apiErr.Description, "maximum messages per subject")
}

// Shard reads one shard record and its revision.
func (l *Ledger) Shard(ctx context.Context, runID, shardID string) (proto.ShardRecord, uint64, error) {
	var rec proto.ShardRecord
	rev, err := get(ctx, l.state, proto.ShardKey(runID, shardID), &rec)
	return rec, rev, err
}

// Shards returns every shard record of a run, in key order.
func (l *Ledger) Shards(ctx context.Context, runID string) ([]proto.ShardRecord, error) {
	out, err := listRecords[proto.ShardRecord](ctx, l, proto.ShardKeyPrefix(runID))
	if err != nil {
		return nil, fmt.Errorf("listing shards of run %s: %w", runID, err)
	}
	return out, nil
}

// listRecords returns the current value of every key of the state bucket matching filter,
// decoded, in key order.
func listRecords[T any](ctx context.Context, l *Ledger, filter string) ([]T, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*opTimeout) // a listing may take a few requests
	defer cancel()
	stream, err := l.js.Stream(ctx, "KV_"+proto.BucketState)
	if err != nil {
		return nil, err
	}
	w, err := l.state.Watch(ctx, filter)
	if err != nil {
		return nil, err
	}
	defer func() { _ = w.Stop() }()
	// The watcher's end-of-initial-values marker (nil) cannot be trusted alone: it comes after
	// as many entries as JetStream counted pending, or at an entry said to have nothing behind
	// it, and records written during the listing (they are written all the time during a run)
	// upset both, so it can come before every record was delivered. Entries arrive in stream
	// order (the latest value of each key as the watcher started, then every later write), so
	// the listing has seen every write up to the last one under filter as of now.
	var last uint64 // 0: no record yet
	m, err := stream.GetLastMsgForSubject(ctx, kvSubjectPrefix+filter)
	switch {
	case err == nil:
		last = m.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, err
	}
	byKey, err := watchedUntil[T](ctx, w, last)
	if err != nil {
		return nil, err
	}
	if err := readUnwatched(ctx, l.state, stream, filter, byKey); err != nil {
		return nil, err
	}
	keys := slices.Sorted(maps.Keys(byKey))
	out := make([]T, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out, nil
}

// kvSubjectPrefix is the stream subject of the state bucket's keys, less the key.
const kvSubjectPrefix = "$KV." + proto.BucketState + "."

// watchedUntil takes the values w delivers, by key, until it has passed both its
// end-of-initial-values marker and stream sequence last (0: no record).
func watchedUntil[T any](ctx context.Context, w jetstream.KeyWatcher, last uint64) (map[string]T, error) {
	byKey := make(map[string]T)
	initDone, caughtUp := false, last == 0
	for !initDone || !caughtUp {
		var e jetstream.KeyValueEntry
		select {
		case u, ok := <-w.Updates():
			if !ok {
				return nil, errors.New("watcher closed")
			}
			e = u
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if e == nil {
			initDone = true
			continue
		}
		caughtUp = caughtUp || e.Revision() >= last
		if e.Operation() != jetstream.KeyValuePut {
			delete(byKey, e.Key())
			continue
		}
		var rec T
		if err := decode(e.Value(), &rec); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Key(), err)
		}
		byKey[e.Key()] = rec
	}
	return byKey, nil
}

// readUnwatched reads into byKey the keys matching filter that the watch did not deliver. A
// key rewritten during the listing can be missed: the bucket keeps one revision, so its value
// as the watcher started is gone before the watcher reaches it, and the new one lies past the
// last sequence waited for. The keys present now, after the watch, cover every key written
// before the listing ended.
func readUnwatched[T any](ctx context.Context, kv jetstream.KeyValue, stream jetstream.Stream, filter string, byKey map[string]T) error {
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(kvSubjectPrefix+filter))
	if err != nil {
		return err
	}
	for subject := range info.State.Subjects {
		key := strings.TrimPrefix(subject, kvSubjectPrefix)
		if _, ok := byKey[key]; ok {
			continue
		}
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since
		}
		if err != nil {
			return err
		}
		var rec T
		if err := decode(e.Value(), &rec); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		byKey[key] = rec
	}
	return nil
}

// Watch streams a run's shard records: first every current record, then each change as it
// is written. The channel is closed when ctx is done or the watch breaks; a caller that must
// not miss a change should also re-list with Shards now and then. Undecodable records are
// skipped (Shards reports them).
func (l *Ledger) Watch(ctx context.Context, runID string) (<-chan proto.ShardRecord, error) {
	out, err := watchRecords[proto.ShardRecord](ctx, l, proto.ShardKeyPrefix(runID))
	if err != nil {
		return nil, fmt.Errorf("watching shards of run %s: %w", runID, err)
	}
	return out, nil
}

// Claim is a worker's hold on one shard for one delivery of its message. Every write is one
// compare-and-swap of the whole record; once one fails with ErrFenced the claim is lost and
// every later call returns ErrFenced without writing. A Claim is used by one goroutine at a
// time, except Audit, which is safe to call concurrently.
type Claim struct {
	l   *Ledger
	rec proto.ShardRecord
	rev uint64
	err error // sticky: set once fenced
	// tried is the record of the last write that failed without being fenced (it may have
	// been stored all the same); nil after a write that succeeded. Verify compares with it.
	tried *proto.ShardRecord

	// Audit events (see audit.go): Audit appends to events under mu; the claim's writes cut
	// them into batches and store those. auditAs holds the run, shard and repository events
	// default to, fixed at the claim so that Audit need not read rec while a write changes it.
	auditAs proto.AuditEvent
	mu      sync.Mutex
	events  []auditEntry // appended, not yet cut into a batch
	cut     int          // events cut into batches so far (only the writing goroutine)
	batches []auditMsg   // cut and not yet stored, in order (only the writing goroutine)
}

// Claim takes a shard for owner at attempt (the message's NumDelivered), in one update that
// sets state running, owner, attempt, started and heartbeat times together. It refuses a done
// or failed shard (ErrTerminal). A running shard is taken over when attempt is newer than the
// record's (JetStream redelivered the message, so the previous holder went silent and has lost
// it) or when it is stale (see Stale); otherwise it is ErrBusy.
func (l *Ledger) Claim(ctx context.Context, runID, shardID, owner string, attempt int) (*Claim, error) {
	key := proto.ShardKey(runID, shardID)
	for range casRetries {
		rec, rev, err := l.Shard(ctx, runID, shardID)
		if err != nil {
			return nil, err
		}
		now := l.now().UTC()
		switch {
		case rec.State.Terminal():
			return nil, fmt.Errorf("claiming %s: %s: %w", key, rec.State, ErrTerminal)
		case rec.State == proto.StateRunning && attempt <= rec.Attempt && !l.Stale(rec, now):
			return nil, fmt.Errorf("claiming %s at attempt %d: %s holds attempt %d: %w",
				key, attempt, rec.Owner, rec.Attempt, ErrBusy)
		}
		rec.State, rec.Owner, rec.Attempt = proto.StateRunning, owner, attempt
		rec.StartedAt, rec.Heartbeat = now, now
		rev, err = update(ctx, l.state, key, rec, rev)
		if errors.Is(err, ErrFenced) {
			continue // changed between read and write: decide again on the new record
		}
		if err != nil {
			return nil, fmt.Errorf("claiming %s: %w", key, err)
		}
		return &Claim{l: l, rec: rec, rev: rev,
			auditAs: proto.AuditEvent{RunID: rec.RunID, ShardID: rec.ShardID, Repository: rec.Repository}}, nil
	}
	return nil, fmt.Errorf("claiming %s: too many concurrent updates: %w", key, ErrFenced)
}

// Record returns the shard record as last written by this claim.
func (c *Claim) Record() proto.ShardRecord { return c.rec }

// write flushes the audit events, applies change to a copy of the record and writes it by
// compare-and-swap. A mismatch fences the claim for good.
func (c *Claim) write(ctx context.Context, change func(*proto.ShardRecord) error) error {
	if c.err != nil {
		return c.err
	}
	if err := c.flushAudit(ctx); err != nil {
		return err
	}
	rec := c.rec
	if err := change(&rec); err != nil {
		return err
	}
	rec.Heartbeat = c.l.now().UTC()
	rev, err := update(ctx, c.l.state, proto.ShardKey(rec.RunID, rec.ShardID), rec, c.rev)
	if errors.Is(err, ErrFenced) {
		return c.fence(ctx, err)
	}
	if err != nil {
		c.tried = &rec
		return err
	}
	c.rec, c.rev, c.tried = rec, rev, nil
	return nil
}

// Verify finds out from the record itself, after a write of this claim failed without being
// fenced (a timeout: the write may or may not have been stored), whether the shard is still
// this claim's. It is what a worker asks before it touches the message after such a failure:
// JetStream applies an ack, nak or term to the message's current delivery, whoever holds it.
//
// The record as this claim last wrote it means the write was lost (landed false); as the failed
// write would have left it, that the write was stored (landed true, and the claim goes on from
// it). Anything else means another writer changed it: the claim is fenced for good
// (ErrFenced), and its holder must leave the message alone. Any other error means Verify could
// not tell.
func (c *Claim) Verify(ctx context.Context) (landed bool, err error) {
	if c.err != nil {
		return false, c.err
	}
	key := proto.ShardKey(c.rec.RunID, c.rec.ShardID)
	var rec proto.ShardRecord
	rev, err := get(ctx, c.l.state, key, &rec)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, c.fence(ctx, fmt.Errorf("verifying %s: record gone: %w", key, ErrFenced))
	case err != nil:
		return false, fmt.Errorf("verifying %s: %w", key, err)
	case rev == c.rev:
		return false, nil
	case c.tried != nil && sameRecord(rec, *c.tried):
		c.rec, c.rev, c.tried = rec, rev, nil
		return true, nil
	}
	return false, c.fence(ctx, fmt.Errorf("verifying %s: changed by %s at attempt %d: %w", key, rec.Owner, rec.Attempt, ErrFenced))
}

// fence marks the claim lost for good with err, which wraps ErrFenced. The audit events the
// claim still holds (a flush that failed, events appended since) record deletions that
// happened, and no later write of this claim will store them: they are stored now, once
// more, whoever holds the shard. Their error, if that fails too, is joined to err.
func (c *Claim) fence(ctx context.Context, err error) error {
	c.err = err
	if ferr := c.flushAudit(ctx); ferr != nil {
		return errors.Join(err, ferr)
	}
	return err
}

// sameRecord compares records by their encoding, as stored.
func sameRecord(a, b proto.ShardRecord) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

// Checkpoint records that every tag up to and including cursor is finished, adding delta to
// the shard's counters. The cursor never moves backwards and never leaves the range.
func (c *Claim) Checkpoint(ctx context.Context, cursor string, delta proto.Counters) error {
	return c.CheckpointInventory(ctx, cursor, delta, nil)
}

// CheckpointInventory is Checkpoint that also merges inv (nil: nothing) into the shard's
// Inventory, in the same write, so that a resumed inventory shard counts every tag once.
func (c *Claim) CheckpointInventory(ctx context.Context, cursor string, delta proto.Counters, inv *proto.Inventory) error {
	return c.write(ctx, func(r *proto.ShardRecord) error {
		if cursor < r.Resume() || cursor > r.Range.Through {
			return fmt.Errorf("checkpoint %q of shard %s outside (%q, %q]", cursor, r.ShardID, r.Resume(), r.Range.Through)
		}
		r.Cursor = cursor
		r.Counters.Add(delta)
		if inv != nil {
			merged := proto.Inventory{}
			if r.Inventory != nil {
				merged.Add(*r.Inventory)
			}
			merged.Add(*inv)
			r.Inventory = &merged
		}
		return nil
	})
}

// ChildID is the ID of the shard split off parent at key at: derived, so that a repeated split
// at the same key names the same shard.
func ChildID(parent, at string) string {
	sum := sha256.Sum256([]byte(parent + "\x00" + at))
	return parent[:min(len(parent), 40)] + "-" + hex.EncodeToString(sum[:6])
}

// Split cuts the claimed shard at key at: this shard now ends at at, and a new shard for
// (at, old Through] is recorded and published (record first). at must lie strictly between
// the shard's resume point and its end, so both halves are non-empty and nothing already
// listed moves. The union of the two ranges is the old range and they do not overlap.
//
// If the new shard cannot be recorded, the shrink is undone (should that fail too, the range
// (at, old Through] belongs to no shard until the coordinator's coverage check fills it). If
// it is recorded but its message cannot be published, Split returns the new record and the
// error: both halves stand, and the coordinator re-publishes pending shards left unclaimed.
func (c *Claim) Split(ctx context.Context, at string) (proto.ShardRecord, error) {
	old := c.rec.Range
	child := proto.ShardRecord{
		V:          proto.Version,
		RunID:      c.rec.RunID,
		ShardID:    ChildID(c.rec.ShardID, at),
		Kind:       c.rec.Kind,
		Repository: c.rec.Repository,
		Range:      proto.Range{After: at, Through: old.Through},
		State:      proto.StatePending,
		Parent:     c.rec.ShardID,
		CreatedAt:  c.l.now().UTC(),
	}
	err := c.write(ctx, func(r *proto.ShardRecord) error {
		if at <= r.Resume() || at <= r.Range.After || at >= r.Range.Through {
			return fmt.Errorf("split of shard %s at %q: not strictly inside (%q, %q]", r.ShardID, at, r.Resume(), r.Range.Through)
		}
		r.Range.Through = at
		return nil
	})
	if err != nil {
		return proto.ShardRecord{}, err
	}
	_, err = create(ctx, c.l.state, proto.ShardKey(child.RunID, child.ShardID), child)
	if err != nil && !errors.Is(err, ErrExists) {
		undo := c.write(ctx, func(r *proto.ShardRecord) error { r.Range = old; return nil })
		return proto.ShardRecord{}, errors.Join(fmt.Errorf("recording split-off shard %s: %w", child.ShardID, err), undo)
	}
	if errors.Is(err, ErrExists) { // an earlier split at the same key by a lost holder
		if child, _, err = c.l.Shard(ctx, child.RunID, child.ShardID); err != nil {
			return proto.ShardRecord{}, err
		}
		if child.State != proto.StatePending {
			return child, nil
		}
	}
	return child, c.l.publish(ctx, child.RunID, child.ShardID, proto.ShardMsgID(child.RunID, child.ShardID))
}

// Done marks the shard finished.
func (c *Claim) Done(ctx context.Context) error {
	return c.write(ctx, func(r *proto.ShardRecord) error {
		r.State, r.FinishedAt, r.LastError = proto.StateDone, c.l.now().UTC(), ""
		return nil
	})
}

// Fail marks the shard failed with cause; it will not be worked on again in this run.
func (c *Claim) Fail(ctx context.Context, cause error) error {
	return c.write(ctx, func(r *proto.ShardRecord) error {
		r.State, r.FinishedAt = proto.StateFailed, c.l.now().UTC()
		r.LastError = errString(cause)
		return nil
	})
}

// Retry gives the shard back as pending with cause recorded as its last error; the caller
// then naks the message with a delay, and the next delivery resumes from the checkpoint.
func (c *Claim) Retry(ctx context.Context, cause error) error {
	return c.write(ctx, func(r *proto.ShardRecord) error {
		r.State, r.Owner, r.LastError = proto.StatePending, "", errString(cause)
		return nil
	})
}

// Release gives the shard back as pending (graceful stop); the caller then naks the message.
func (c *Claim) Release(ctx context.Context) error {
	return c.write(ctx, func(r *proto.ShardRecord) error {
		r.State, r.Owner = proto.StatePending, ""
		return nil
	})
}

func errString(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}
