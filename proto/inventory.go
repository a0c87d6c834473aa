package proto

import "slices"

// An inventory run (tagsweep ls) lists a repository with the same shards as a pruning run,
// and counts what it finds instead of deleting: its run record has Mode ModeInventory, its
// shards are KindList, and each shard record carries an Inventory next to its Counters.

// RunMode says what a run does with the tags it lists.
type RunMode string

const (
	// ModePrune runs (the zero value, as older records have it) delete eligible tags.
	ModePrune RunMode = ""
	// ModeInventory runs only list and count: a worker never deletes for such a run,
	// whatever its shards or its policy say.
	ModeInventory RunMode = "inventory"
)

// KindList shards list a key range and count its tags into the shard record's Counters
// (Scanned: every tag; Eligible: what the run's policy would delete; Kept; Invalid) and
// Inventory. They never delete, and they only belong to ModeInventory runs.
const KindList ShardKind = "list"

// Inventory is what an inventory shard (and, merged, a run) found beyond its Counters. Its
// size grows with the days the tags span, never with the number of tags.
type Inventory struct {
	// Days counts the prune tags per day of their timestamp (YYYY-MM-DD, in the policy's
	// time zone), ascending by day. Prune tags with an invalid timestamp are not in it
	// (Counters.Invalid counts them).
	Days []DayCount `json:"days,omitempty"`
	// Families counts the release-payload preservation family's tags by role.
	Families FamilyCounts `json:"families"`
}

// DayCount is the number of prune tags dated on one day.
type DayCount struct {
	Day  string `json:"day"`
	Tags int64  `json:"tags"`
}

// FamilyCounts counts release-payload family tags by role.
type FamilyCounts struct {
	Payloads        int64 `json:"payloads"`         // rc_payload__<v>
	Markers         int64 `json:"markers"`          // preserved__rc_payload__<v>
	RemovalRequests int64 `json:"removal_requests"` // remove__rc_payload__<v>
	Components      int64 `json:"components"`       // rc_payload__<v>__component__<c>
}

// Total is every family tag counted.
func (f FamilyCounts) Total() int64 {
	return f.Payloads + f.Markers + f.RemovalRequests + f.Components
}

// AddDay counts n prune tags on day, keeping Days sorted.
func (inv *Inventory) AddDay(day string, n int64) {
	i, found := slices.BinarySearchFunc(inv.Days, day, func(d DayCount, day string) int {
		switch {
		case d.Day < day:
			return -1
		case d.Day > day:
			return 1
		}
		return 0
	})
	if found {
		inv.Days[i].Tags += n
		return
	}
	inv.Days = slices.Insert(inv.Days, i, DayCount{Day: day, Tags: n})
}

// Add merges o into inv.
func (inv *Inventory) Add(o Inventory) {
	for _, d := range o.Days {
		inv.AddDay(d.Day, d.Tags)
	}
	inv.Families.Payloads += o.Families.Payloads
	inv.Families.Markers += o.Families.Markers
	inv.Families.RemovalRequests += o.Families.RemovalRequests
	inv.Families.Components += o.Families.Components
}

// Equal reports whether inv and o hold the same counts; nil equals nil only.
func (inv *Inventory) Equal(o *Inventory) bool {
	if inv == nil || o == nil {
		return inv == o
	}
	return inv.Families == o.Families && slices.Equal(inv.Days, o.Days)
}

// SameShard reports whether two shard records are the same, Inventory compared by value
// (ShardRecord's == compares its pointer).
func SameShard(a, b ShardRecord) bool {
	ai, bi := a.Inventory, b.Inventory
	a.Inventory, b.Inventory = nil, nil
	return a == b && ai.Equal(bi)
}
