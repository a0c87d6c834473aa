package testrig_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/registry/sim"
	"github.com/tagsweep/tagsweep/test/invariant"
	"github.com/tagsweep/tagsweep/worker"
)

const repo = "ci/rig"

// A rig runs a whole run: the workers it starts (named w0, w1) take the coordinator's shards,
// the run ends exact, and the workers stop cleanly.
func TestRun(t *testing.T) {
	end := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	tags := sim.Generate(sim.GenConfig{Seed: 1, Tags: 600, Days: 10, End: end, Cutoff: end.AddDate(0, 0, -3), EligibleFraction: 0.3})
	reg := sim.New(sim.Config{})
	if err := reg.AddTags(repo, "", tags...); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	client, err := registry.NewOCI(registry.OCIConfig{Host: host, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	p := policy.Defaults()
	p.Cutoff = end.AddDate(0, 0, -3)

	r := testrig.New(t, testrig.Config{Ledger: ledger.Config{Storage: jetstream.MemoryStorage, AckWait: 5 * time.Second}})
	ws, err := r.StartWorkers(context.Background(), 2, worker.Config{PageSize: 50,
		Connect: func(context.Context, proto.RunRecord) (registry.Client, error) { return client, nil }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rep, err := r.Run(ctx, coordinator.Config{RunID: "rig", Registry: host, PlainHTTP: true, Repositories: []string{repo},
		Policy: p, PollInterval: 50 * time.Millisecond, Shards: 4}, client, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := ws.Stop(); err != nil {
		t.Errorf("workers: %v", err)
	}
	invariant.Check(t, invariant.State{Policy: p, Initial: tags, Deleted: reg.DeletedTags(repo), Remaining: reg.Tags(repo), ExitOK: true})
	if rep.Tags.Deleted == 0 {
		t.Fatalf("report %+v: the run deleted nothing", rep.Tags)
	}
	shards, err := r.Ledger().Shards(ctx, "rig")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shards {
		if !slices.Contains([]string{"w0", "w1"}, s.Owner) {
			t.Errorf("shard %s owned by %q, want one of the rig's workers w0, w1", s.ShardID, s.Owner)
		}
	}
}

// A closed rig refuses new connections and workers, and closing it again does nothing.
func TestClose(t *testing.T) {
	r, err := testrig.Start(t.Context(), testrig.Config{Ledger: ledger.Config{Storage: jetstream.MemoryStorage}})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r.Close()
	if _, err := r.Connect(); err == nil {
		t.Errorf("Connect on a closed rig succeeded")
	}
	if _, err := r.StartWorkers(context.Background(), 1, worker.Config{}, nil); err == nil {
		t.Errorf("StartWorkers on a closed rig succeeded")
	}
}
