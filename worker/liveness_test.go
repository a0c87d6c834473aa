package worker_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/worker"
)

// count returns how many captured messages start with prefix.
func (c *logCapture) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}

// poll calls cond until it holds, failing the test after within.
func poll(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deliveries is how many deliveries the workers' consumer has made in all.
func deliveries(t *testing.T, e *env) uint64 {
	t.Helper()
	info, err := e.l.Consumer().Info(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	return info.Delivered.Consumer
}

// A shard whose last delivery is given back before it is claimed (here: the run record cannot
// be read) is not stranded: the worker terms that message and requeues the shard with a fresh
// one (a Nak would leave a message JetStream delivers no more), so the shard is worked on once
// the run can be read again.
func TestUnclaimedLastDeliveryRequeued(t *testing.T) {
	e := newEnv(t, ledger.Config{MaxDeliver: 2})
	tags := tagsFor(30)
	p := testPolicy()
	reg := newFake(tags)
	e.seed(t, "r1", p, whole)
	kv, err := e.js.KeyValue(testCtx(t), proto.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	good, err := kv.Get(testCtx(t), proto.RunKey("r1"))
	if err != nil {
		t.Fatal(err)
	}
	// A run record of a newer wire version: unreadable for this worker, until it is put back.
	if _, err := kv.Put(testCtx(t), proto.RunKey("r1"), []byte(`{"v":99}`)); err != nil {
		t.Fatal(err)
	}
	logs := &logCapture{}
	e.startWorkers(t, 1, worker.Config{PageSize: 10, RetryDelay: 10 * time.Millisecond}, reg, slog.New(logs))
	poll(t, 20*time.Second, "the last delivery to be given back", func() bool {
		return logs.count("shard not started") >= e.lc.MaxDeliver
	})
	if _, err := kv.Put(testCtx(t), proto.RunKey("r1"), good.Value()); err != nil {
		t.Fatal(err)
	}
	var rec proto.ShardRecord
	poll(t, 15*time.Second, "the shard to be finished", func() bool {
		rec, _, err = e.l.Shard(testCtx(t), "r1", "s000")
		return err == nil && rec.State.Terminal()
	})
	if rec.State != proto.StateDone {
		t.Fatalf("shard %s (%s), want done", rec.State, rec.LastError)
	}
	checkInvariant(t, p, tags, reg, true)
}

// A worker that lost its shard to a newer delivery while frozen, and whose ledger write then
// fails without being fenced (here: the state bucket refuses writes), must not touch the
// message: JetStream applies a nak to the message's current delivery, the new holder's. It
// reads the record back, sees the new holder and leaves the message alone; the new holder
// keeps its delivery and finishes on it.
func TestStaleWorkerLeavesNewDeliveryAlone(t *testing.T) {
	e := newEnv(t, ledger.Config{AckWait: time.Second})
	tags := tagsFor(80)
	p := testPolicy()
	e.seed(t, "r1", p, whole)
	obs := &recorder{}
	stale := e.newWorker(t, "stale", worker.Config{Slots: 1, PageSize: 10, RetryDelay: 10 * time.Millisecond, Observer: obs},
		newFake(tags), nil)
	at, thawOnce := worker.Freeze(stale)
	var thawed sync.Once
	thaw := func() { thawed.Do(thawOnce) }
	runWorker(t, stale)
	t.Cleanup(thaw) // before the worker is stopped
	select {
	case <-at:
	case <-testCtx(t).Done():
		t.Fatal("worker never reached a checkpoint")
	}
	// The frozen worker sends no heartbeat: after AckWait the message goes to another worker,
	// whose listing then waits until the test lets it go.
	holder := newFake(tags)
	entered, release := make(chan struct{}), make(chan struct{})
	var enter, let sync.Once
	letGo := func() { let.Do(func() { close(release) }) }
	holder.onList = func(string) error {
		enter.Do(func() { close(entered) })
		<-release
		return nil
	}
	e.startWorkers(t, 1, worker.Config{PageSize: 10}, holder, nil)
	t.Cleanup(letGo) // before the workers are stopped
	select {
	case <-entered:
	case <-testCtx(t).Done():
		t.Fatal("the message was never redelivered")
	}
	before := deliveries(t, e)
	rec, _, err := e.l.Shard(testCtx(t), "r1", "s000")
	if err != nil || rec.Owner != "w0" || rec.Attempt != 2 {
		t.Fatalf("record %+v (%v), want held by w0 at attempt 2", rec, err)
	}
	restore := refuseStateWrites(t, e)
	thaw()
	poll(t, 20*time.Second, "the stale worker to end its shard", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return obs.started["r1/s000"] == 1 && obs.inFlight == 0
	})
	// A nak would have the message redelivered at once (another slot of w0 takes it).
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if n := deliveries(t, e); n != before {
			t.Fatalf("the stale worker's message ops reached the new holder's delivery: %d deliveries, want %d", n, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	restore()
	letGo()
	s := e.waitShards(t, "r1", 1)[0]
	if s.State != proto.StateDone || s.Owner != "w0" || s.Attempt != 2 {
		t.Fatalf("shard %s by %q at attempt %d, want done by w0 on the delivery it held", s.State, s.Owner, s.Attempt)
	}
}

// refuseStateWrites makes the state bucket refuse every write (reads still work) until the
// returned function is called: a ledger write then fails without being fenced.
func refuseStateWrites(t *testing.T, e *env) (restore func()) {
	t.Helper()
	ctx := testCtx(t)
	s, err := e.js.Stream(ctx, "KV_"+proto.BucketState)
	if err != nil {
		t.Fatal(err)
	}
	old := s.CachedInfo().Config
	tight := old
	tight.MaxMsgSize = 8
	if _, err := e.js.UpdateStream(ctx, tight); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if _, err := e.js.UpdateStream(context.WithoutCancel(ctx), old); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}
