package coordinator

import (
	"slices"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/proto"
)

// TestPlanParts: an inventory's namespace is planned as the dated part up to a day after the
// run's start and the rest above it, and the parts cover exactly the range asked for; a
// pruning run's range is planned whole.
func TestPlanParts(t *testing.T) {
	start := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	inv := proto.RunRecord{Mode: proto.ModeInventory, StartedAt: start}
	const mid = "20261123030000"
	for _, tc := range []struct {
		name           string
		run            proto.RunRecord
		after, through string
		want           []proto.Range
	}{
		{"inventory", inv, "", keyspace.End, []proto.Range{{After: "", Through: mid}, {After: mid, Through: keyspace.End}}},
		{"inventory resumed past the dated part", inv, "latest", keyspace.End, []proto.Range{{After: "latest", Through: keyspace.End}}},
		{"inventory resumed inside it", inv, "2026", keyspace.End, []proto.Range{{After: "2026", Through: mid}, {After: mid, Through: keyspace.End}}},
		{"pruning run", proto.RunRecord{StartedAt: start}, "", "20261117030000", []proto.Range{{After: "", Through: "20261117030000"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := planParts(tc.run, tc.after, tc.through); !slices.Equal(got, tc.want) {
				t.Errorf("planParts(%q, %q) = %v, want %v", tc.after, tc.through, got, tc.want)
			}
		})
	}
}
