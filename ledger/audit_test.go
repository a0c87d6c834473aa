package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

// auditTag is the i-th tag of the audit tests; tags sort in i's order.
func auditTag(i int) string { return fmt.Sprintf("2001%06d_prune_x", i) }

// auditPage appends the audit events of tags [from, to) to cl, as a worker does for a page.
func auditPage(t *testing.T, cl *Claim, from, to int, errText string) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := cl.Audit(proto.AuditEvent{Tag: auditTag(i), Outcome: proto.OutcomeDeleted, Error: errText}); err != nil {
			t.Fatalf("Audit(%s): %v", auditTag(i), err)
		}
	}
}

// readAudit returns the tags of run's audit events in order, failing the test on an error.
func readAudit(t *testing.T, js jetstream.JetStream, runID string) []string {
	t.Helper()
	l, err := Bind(ctx(t), js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	var tags []string
	for ev, err := range l.Audit(ctx(t), runID) {
		if err != nil {
			t.Fatalf("Audit(%s) after %d events: %v", runID, len(tags), err)
		}
		tags = append(tags, ev.Tag)
	}
	return tags
}

// claimR1S1 creates shard r1/s1 through created and claims it through claimer (the same
// ledger, or one over a wrapped connection) for owner at attempt.
func claimR1S1(t *testing.T, created, claimer *Ledger, owner string, attempt int) *Claim {
	t.Helper()
	mustCreate(t, created, newShard("r1", "s1", "", "2026"))
	cl, err := claimer.Claim(ctx(t), "r1", "s1", owner, attempt)
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// stopAuditStream makes the audit stream stop taking the runs' subjects, so that a publish
// of audit events goes unanswered; reopenLedger restores it, as a ledger's Open does.
func stopAuditStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	s, err := js.Stream(ctx(t), proto.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	cfg.Subjects = []string{"tagsweep.elsewhere.>"}
	if _, err := js.UpdateStream(ctx(t), cfg); err != nil {
		t.Fatal(err)
	}
}

func reopenLedger(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	if _, err := Open(ctx(t), js, Config{Storage: jetstream.MemoryStorage, AckWait: 2 * time.Second, MaxDeliver: 3}); err != nil {
		t.Fatalf("re-opening the ledger: %v", err)
	}
}

// appendAudit stores one event on its run's audit stream as a batch of one, the way a
// claim's flush stores a page's (tests set up the stream's contents with it).
func appendAudit(ctx context.Context, l *Ledger, ev proto.AuditEvent) error {
	if !proto.ValidToken(ev.RunID) {
		return fmt.Errorf("audit event: run id %q is not a valid token", ev.RunID)
	}
	ev.V = proto.Version
	if ev.Time.IsZero() {
		ev.Time = l.now().UTC()
	}
	ev.Error = truncate(ev.Error, auditErrorBytes)
	data, err := json.Marshal(proto.AuditBatch{V: proto.Version, RunID: ev.RunID, ShardID: ev.ShardID,
		Repository: ev.Repository, Events: []proto.AuditEvent{ev}})
	if err != nil {
		return fmt.Errorf("encoding audit event: %w", err)
	}
	if _, err := l.js.Publish(ctx, proto.AuditSubject(ev.RunID), data, jetstream.WithExpectStream(proto.StreamAudit)); err != nil {
		return fmt.Errorf("appending audit event: %w", err)
	}
	return nil
}

// checkOnce fails unless tags are exactly auditTag(0..n-1), each once, in order.
func checkOnce(t *testing.T, tags []string, n int) {
	t.Helper()
	seen := make(map[string]int)
	for _, tag := range tags {
		seen[tag]++
	}
	for i := range n {
		if c := seen[auditTag(i)]; c != 1 {
			t.Errorf("event of %s stored %d times, want once", auditTag(i), c)
		}
	}
	if len(tags) != n {
		t.Fatalf("%d events stored, want %d", len(tags), n)
	}
	for i, tag := range tags {
		if tag != auditTag(i) {
			t.Fatalf("event %d is %s, want %s (stored order)", i, tag, auditTag(i))
		}
	}
}

// auditMessages returns the messages of the audit stream, decoded, with their encodings.
func auditMessages(t *testing.T, js jetstream.JetStream) ([]proto.AuditBatch, [][]byte) {
	t.Helper()
	c := ctx(t)
	s, err := js.Stream(c, proto.StreamAudit)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(c)
	if err != nil {
		t.Fatal(err)
	}
	var batches []proto.AuditBatch
	var raw [][]byte
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(c, seq)
		if err != nil {
			t.Fatalf("GetMsg(%d): %v", seq, err)
		}
		var b proto.AuditBatch
		if err := decode(m.Data, &b); err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		batches = append(batches, b)
		raw = append(raw, m.Data)
	}
	return batches, raw
}

// A page's events are one message: 100 events in one page and 250 in the next are two
// messages, read back as 350 events in order, each with the claim's run, shard and repository.
func TestAuditOneMessagePerPage(t *testing.T) {
	l, js := testLedger(t)
	c := ctx(t)
	cl := claimR1S1(t, l, l, "w", 2)
	pages := []struct{ from, to int }{{0, 100}, {100, 350}}
	for i, p := range pages {
		auditPage(t, cl, p.from, p.to, "")
		if n := streamMsgs(t, js, proto.StreamAudit); n != uint64(i) {
			t.Fatalf("audit stream holds %d messages before the checkpoint of page %d, want %d (Audit sends nothing)", n, i, i)
		}
		if err := cl.Checkpoint(c, auditTag(p.to-1), proto.Counters{}); err != nil {
			t.Fatalf("Checkpoint: %v", err)
		}
		if n := streamMsgs(t, js, proto.StreamAudit); n != uint64(i+1) {
			t.Fatalf("audit stream holds %d messages after page %d (%d events), want %d: one per page", n, i, p.to-p.from, i+1)
		}
	}
	batches, _ := auditMessages(t, js)
	for i, b := range batches {
		if b.RunID != "r1" || b.ShardID != "s1" || b.Repository != "ci/x" || b.Attempt != 2 || len(b.Events) != pages[i].to-pages[i].from {
			t.Errorf("batch %d = run %s shard %s repository %s attempt %d with %d events; want r1 s1 ci/x 2 with %d",
				i, b.RunID, b.ShardID, b.Repository, b.Attempt, len(b.Events), pages[i].to-pages[i].from)
		}
	}
	var tags []string
	for ev, err := range l.Audit(c, "r1") {
		if err != nil {
			t.Fatal(err)
		}
		if ev.V != proto.Version || ev.RunID != "r1" || ev.ShardID != "s1" || ev.Repository != "ci/x" ||
			ev.Outcome != proto.OutcomeDeleted || ev.Time.IsZero() {
			t.Fatalf("event %+v, want version, run, shard, repository, outcome and time filled", ev)
		}
		tags = append(tags, ev.Tag)
	}
	checkOnce(t, tags, 350)
}

// A batch larger than a message may hold becomes several messages, each within the bounds,
// and the events read back in order. Each message's encoding is the one encoding/json makes of
// proto.AuditBatch: the hand-assembled batch cannot drift from the wire type.
func TestAuditSplitsLargeBatches(t *testing.T) {
	tests := []struct {
		name     string
		events   int
		errText  string
		wantMsgs int
	}{
		{name: "small", events: 1, wantMsgs: 1},
		{name: "by count", events: 2*auditBatchEvents + 500, wantMsgs: 3},
		// ~3.2 KiB per event: 80 fit in 256 KiB.
		{name: "by size", events: 200, errText: strings.Repeat("e", 3<<10), wantMsgs: 3},
		// Cut to 4 KiB each: 200 events still fit in 4 messages, not 200 of 1 MiB.
		{name: "huge errors", events: 200, errText: strings.Repeat("é", 1<<19), wantMsgs: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, js := testLedger(t)
			c := ctx(t)
			cl := claimR1S1(t, l, l, "w", 1)
			auditPage(t, cl, 0, tc.events, tc.errText)
			if err := cl.Done(c); err != nil {
				t.Fatalf("Done: %v", err)
			}
			batches, raw := auditMessages(t, js)
			if len(batches) != tc.wantMsgs {
				t.Errorf("%d events stored as %d messages, want %d", tc.events, len(batches), tc.wantMsgs)
			}
			for i, b := range batches {
				if len(raw[i]) > auditBatchBytes || len(b.Events) > auditBatchEvents {
					t.Errorf("message %d: %d bytes, %d events; want at most %d, %d", i, len(raw[i]), len(b.Events), auditBatchBytes, auditBatchEvents)
				}
				for _, ev := range b.Events {
					if len(ev.Error) > auditErrorBytes || (tc.errText != "" && !strings.HasPrefix(tc.errText, strings.TrimSuffix(ev.Error, "…(truncated)"))) {
						t.Fatalf("message %d: event error of %d bytes, want a prefix of the error of at most %d", i, len(ev.Error), auditErrorBytes)
					}
				}
				again, err := json.Marshal(b)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(again, raw[i]) {
					t.Fatalf("message %d is not encoding/json's encoding of its proto.AuditBatch:\n got %.300s\nwant %.300s", i, raw[i], again)
				}
			}
			checkOnce(t, readAudit(t, js, "r1"), tc.events)
		})
	}
}

// lossyJS stores what it publishes but, lose times, reports the publish failed, as when the
// acknowledgement of a stored message is lost (a timeout, a leader change).
type lossyJS struct {
	jetstream.JetStream
	lose atomic.Int32
}

func (j *lossyJS) Publish(ctx context.Context, subject string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	ack, err := j.JetStream.Publish(ctx, subject, data, opts...)
	if err == nil && j.lose.Add(-1) >= 0 {
		return nil, errors.New("test: acknowledgement lost")
	}
	return ack, err
}

// A write whose audit events cannot be stored fails before it changes the record and keeps
// the events; events appended meanwhile are added; the next write that can stores every event
// exactly once, also when the failed publish was stored after all.
func TestAuditFlushFailureKeepsEvents(t *testing.T) {
	tests := []struct {
		name string
		// fail makes the next flush fail; restore makes flushes succeed again.
		fail, restore func(t *testing.T, js jetstream.JetStream, lossy *lossyJS)
	}{
		{
			// No stream takes the run's subject any more: the publish goes unanswered.
			name:    "stream gone",
			fail:    func(t *testing.T, js jetstream.JetStream, _ *lossyJS) { stopAuditStream(t, js) },
			restore: func(t *testing.T, js jetstream.JetStream, _ *lossyJS) { reopenLedger(t, js) },
		},
		{
			name: "acknowledgement lost",
			fail: func(t *testing.T, _ jetstream.JetStream, lossy *lossyJS) { lossy.lose.Store(1) },
			restore: func(t *testing.T, _ jetstream.JetStream, lossy *lossyJS) {
				if n := lossy.lose.Load(); n > 0 {
					t.Fatalf("%d acknowledgements left to lose: the failing flush published nothing", n)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plain, js, srv := testLedgerServer(t)
			c := ctx(t)
			lossy := &lossyJS{JetStream: srv.JS(t)}
			l, err := Open(c, lossy, Config{Storage: jetstream.MemoryStorage, AckWait: 2 * time.Second, MaxDeliver: 3})
			if err != nil {
				t.Fatal(err)
			}
			cl := claimR1S1(t, plain, l, "w", 1)
			auditPage(t, cl, 0, 100, "")
			if err := cl.Checkpoint(c, auditTag(99), proto.Counters{Deleted: 100}); err != nil {
				t.Fatal(err)
			}

			auditPage(t, cl, 100, 200, "")
			tc.fail(t, js, lossy)
			if err := cl.Checkpoint(c, auditTag(199), proto.Counters{Deleted: 100}); err == nil {
				t.Fatal("Checkpoint succeeded while its audit events could not be stored")
			}
			if rec, _, err := plain.Shard(c, "r1", "s1"); err != nil || rec.Cursor != auditTag(99) {
				t.Fatalf("record after the failed checkpoint: cursor %q, %v; want %q, unchanged", rec.Cursor, err, auditTag(99))
			}
			auditPage(t, cl, 200, 250, "") // the worker goes on, or retries, with more events
			tc.restore(t, js, lossy)
			if err := cl.Checkpoint(c, auditTag(249), proto.Counters{Deleted: 150}); err != nil {
				t.Fatalf("Checkpoint after the failure: %v", err)
			}
			checkOnce(t, readAudit(t, js, "r1"), 250)
			if err := cl.Done(c); err != nil { // nothing left to store: nothing stored again
				t.Fatal(err)
			}
			checkOnce(t, readAudit(t, js, "r1"), 250)
		})
	}
}

// A claim that learns it lost its shard (Verify after a failed write) still stores the audit
// events its failed flush kept: they record deletions that happened, and no later write of
// that claim will come.
func TestAuditStoredWhenFenced(t *testing.T) {
	l, js, _ := testLedgerServer(t)
	c := ctx(t)
	cl := claimR1S1(t, l, l, "w1", 1)
	stopAuditStream(t, js)
	auditPage(t, cl, 0, 100, "")
	if err := cl.Checkpoint(c, auditTag(99), proto.Counters{Deleted: 100}); err == nil {
		t.Fatal("Checkpoint succeeded while its audit events could not be stored")
	}
	if _, err := l.Claim(c, "r1", "s1", "w2", 2); err != nil { // redelivered to another worker
		t.Fatal(err)
	}
	reopenLedger(t, js)
	if _, err := cl.Verify(c); !errors.Is(err, ErrFenced) {
		t.Fatalf("Verify after the shard was taken = %v, want ErrFenced", err)
	}
	checkOnce(t, readAudit(t, js, "r1"), 100)
}

// Audit is safe for concurrent use, also while the claim writes: every event appended is
// stored exactly once by the write that follows it.
func TestAuditConcurrent(t *testing.T) {
	l, js := testLedger(t)
	c := ctx(t)
	cl := claimR1S1(t, l, l, "w", 1)
	const goroutines, each = 8, 150
	errs := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := g * each; i < (g+1)*each; i++ {
				if err := cl.Audit(proto.AuditEvent{Tag: auditTag(i), Outcome: proto.OutcomeDryRun}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for writing := true; writing; {
		select {
		case <-done:
			writing = false
		default:
		}
		if err := cl.Checkpoint(c, "2001", proto.Counters{}); err != nil {
			t.Fatalf("Checkpoint: %v", err)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatalf("Audit: %v", err)
	}
	tags := readAudit(t, js, "r1")
	slices.Sort(tags) // goroutines interleave: the order is theirs
	checkOnce(t, tags, goroutines*each)
}

// An event for a run ID that can never be a subject is refused at once, not kept to block
// every later write of the claim.
func TestAuditRefusesInvalidRun(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	cl := claimR1S1(t, l, l, "w", 1)
	if err := cl.Audit(proto.AuditEvent{RunID: "a.b", Tag: "t", Outcome: proto.OutcomeDeleted}); err == nil {
		t.Fatal("Audit of run a.b succeeded")
	}
	if err := cl.Checkpoint(c, "2001", proto.Counters{}); err != nil {
		t.Fatalf("Checkpoint after a refused event: %v", err)
	}
}

// The reader yields the events before a message it cannot decode as a batch, then fails,
// naming the message.
func TestAuditRejectsNonBatch(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{name: "single event", data: `{"v":1,"run":"r1","shard":"s1","repository":"ci/x","tag":"t","outcome":"deleted","time":"2026-01-01T00:00:00Z"}`},
		{name: "empty batch", data: `{"v":1,"run":"r1","shard":"s1","repository":"ci/x","attempt":1,"events":[]}`},
		{name: "newer version", data: `{"v":99,"run":"r1","events":[{"v":99,"tag":"t"}]}`},
		{name: "not json", data: `deleted t`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, js := testLedger(t)
			c := ctx(t)
			if err := appendAudit(c, l, proto.AuditEvent{RunID: "r1", Tag: auditTag(0), Outcome: proto.OutcomeDeleted}); err != nil {
				t.Fatal(err)
			}
			if _, err := js.Publish(c, proto.AuditSubject("r1"), []byte(tc.data)); err != nil {
				t.Fatal(err)
			}
			var tags []string
			var gotErr error
			for ev, err := range l.Audit(c, "r1") {
				if err != nil {
					gotErr = err
					break
				}
				tags = append(tags, ev.Tag)
			}
			if len(tags) != 1 || !errors.Is(gotErr, ErrBadRecord) || !strings.Contains(gotErr.Error(), "sequence 2") {
				t.Fatalf("Audit = %v, %v; want [%s], then an ErrBadRecord at sequence 2", tags, gotErr, auditTag(0))
			}
		})
	}
}

// The reader goes on fetching until the last message stored when it started: more messages
// than one fetch takes, here batches of one.
func TestAuditManyMessages(t *testing.T) {
	l, js := testLedger(t)
	c := ctx(t)
	const n = 150
	for i := range n {
		if err := appendAudit(c, l, proto.AuditEvent{RunID: "r1", ShardID: "s1", Tag: auditTag(i), Outcome: proto.OutcomeDeleted}); err != nil {
			t.Fatal(err)
		}
	}
	if got := streamMsgs(t, js, proto.StreamAudit); got != n {
		t.Fatalf("%d appended events stored as %d messages, want %d", n, got, n)
	}
	checkOnce(t, readAudit(t, js, "r1"), n)
}
