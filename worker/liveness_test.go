package worker_test

import (
	"log/slog"
	"strings"
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
