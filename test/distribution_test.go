package test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/registry/registrytest"
	"github.com/tagsweep/tagsweep/registry/sim"
	"github.com/tagsweep/tagsweep/restore"
	"github.com/tagsweep/tagsweep/test/invariant"
	"github.com/tagsweep/tagsweep/worker"
)

// TestDistributionRun runs tagsweep against the CNCF Distribution registry in process (not our
// simulator): a few thousand tags on one manifest, a confirmed run, and afterwards the registry
// holds exactly the tags the policy keeps. Every tag shares one manifest, so a delete by digest
// anywhere would wipe them all.
func TestDistributionRun(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 600
	}
	end := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	tags := sim.Generate(sim.GenConfig{Seed: 7, Tags: n, Days: 20, End: end, Floating: 40, Signatures: 5})
	host := registrytest.StartDistribution(t)
	registrytest.CreateTags(t, host, repo, tags...)

	p := policy.Defaults()
	p.Cutoff = end.AddDate(0, 0, -5)
	eligible := invariant.Eligible(t, p, tags)
	keep := without(tags, eligible)
	if len(eligible) == 0 || len(keep) == 0 {
		t.Fatalf("namespace has %d eligible and %d kept tags: the test needs both", len(eligible), len(keep))
	}

	client, err := registry.NewOCI(registry.OCIConfig{Host: host, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	r := testrig.New(t, testrig.Config{MaxMemory: 128 << 20, MaxStore: 128 << 20, Ledger: ledgerConfig()})
	startWorkers(t, r, 2, worker.Config{Connect: func(context.Context, proto.RunRecord) (registry.Client, error) { return client, nil }})
	rep, err := r.Run(testCtx(t, 3*time.Minute), coordinator.Config{RunID: "dist1", Registry: host, PlainHTTP: true,
		Repositories: []string{repo}, Policy: p, PollInterval: 100 * time.Millisecond}, client, nil)
	if err != nil {
		t.Fatalf("Run: %v (report %+v)", err, rep)
	}
	if rep.Tags.Deleted+rep.Tags.AlreadyGone != int64(len(eligible)) || rep.Tags.DeleteFailed != 0 {
		t.Errorf("report tags %+v, want %d deleted", rep.Tags, len(eligible))
	}

	var left []string
	last := ""
	for {
		page, err := client.List(testCtx(t, time.Minute), repo, last, 1000)
		if err != nil {
			t.Fatal(err)
		}
		left = append(left, page.Tags...)
		if len(page.Tags) == 0 {
			break
		}
		last = page.Tags[len(page.Tags)-1]
	}
	if left = sorted(left); !slices.Equal(left, keep) {
		t.Fatalf("tags left in the registry differ from the policy's keep set: %s", invariant.Diff(left, keep))
	}
}

// TestDistributionRestore: on the CNCF Distribution registry, a confirmed run with recorded
// digests followed by a restore gives back every deleted tag at its digest (GET by digest,
// PUT under the tag), and a second restore writes nothing.
func TestDistributionRestore(t *testing.T) {
	end := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	tags := sim.Generate(sim.GenConfig{Seed: 11, Tags: 400, Days: 20, End: end, Floating: 10})
	host := registrytest.StartDistribution(t)
	digest := registrytest.CreateTags(t, host, repo, tags...)

	p := policy.Defaults()
	p.Cutoff = end.AddDate(0, 0, -5)
	p.RecordDigests = true
	eligible := invariant.Eligible(t, p, tags)
	client, err := registry.NewOCI(registry.OCIConfig{Host: host, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	r := testrig.New(t, testrig.Config{MaxMemory: 128 << 20, MaxStore: 128 << 20, Ledger: ledgerConfig()})
	startWorkers(t, r, 1, worker.Config{Connect: func(context.Context, proto.RunRecord) (registry.Client, error) { return client, nil }})
	if rep, err := r.Run(testCtx(t, 3*time.Minute), coordinator.Config{RunID: "dist-undo", Registry: host, PlainHTTP: true,
		Repositories: []string{repo}, Policy: p, PollInterval: 100 * time.Millisecond}, client, nil); err != nil || rep.Tags.Deleted != int64(len(eligible)) {
		t.Fatalf("Run: %v, %+v; want %d deleted", err, rep.Tags, len(eligible))
	}

	manifests, err := registry.NewRestorer(registry.OCIConfig{Host: host, PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []proto.RestoreCounts{
		{Deleted: int64(len(eligible)), Restored: int64(len(eligible))},
		{Deleted: int64(len(eligible)), Skipped: int64(len(eligible))},
	} {
		rs, err := restore.New(restore.Config{RunID: "dist-undo", ID: fmt.Sprintf("dist-undo-restore-%d", i), Confirm: true,
			Manifests: manifests, Concurrency: 16}, r.Ledger(), nil)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := rs.Run(testCtx(t, 2*time.Minute))
		if err != nil || rep.Tags != want {
			t.Fatalf("restore %d: %v, %+v; want %+v (failures %q)", i+1, err, rep.Tags, want, rep.Failures)
		}
	}
	for _, tag := range tags {
		if d, err := manifests.Digest(testCtx(t, time.Minute), repo, tag); err != nil || d != digest {
			t.Errorf("%s: %q, %v; want it back at %s", tag, d, err, digest)
		}
	}
}
