package ledger

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// A shard released on its message's last delivery is requeued (Term, then Requeue). However
// long the fresh message then waits in the queue, the shard is not failed as abandoned, and
// the fresh message's first delivery claims it.
func TestReleasedOnLastDeliveryNotFailedWhileQueued(t *testing.T) {
	l, js := testLedger(t)
	clk := &clock{t: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	l.now = clk.now
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "20261101"))
	var msg jetstream.Msg
	for range l.cfg.MaxDeliver {
		msg = nextMsg(t, l)
		_ = msg.Nak()
	}
	md, _ := msg.Metadata()
	cl, err := l.Claim(c, "r1", "s1", "w1", int(md.NumDelivered)) // the last delivery
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Release(c); err != nil { // graceful stop
		t.Fatal(err)
	}
	_ = msg.Term()
	if err := l.Requeue(c, "r1", "s1", md.Sequence.Stream); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, js, proto.StreamShards); n != 1 {
		t.Fatalf("want the requeued message queued, have %d", n)
	}
	if rec, _, _ := l.Shard(c, "r1", "s1"); rec.State != proto.StatePending || rec.Attempt != 0 {
		t.Fatalf("requeued record: %s at attempt %d, want pending with its count restarted", rec.State, rec.Attempt)
	}
	clk.add(2 * l.cfg.StaleAfter) // the queue is long: nobody has reached the message yet
	if failed, err := l.FailAbandoned(c, "r1", "s1"); failed || err != nil {
		t.Fatalf("FailAbandoned of a pending shard whose message waits = %v, %v, want false", failed, err)
	}
	if got, err := l.Rescue(c, "r1", "s1"); got != RescueNone || err != nil {
		t.Fatalf("Rescue of a pending shard whose message waits = %v, %v, want nothing done", got, err)
	}
	fresh := nextMsg(t, l)
	fmd, _ := fresh.Metadata()
	if _, err := l.Claim(c, "r1", "s1", "w2", int(fmd.NumDelivered)); err != nil {
		t.Fatalf("first delivery of the requeued message: Claim = %v", err)
	}
}

// The last delivery of a shard's message is given back without a claim (a worker stopping, or
// a ledger read that failed). JetStream keeps that message but delivers it no more, and it
// refuses a new one on the shard's subject; the record is pending at an attempt below
// MaxDeliver. Rescue sees from the queue that the message was delivered and, once the record
// has not been written for StaleAfter, replaces it, and the shard is delivered again.
func TestRescueReplacesMessageGivenBackUnclaimedOnLastDelivery(t *testing.T) {
	l, _ := testLedger(t)
	clk := &clock{t: time.Now()}
	l.now = clk.now
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))
	for attempt := 1; attempt <= l.cfg.MaxDeliver; attempt++ {
		msg := nextMsg(t, l)
		if attempt < l.cfg.MaxDeliver { // claimed and released (graceful stop)
			cl, err := l.Claim(c, "r1", "s1", "w", attempt)
			if err != nil {
				t.Fatal(err)
			}
			if err := cl.Release(c); err != nil {
				t.Fatal(err)
			}
		} // the last delivery: given back, no claim
		_ = msg.Nak()
	}
	if _, err := l.Consumer().Next(jetstream.FetchMaxWait(300 * time.Millisecond)); err == nil {
		t.Fatal("a message was delivered after its last delivery")
	}
	// Recently written: the message may still come back, so it is left alone.
	if got, err := l.Rescue(c, "r1", "s1"); got != RescueNone || err != nil {
		t.Fatalf("Rescue of a recently written shard = %v, %v, want nothing done", got, err)
	}
	clk.add(l.cfg.StaleAfter)
	if got, err := l.Rescue(c, "r1", "s1"); got != RescueRequeued || err != nil {
		t.Fatalf("Rescue = %v, %v, want the shard requeued", got, err)
	}
	msg, err := l.Consumer().Next(jetstream.FetchMaxWait(3 * time.Second))
	if err != nil {
		t.Fatalf("the pending shard is never delivered again: %v", err)
	}
	if md, _ := msg.Metadata(); msg.Subject() != proto.ShardSubject("r1", "s1") || md.NumDelivered != 1 {
		t.Fatalf("delivery %s #%d, want a fresh message for s1", msg.Subject(), md.NumDelivered)
	}
}

// Rescue acts on what the queue holds, case by case.
func TestRescue(t *testing.T) {
	l, js := testLedger(t)
	clk := &clock{t: time.Now()}
	l.now = clk.now
	c := ctx(t)
	max := l.cfg.MaxDeliver
	stream, err := js.Stream(c, proto.StreamShards)
	if err != nil {
		t.Fatal(err)
	}
	purge := func(id string) {
		t.Helper()
		if err := stream.Purge(c, jetstream.WithPurgeSubject(proto.ShardSubject("r1", id))); err != nil {
			t.Fatal(err)
		}
	}
	// deliver takes id's message from the queue (and leaves it unacked).
	deliver := func(id string) jetstream.Msg {
		t.Helper()
		for {
			msg := nextMsg(t, l)
			if msg.Subject() == proto.ShardSubject("r1", id) {
				return msg
			}
			_ = msg.Nak()
		}
	}
	claim := func(id string, attempt int) *Claim {
		t.Helper()
		cl, err := l.Claim(c, "r1", id, "w", attempt)
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	for _, id := range []string{"lost", "held", "abandoned", "emptied", "redelivering", "done"} {
		mustCreate(t, l, newShard("r1", id, "", "2026"))
	}
	purge("lost") // its publication was lost
	deliver("held")
	held := claim("held", 1)
	deliver("abandoned")
	claim("abandoned", max)
	deliver("emptied")
	claim("emptied", 1)
	purge("emptied")
	deliver("redelivering")
	claim("redelivering", 1)
	deliver("done")
	if err := claim("done", 1).Done(c); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, l, newShard("r1", "waiting", "", "2026")) // behind every delivered message
	clk.add(l.cfg.StaleAfter)
	if err := held.Checkpoint(c, "2000", proto.Counters{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id    string
		want  Rescued
		state proto.ShardState
	}{
		{"lost", RescueRequeued, proto.StatePending},
		{"waiting", RescueNone, proto.StatePending},      // however long it waits
		{"held", RescueNone, proto.StateRunning},         // written recently
		{"abandoned", RescueFailed, proto.StateFailed},   // its holder died on the last delivery
		{"emptied", RescueRequeued, proto.StatePending},  // no message would ever deliver it
		{"redelivering", RescueNone, proto.StateRunning}, // JetStream redelivers it
		{"done", RescueNone, proto.StateDone},
	} {
		got, err := l.Rescue(c, "r1", tc.id)
		rec, _, _ := l.Shard(c, "r1", tc.id)
		if got != tc.want || err != nil || rec.State != tc.state {
			t.Errorf("Rescue(%s) = %v, %v, record %s; want %v, %s", tc.id, got, err, rec.State, tc.want, tc.state)
		}
	}
	for _, id := range []string{"lost", "emptied"} {
		deliver(id) // requeued: delivered again
	}
}

// A write of a claim that fails without being fenced may or may not have been stored; Verify
// tells from the record which, and whether another writer has the shard.
func TestClaimVerify(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))
	a, err := l.Claim(c, "r1", "s1", "worker-a", 1)
	if err != nil {
		t.Fatal(err)
	}
	dead, cancel := context.WithCancel(c)
	cancel()
	// Lost: the record is as the claim last wrote it.
	if err := a.Checkpoint(dead, "2001", proto.Counters{Scanned: 1}); err == nil || errors.Is(err, ErrFenced) {
		t.Fatalf("Checkpoint with a dead context = %v, want a failure that is not fencing", err)
	}
	if landed, err := a.Verify(c); landed || err != nil {
		t.Fatalf("Verify after a lost write = %v, %v, want not landed, still ours", landed, err)
	}
	// Stored although it failed: the record is as the failed write would have left it.
	if err := a.Checkpoint(dead, "2002", proto.Counters{Scanned: 2}); err == nil {
		t.Fatal("Checkpoint with a dead context succeeded")
	}
	if _, err := update(c, l.state, proto.ShardKey("r1", "s1"), *a.tried, a.rev); err != nil {
		t.Fatal(err)
	}
	if landed, err := a.Verify(c); !landed || err != nil {
		t.Fatalf("Verify after a stored write = %v, %v, want landed", landed, err)
	}
	if err := a.Checkpoint(c, "2003", proto.Counters{Scanned: 3}); err != nil {
		t.Fatalf("Checkpoint after a verified write: %v", err)
	}
	if r := a.Record(); r.Cursor != "2003" || r.Counters.Scanned != 5 {
		t.Fatalf("record %+v, want cursor 2003 and the stored write's counts with this one's", r)
	}
	// Another writer: fenced for good.
	if err := a.Checkpoint(dead, "2004", proto.Counters{}); err == nil {
		t.Fatal("Checkpoint with a dead context succeeded")
	}
	if _, err := l.Claim(c, "r1", "s1", "worker-b", 2); err != nil {
		t.Fatal(err)
	}
	if landed, err := a.Verify(c); landed || !errors.Is(err, ErrFenced) {
		t.Fatalf("Verify after a takeover = %v, %v, want ErrFenced", landed, err)
	}
	if err := a.Checkpoint(c, "2005", proto.Counters{}); !errors.Is(err, ErrFenced) {
		t.Fatalf("Checkpoint after a fenced Verify = %v, want ErrFenced", err)
	}
}
