package ledger

import (
	"slices"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Stale reports whether rec is a running shard whose record was not written for StaleAfter
// by now: its holder has most likely died, as a live holder writes the record at every page.
// A stale shard may be claimed by any delivery of its message, not only a newer one, and one
// stale on its message's last delivery is failed as abandoned (Rescue). The coordinator acts
// on it and tagsweep status shows it by this one definition.
func (l *Ledger) Stale(rec proto.ShardRecord, now time.Time) bool {
	return rec.State == proto.StateRunning && l.quiet(rec, now)
}

// quiet reports whether rec was not written for StaleAfter by now.
func (l *Ledger) quiet(rec proto.ShardRecord, now time.Time) bool {
	return now.Sub(lastWrite(rec)) >= l.cfg.StaleAfter
}

// lastWrite is when the record was last written: its heartbeat, else its creation.
func lastWrite(rec proto.ShardRecord) time.Time {
	if rec.Heartbeat.IsZero() {
		return rec.CreatedAt
	}
	return rec.Heartbeat
}

// Summary is what a run's shard records add up to, as the coordinator's progress and report
// and tagsweep status show it.
type Summary struct {
	// Shards counts every shard, and the done and failed ones.
	Shards proto.ShardTotals
	// Pending and Running count the shards that are not finished.
	Pending, Running int
	// Tags sums every shard's counters.
	Tags proto.Counters
	// Inventory merges the inventories of the shards that have one (an inventory's list
	// shards).
	Inventory proto.Inventory
	// Failed are the failed shards, in shard ID order.
	Failed []proto.ShardRecord
	// LastProgress is the newest claim or checkpoint of any shard; zero = none yet.
	LastProgress time.Time
	// Prune counts the prune shards alone, without the release-payload shards (a family
	// shard and a preserve shard per payload), which are few and quick; PruneStarted is when
	// the first prune shard was claimed, zero = none yet.
	Prune        proto.ShardTotals
	PruneStarted time.Time
}

// Summarize adds up a run's shard records.
func Summarize(shards []proto.ShardRecord) Summary {
	var s Summary
	for _, sh := range shards {
		s.Shards.Total++
		s.Tags.Add(sh.Counters)
		if sh.Inventory != nil {
			s.Inventory.Add(*sh.Inventory)
		}
		switch sh.State {
		case proto.StateDone:
			s.Shards.Done++
		case proto.StateFailed:
			s.Shards.Failed++
			s.Failed = append(s.Failed, sh)
		case proto.StateRunning:
			s.Running++
		default:
			s.Pending++
		}
		if sh.Heartbeat.After(s.LastProgress) {
			s.LastProgress = sh.Heartbeat
		}
		if sh.Kind == proto.KindPrune {
			s.addPrune(sh)
		}
	}
	slices.SortFunc(s.Failed, func(a, b proto.ShardRecord) int { return strings.Compare(a.ShardID, b.ShardID) })
	return s
}

// addPrune counts a prune shard into Prune and PruneStarted.
func (s *Summary) addPrune(sh proto.ShardRecord) {
	s.Prune.Total++
	switch sh.State {
	case proto.StateDone:
		s.Prune.Done++
	case proto.StateFailed:
		s.Prune.Failed++
	}
	if !sh.StartedAt.IsZero() && (s.PruneStarted.IsZero() || sh.StartedAt.Before(s.PruneStarted)) {
		s.PruneStarted = sh.StartedAt
	}
}

// FailedIDs names the failed shards, in order.
func (s Summary) FailedIDs() []string {
	var ids []string
	for _, f := range s.Failed {
		ids = append(ids, f.ShardID)
	}
	return ids
}
