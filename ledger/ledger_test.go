package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testnats"
	"github.com/tagsweep/tagsweep/proto"
)

// testLedger starts an in-process JetStream server and opens a memory-backed ledger on it.
func testLedger(t *testing.T) (*Ledger, jetstream.JetStream) {
	t.Helper()
	l, js, _ := testLedgerServer(t)
	return l, js
}

// testLedgerServer is testLedger, also returning the server.
func testLedgerServer(t *testing.T) (*Ledger, jetstream.JetStream, *testnats.Servers) {
	t.Helper()
	srv := testServer(t)
	js := srv.JS(t)
	l, err := Open(ctx(t), js, Config{Storage: jetstream.MemoryStorage, AckWait: 2 * time.Second, MaxDeliver: 3})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l, js, srv
}

// testServer starts a JetStream server without tagsweep's state on it, stopped when the test
// ends.
func testServer(t *testing.T) *testnats.Servers {
	return testnats.New(t, testnats.Config{MaxMemory: 64 << 20, MaxStore: 64 << 20})
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// clock is a settable time source for lease and staleness tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newShard(runID, shardID, after, through string) proto.ShardRecord {
	return proto.ShardRecord{RunID: runID, ShardID: shardID, Repository: "ci/x",
		Range: proto.Range{After: after, Through: through}}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx(t), name)
	if err != nil {
		t.Fatalf("Stream(%s): %v", name, err)
	}
	info, err := s.Info(ctx(t))
	if err != nil {
		t.Fatalf("Info(%s): %v", name, err)
	}
	return info.State.Msgs
}

func mustCreate(t *testing.T, l *Ledger, rec proto.ShardRecord) {
	t.Helper()
	if _, err := l.CreateShard(ctx(t), rec); err != nil {
		t.Fatalf("CreateShard(%s): %v", rec.ShardID, err)
	}
}

func TestRunRecords(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	run := proto.RunRecord{RunID: "r1", Repositories: []string{"ci/x"}, State: proto.RunRunning}
	if _, err := l.CreateRun(c, run); err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	if _, err := l.CreateRun(c, run); !errors.Is(err, ErrExists) {
		t.Fatalf("CreateRun twice: err = %v, want ErrExists", err)
	}
	if _, _, err := l.Run(c, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Run(nope): err = %v, want ErrNotFound", err)
	}
	got, rev, err := l.Run(c, "r1")
	if err != nil || got.RunID != "r1" || got.V != proto.Version {
		t.Fatalf("Run(r1) = %+v, %v", got, err)
	}
	got.Shards = 3
	if _, err := l.UpdateRun(c, got, rev); err != nil {
		t.Fatalf("UpdateRun: %v", err)
	}
	if _, err := l.UpdateRun(c, got, rev); !errors.Is(err, ErrFenced) {
		t.Fatalf("UpdateRun at a stale revision: err = %v, want ErrFenced", err)
	}
	if Stopped(got) {
		t.Fatalf("Stopped(running run) = true")
	}
	if err := l.StopRun(c, "r1", "max deletes reached"); err != nil {
		t.Fatalf("StopRun: %v", err)
	}
	if err := l.StopRun(c, "r1", "second reason"); err != nil {
		t.Fatalf("StopRun: %v", err)
	}
	got, _, _ = l.Run(c, "r1")
	if !Stopped(got) || got.Reason != "max deletes reached" || got.Shards != 3 {
		t.Fatalf("after StopRun: run = %+v, want stopped with the first reason and shards kept", got)
	}
}

func TestClaimFencing(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))

	a, err := l.Claim(c, "r1", "s1", "worker-a", 1)
	if err != nil {
		t.Fatalf("Claim(a, 1): %v", err)
	}
	if r := a.Record(); r.State != proto.StateRunning || r.Owner != "worker-a" || r.Attempt != 1 || r.StartedAt.IsZero() {
		t.Fatalf("claimed record = %+v, want running, owner, attempt and start time set together", r)
	}
	if err := a.Checkpoint(c, "2001", proto.Counters{Scanned: 5}); err != nil {
		t.Fatalf("a.Checkpoint: %v", err)
	}
	// A second delivery of the same attempt while a holds it: busy, not taken over.
	if _, err := l.Claim(c, "r1", "s1", "worker-b", 1); !errors.Is(err, ErrBusy) {
		t.Fatalf("Claim(b, 1) while a holds attempt 1: err = %v, want ErrBusy", err)
	}
	// JetStream redelivered (attempt 2): b takes over, a is fenced.
	b, err := l.Claim(c, "r1", "s1", "worker-b", 2)
	if err != nil {
		t.Fatalf("Claim(b, 2): %v", err)
	}
	if got := b.Record().Resume(); got != "2001" {
		t.Errorf("b resumes at %q, want a's checkpoint 2001", got)
	}
	stale := []struct {
		name string
		op   func() error
	}{
		{"Checkpoint", func() error { return a.Checkpoint(c, "2002", proto.Counters{Scanned: 1}) }},
		{"Done", func() error { return a.Done(c) }},
		{"Fail", func() error { return a.Fail(c, errors.New("x")) }},
		{"Release", func() error { return a.Release(c) }},
		{"Split", func() error { _, err := a.Split(c, "2010"); return err }},
	}
	for _, op := range stale {
		if err := op.op(); !errors.Is(err, ErrFenced) {
			t.Errorf("stale claim %s: err = %v, want ErrFenced", op.name, err)
		}
	}
	if err := b.Checkpoint(c, "2003", proto.Counters{Scanned: 2}); err != nil {
		t.Fatalf("b.Checkpoint: %v", err)
	}
	if err := b.Checkpoint(c, "2002", proto.Counters{}); err == nil || errors.Is(err, ErrFenced) {
		t.Errorf("Checkpoint moving the cursor backwards: err = %v, want a non-fencing error", err)
	}
	if err := b.Checkpoint(c, "2027", proto.Counters{}); err == nil {
		t.Errorf("Checkpoint past the range end: err = nil, want an error")
	}
	if err := b.Done(c); err != nil {
		t.Fatalf("b.Done: %v", err)
	}
	rec, _, err := l.Shard(c, "r1", "s1")
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != proto.StateDone || rec.Owner != "worker-b" || rec.Cursor != "2003" || rec.Counters.Scanned != 7 {
		t.Errorf("final record = %+v, want done by worker-b at 2003 with a's and b's counters (7)", rec)
	}
	if _, err := l.Claim(c, "r1", "s1", "worker-c", 3); !errors.Is(err, ErrTerminal) {
		t.Errorf("Claim of a done shard: err = %v, want ErrTerminal", err)
	}
	if _, err := l.Claim(c, "r1", "nope", "worker-c", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Claim of a missing shard: err = %v, want ErrNotFound", err)
	}
}

func TestClaimStaleHolder(t *testing.T) {
	l, _ := testLedger(t)
	clk := &clock{t: time.Date(2026, 11, 22, 3, 15, 0, 0, time.UTC)}
	l.now = clk.now
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))
	a, err := l.Claim(c, "r1", "s1", "worker-a", 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Claim(c, "r1", "s1", "worker-b", 1); !errors.Is(err, ErrBusy) {
		t.Fatalf("Claim by an older delivery of a fresh holder: err = %v, want ErrBusy", err)
	}
	clk.add(l.cfg.StaleAfter + time.Second)
	if _, err := l.Claim(c, "r1", "s1", "worker-b", 1); err != nil {
		t.Fatalf("Claim of a shard whose holder stopped heartbeating: %v", err)
	}
	if err := a.Checkpoint(c, "1999", proto.Counters{}); !errors.Is(err, ErrFenced) {
		t.Fatalf("old holder Checkpoint: err = %v, want ErrFenced", err)
	}
}

func TestRetryAndRelease(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))
	a, err := l.Claim(c, "r1", "s1", "worker-a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Retry(c, errors.New("listing: 503")); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	rec, _, _ := l.Shard(c, "r1", "s1")
	if rec.State != proto.StatePending || rec.LastError != "listing: 503" || rec.Owner != "" {
		t.Fatalf("after Retry: %+v, want pending with the last error", rec)
	}
	b, err := l.Claim(c, "r1", "s1", "worker-b", 2)
	if err != nil {
		t.Fatalf("Claim after Retry: %v", err)
	}
	if err := b.Release(c); err != nil {
		t.Fatalf("Release: %v", err)
	}
	// A released shard is claimable even by a delivery that is not newer.
	if _, err := l.Claim(c, "r1", "s1", "worker-c", 2); err != nil {
		t.Fatalf("Claim after Release: %v", err)
	}
}

func TestCreateShardIdempotent(t *testing.T) {
	l, js := testLedger(t)
	c := ctx(t)
	rec := newShard("r1", "s1", "", "2026")
	created, err := l.CreateShard(c, rec)
	if err != nil || !created {
		t.Fatalf("CreateShard = %v, %v, want created", created, err)
	}
	created, err = l.CreateShard(c, rec)
	if err != nil || created {
		t.Fatalf("second CreateShard = %v, %v, want not created, no error", created, err)
	}
	if n := streamMsgs(t, js, proto.StreamShards); n != 1 {
		t.Fatalf("shard stream holds %d messages after two CreateShard, want 1", n)
	}
	shards, err := l.Shards(c, "r1")
	if err != nil || len(shards) != 1 {
		t.Fatalf("Shards = %d records, %v, want 1", len(shards), err)
	}

	// The message is consumed while the record stays pending (a lost publication):
	// CreateShard publishes it again, even inside the de-duplication window.
	msg, err := l.Consumer().Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if err := msg.DoubleAck(c); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, js, proto.StreamShards); n != 0 {
		t.Fatalf("stream holds %d messages after ack, want 0", n)
	}
	if _, err := l.CreateShard(c, rec); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, js, proto.StreamShards); n != 1 {
		t.Fatalf("pending record without a message: stream holds %d after CreateShard, want 1", n)
	}

	// Once done, the shard is never published again.
	cl, err := l.Claim(c, "r1", "s1", "w", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Done(c); err != nil {
		t.Fatal(err)
	}
	msg, err = l.Consumer().Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.DoubleAck(c); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateShard(c, rec); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, js, proto.StreamShards); n != 0 {
		t.Fatalf("done shard: stream holds %d messages after CreateShard, want 0", n)
	}
	got, _, _ := l.Shard(c, "r1", "s1")
	if got.State != proto.StateDone {
		t.Fatalf("CreateShard changed a done record to %s", got.State)
	}
}

func TestCreateShardRejects(t *testing.T) {
	l, _ := testLedger(t)
	for _, rec := range []proto.ShardRecord{
		newShard("r.1", "s1", "", "2026"),
		newShard("r1", "s 1", "", "2026"),
		newShard("r1", "s1", "2026", "2026"),
		newShard("r1", "s1", "2027", "2026"),
	} {
		if _, err := l.CreateShard(ctx(t), rec); err == nil {
			t.Errorf("CreateShard(%s/%s %+v) error = nil, want an error", rec.RunID, rec.ShardID, rec.Range)
		}
	}
}

// checkPartition fails unless the ranges are contiguous, non-overlapping and cover want.
func checkPartition(t *testing.T, rs []proto.Range, want proto.Range) {
	t.Helper()
	rs = slices.Clone(rs)
	sort.Slice(rs, func(i, j int) bool { return rs[i].After < rs[j].After })
	if len(rs) == 0 || rs[0].After != want.After || rs[len(rs)-1].Through != want.Through {
		t.Fatalf("ranges %v do not span %v", rs, want)
	}
	for i, r := range rs {
		if r.After >= r.Through {
			t.Fatalf("empty range %v in %v", r, rs)
		}
		if i > 0 && rs[i-1].Through != r.After {
			t.Fatalf("ranges %v and %v leave a gap or overlap", rs[i-1], r)
		}
	}
}

func TestSplit(t *testing.T) {
	l, js := testLedger(t)
	c := ctx(t)
	whole := proto.Range{After: "", Through: "20261122"}
	mustCreate(t, l, newShard("r1", "s1", whole.After, whole.Through))
	cl, err := l.Claim(c, "r1", "s1", "w", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Checkpoint(c, "20240101_prune_a", proto.Counters{Scanned: 1}); err != nil {
		t.Fatal(err)
	}
	for _, at := range []string{"20240101_prune_a", "2023", "20261122", "2027"} {
		if _, err := cl.Split(c, at); err == nil {
			t.Errorf("Split(%q) outside (cursor, through): err = nil, want an error", at)
		}
	}
	cuts := []string{"2026", "2025", "20241231"}
	for _, at := range cuts {
		child, err := cl.Split(c, at)
		if err != nil {
			t.Fatalf("Split(%q): %v", at, err)
		}
		if child.Parent != "s1" || child.State != proto.StatePending || child.Range.After != at {
			t.Errorf("Split(%q) child = %+v", at, child)
		}
		if cl.Record().Range.Through != at {
			t.Errorf("after Split(%q) own range = %v, want it to end at the cut", at, cl.Record().Range)
		}
	}
	shards, err := l.Shards(c, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var rs []proto.Range
	for _, s := range shards {
		rs = append(rs, s.Range)
	}
	if len(rs) != 1+len(cuts) {
		t.Fatalf("%d shard records after %d splits, want %d", len(rs), len(cuts), 1+len(cuts))
	}
	checkPartition(t, rs, whole)
	if n := streamMsgs(t, js, proto.StreamShards); n != uint64(1+len(cuts)) {
		t.Errorf("stream holds %d messages, want one per shard (%d)", n, 1+len(cuts))
	}
	if got := ChildID("s1", "2026"); got == ChildID("s1", "2025") || !proto.ValidToken(got) {
		t.Errorf("ChildID = %q: not distinct per cut or not a valid token", got)
	}
	long := fmt.Sprintf("%064d", 7)
	if id := ChildID(ChildID(long, "a"), "b"); !proto.ValidToken(id) {
		t.Errorf("ChildID of a long id = %q (%d chars), not a valid token", id, len(id))
	}
}

func TestLease(t *testing.T) {
	l, _ := testLedger(t)
	clk := &clock{t: time.Date(2026, 11, 22, 3, 15, 0, 0, time.UTC)}
	l.now = clk.now
	c := ctx(t)
	const repo, ttl = "openshift/ci", time.Minute
	if err := l.AcquireLease(c, repo, "run1", "host-a/1", ttl); err != nil {
		t.Fatalf("AcquireLease(run1): %v", err)
	}
	err := l.AcquireLease(c, repo, "run2", "host-b/2", ttl)
	var held *LeaseHeldError
	if !errors.Is(err, ErrLeaseHeld) || !errors.As(err, &held) || held.Lease.RunID != "run1" || held.Lease.Holder != "host-a/1" {
		t.Fatalf("AcquireLease(run2) while run1 holds it: err = %v, want a LeaseHeldError naming run1", err)
	}
	if err := l.AcquireLease(c, repo, "run1", "host-c/3", ttl); err != nil {
		t.Fatalf("re-attaching run1: %v", err)
	}
	if err := l.AcquireLease(c, "other/repo", "run2", "host-b/2", ttl); err != nil {
		t.Fatalf("another repository is independent: %v", err)
	}
	clk.add(ttl / 2)
	if err := l.RenewLease(c, repo, "run1", ttl); err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	clk.add(ttl - time.Second)
	if err := l.AcquireLease(c, repo, "run2", "host-b/2", ttl); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("AcquireLease before the renewed expiry: err = %v, want ErrLeaseHeld", err)
	}
	clk.add(2 * time.Second)
	if err := l.AcquireLease(c, repo, "run2", "host-b/2", ttl); err != nil {
		t.Fatalf("AcquireLease of an expired lease: %v", err)
	}
	if err := l.RenewLease(c, repo, "run1", ttl); !errors.Is(err, ErrLeaseHeld) {
		t.Fatalf("RenewLease after losing the lease: err = %v, want ErrLeaseHeld", err)
	}
	if err := l.ReleaseLease(c, repo, "run1"); err != nil {
		t.Fatalf("ReleaseLease by a former holder: %v", err)
	}
	if got, err := l.Lease(c, repo); err != nil || got.RunID != "run2" {
		t.Fatalf("a former holder's release removed the lease: %+v, %v", got, err)
	}
	if err := l.ReleaseLease(c, repo, "run2"); err != nil {
		t.Fatalf("ReleaseLease: %v", err)
	}
	if _, err := l.Lease(c, repo); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lease after release: err = %v, want ErrNotFound", err)
	}
	if err := l.AcquireLease(c, repo, "run3", "host-d/4", ttl); err != nil {
		t.Fatalf("AcquireLease after release: %v", err)
	}
}

func TestReserveDeletes(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	const max, workers, batch = 1000, 8, 37
	var mu sync.Mutex
	var total int64
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := l.ReserveDeletes(c, "r1", batch, max)
				if err != nil {
					errs <- err
					return
				}
				if got == 0 {
					return
				}
				mu.Lock()
				total += got
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("ReserveDeletes: %v", err)
	}
	if total != max {
		t.Fatalf("%d workers reserved %d deletions in total, want exactly the cap %d", workers, total, max)
	}
	if got, err := l.ReserveDeletes(c, "r1", 5, 0); got != 5 || err != nil {
		t.Fatalf("ReserveDeletes without a cap = %d, %v, want 5", got, err)
	}
}

func TestAudit(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	mustCreate(t, l, newShard("r1", "s1", "", "2026"))
	mustCreate(t, l, newShard("r2", "s1", "", "2026"))
	cl, err := l.Claim(c, "r1", "s1", "w", 1)
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.Claim(c, "r2", "s1", "w", 1)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1200
	var want []string
	for i := range n {
		tag := fmt.Sprintf("2001%04d_prune_x", i)
		want = append(want, tag)
		if err := cl.Audit(proto.AuditEvent{Tag: tag, Outcome: proto.OutcomeDeleted}); err != nil {
			t.Fatal(err)
		}
		if i%100 == 0 {
			if err := other.Audit(proto.AuditEvent{Tag: tag, Outcome: proto.OutcomeDryRun}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cl.Checkpoint(c, "2001", proto.Counters{}); err != nil {
		t.Fatalf("Checkpoint (flushes audit): %v", err)
	}
	if err := other.Done(c); err != nil {
		t.Fatal(err)
	}
	var got []string
	for ev, err := range l.Audit(c, "r1") {
		if err != nil {
			t.Fatalf("Audit: %v", err)
		}
		if ev.RunID != "r1" || ev.ShardID != "s1" || ev.Repository != "ci/x" || ev.Outcome != proto.OutcomeDeleted || ev.Time.IsZero() {
			t.Fatalf("Audit event = %+v, want run, shard, repository, outcome and time filled", ev)
		}
		got = append(got, ev.Tag)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Audit(r1) returned %d events, want %d in order", len(got), len(want))
	}
	for _, err := range l.Audit(c, "none") {
		t.Fatalf("Audit of a run without events yielded %v", err)
	}
	if err := appendAudit(c, l, proto.AuditEvent{RunID: "r3", Tag: "t", Outcome: proto.OutcomeFailed}); err != nil {
		t.Fatal(err)
	}
	count := 0
	for _, err := range l.Audit(c, "r3") {
		if err != nil {
			t.Fatal(err)
		}
		count++
	}
	if count != 1 {
		t.Fatalf("Audit(r3) = %d events, want 1", count)
	}
}

func TestFailAbandoned(t *testing.T) {
	l, _ := testLedger(t)
	clk := &clock{t: time.Date(2026, 11, 22, 3, 15, 0, 0, time.UTC)}
	l.now = clk.now
	c := ctx(t)
	for _, id := range []string{"last", "early", "done"} {
		mustCreate(t, l, newShard("r1", id, "", "2026"))
		nextMsg(t, l) // delivered (a message waiting in the queue is never abandoned)
	}
	if _, err := l.Claim(c, "r1", "last", "w", l.cfg.MaxDeliver); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Claim(c, "r1", "early", "w", 1); err != nil {
		t.Fatal(err)
	}
	d, err := l.Claim(c, "r1", "done", "w", l.cfg.MaxDeliver)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Done(c); err != nil {
		t.Fatal(err)
	}
	if ok, err := l.FailAbandoned(c, "r1", "last"); ok || err != nil {
		t.Fatalf("FailAbandoned of a fresh record = %v, %v, want false", ok, err)
	}
	clk.add(l.cfg.StaleAfter + time.Second)
	for _, tc := range []struct {
		id   string
		want bool
	}{{"last", true}, {"early", false}, {"done", false}} {
		ok, err := l.FailAbandoned(c, "r1", tc.id)
		if ok != tc.want || err != nil {
			t.Errorf("FailAbandoned(%s) = %v, %v, want %v", tc.id, ok, err, tc.want)
		}
	}
	rec, _, _ := l.Shard(c, "r1", "last")
	if rec.State != proto.StateFailed || rec.LastError == "" {
		t.Errorf("abandoned record = %+v, want failed with a reason", rec)
	}
}
