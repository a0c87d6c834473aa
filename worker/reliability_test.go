package worker_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testnet"
	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/test/invariant"
	"github.com/tagsweep/tagsweep/worker"
)

var whole = proto.Range{After: "", Through: "20261101000000"}

// checkInvariant checks the invariant against the fake registry's state.
func checkInvariant(t *testing.T, p proto.Policy, initial []string, reg *fakeRegistry, exitOK bool) {
	t.Helper()
	remaining, deleted := reg.snapshot()
	invariant.Check(t, invariant.State{Policy: p, Initial: initial, Deleted: deleted, Remaining: remaining, ExitOK: exitOK})
}

// newWorker builds one worker on its own connection, for tests that need its handle.
func (e *env) newWorker(t *testing.T, id string, cfg worker.Config, reg registry.Client, log *slog.Logger) *worker.Worker {
	t.Helper()
	cfg.ID = id
	cfg.Connect = func(context.Context, proto.RunRecord) (registry.Client, error) { return reg, nil }
	w, err := e.rig.Worker(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// runWorker runs w until the returned stop is called (or the test ends); stop returns Run's error.
func runWorker(t *testing.T, w *worker.Worker) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error { once.Do(func() { cancel(); err = <-done }); return err }
	t.Cleanup(func() { _ = stop() })
	return stop
}

// A stop while a page's deletes hang: the deletes are abandoned at the stop bound, the
// finished prefix of the page is checkpointed, the shard is released and its message naked,
// and another worker resumes from the checkpoint at once and finishes exactly.
func TestStopAbandonsHungPage(t *testing.T) {
	e := newEnv(t, ledger.Config{AckWait: time.Minute}) // a redelivery by timeout would take a minute
	tags := tagsFor(60)
	p := testPolicy()
	wantDel, _ := eligible(t, p, tags)
	reg := newFake(tags)
	// Deletes of the second page's tags hang until their context ends; the first page's and
	// the first two eligible tags of the second page go through.
	hang := wantDel[12]
	entered := make(chan struct{})
	var once sync.Once
	reg.onDelete = func(ctx context.Context, tag string) error {
		if tag < hang {
			return nil
		}
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return ctx.Err()
	}
	e.seed(t, "r1", p, whole)
	w := e.newWorker(t, "stopping", worker.Config{PageSize: 10, StopBound: 600 * time.Millisecond}, reg, nil)
	stop := runWorker(t, w)
	select {
	case <-entered:
	case <-testCtx(t).Done():
		t.Fatal("no delete hung")
	}
	// Run returns although the hung deletes would never end by themselves.
	if err := stop(); err != nil {
		t.Fatalf("Run after a stop = %v, want nil", err)
	}
	rec, _, err := e.l.Shard(testCtx(t), "r1", "s000")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != proto.StatePending || rec.Cursor == "" || rec.Cursor >= hang {
		t.Fatalf("after the stop: %s with cursor %q, want pending with a cursor before the first abandoned tag %q", rec.State, rec.Cursor, hang)
	}
	if n := streamMsgs(t, e.js); n != 1 {
		t.Fatalf("stream holds %d messages, want the released shard's 1", n)
	}
	reg.mu.Lock()
	reg.onDelete = nil
	reg.mu.Unlock()
	e.startWorkers(t, 1, worker.Config{PageSize: 10}, reg, nil) // an AckWait of a minute: only the Nak can hand it over in time
	shards := e.waitShards(t, "r1", 1)
	checkInvariant(t, p, tags, reg, true)
	if got := sum(shards); got.Deleted != int64(len(wantDel)) || got.Eligible != int64(len(wantDel)) || got.DeleteFailed != 0 {
		t.Errorf("counters %+v, want deleted = eligible = %d and no failure", got, len(wantDel))
	}
}

// A worker frozen past AckWait (the in-process stand-in for SIGSTOP) loses its shard to a
// newer delivery; when it thaws, its checkpoint fails the compare-and-swap, it says so and
// leaves the message alone, and the new owner's progress stands.
func TestFrozenWorkerIsFenced(t *testing.T) {
	e := newEnv(t, ledger.Config{AckWait: time.Second})
	tags := tagsFor(80)
	p := testPolicy()
	reg := newFake(tags)
	e.seed(t, "r1", p, whole)
	logs := &logCapture{}
	frozen := e.newWorker(t, "frozen", worker.Config{PageSize: 10}, reg, slog.New(logs))
	at, thaw := worker.Freeze(frozen)
	runWorker(t, frozen)
	select {
	case <-at:
	case <-testCtx(t).Done():
		t.Fatal("worker never reached a checkpoint")
	}
	// The frozen worker sends no heartbeat: after AckWait the shard goes to another worker,
	// which finishes it.
	e.startWorkers(t, 1, worker.Config{PageSize: 10}, reg, nil)
	shards := e.waitShards(t, "r1", 1)
	if s := shards[0]; s.State != proto.StateDone || s.Owner != "w0" || s.Attempt < 2 {
		t.Fatalf("shard %s owned by %q at attempt %d, want done by w0 on a redelivery", s.State, s.Owner, s.Attempt)
	}
	before := shards[0]
	thaw()
	logs.waitFor(t, "lost the shard")
	after, _, err := e.l.Shard(testCtx(t), "r1", "s000")
	if err != nil {
		t.Fatal(err)
	}
	if after.State != before.State || after.Cursor != before.Cursor || after.Counters != before.Counters || after.Owner != before.Owner {
		t.Fatalf("the thawed worker changed the record:\nbefore %+v\nafter  %+v", before, after)
	}
	checkInvariant(t, p, tags, reg, true)
	// The frozen worker deleted its page before it froze and never recorded it: the new owner
	// did not list those tags again, so the record counts only what the new owner deleted.
	wantDel, _ := eligible(t, p, tags)
	if c := before.Counters; c.Deleted >= int64(len(wantDel)) || c.Deleted == 0 {
		t.Errorf("counters %+v, want the new owner's deletes only (fewer than the %d eligible)", c, len(wantDel))
	}
}

// Deletes failing for a while (after the registry client's own retries) do not cost a tag:
// the checkpoint stops before the first failed tag, the shard is retried on a later
// delivery, and the run ends exact, with exact counters.
func TestFailedDeletesRetriedOnRedelivery(t *testing.T) {
	e := newEnv(t, ledger.Config{MaxDeliver: 4})
	tags := tagsFor(120)
	p := testPolicy()
	wantDel, _ := eligible(t, p, tags)
	reg := newFake(tags)
	// A burst of failures: every delete of a tag in the middle of the shard fails on the first
	// two deliveries, and one tag of a later page too, once.
	failing := map[string]int{wantDel[15]: 2, wantDel[16]: 2, wantDel[40]: 1}
	var mu sync.Mutex
	reg.onDelete = func(_ context.Context, tag string) error {
		mu.Lock()
		defer mu.Unlock()
		if failing[tag] > 0 {
			failing[tag]--
			return fmt.Errorf("delete %s: http 503: %w", tag, registry.ErrRateLimited)
		}
		return nil
	}
	e.seed(t, "r1", p, whole)
	// The shard is not split for the idle worker: its one record holds the run's counters.
	e.startWorkers(t, 2, worker.Config{PageSize: 10, RetryDelay: 10 * time.Millisecond, IdleSplit: -1}, reg, nil)
	shards := e.waitShards(t, "r1", 1)
	s := shards[0]
	if s.State != proto.StateDone || s.Attempt < 3 {
		t.Fatalf("shard %s at attempt %d (%s), want done after retries", s.State, s.Attempt, s.LastError)
	}
	checkInvariant(t, p, tags, reg, true)
	var inRange int64
	for _, tag := range tags {
		if whole.Contains(tag) {
			inRange++
		}
	}
	c := s.Counters
	if c.Deleted != int64(len(wantDel)) || c.Eligible != int64(len(wantDel)) || c.DeleteFailed != 0 || c.Scanned != inRange ||
		c.Scanned != c.Eligible+c.Kept+c.Invalid {
		t.Errorf("counters %+v, want deleted = eligible = %d, scanned %d, nothing failed or counted twice", c, len(wantDel), inRange)
	}
}

// A tag the registry never deletes cannot hold back the rest of its shard: the shard is
// retried until its last delivery, where the failure is counted and the shard goes on to its
// end. The run then reports the failed delete (and the coordinator exits non-zero).
func TestDeleteFailingForeverCountedOnLastDelivery(t *testing.T) {
	e := newEnv(t, ledger.Config{MaxDeliver: 3})
	tags := tagsFor(60)
	p := testPolicy()
	wantDel, _ := eligible(t, p, tags)
	stuck := wantDel[5]
	reg := newFake(tags)
	var tries atomic.Int64
	reg.onDelete = func(_ context.Context, tag string) error {
		if tag == stuck {
			tries.Add(1)
			return errors.New("http 500: internal error")
		}
		return nil
	}
	e.seed(t, "r1", p, whole)
	e.startWorkers(t, 1, worker.Config{PageSize: 10, RetryDelay: 10 * time.Millisecond}, reg, nil)
	s := e.waitShards(t, "r1", 1)[0]
	if s.State != proto.StateDone || s.Attempt != 3 || s.Counters.DeleteFailed != 1 || s.Counters.Deleted != int64(len(wantDel)-1) {
		t.Fatalf("shard %s at attempt %d with %+v, want done on attempt 3 with one failed delete and the rest deleted", s.State, s.Attempt, s.Counters)
	}
	if n := tries.Load(); n != 3 {
		t.Errorf("the stuck tag was tried %d times, want once per delivery (3)", n)
	}
	checkInvariant(t, p, tags, reg, false)
}

// The registry refusing tag deletes (400/405) is permanent: the shard fails at once instead of
// retrying, with the refusal as its last error.
func TestDeleteUnsupportedFailsShard(t *testing.T) {
	e := newEnv(t, ledger.Config{MaxDeliver: 5})
	tags := tagsFor(30)
	reg := newFake(tags)
	reg.onDelete = func(context.Context, string) error {
		return fmt.Errorf("delete: http 405: %w", registry.ErrDeleteUnsupported)
	}
	e.seed(t, "r1", testPolicy(), whole)
	e.startWorkers(t, 1, worker.Config{PageSize: 10, RetryDelay: 10 * time.Millisecond}, reg, nil)
	s := e.waitShards(t, "r1", 1)[0]
	if s.State != proto.StateFailed || s.Attempt != 1 || !strings.Contains(s.LastError, "does not support deleting tags") {
		t.Fatalf("shard %s at attempt %d (%q), want failed on its first delivery with the refusal", s.State, s.Attempt, s.LastError)
	}
	checkInvariant(t, testPolicy(), tags, reg, false)
}

// A worker stopped on its shard's last delivery must not strand it (a Nak would: JetStream
// delivers that message no more): the shard is requeued with a fresh message and finishes.
func TestStopOnLastDeliveryRequeues(t *testing.T) {
	e := newEnv(t, ledger.Config{MaxDeliver: 2, AckWait: time.Minute})
	tags := tagsFor(60)
	p := testPolicy()
	reg := newFake(tags)
	// The first delivery fails its first list; the second (the last) blocks in its second list
	// until the worker stops.
	var lists atomic.Int64
	entered := make(chan struct{})
	stopCtx, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	reg.onList = func(last string) error {
		switch lists.Add(1) {
		case 1:
			return errors.New("registry hiccup")
		case 3:
			close(entered)
			<-stopCtx.Done()
		}
		return nil
	}
	e.seed(t, "r1", p, whole)
	w := e.newWorker(t, "stopping", worker.Config{PageSize: 10, RetryDelay: 10 * time.Millisecond}, reg, nil)
	stop := runWorker(t, w)
	select {
	case <-entered:
	case <-testCtx(t).Done():
		t.Fatal("the last delivery never listed its second page")
	}
	stopNow()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	rec, _, _ := e.l.Shard(testCtx(t), "r1", "s000")
	if rec.State != proto.StatePending || rec.Cursor == "" {
		t.Fatalf("after the stop: %+v, want pending with a cursor", rec)
	}
	e.startWorkers(t, 1, worker.Config{PageSize: 10}, reg, nil)
	s := e.waitShards(t, "r1", 1)[0]
	if s.State != proto.StateDone {
		t.Fatalf("shard %s (%s), want done after the requeue", s.State, s.LastError)
	}
	checkInvariant(t, p, tags, reg, true)
}

// The queue's consumer deleted under a running worker (as after a NATS restart with memory
// storage) is recreated, and the worker goes on taking shards.
func TestConsumerRecreated(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	tags := tagsFor(40)
	p := testPolicy()
	reg := newFake(tags)
	logs := &logCapture{}
	e.startWorkers(t, 1, worker.Config{PageSize: 10}, reg, slog.New(logs))
	logs.waitFor(t, "worker started")
	if err := e.js.DeleteConsumer(testCtx(t), proto.StreamShards, proto.ConsumerWorkers); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, "shard queue broke")
	ctx := testCtx(t)
	for {
		if _, err := e.js.Consumer(ctx, proto.StreamShards, proto.ConsumerWorkers); err == nil {
			break
		} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatal("consumer not recreated")
		case <-time.After(20 * time.Millisecond):
		}
	}
	e.seed(t, "r1", p, whole)
	e.waitShards(t, "r1", 1)
	checkInvariant(t, p, tags, reg, true)
}

// expiredCreds is a client whose credentials the registry refuses (a token expired or revoked
// before the client expected).
type expiredCreds struct{ *fakeRegistry }

func (expiredCreds) List(context.Context, string, string, int) (registry.Page, error) {
	return registry.Page{}, fmt.Errorf("list: unauthorized: %w", registry.ErrUnauthorized)
}

// A client whose credentials were refused is not reused: the call is made again with a new
// client (which fetches a fresh token) and the shard finishes on the same delivery.
func TestRefusedCredentialsReconnect(t *testing.T) {
	e := newEnv(t, ledger.Config{})
	tags := tagsFor(30)
	p := testPolicy()
	reg := newFake(tags)
	var connects atomic.Int64
	cfg := worker.Config{PageSize: 10, RetryDelay: 10 * time.Millisecond, ID: "w", Ledger: e.lc,
		Connect: func(context.Context, proto.RunRecord) (registry.Client, error) {
			if connects.Add(1) == 1 {
				return expiredCreds{reg}, nil
			}
			return reg, nil
		}}
	w, err := worker.New(cfg, e.connect(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.seed(t, "r1", p, whole)
	runWorker(t, w)
	s := e.waitShards(t, "r1", 1)[0]
	if s.State != proto.StateDone || s.Attempt != 1 || connects.Load() != 2 {
		t.Fatalf("shard %s at attempt %d after %d connects, want done on the first delivery with a second client", s.State, s.Attempt, connects.Load())
	}
	checkInvariant(t, p, tags, reg, true)
}

// expiringToken is a client whose token the registry refuses after limit calls, as a
// registry that expires tokens before the client expects; only a new client gets a new one.
type expiringToken struct {
	*fakeRegistry
	calls atomic.Int64
	limit int64
}

func (c *expiringToken) refused() error {
	if c.calls.Add(1) > c.limit {
		return fmt.Errorf("unauthorized: invalid_token: %w", registry.ErrUnauthorized)
	}
	return nil
}

func (c *expiringToken) List(ctx context.Context, repo, last string, n int) (registry.Page, error) {
	if err := c.refused(); err != nil {
		return registry.Page{}, err
	}
	return c.fakeRegistry.List(ctx, repo, last, n)
}

func (c *expiringToken) Delete(ctx context.Context, repo, tag string) error {
	if err := c.refused(); err != nil {
		return err
	}
	return c.fakeRegistry.Delete(ctx, repo, tag)
}

// A token refused in the middle of a delivery costs a fresh client, not the delivery: on the
// shard's only delivery, where a failed delete is counted failed for good, every eligible tag
// is deleted and none is counted failed.
func TestExpiredTokenRenewedInDelivery(t *testing.T) {
	e := newEnv(t, ledger.Config{MaxDeliver: 1})
	tags := tagsFor(60)
	p := testPolicy()
	reg := newFake(tags)
	var connects atomic.Int64
	cfg := worker.Config{PageSize: 10, ID: "w", Ledger: e.lc,
		Connect: func(context.Context, proto.RunRecord) (registry.Client, error) {
			connects.Add(1)
			// More calls than a page makes at once (its deletes, a list ahead), so that a
			// call made again with a fresh client is never refused for the same reason.
			return &expiringToken{fakeRegistry: reg, limit: 15}, nil
		}}
	w, err := worker.New(cfg, e.connect(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.seed(t, "r1", p, whole)
	runWorker(t, w)
	s := e.waitShards(t, "r1", 1)[0]
	if s.State != proto.StateDone || s.Counters.DeleteFailed != 0 || s.Counters.Deleted != s.Counters.Eligible {
		t.Fatalf("shard %s (%s), counters %+v: want done with every eligible tag deleted", s.State, s.LastError, s.Counters)
	}
	if n := connects.Load(); n < 4 { // about 70 calls, 15 a client
		t.Errorf("%d clients built: the token never expired under the shard", n)
	}
	checkInvariant(t, p, tags, reg, true)
}

// A worker started before NATS is up (the CLI connects with RetryOnFailedConnect) waits for
// it and opens the queue once it answers, instead of exiting.
func TestWorkerStartsBeforeNATS(t *testing.T) {
	addr := testnet.FreeAddrs(t, 1)[0]
	nc, err := nats.Connect("nats://"+addr, nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(time.Second)) // fail the first attempt sooner
	if err != nil {
		t.Fatal(err)
	}
	tags := tagsFor(20)
	reg := newFake(tags)
	lc := ledger.Config{Storage: jetstream.MemoryStorage, AckWait: 3 * time.Second, MaxDeliver: 5}
	logs := &logCapture{}
	w, err := worker.New(worker.Config{ID: "early", PageSize: 10, Ledger: lc,
		Connect: func(context.Context, proto.RunRecord) (registry.Client, error) { return reg, nil }}, js, slog.New(logs))
	if err != nil {
		t.Fatal(err)
	}
	stop := runWorker(t, w)
	logs.waitFor(t, "opening the shard queue; retrying")

	srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), Listen: addr, MaxMemory: 64 << 20, MaxStore: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	logs.waitFor(t, "worker started")
	e := attachEnv(t, testrig.New(t, testrig.Config{URL: srv.ClientURL(), Ledger: lc}))
	p := testPolicy()
	e.seed(t, "r1", p, whole)
	e.waitShards(t, "r1", 1)
	checkInvariant(t, p, tags, reg, true)
	if err := stop(); err != nil { // before the server's cleanup closes it
		t.Errorf("Run = %v", err)
	}
}
