package proto

import "time"

// RestoreReport is the JSON document `tagsweep restore --report` writes: what a restore did
// with the tags a run deleted.
type RestoreReport struct {
	RestoreID       string    `json:"restore_id"` // the restore's own audit events are under this ID
	Of              string    `json:"of"`         // the run whose deletions were undone
	DryRun          bool      `json:"dry_run"`
	TagRegex        string    `json:"tag_regex,omitempty"`
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	Repositories    []string  `json:"repositories"`
	// DigestsRecorded: the run recorded each deleted tag's digest (Policy.RecordDigests), so
	// tags are put back by manifest; otherwise through Quay's tag history.
	DigestsRecorded bool          `json:"digests_recorded"`
	Tags            RestoreCounts `json:"tags"`
	// Failures names the first tags that could not be put back, with the reason.
	Failures []string `json:"failures,omitempty"`
	Reason   string   `json:"reason,omitempty"` // why the restore stopped early
}

// RestoreCounts are a restore's tag outcomes.
type RestoreCounts struct {
	Deleted  int64 `json:"deleted"`  // tags the run deleted (that the filter selects)
	Restored int64 `json:"restored"` // put back (a dry run: that would be)
	Skipped  int64 `json:"skipped"`  // present again: left alone
	Failed   int64 `json:"failed"`   // could not be put back; the reason is in the audit event
}
