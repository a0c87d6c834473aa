package ledger

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
)

func TestStoppedAndHandBack(t *testing.T) {
	stop := &proto.StopRequest{Reason: "maintenance"}
	tests := []struct {
		name              string
		run               proto.RunRecord
		stopped, handBack bool
	}{
		{"running", proto.RunRecord{State: proto.RunRunning}, false, false},
		{"capped", proto.RunRecord{State: proto.RunRunning, Reason: "max deletes reached"}, true, false},
		{"stop requested", proto.RunRecord{State: proto.RunRunning, Stop: stop}, true, true},
		{"stopped", proto.RunRecord{State: proto.RunStopped, Stop: stop}, true, true},
		{"abandoned: its shards may still be worked", proto.RunRecord{State: proto.RunAbandoned}, false, false},
		{"abandoned and stop requested", proto.RunRecord{State: proto.RunAbandoned, Stop: stop}, true, true},
		{"done", proto.RunRecord{State: proto.RunDone}, true, false},
		{"failed", proto.RunRecord{State: proto.RunFailed}, true, false},
		{"refused", proto.RunRecord{State: proto.RunRefused}, true, false},
	}
	for _, tc := range tests {
		if got := Stopped(tc.run); got != tc.stopped {
			t.Errorf("%s: Stopped = %v, want %v", tc.name, got, tc.stopped)
		}
		if got := HandBack(tc.run); got != tc.handBack {
			t.Errorf("%s: HandBack = %v, want %v", tc.name, got, tc.handBack)
		}
	}
}

// TestRunLifecycle walks a run through a stop request, its stop, a resume and an abandonment.
func TestRunLifecycle(t *testing.T) {
	l, _ := testLedger(t)
	c := ctx(t)
	clk := &clock{t: time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)}
	l.now = clk.now
	if _, err := l.CreateRun(c, proto.RunRecord{RunID: "r1", Repositories: []string{"ci/x"}, State: proto.RunRunning}); err != nil {
		t.Fatal(err)
	}
	if err := l.AcquireLease(c, "ci/x", "r1", "host/1", time.Minute); err != nil {
		t.Fatal(err)
	}
	rec, err := l.RequestStop(c, "r1", proto.StopRequest{Reason: "maintenance", By: "ops@host", At: clk.now()})
	if err != nil || rec.Stop == nil || rec.Stop.Reason != "maintenance" || rec.State != proto.RunRunning {
		t.Fatalf("RequestStop = %+v, %v; want the request recorded on the running run", rec, err)
	}
	if rec, err = l.RequestStop(c, "r1", proto.StopRequest{Reason: "second"}); err != nil || rec.Stop.Reason != "maintenance" {
		t.Fatalf("a second RequestStop = %+v, %v; want the first reason kept", rec.Stop, err)
	}
	// A live coordinator: the run is not abandoned.
	if _, marked, err := l.CheckAbandoned(c, "r1"); marked || err != nil {
		t.Fatalf("CheckAbandoned with a live lease = %v, %v; want not marked", marked, err)
	}
	rec, err = l.MarkStopped(c, "r1", "")
	if err != nil || rec.State != proto.RunStopped || !strings.Contains(rec.Reason, "maintenance") || !strings.Contains(rec.Reason, "ops@host") {
		t.Fatalf("MarkStopped = %+v, %v; want stopped, naming the reason and who asked", rec, err)
	}
	if _, err := l.RequestStop(c, "r1", proto.StopRequest{}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("RequestStop on a stopped run = %v, want ErrNotRunning", err)
	}
	rec, was, err := l.Resume(c, "r1")
	if err != nil || was != proto.RunStopped || rec.State != proto.RunRunning || rec.Stop != nil || rec.Reason != "" || !rec.FinishedAt.IsZero() {
		t.Fatalf("Resume = %+v (was %s), %v; want running with the stop cleared", rec, was, err)
	}
	// Its coordinator dies: once the lease lapses the run is abandoned, naming it.
	clk.add(2 * time.Minute)
	rec, marked, err := l.CheckAbandoned(c, "r1")
	if err != nil || !marked || rec.State != proto.RunAbandoned || !strings.Contains(rec.Reason, "host/1") {
		t.Fatalf("CheckAbandoned after the lease lapsed = %+v, %v, %v; want abandoned naming host/1", rec, marked, err)
	}
	if stored, _, _ := l.Run(c, "r1"); stored.State != proto.RunAbandoned {
		t.Fatalf("stored run is %s, want abandoned", stored.State)
	}
	// A coordinator that took the run up after status read it wins: the abandonment is a
	// compare-and-swap at the revision read before the leases.
	if _, _, err := l.Resume(c, "r1"); err != nil {
		t.Fatal(err)
	}
	rec, rev, _ := l.Run(c, "r1")
	if _, _, err := l.Resume(c, "r1"); err != nil { // the coordinator writes meanwhile
		t.Fatal(err)
	}
	rec.State = proto.RunAbandoned
	if _, err := l.UpdateRun(c, rec, rev); !errors.Is(err, ErrFenced) {
		t.Fatalf("an abandonment at a stale revision = %v, want ErrFenced", err)
	}
	// The refused record.
	if err := l.CreateRefused(c, proto.RunRecord{RunID: "r2", Repositories: []string{"ci/x"}}, &LeaseHeldError{Lease: proto.Lease{RunID: "r1", Repository: "ci/x"}}); err != nil {
		t.Fatal(err)
	}
	if rec, _, _ := l.Run(c, "r2"); rec.State != proto.RunRefused || !strings.Contains(rec.Reason, "held by run r1") {
		t.Fatalf("refused run = %+v, want refused naming the holder", rec)
	}
}

// TestHandBackOrphans: a shard held by a worker whose process ended is delivered again at
// once, not after the AckWait (an hour here).
func TestHandBackOrphans(t *testing.T) {
	_, js := testLedger(t)
	c := ctx(t)
	l2, err := Open(c, js, Config{Storage: jetstream.MemoryStorage, AckWait: time.Hour, MaxDeliver: 3})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, l2, newShard("r1", "s1", "", "b"))
	mustCreate(t, l2, newShard("r1", "s2", "b", "c"))
	fetch := func() []string {
		t.Helper()
		batch, err := l2.Consumer().Fetch(2, jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m := range batch.Messages() {
			got = append(got, m.Subject())
		}
		return got
	}
	// The previous process took both messages and claimed s1, then died without a word.
	if got := fetch(); len(got) != 2 {
		t.Fatalf("first fetch got %v, want both shards", got)
	}
	claim, err := l2.Claim(c, "r1", "s1", "dead-worker", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.Checkpoint(c, "a", proto.Counters{Scanned: 1}); err != nil {
		t.Fatal(err)
	}
	n, err := l2.HandBackOrphans(c, "r1")
	if err != nil || n != 2 {
		t.Fatalf("HandBackOrphans = %d, %v; want both shards handed back", n, err)
	}
	rec, _, _ := l2.Shard(c, "r1", "s1")
	if rec.State != proto.StatePending || rec.Owner != "" || rec.Cursor != "a" || !strings.Contains(rec.LastError, "dead-worker") {
		t.Fatalf("s1 after the hand-back = %+v, want pending with its cursor", rec)
	}
	if got := fetch(); len(got) != 2 {
		t.Fatalf("after the hand-back a fetch got %v, want both shards at once", got)
	}
}
