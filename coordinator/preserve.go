package coordinator

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
)

// Release-payload preservation (package preserve) is planned as one family shard per
// repository, next to the prune shards; workers add a preserve shard per payload needing
// preservation. The run's settings are in its record (proto.RunRecord.Preservation), and
// each shard's outcome is a result in the ledger (ledger.PreserveResults).

// isPrune reports whether s is a prune shard (or an inventory's list shard): only they
// partition a repository's planned range; family and preserve shards lie outside it.
func isPrune(s proto.ShardRecord) bool {
	return s.Kind == proto.KindPrune || s.Kind == proto.KindList || s.Kind == ""
}

// familyShard is repository i's family shard.
func familyShard(runID string, i int, repo string) proto.ShardRecord {
	return proto.ShardRecord{RunID: runID, ShardID: strconv.Itoa(i) + "-family", Kind: proto.KindFamily,
		Repository: repo, Range: preserve.Span()}
}

// preservation sums the run's preservation results (ledger.PreserveResults) and keeps the
// first failures they name. Zero when the run preserved nothing.
func preservation(ctx context.Context, l *ledger.Ledger, runID string) (proto.PreserveCounters, []string, error) {
	var total proto.PreserveCounters
	var failures []string
	results, err := l.PreserveResults(ctx, runID)
	if err != nil {
		return total, nil, err
	}
	for _, r := range results {
		total.Add(r.Counters)
		failures = append(failures, r.Failures[:min(len(r.Failures), maxFailures-len(failures))]...)
	}
	return total, failures, nil
}

// maxFailures bounds the preservation failures a report names.
const maxFailures = 10

// preserved is how a run's preservation went, as read at its end.
type preserved struct {
	counters proto.PreserveCounters
	failures []string // the first few failures the results name
	err      error    // the results could not be read
}

// reason is why a run whose preservation did not all succeed failed, or "". Not knowing how
// preservation went is not success: a payload may be left unpreserved or a removal half
// done. The next run reads its own results.
func (p preserved) reason() string {
	if p.err != nil {
		return "preservation results unknown: " + p.err.Error()
	}
	var parts []string
	if p.counters.PreserveFailed > 0 {
		parts = append(parts, fmt.Sprintf("%d release payloads could not be preserved", p.counters.PreserveFailed))
	}
	if p.counters.RemovalFailed > 0 {
		parts = append(parts, fmt.Sprintf("%d release payload tags could not be removed", p.counters.RemovalFailed))
	}
	if len(parts) == 0 {
		return ""
	}
	s := strings.Join(parts, ", ")
	if len(p.failures) > 0 {
		s += " (" + p.failures[0] + ")"
	}
	return s
}

// addTo puts the preservation into a run's report, when the run preserved anything and its
// results could be read.
func (p preserved) addTo(rep *proto.Report) {
	if p.err != nil || p.counters.IsZero() {
		return
	}
	counters := p.counters
	rep.Preservation, rep.PreservationFailures = &counters, p.failures
}
