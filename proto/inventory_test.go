package proto

import (
	"slices"
	"testing"
)

// TestInventoryAdd: merging inventories in any order gives the same sorted days and sums.
func TestInventoryAdd(t *testing.T) {
	a := Inventory{Days: []DayCount{{"2026-11-01", 3}, {"2026-11-03", 1}}, Families: FamilyCounts{Payloads: 1, Markers: 2}}
	b := Inventory{Days: []DayCount{{"2026-10-30", 5}, {"2026-11-03", 4}}, Families: FamilyCounts{Components: 7, RemovalRequests: 1}}
	want := Inventory{Days: []DayCount{{"2026-10-30", 5}, {"2026-11-01", 3}, {"2026-11-03", 5}},
		Families: FamilyCounts{Payloads: 1, Markers: 2, RemovalRequests: 1, Components: 7}}
	for _, order := range [][]Inventory{{a, b}, {b, a}} {
		var got Inventory
		for _, in := range order {
			got.Add(in)
		}
		if !got.Equal(&want) {
			t.Errorf("Add(%v) = %+v, want %+v", order, got, want)
		}
	}
	if got := want.Families.Total(); got != 11 {
		t.Errorf("Total() = %d, want 11", got)
	}
	if !slices.Equal(a.Days, []DayCount{{"2026-11-01", 3}, {"2026-11-03", 1}}) {
		t.Errorf("Add changed its argument: %+v", a.Days)
	}
}

// TestSameShard compares records with their inventories by value.
func TestSameShard(t *testing.T) {
	a := ShardRecord{ShardID: "s", Inventory: &Inventory{Days: []DayCount{{"2026-11-01", 3}}}}
	b := ShardRecord{ShardID: "s", Inventory: &Inventory{Days: []DayCount{{"2026-11-01", 3}}}}
	if !SameShard(a, b) {
		t.Errorf("SameShard of equal records with distinct inventory pointers = false")
	}
	b.Inventory.Days[0].Tags = 4
	if SameShard(a, b) {
		t.Errorf("SameShard of records with different inventories = true")
	}
	if SameShard(a, ShardRecord{ShardID: "s"}) || !SameShard(ShardRecord{ShardID: "s"}, ShardRecord{ShardID: "s"}) {
		t.Errorf("SameShard with nil inventories is wrong")
	}
	if SameShard(ShardRecord{ShardID: "s", Cursor: "a"}, ShardRecord{ShardID: "s"}) {
		t.Errorf("SameShard ignores the other fields")
	}
}
