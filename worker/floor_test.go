package worker_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/worker"
)

func TestFloorCheck(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	run := proto.RunRecord{RunID: "r1", Policy: proto.Policy{PrunePattern: `^(\d{14})_prune_`, Cutoff: now.Add(-5 * 24 * time.Hour)}}
	tests := []struct {
		name  string
		floor worker.Floor
		mode  proto.RunMode
		repo  string
		want  []string // what the error names; none = within the floor
	}{
		{name: "no floor", floor: worker.Floor{}, repo: "ci/x"},
		{name: "within", floor: worker.Floor{MinTTL: 5 * 24 * time.Hour, PrunePattern: `^(\d{14})_prune_`, Repositories: []string{"ci/x", "ci/y"}}, repo: "ci/y"},
		{name: "cutoff too new", floor: worker.Floor{MinTTL: 5*24*time.Hour + time.Second}, repo: "ci/x", want: []string{"cutoff 2026-11-17T03:00:00Z is later"}},
		{name: "other pattern", floor: worker.Floor{PrunePattern: `^(\d{14})_`}, repo: "ci/x", want: []string{`prune pattern "^(\\d{14})_prune_" is not this worker's`}},
		{name: "other repository", floor: worker.Floor{Repositories: []string{"ci/y"}}, repo: "ci/x", want: []string{`repository "ci/x" is not among`}},
		{name: "every reason at once", floor: worker.Floor{MinTTL: 30 * 24 * time.Hour, PrunePattern: "^x(\\d{14})", Repositories: []string{"a/b"}}, repo: "ci/x",
			want: []string{"cutoff", "prune pattern", "repository"}},
		// An inventory deletes nothing (the worker refuses it every delete), so its cutoff
		// only says what it counts as eligible: a minimum TTL does not apply; the rest does.
		{name: "inventory, cutoff too new", floor: worker.Floor{MinTTL: 30 * 24 * time.Hour}, mode: proto.ModeInventory, repo: "ci/x"},
		{name: "inventory, other repository", floor: worker.Floor{MinTTL: 30 * 24 * time.Hour, Repositories: []string{"ci/y"}}, mode: proto.ModeInventory,
			repo: "ci/x", want: []string{`repository "ci/x" is not among`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			run := run
			run.Mode = tc.mode
			err := tc.floor.Check(run, tc.repo, now)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, worker.ErrBeyondFloor) {
				t.Fatalf("Check = %v, want ErrBeyondFloor", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Check = %v, want it to name %q", err, w)
				}
			}
		})
	}
}

// TestWorkerRefusesBeyondFloor: a run record that asks for more than the worker's floor
// fails its shards at once, with the reason, and the worker neither lists nor deletes.
func TestWorkerRefusesBeyondFloor(t *testing.T) {
	floors := map[string]worker.Floor{
		"min ttl":    {MinTTL: 365 * 24 * time.Hour},
		"pattern":    {PrunePattern: `^(\d{14})_other_`},
		"repository": {Repositories: []string{"ci/other"}},
	}
	for name, floor := range floors {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, ledger.Config{})
			tags := tagsFor(50)
			reg := newFake(tags)
			e.seed(t, "r1", testPolicy(), proto.Range{After: "", Through: "20261101000000"})
			e.startWorkers(t, 1, worker.Config{Floor: floor}, reg, nil)
			shards := e.waitShards(t, "r1", 1)
			for _, s := range shards {
				if s.State != proto.StateFailed || !strings.Contains(s.LastError, worker.ErrBeyondFloor.Error()) {
					t.Errorf("shard %s: %s %q, want failed beyond the floor", s.ShardID, s.State, s.LastError)
				}
			}
			remaining, deleted := reg.snapshot()
			reg.mu.Lock()
			lists := reg.lists
			reg.mu.Unlock()
			if len(deleted) != 0 || len(remaining) != len(newFake(tags).tags) || lists != 0 {
				t.Errorf("deleted %d, listed %d times; want nothing touched", len(deleted), lists)
			}
		})
	}
}
