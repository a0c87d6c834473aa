package coordinator

import (
	"errors"
	"testing"

	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
)

// TestCoverageIgnoresPreservationShards: family and preserve shards lie outside the planned
// prune range; they must neither hide a gap nor make one (a prune shard planned from the
// cutoff key up to the family's range would list every floating tag in between).
func TestCoverageIgnoresPreservationShards(t *testing.T) {
	const through = "20261117"
	prune := func(after, thr string) proto.ShardRecord {
		return proto.ShardRecord{RunID: "r", ShardID: "0-" + thr, Kind: proto.KindPrune, Repository: "ci", Range: proto.Range{After: after, Through: thr}}
	}
	fam := familyShard("r", 0, "ci")
	pres := proto.ShardRecord{RunID: "r", ShardID: "p", Kind: proto.KindPreserve, Repository: "ci", Range: preserve.ComponentRange("4.1")}
	tests := []struct {
		name   string
		shards []proto.ShardRecord
		gaps   []proto.Range
	}{
		{"covered", []proto.ShardRecord{prune("", "20261101"), prune("20261101", through), fam, pres}, nil},
		{"a gap stays a gap", []proto.ShardRecord{prune("", "20261101"), fam, pres},
			[]proto.Range{{After: "20261101", Through: through}}},
		{"only preservation shards", []proto.ShardRecord{fam, pres}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := coverageGaps(tc.shards, []string{"ci"}, through, proto.KindPrune)
			if len(got) != len(tc.gaps) {
				t.Fatalf("coverageGaps() = %+v, want ranges %+v", got, tc.gaps)
			}
			for i, g := range got {
				if g.Range != tc.gaps[i] || g.Kind != proto.KindPrune {
					t.Errorf("gap %d = %+v, want a prune shard over %+v", i, g, tc.gaps[i])
				}
			}
		})
	}
}

func TestPreservationReason(t *testing.T) {
	if r := (preserved{counters: proto.PreserveCounters{Preserved: 3, RemovalRemoved: 4}}).reason(); r != "" {
		t.Errorf("reason for a clean run = %q", r)
	}
	r := preserved{counters: proto.PreserveCounters{PreserveFailed: 2, RemovalFailed: 1}, failures: []string{"4.1: boom"}}.reason()
	if want := "2 release payloads could not be preserved, 1 release payload tags could not be removed (4.1: boom)"; r != want {
		t.Errorf("reason = %q, want %q", r, want)
	}
	if r := (preserved{err: errors.New("nats down")}).reason(); r != "preservation results unknown: nats down" {
		t.Errorf("reason for unread results = %q", r)
	}
}
