// Package proto holds every name and wire type that the coordinator, the workers and the
// tools that read a run's state must agree on: JetStream stream, subject, consumer and bucket
// names, record keys, and the versioned JSON records themselves.
//
// It imports only the standard library, so that any component (and any future tool written
// against a running cluster) can depend on it without pulling in the rest of tagsweep.
package proto

import (
	"fmt"
	"regexp"
	"time"
)

// Version is the wire version written into every record and message. A reader that meets a
// higher version refuses it rather than guessing.
const Version = 1

// JetStream names. Subjects carry only validated tokens (run and shard IDs), never
// repository names or tags.
const (
	// StreamShards is the work-queue stream of shard messages.
	StreamShards = "TAGSWEEP_SHARDS"
	// SubjectShardsPrefix prefixes shard subjects: tagsweep.shards.<run>.<shard>.
	SubjectShardsPrefix = "tagsweep.shards"
	// ConsumerWorkers is the one durable pull consumer that every worker binds to.
	ConsumerWorkers = "tagsweep-workers"
	// StreamAudit is the append-only stream of deletion events.
	StreamAudit = "TAGSWEEP_AUDIT"
	// SubjectAuditPrefix prefixes audit subjects: tagsweep.audit.<run>.
	SubjectAuditPrefix = "tagsweep.audit"
	// BucketState is the KV bucket holding run and shard records.
	BucketState = "tagsweep_state"
	// BucketLeases is the KV bucket (history 1) holding per-repository run leases.
	BucketLeases = "tagsweep_leases"
)

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToken reports whether s may be used as a run or shard ID: it becomes a subject token
// and part of a KV key, so it is restricted to [A-Za-z0-9_-], 1 to 64 characters.
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// ShardSubject is the subject a shard message is published on.
func ShardSubject(runID, shardID string) string {
	return SubjectShardsPrefix + "." + runID + "." + shardID
}

// ShardMsgID is the JetStream message ID that de-duplicates a shard's publication.
func ShardMsgID(runID, shardID string) string { return runID + "/" + shardID }

// AuditSubject is the subject a run's deletion events are appended on.
func AuditSubject(runID string) string { return SubjectAuditPrefix + "." + runID }

// RunKey is the KV key of a run record.
func RunKey(runID string) string { return "run." + runID }

// ShardKey is the KV key of a shard record.
func ShardKey(runID, shardID string) string { return "shard." + runID + "." + shardID }

// ShardKeyPrefix is the KV key filter matching every shard of a run.
func ShardKeyPrefix(runID string) string { return "shard." + runID + ".>" }

// LeaseKey is the KV key of the lease a run holds on a repository. The repository name is
// hex-encoded so that it is a valid key whatever it contains.
func LeaseKey(repository string) string { return fmt.Sprintf("repo.%x", repository) }

// ShardKind says what a shard's worker does with the tags it lists.
type ShardKind string

const (
	// KindPrune shards list a key range and delete the tags the prune rule makes eligible.
	KindPrune ShardKind = "prune"
)

// ShardState is the lifecycle state of a shard record. pending -> running -> done|failed;
// running -> pending when a worker gives a shard back (graceful stop).
type ShardState string

const (
	StatePending ShardState = "pending"
	StateRunning ShardState = "running"
	StateDone    ShardState = "done"
	StateFailed  ShardState = "failed"
)

// Terminal reports whether no more work will happen on a shard in this state.
func (s ShardState) Terminal() bool { return s == StateDone || s == StateFailed }

// Range is a key range of tag names in byte order: it holds every tag t with
// After < t <= Through. After == "" means from the first tag. Listing a range is
// `tags/list?last=<After>` onwards, stopping at the first tag greater than Through, so a
// tag equal to a boundary belongs to exactly one range.
type Range struct {
	After   string `json:"after"`
	Through string `json:"through"`
}

// Contains reports whether tag lies in r.
func (r Range) Contains(tag string) bool { return tag > r.After && tag <= r.Through }

// Counters are a shard's (and, summed, a run's) tag outcomes.
type Counters struct {
	Scanned      int64 `json:"scanned"`       // tags listed inside the shard's range
	Eligible     int64 `json:"eligible"`      // tags the policy says go
	Deleted      int64 `json:"deleted"`       // DELETE answered success
	AlreadyGone  int64 `json:"already_gone"`  // DELETE answered 404
	DeleteFailed int64 `json:"delete_failed"` // DELETE failed after retries
	Kept         int64 `json:"kept"`          // tags the policy keeps (not eligible, valid)
	Invalid      int64 `json:"invalid"`       // prune-pattern tags whose timestamp is not a real time
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	c.Scanned += o.Scanned
	c.Eligible += o.Eligible
	c.Deleted += o.Deleted
	c.AlreadyGone += o.AlreadyGone
	c.DeleteFailed += o.DeleteFailed
	c.Kept += o.Kept
	c.Invalid += o.Invalid
}

// ShardMessage is the body of a work-queue message. It only names the shard: the record in
// KV is the source of truth for the range, the cursor and the state.
type ShardMessage struct {
	V       int    `json:"v"`
	RunID   string `json:"run"`
	ShardID string `json:"shard"`
}

// ShardRecord is a shard's state in KV. Every change to it is one compare-and-swap update.
type ShardRecord struct {
	V          int        `json:"v"`
	RunID      string     `json:"run"`
	ShardID    string     `json:"shard"`
	Kind       ShardKind  `json:"kind"`
	Repository string     `json:"repository"`
	Range      Range      `json:"range"`
	Cursor     string     `json:"cursor"` // last tag fully processed; "" = nothing yet (start at Range.After)
	State      ShardState `json:"state"`
	Owner      string     `json:"owner,omitempty"`
	Attempt    int        `json:"attempt"`
	Parent     string     `json:"parent,omitempty"` // shard this one was split from
	Seen       string     `json:"seen,omitempty"`   // a tag planning saw in Range, "" = none known (Worker: a listing that finds no tag while it exists is incomplete)
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  time.Time  `json:"started_at,omitzero"`
	Heartbeat  time.Time  `json:"heartbeat,omitzero"`
	FinishedAt time.Time  `json:"finished_at,omitzero"`
	Counters   Counters   `json:"counters"`
	LastError  string     `json:"last_error,omitempty"`
	// Inventory is what a KindList shard counted beyond Counters; nil for other kinds.
	Inventory *Inventory `json:"inventory,omitempty"`
}

// Resume is the key listing continues after: the cursor if any, else the range's start.
func (s ShardRecord) Resume() string {
	if s.Cursor != "" {
		return s.Cursor
	}
	return s.Range.After
}

// Policy is the deletion rule of a run, fixed by the coordinator and read by every worker,
// so that all workers decide alike whatever their own configuration or clock says.
type Policy struct {
	PrunePattern string    `json:"prune_pattern"` // regexp; group 1 is the timestamp
	TimeLayout   string    `json:"time_layout"`   // Go layout of group 1
	TimeZone     string    `json:"time_zone"`     // IANA zone the timestamps are read in
	KeepPatterns []string  `json:"keep_patterns"` // a tag matching any of these is never deleted
	Cutoff       time.Time `json:"cutoff"`        // tags dated before this go
	MaxDeletes   int64     `json:"max_deletes"`   // 0 = no cap
	DryRun       bool      `json:"dry_run"`
	// RecordDigests: before each delete, workers read the tag's manifest digest (one HEAD)
	// and store it in the deletion's audit event, so that `tagsweep restore` can put the tag
	// back on any OCI registry.
	RecordDigests bool `json:"record_digests,omitempty"`
}

// RunState is the lifecycle state of a run record.
type RunState string

const (
	RunRunning RunState = "running"
	RunDone    RunState = "done"   // every shard done
	RunFailed  RunState = "failed" // at least one shard failed, or the delete cap stopped the run
	// RunStopped: an operator stopped the run (tagsweep stop, or an interrupted tagsweep run);
	// its unfinished shards were handed back with their checkpoints.
	RunStopped RunState = "stopped"
	// RunRefused: another live run held a repository's lease, so this one never started.
	RunRefused RunState = "refused"
	// RunAbandoned: the run's coordinator stopped renewing its leases (it died, or lost its
	// NATS) before the run ended.
	RunAbandoned RunState = "abandoned"
)

// RunStates lists every run state.
var RunStates = []RunState{RunRunning, RunDone, RunFailed, RunStopped, RunRefused, RunAbandoned}

// Finished reports whether a run in this state has ended (every state but running).
func (s RunState) Finished() bool { return s != RunRunning }

// RunRecord is a run's state in KV.
type RunRecord struct {
	V            int       `json:"v"`
	RunID        string    `json:"run"`
	Registry     string    `json:"registry"` // host[:port]
	PlainHTTP    bool      `json:"plain_http"`
	Repositories []string  `json:"repositories"`
	Policy       Policy    `json:"policy"`
	Mode         RunMode   `json:"mode,omitempty"` // ModeInventory: list and count only, never delete
	State        RunState  `json:"state"`
	StartedAt    time.Time `json:"started_at"`
	FinishedAt   time.Time `json:"finished_at,omitzero"`
	Shards       int       `json:"shards"` // shards planned (splits add more records)
	Totals       Counters  `json:"totals"`
	Reason       string    `json:"reason,omitempty"` // why a run failed, stopped, was refused or abandoned
	// Stop is an operator's request to stop the run (tagsweep stop): workers claim no more of
	// its shards and hand back those they hold, and the coordinator then marks it stopped.
	Stop *StopRequest `json:"stop,omitempty"`
	// Preservation: whether the run preserves release payloads, and how (package preserve).
	Preservation PreserveSettings `json:"preservation,omitzero"`
}

// StopRequest is an operator's request to stop a run.
type StopRequest struct {
	Reason string    `json:"reason"`
	By     string    `json:"by"` // who asked: user@host
	At     time.Time `json:"at"`
}

// Outcome is what happened to one tag a worker decided to delete.
type Outcome string

const (
	OutcomeDeleted     Outcome = "deleted"
	OutcomeAlreadyGone Outcome = "already_gone"
	OutcomeFailed      Outcome = "failed"
	OutcomeDryRun      Outcome = "dry_run"
	// Outcomes of a restore's events (tagsweep restore): the tag was put back at its digest,
	// it exists again and was left alone, or (failed) it could not be put back.
	OutcomeRestored Outcome = "restored"
	OutcomeSkipped  Outcome = "skipped"
)

// AuditEvent records one deletion decision acted on (or, in a dry run, that would have been),
// or what a restore did with one deleted tag.
type AuditEvent struct {
	V          int       `json:"v"`
	RunID      string    `json:"run"`
	ShardID    string    `json:"shard"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Outcome    Outcome   `json:"outcome"`
	Time       time.Time `json:"time"`
	Error      string    `json:"error,omitempty"`
	// Digest is the manifest digest the tag pointed at: read before the delete when the run
	// records digests; for a restore, the digest the tag was put back at.
	Digest string `json:"digest,omitempty"`
	// Of is the run whose deletion a restore's event undoes.
	Of string `json:"of,omitempty"`
}

// Report is the JSON document `--report` writes at the end of a run (docs/operations.md
// describes every field).
type Report struct {
	RunID    string   `json:"run_id"`
	Registry string   `json:"registry"`
	State    RunState `json:"state"`
	DryRun   bool     `json:"dry_run"`
	// Policy is the rule the run applied, fixed at its start: the prune pattern, time layout
	// and zone, keep patterns, cutoff, delete cap and dry run.
	Policy Policy `json:"policy"`
	// TTLSeconds is how long before the run's start the cutoff lies: the TTL it was given,
	// to the second.
	TTLSeconds      int64       `json:"ttl_seconds"`
	Cutoff          time.Time   `json:"cutoff"`
	StartedAt       time.Time   `json:"started_at"`
	FinishedAt      time.Time   `json:"finished_at"`
	DurationSeconds float64     `json:"duration_seconds"`
	Repositories    []string    `json:"repositories"`
	Shards          ShardTotals `json:"shards"`
	Tags            Counters    `json:"tags"`
	FailedShards    []string    `json:"failed_shards,omitempty"`
	Reason          string      `json:"reason,omitempty"`
	// Inventory merges the shards' inventories (inventory runs only).
	Inventory *Inventory `json:"inventory,omitempty"`
	// Preservation sums the release-payload preservation results of the run's family and
	// preserve shards, and PreservationFailures names the first failures they record; nil
	// when the run preserved nothing or its results could not be read.
	Preservation         *PreserveCounters `json:"preservation,omitempty"`
	PreservationFailures []string          `json:"preservation_failures,omitempty"`
}

// ShardTotals counts a run's shards by outcome.
type ShardTotals struct {
	Total  int `json:"total"`
	Done   int `json:"done"`
	Failed int `json:"failed"`
}
