package ledger

import (
	"reflect"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Stale: a running shard not written for StaleAfter, by default five ack waits; its last
// write is its heartbeat, else its creation. Pending and finished shards are never stale.
func TestStale(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	l := &Ledger{cfg: Config{AckWait: time.Minute}.withDefaults()}
	running := func(heartbeat time.Duration) proto.ShardRecord {
		return proto.ShardRecord{State: proto.StateRunning, CreatedAt: now.Add(-time.Hour), Heartbeat: now.Add(-heartbeat)}
	}
	tests := []struct {
		name string
		rec  proto.ShardRecord
		want bool
	}{
		{"written just now", running(0), false},
		{"quiet for just under five ack waits", running(5*time.Minute - time.Nanosecond), false},
		{"quiet for five ack waits", running(5 * time.Minute), true},
		{"quiet for an hour", running(time.Hour), true},
		{"running without a heartbeat: its creation counts", proto.ShardRecord{State: proto.StateRunning, CreatedAt: now.Add(-6 * time.Minute)}, true},
		{"pending and quiet", proto.ShardRecord{State: proto.StatePending, CreatedAt: now.Add(-time.Hour)}, false},
		{"done and quiet", proto.ShardRecord{State: proto.StateDone, Heartbeat: now.Add(-time.Hour)}, false},
		{"failed and quiet", proto.ShardRecord{State: proto.StateFailed, Heartbeat: now.Add(-time.Hour)}, false},
	}
	for _, tc := range tests {
		if got := l.Stale(tc.rec, now); got != tc.want {
			t.Errorf("%s: Stale = %v, want %v", tc.name, got, tc.want)
		}
	}
	l.cfg.StaleAfter = 30 * time.Second
	if !l.Stale(running(30*time.Second), now) || l.Stale(running(29*time.Second), now) {
		t.Errorf("Stale does not follow a StaleAfter of 30s")
	}
}

// Summarize counts shards by state, sums their counters and inventories, lists the failed
// ones in ID order, and counts the prune shards apart from the preservation shards.
func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	inv := func(n int64) *proto.Inventory {
		i := &proto.Inventory{}
		i.AddDay("20261101", n)
		return i
	}
	shards := []proto.ShardRecord{
		{ShardID: "2", Kind: proto.KindPrune, State: proto.StateFailed, StartedAt: t0.Add(2 * time.Second), Heartbeat: t0.Add(5 * time.Second),
			Counters: proto.Counters{Scanned: 10, Deleted: 3}, LastError: "boom"},
		{ShardID: "1", Kind: proto.KindPrune, State: proto.StateDone, StartedAt: t0.Add(time.Second), Heartbeat: t0.Add(9 * time.Second),
			Counters: proto.Counters{Scanned: 5, Eligible: 4}, Inventory: inv(2)},
		{ShardID: "0-family", Kind: proto.KindFamily, State: proto.StateFailed, StartedAt: t0, Heartbeat: t0},
		{ShardID: "3", Kind: proto.KindPrune, State: proto.StateRunning, StartedAt: t0.Add(3 * time.Second), Heartbeat: t0.Add(4 * time.Second),
			Inventory: inv(1)},
		{ShardID: "4", Kind: proto.KindPrune, State: proto.StatePending},
		{ShardID: "p", Kind: proto.KindPreserve, State: proto.StateDone, StartedAt: t0, Heartbeat: t0.Add(20 * time.Second)},
	}
	got := Summarize(shards)
	if want := (proto.ShardTotals{Total: 6, Done: 2, Failed: 2}); got.Shards != want {
		t.Errorf("Shards = %+v, want %+v", got.Shards, want)
	}
	if got.Pending != 1 || got.Running != 1 {
		t.Errorf("Pending, Running = %d, %d, want 1, 1", got.Pending, got.Running)
	}
	if want := (proto.Counters{Scanned: 15, Eligible: 4, Deleted: 3}); got.Tags != want {
		t.Errorf("Tags = %+v, want %+v", got.Tags, want)
	}
	if want := *inv(3); !reflect.DeepEqual(got.Inventory, want) {
		t.Errorf("Inventory = %+v, want %+v", got.Inventory, want)
	}
	if ids := got.FailedIDs(); !reflect.DeepEqual(ids, []string{"0-family", "2"}) || got.Failed[1].LastError != "boom" {
		t.Errorf("Failed = %v (%+v), want 0-family, 2 with 2's error", ids, got.Failed)
	}
	if !got.LastProgress.Equal(t0.Add(20 * time.Second)) {
		t.Errorf("LastProgress = %v, want the preserve shard's heartbeat", got.LastProgress)
	}
	if want := (proto.ShardTotals{Total: 4, Done: 1, Failed: 1}); got.Prune != want {
		t.Errorf("Prune = %+v, want %+v", got.Prune, want)
	}
	if !got.PruneStarted.Equal(t0.Add(time.Second)) {
		t.Errorf("PruneStarted = %v, want the first prune shard's claim", got.PruneStarted)
	}
	if empty := Summarize(nil); !reflect.DeepEqual(empty, Summary{}) || empty.FailedIDs() != nil {
		t.Errorf("Summarize(nil) = %+v, want the zero Summary", empty)
	}
}
