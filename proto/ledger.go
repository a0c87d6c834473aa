package proto

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// DeleteBudgetKey is the KV key (in BucketState) of a run's delete budget: how many deletions
// workers have reserved so far against Policy.MaxDeletes.
func DeleteBudgetKey(runID string) string { return "budget." + runID }

// DeleteBudget is the value at DeleteBudgetKey. Workers reserve deletions in batches by
// compare-and-swap before deleting, so the cap holds across every worker of a run.
type DeleteBudget struct {
	V        int   `json:"v"`
	Reserved int64 `json:"reserved"`
}

// Lease is the value at LeaseKey: which run holds a repository, until when. A lease whose
// Expires has passed may be taken over by another run.
type Lease struct {
	V          int       `json:"v"`
	Repository string    `json:"repository"`
	RunID      string    `json:"run"`
	Holder     string    `json:"holder"` // who took it (host/pid), for the refusal message
	Acquired   time.Time `json:"acquired"`
	Expires    time.Time `json:"expires"`
}

// WorkerKey is the KV key (in BucketState) of a worker's registration. It holds a digest of the
// worker's ID, which may be any string.
func WorkerKey(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "worker." + hex.EncodeToString(sum[:8])
}

// WorkerRecord is the value at WorkerKey: how many slots a running worker has, renewed while
// it runs, so that planning cuts at least one shard per slot.
type WorkerRecord struct {
	V         int       `json:"v"`
	ID        string    `json:"id"`
	Slots     int       `json:"slots"`
	Heartbeat time.Time `json:"heartbeat"`
}
