package ledger

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// nextMsg fetches the next shard message from the workers' consumer.
func nextMsg(t *testing.T, l *Ledger) jetstream.Msg {
	t.Helper()
	msg, err := l.Consumer().Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return msg
}

// A shard failed after its message ran out of deliveries is reopened: the record is pending
// again with its cursor and counters, the dead message (which JetStream keeps, and which
// would refuse a new one on the shard's subject) is gone, and a fresh message is delivered.
func TestReopenShard(t *testing.T) {
	l, js := testLedger(t)
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))
	// s1 is delivered until JetStream gives up, without an ack, then failed as abandoned.
	for attempt := 1; attempt <= l.cfg.MaxDeliver; attempt++ {
		msg := nextMsg(t, l)
		if md, _ := msg.Metadata(); int(md.NumDelivered) != attempt {
			t.Fatalf("delivery #%d, want #%d", md.NumDelivered, attempt)
		}
		cl, err := l.Claim(c, "r1", "s1", "w", attempt)
		if err != nil {
			t.Fatal(err)
		}
		if attempt == 1 {
			if err := cl.Checkpoint(c, "2025", proto.Counters{Scanned: 3, Kept: 3}); err != nil {
				t.Fatal(err)
			}
		}
		_ = msg.Nak()
	}
	mustCreate(t, l, newShard("r1", "s2", "2026", "2027"))
	clk := &clock{t: time.Now().Add(l.cfg.StaleAfter + time.Minute)}
	l.now = clk.now
	if ok, err := l.FailAbandoned(c, "r1", "s1"); !ok || err != nil {
		t.Fatalf("FailAbandoned = %v, %v", ok, err)
	}
	l.now = time.Now
	if n := streamMsgs(t, js, proto.StreamShards); n != 2 {
		t.Fatalf("stream holds %d messages, want s1's exhausted one and s2's", n)
	}
	// Reopening a shard that is not failed does nothing.
	if ok, err := l.ReopenShard(c, "r1", "s2"); ok || err != nil {
		t.Fatalf("ReopenShard(s2) = %v, %v, want false", ok, err)
	}
	ok, err := l.ReopenShard(c, "r1", "s1")
	if !ok || err != nil {
		t.Fatalf("ReopenShard(s1) = %v, %v", ok, err)
	}
	rec, _, _ := l.Shard(c, "r1", "s1")
	if rec.State != proto.StatePending || rec.Cursor != "2025" || rec.Counters.Scanned != 3 || rec.Attempt != 0 || rec.LastError == "" {
		t.Fatalf("reopened record %+v, want pending at cursor 2025 with its counters and last error, attempt 0", rec)
	}
	msg := nextMsg(t, l) // s2, published first
	if msg.Subject() != proto.ShardSubject("r1", "s2") {
		t.Fatalf("delivery %s, want s2", msg.Subject())
	}
	if err := msg.DoubleAck(c); err != nil {
		t.Fatal(err)
	}
	msg = nextMsg(t, l)
	md, _ := msg.Metadata()
	if msg.Subject() != proto.ShardSubject("r1", "s1") || md.NumDelivered != 1 {
		t.Fatalf("after reopening: delivery %s #%d, want a fresh s1", msg.Subject(), md.NumDelivered)
	}
	if _, err := l.Claim(c, "r1", "s1", "w2", 1); err != nil {
		t.Fatalf("Claim of the reopened shard: %v", err)
	}
	if n := streamMsgs(t, js, proto.StreamShards); n != 1 {
		t.Errorf("stream holds %d messages, want the fresh one only", n)
	}
}

// Requeue replaces a message on its last delivery with a fresh one, for a released shard only.
func TestRequeue(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))
	var msg jetstream.Msg
	for range l.cfg.MaxDeliver {
		msg = nextMsg(t, l)
		_ = msg.Nak()
	}
	md, _ := msg.Metadata()
	cl, err := l.Claim(c, "r1", "s1", "w", int(md.NumDelivered))
	if err != nil {
		t.Fatal(err)
	}
	// Still running: Requeue leaves it alone (after removing the old message).
	if err := l.Requeue(c, "r1", "s1", md.Sequence.Stream); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Consumer().Next(jetstream.FetchMaxWait(300 * time.Millisecond)); !errors.Is(err, jetstream.ErrNoMessages) &&
		err == nil {
		t.Fatalf("a running shard was requeued")
	}
	if err := cl.Release(c); err != nil {
		t.Fatal(err)
	}
	if err := l.Requeue(c, "r1", "s1", md.Sequence.Stream); err != nil {
		t.Fatal(err)
	}
	fresh := nextMsg(t, l)
	fmd, _ := fresh.Metadata()
	if fresh.Subject() != proto.ShardSubject("r1", "s1") || fmd.NumDelivered != 1 {
		t.Fatalf("requeued delivery %s #%d, want s1 #1", fresh.Subject(), fmd.NumDelivered)
	}
}

func TestReserved(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	if n, err := l.Reserved(c, "r1"); n != 0 || err != nil {
		t.Fatalf("Reserved before any = %d, %v", n, err)
	}
	if _, err := l.ReserveDeletes(c, "r1", 7, 10); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Reserved(c, "r1"); n != 7 || err != nil {
		t.Fatalf("Reserved = %d, %v, want 7", n, err)
	}
}
