package worker

import (
	"errors"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

// Observer is told what a worker does, for metrics: the shards it holds and what became of
// the tags of every page it finished. Its methods are called from the worker's goroutines,
// several at once, and must return quickly. Config.Observer nil means none.
type Observer interface {
	// StartShard is called when the worker has claimed a shard and starts on it; the function
	// it returns is called once when the worker stops holding the shard, however that ends.
	StartShard(run, shard string) (end func())
	// PageDone is called once per page the worker finished deciding and deleting, with the
	// same counts the page adds to the shard's counters (before they are checkpointed).
	PageDone(PageStats)
}

// ListObserver, when the Observer implements it too, is told the tags each stored checkpoint
// of a shard counts as listed: a page's finished tags, once the compare-and-swap that records
// them has succeeded. A worker that lost its shard stores no checkpoint, so its pages are not
// told. Tests check with it that no tag is counted by two shards, however shards are split
// and taken over (test/invariant).
type ListObserver interface {
	Checkpointed(run, shard string, tags []string)
}

// PageStats is what became of one page's tags. Scanned is always the sum of the other
// counts: sum(Kept) + DryRun + Deleted + AlreadyGone + len(Failed).
type PageStats struct {
	Run, Shard, Repository string
	// Scanned counts the tags decided: what the page adds to the shard's Counters.Scanned.
	Scanned int
	// Kept counts the tags the policy keeps, by its reason (prune tags with an impossible
	// timestamp under policy.ReasonInvalidTimestamp).
	Kept map[policy.Reason]int
	// DryRun counts eligible tags not deleted because the run is a dry run.
	DryRun int
	// Deleted and AlreadyGone count successful deletes (a 404 is already gone).
	Deleted, AlreadyGone int
	// Failed holds the error of each delete that failed and is counted as failed (one that
	// will be tried again on a later delivery is not in the page's counts at all).
	Failed []error
}

// tally counts a page's tags as its checkpoint (the shard's counters) and the Observer
// (PageStats) see them.
type tally struct {
	delta proto.Counters
	stats PageStats
}

func newTally(rec proto.ShardRecord) *tally {
	return &tally{stats: PageStats{Run: rec.RunID, Shard: rec.ShardID, Repository: rec.Repository, Kept: make(map[policy.Reason]int)}}
}

// decide decides tag with rules, and counts it scanned and eligible, invalid or kept.
func (t *tally) decide(rules *policy.Rules, tag string) policy.Decision {
	t.delta.Scanned++
	d := rules.Decide(tag)
	switch d.Verdict {
	case policy.Delete:
		t.delta.Eligible++
	case policy.Invalid:
		t.delta.Invalid++
		t.stats.Kept[d.Reason]++
	default:
		t.delta.Kept++
		t.stats.Kept[d.Reason]++
	}
	return d
}

// ErrNotEligible is the error in PageStats.Failed for a tag the worker refused to delete at
// delete time because the check right before the call found it outside the shard's range or
// not eligible. It should never happen; it means a bug upstream.
var ErrNotEligible = errors.New("refused: not eligible at delete time")

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) StartShard(string, string) func() { return func() {} }
func (nopObserver) PageDone(PageStats)               {}
