package worker

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// ErrBeyondFloor: a run record asks a worker for more than its own configuration allows.
var ErrBeyondFloor = errors.New("run is beyond this worker's floor")

// Floor is what a worker refuses whatever a run record asks. Run records come from NATS, so
// whoever can write to NATS could otherwise have every worker delete under any policy; the
// floor is the worker's own configuration, which NATS cannot change. Zero values mean no
// floor.
type Floor struct {
	// MinTTL refuses a run whose cutoff is later than now − MinTTL: a run whose policy would
	// delete tags younger than MinTTL. An inventory run (which this worker never lets delete)
	// is not held to it: its cutoff only says what it counts as eligible.
	MinTTL time.Duration
	// PrunePattern refuses a run whose prune pattern is any other.
	PrunePattern string
	// Repositories refuses the shards of any other repository.
	Repositories []string
}

// Check says whether a shard of run in repo, taken at now, is within the floor: nil, or an
// error wrapping ErrBeyondFloor that names what is beyond it.
func (f Floor) Check(run proto.RunRecord, repo string, now time.Time) error {
	var errs []error
	if f.MinTTL > 0 && run.Mode != proto.ModeInventory {
		if limit := now.Add(-f.MinTTL); run.Policy.Cutoff.After(limit) {
			errs = append(errs, fmt.Errorf("cutoff %s is later than now minus the minimum TTL %s (%s)",
				run.Policy.Cutoff.UTC().Format(time.RFC3339), f.MinTTL, limit.UTC().Format(time.RFC3339)))
		}
	}
	if f.PrunePattern != "" && run.Policy.PrunePattern != f.PrunePattern {
		errs = append(errs, fmt.Errorf("prune pattern %q is not this worker's %q", run.Policy.PrunePattern, f.PrunePattern))
	}
	if len(f.Repositories) > 0 && !slices.Contains(f.Repositories, repo) {
		errs = append(errs, fmt.Errorf("repository %q is not among this worker's %q", repo, f.Repositories))
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("run %s: %w: %w", run.RunID, ErrBeyondFloor, errors.Join(errs...))
}
