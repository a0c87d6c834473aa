package proto

// PreserveCounters are the release-payload preservation outcomes of a shard (and, summed, of a
// run). Their summary lines are the existing pruner's five preservation lines (payloads needing
// preservation, preserved, removal requests processed, tags targeted for removal, tags removed),
// plus the failures and orphans that pruner never reported.
type PreserveCounters struct {
	// FamilyTags: preservation-family tags listed (payloads, markers, requests, components).
	FamilyTags int64 `json:"family_tags"`
	// NeedingPreservation: payloads with neither a marker nor a removal request
	// ("Release payloads needing preservation").
	NeedingPreservation int64 `json:"needing_preservation"`
	// Preserved: payloads whose marker was written, or in a dry run would have been
	// ("Release payloads preserved" / "Release payloads that would be preserved").
	Preserved int64 `json:"preserved"`
	// PreserveFailed: payloads whose preservation failed this run; no marker was written, so
	// the next run retries them.
	PreserveFailed int64 `json:"preserve_failed"`
	// ComponentsTagged: component tags written (dry run: that would have been).
	ComponentsTagged int64 `json:"components_tagged"`
	// RemovalRequests: removal requests acted on ("Removal requests processed").
	RemovalRequests int64 `json:"removal_requests"`
	// RemovalTargeted: tags those requests delete, the request tags included
	// ("Release payload tags targeted for removal").
	RemovalTargeted int64 `json:"removal_targeted"`
	// RemovalRemoved: of those, deleted or found already gone
	// ("Release payload tags successfully removed"; always 0 in a dry run).
	RemovalRemoved int64 `json:"removal_removed"`
	// RemovalFailed: of those, deletes that failed; a request tag whose other deletes failed
	// is kept (and not counted here) so that the next run finishes the removal.
	RemovalFailed int64 `json:"removal_failed"`
	// Orphans: markers and component tags left without a payload and without a request.
	Orphans int64 `json:"orphans"`
	// OrphansRemoved: of those, deleted or found already gone (always 0 in a dry run).
	OrphansRemoved int64 `json:"orphans_removed"`
}

// Add adds o to c.
func (c *PreserveCounters) Add(o PreserveCounters) {
	c.FamilyTags += o.FamilyTags
	c.NeedingPreservation += o.NeedingPreservation
	c.Preserved += o.Preserved
	c.PreserveFailed += o.PreserveFailed
	c.ComponentsTagged += o.ComponentsTagged
	c.RemovalRequests += o.RemovalRequests
	c.RemovalTargeted += o.RemovalTargeted
	c.RemovalRemoved += o.RemovalRemoved
	c.RemovalFailed += o.RemovalFailed
	c.Orphans += o.Orphans
	c.OrphansRemoved += o.OrphansRemoved
}

// IsZero reports whether nothing was counted.
func (c PreserveCounters) IsZero() bool { return c == PreserveCounters{} }

// Shard kinds of release-payload preservation.
const (
	// KindFamily shards list a repository's preservation-family key ranges (Range spans
	// them; only the family's own ranges are listed), classify the tags, publish a
	// KindPreserve shard per payload needing preservation, and carry out removal requests
	// and orphan removals.
	KindFamily ShardKind = "family"
	// KindPreserve shards preserve one payload: Range is the key range of its component tags,
	// rc_payload__<v>__component__ onwards, which names the version and is listed to find the
	// component tags an earlier attempt wrote.
	KindPreserve ShardKind = "preserve"
)

// PreserveSettings are a run's preservation settings, fixed by the coordinator in the run's
// record (RunRecord.Preservation), so that every worker preserves alike whatever its own
// configuration says.
type PreserveSettings struct {
	// Enabled: the run plans family shards. Off, family tags are only protected.
	Enabled bool `json:"enabled"`
	// Aliases name repositories under other registry names in payloads' image references:
	// "host/path" (the repository of the same path) or "host/path=repository".
	Aliases []string `json:"aliases,omitempty"`
}

// PreserveResult is what a family or preserve shard did, at PreserveResultKey in
// BucketState. The worker that finishes the shard writes it just before marking the shard
// done; a redelivered shard overwrites it with its own, complete, result.
type PreserveResult struct {
	V        int              `json:"v"`
	RunID    string           `json:"run"`
	ShardID  string           `json:"shard"`
	Counters PreserveCounters `json:"counters"`
	// Failures names what did not succeed (payload versions and their errors, failed
	// deletes), bounded; empty when all went well.
	Failures []string `json:"failures,omitempty"`
}

// PreserveResultKey is the KV key of a shard's PreserveResult.
func PreserveResultKey(runID, shardID string) string { return "preserve." + runID + "." + shardID }

// PreserveResultPrefix is the KV key filter matching every PreserveResult of a run.
func PreserveResultPrefix(runID string) string { return "preserve." + runID + ".*" }
