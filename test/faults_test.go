package test

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// rig is a deployment for fault tests: the simulated registry over HTTP and a test rig whose
// NATS servers a test may stop and restart (clients reconnect), with workers and coordinators.
type rig struct {
	*testrig.Rig
	t      *testing.T
	sim    *sim.Server
	oci    registry.OCIConfig // how workers and coordinators talk to the sim
	policy proto.Policy
	tags   []string
	shards int
}

type rigConfig struct {
	sim        sim.Config
	tags       int
	nodes      int  // NATS servers: 1, or 3 for a cluster (streams and buckets at R3)
	file       bool // file storage (survives a restart of the server)
	timeout    time.Duration
	shards     int // the coordinator's Shards (0: its default)
	maxDeliver int // the ledger's MaxDeliver (0: 5)
}

var faultEnd = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

func newRig(t *testing.T, rc rigConfig) *rig {
	t.Helper()
	srv, err := sim.Start(t.Context(), "127.0.0.1:0", rc.sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	r := &rig{t: t, sim: srv, shards: rc.shards}
	cutoff := faultEnd.AddDate(0, 0, -5)
	r.tags = sim.Generate(sim.GenConfig{Seed: 7, Tags: cmp.Or(rc.tags, 2000), Days: 20, End: faultEnd, Odd: true,
		Cutoff: cutoff, EligibleFraction: 0.4})
	if err := srv.AddTags(repo, "", r.tags...); err != nil {
		t.Fatal(err)
	}
	r.policy = policy.Defaults()
	r.policy.Cutoff = cutoff
	r.oci = registry.OCIConfig{Host: srv.Addr(), PlainHTTP: true, RetryDelay: 10 * time.Millisecond,
		RetryDelayMax: 200 * time.Millisecond, Timeout: rc.timeout}
	lc := ledger.Config{Storage: jetstream.MemoryStorage, AckWait: 2 * time.Second, MaxDeliver: cmp.Or(rc.maxDeliver, 5)}
	if rc.file {
		lc.Storage = jetstream.FileStorage
	}
	r.Rig = testrig.New(t, testrig.Config{Nodes: rc.nodes, MaxMemory: 128 << 20, MaxStore: 256 << 20, Ledger: lc})
	return r
}

// testLog is a logger for the tagsweep components of a test when TAGSWEEP_TEST_LOG is set
// (debugging a failure), else nil.
func testLog(t *testing.T, who string) *slog.Logger {
	if os.Getenv("TAGSWEEP_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("who", who, "test", t.Name())
}

func (r *rig) client() *registry.OCI {
	r.t.Helper()
	c, err := registry.NewOCI(r.oci)
	if err != nil {
		r.t.Fatal(err)
	}
	return c
}

// workerConfig is cfg with the fault tests' defaults: a client per call, as the CLI's
// connector makes (a worker rebuilds the client whose credentials were refused), and short
// retry delays.
func (r *rig) workerConfig(cfg worker.Config) worker.Config {
	cfg.RetryDelay = cmp.Or(cfg.RetryDelay, 50*time.Millisecond)
	cfg.Connect = func(context.Context, proto.RunRecord) (registry.Client, error) { return registry.NewOCI(r.oci) }
	return cfg
}

// startWorkers runs n workers until the test ends.
func (r *rig) startWorkers(n int, cfg worker.Config) {
	r.t.Helper()
	startWorkers(r.t, r.Rig, n, r.workerConfig(cfg))
}

// run runs a coordinator for runID to its end.
func (r *rig) run(ctx context.Context, runID string) (proto.Report, error) {
	r.t.Helper()
	return r.Run(ctx, coordinator.Config{
		RunID:        runID,
		Registry:     r.sim.Addr(),
		PlainHTTP:    true,
		Repositories: []string{repo},
		Policy:       r.policy,
		PollInterval: 100 * time.Millisecond,
		RetryDelay:   50 * time.Millisecond,
		Shards:       r.shards,
	}, r.client(), testLog(r.t, "coordinator"))
}

// check checks the invariant against the sim's state. gone are tags removed behind
// tagsweep's back.
func (r *rig) check(exitOK bool, gone ...string) {
	r.t.Helper()
	deleted := r.sim.DeletedTags(repo)
	var ours []string
	for _, d := range deleted {
		if !slices.Contains(gone, d) {
			ours = append(ours, d)
		}
	}
	invariant.Check(r.t, invariant.State{Policy: r.policy, Initial: r.tags, Deleted: ours, Gone: gone,
		Remaining: r.sim.Tags(repo), ExitOK: exitOK})
	if st := r.sim.Stats(); st.DigestDeletes != 0 {
		r.t.Errorf("%d deletes by digest, want none", st.DigestDeletes)
	}
}

// waitDeletes polls until the sim has deleted at least n tags.
func (r *rig) waitDeletes(ctx context.Context, n int) {
	r.t.Helper()
	for len(r.sim.DeletedTags(repo)) < n {
		select {
		case <-ctx.Done():
			r.t.Fatalf("only %d tags deleted, waited for %d", len(r.sim.DeletedTags(repo)), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Each registry fault the issue lists is survived: the run exits 0 with the exact result.
// Retries happen at one layer per failure: regclient retries requests (429, 5xx it knows,
// resets, timeouts, a 401 by re-authenticating); a call that still fails fails the shard's
// delivery, which is redelivered after a backoff, resuming from the checkpoint.
func TestRegistryFaults(t *testing.T) {
	deletes := []sim.Kind{sim.KindDelete}
	lists := []sim.Kind{sim.KindList}
	tests := []struct {
		name    string
		faults  sim.Faults
		auth    *sim.Auth
		timeout time.Duration
		tags    int    // tags in the namespace (default 2000)
		want    string // the sim's fault counter that must be non-zero
		expire  bool   // expire every token a while into the run
		late    bool   // inject the faults once workers delete, not during planning
	}{
		{name: "5xx burst on deletes", faults: sim.Faults{Kinds: deletes, ErrorBurst: 20, ErrorStatus: 500}, want: "burst"},
		{name: "503 burst on lists", faults: sim.Faults{Kinds: lists, ErrorBurst: 4, ErrorStatus: 503}, want: "burst"},
		{name: "503s on lists while workers list", faults: sim.Faults{Kinds: lists, ErrorRate: 0.2, ErrorStatus: 503, Seed: 3},
			late: true, want: "error"},
		{name: "502s everywhere", faults: sim.Faults{ErrorRate: 0.05, ErrorStatus: 502, Seed: 4}, want: "error"},
		// The client does not retry 503: planning makes each failed call again and goes on.
		{name: "503s on lists from the start", faults: sim.Faults{Kinds: lists, ErrorRate: 0.05, ErrorStatus: 503, Seed: 12},
			tags: 6000, want: "error"},
		// regclient paces every request to a host after a 429 (one per backoff delay), so the
		// throttling scenarios prune a smaller namespace.
		{name: "429 storm without Retry-After", faults: sim.Faults{ThrottleRate: 0.1, Seed: 5}, tags: 400, want: "throttle"},
		{name: "429 with Retry-After", faults: sim.Faults{Kinds: lists, ThrottleRate: 0.3, RetryAfter: time.Second, Seed: 6},
			tags: 400, want: "throttle"},
		{name: "per-client rate limits (Quay's nginx)", faults: sim.Faults{Limits: []sim.Limit{
			{Kinds: lists, PerSecond: 20, Burst: 2}, {Kinds: deletes, PerSecond: 200, Burst: 10}}}, tags: 400, want: "ratelimit"},
		{name: "connection resets", faults: sim.Faults{ResetRate: 0.05, Seed: 8}, want: "reset"},
		{name: "responses slower than the client timeout", faults: sim.Faults{SlowRate: 0.02, SlowDelay: 3 * time.Second, Seed: 9},
			timeout: 500 * time.Millisecond, want: "slow"},
		// Tokens live an hour: they expire only when the test revokes them, not by how slowly
		// a loaded machine runs.
		{name: "401 after the token expires", auth: &sim.Auth{}, expire: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			simCfg := sim.Config{Faults: tc.faults, Auth: tc.auth}
			if tc.late {
				simCfg.Faults = sim.Faults{}
			}
			r := newRig(t, rigConfig{sim: simCfg, timeout: tc.timeout, tags: tc.tags})
			ctx := testCtx(t, 3*time.Minute)
			if tc.late {
				go func() {
					r.waitDeletes(ctx, 1)
					r.sim.SetFaults(tc.faults)
				}()
			}
			if tc.expire { // revoke every token a while into the run, as if all had expired
				go func() {
					r.waitDeletes(ctx, 100)
					r.sim.ExpireTokens()
				}()
			}
			r.startWorkers(3, worker.Config{PageSize: 50, Slots: 2})
			rep, err := r.run(ctx, "faults")
			if err != nil {
				t.Fatalf("run: %v (report %+v)", err, rep.Tags)
			}
			r.check(true)
			st := r.sim.Stats()
			if tc.want == "slow" { // a request whose client timed out is counted with status 0
				st.Faults["slow"] += st.Statuses[0]
			}
			if tc.want != "" && st.Faults[tc.want] == 0 {
				t.Errorf("no %q fault was injected (%v): the scenario tested nothing", tc.want, st.Faults)
			}
			if tc.expire && st.TokensRefused == 0 {
				t.Errorf("no request was refused for an expired token (%v): the scenario tested nothing", st.Statuses)
			}
			if rep.Tags.DeleteFailed != 0 || rep.Tags.Deleted+rep.Tags.AlreadyGone != rep.Tags.Eligible {
				t.Errorf("report %+v, want every eligible tag deleted or already gone", rep.Tags)
			}
			t.Logf("faults %v, requests %v", st.Faults, st.Requests)
		})
	}
}

// A shard whose listing keeps failing ends failed after MaxDeliver with its last error; the run
// exits with ErrRunFailed naming it. Re-running the coordinator with the same run ID
// resumes that shard from its cursor (not from its start) and the run ends exact.
func TestFailedShardResumesFromCursor(t *testing.T) {
	r := newRig(t, rigConfig{shards: 1, maxDeliver: 3}) // one shard, not split: it is the one that fails
	// Every worker's list (pages of 10; planning's are of 100) of the range after the first
	// day past some point fails: one shard gets some pages in, then fails for good.
	rules, err := policy.New(r.policy)
	if err != nil {
		t.Fatal(err)
	}
	var inRange []string
	for _, tag := range r.tags {
		if tag <= rules.CutoffKey() {
			inRange = append(inRange, tag)
		}
	}
	slices.Sort(inRange)
	bad := inRange[len(inRange)/2] // lists asking for tags after this fail
	day := bad[:8]
	var broken atomic.Bool
	broken.Store(true)
	var mu sync.Mutex
	var lasts []string // last= of every list of the broken day's shard
	r.sim.SetFaults(sim.Faults{Fail: func(fr sim.FaultRequest) int {
		if fr.Kind != sim.KindList || fr.N != 10 || fr.Ref < day || fr.Ref >= bad[:8]+"\xff" {
			return 0
		}
		mu.Lock()
		lasts = append(lasts, fr.Ref)
		mu.Unlock()
		if broken.Load() && fr.Ref >= bad {
			return 503
		}
		return 0
	}})
	r.startWorkers(2, worker.Config{PageSize: 10, Slots: 2, IdleSplit: -1})
	ctx := testCtx(t, 2*time.Minute)
	rep, err := r.run(ctx, "resume")
	if !errors.Is(err, coordinator.ErrRunFailed) || len(rep.FailedShards) != 1 {
		t.Fatalf("first run: err %v, failed shards %v; want exactly one failed shard", err, rep.FailedShards)
	}
	failedID := rep.FailedShards[0]
	if !strings.Contains(err.Error(), failedID) || !strings.Contains(err.Error(), "503") {
		t.Errorf("first run's error %q does not name shard %s and its last error", err, failedID)
	}
	r.check(false)
	rec, _, err := r.Ledger().Shard(ctx, "resume", failedID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.State != proto.StateFailed || rec.Attempt != r.LedgerConfig().MaxDeliver || rec.Cursor == "" || rec.Cursor >= bad[:8]+"\xff" ||
		!strings.Contains(rec.LastError, "503") {
		t.Fatalf("failed shard %+v, want failed on attempt %d with a cursor inside its range and the 503 as last error", rec, r.LedgerConfig().MaxDeliver)
	}

	broken.Store(false)
	mu.Lock()
	lasts = nil
	mu.Unlock()
	rep, err = r.run(ctx, "resume")
	if err != nil {
		t.Fatalf("resumed run: %v", err)
	}
	r.check(true)
	mu.Lock()
	defer mu.Unlock()
	if len(lasts) == 0 || lasts[0] != rec.Cursor {
		t.Fatalf("resumed shard listed after %q first, want its cursor %q (lists %q)", lasts[:min(1, len(lasts))], rec.Cursor, lasts)
	}
	if rep.Shards.Failed != 0 || rep.Tags.Deleted+rep.Tags.AlreadyGone != rep.Tags.Eligible {
		t.Errorf("resumed report %+v %+v, want every shard done and every eligible tag deleted", rep.Shards, rep.Tags)
	}
}

// A restart of the (single, file-backed) NATS server mid-run: workers and the coordinator
// reconnect, in-flight shards are redelivered or go on, and the run ends exact.
func TestNATSRestart(t *testing.T) {
	r := newRig(t, rigConfig{file: true, tags: 3000, sim: sim.Config{Latency: 2 * time.Millisecond}})
	r.startWorkers(3, worker.Config{PageSize: 20, Slots: 2})
	ctx := testCtx(t, 3*time.Minute)
	type result struct {
		rep proto.Report
		err error
	}
	done := make(chan result, 1)
	go func() { rep, err := r.run(ctx, "restart"); done <- result{rep, err} }()
	eligible := invariant.Eligible(t, r.policy, r.tags)
	r.waitDeletes(ctx, len(eligible)/4)
	r.StopNode(0)
	before := len(r.sim.DeletedTags(repo))
	time.Sleep(300 * time.Millisecond) // an outage, not a blip: clients see the disconnect
	if err := r.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("run across a NATS restart: %v", res.err)
	}
	if before >= len(eligible) {
		t.Fatalf("every tag was deleted before NATS stopped: the restart was not mid-run")
	}
	r.check(true)
	t.Logf("report %+v", res.rep.Tags)
}

// A 3-node JetStream cluster (streams and buckets at R3) loses a node mid-run: the run ends
// exact.
func TestClusterNodeLoss(t *testing.T) {
	r := newRig(t, rigConfig{nodes: 3, tags: 3000, sim: sim.Config{Latency: 2 * time.Millisecond}})
	r.startWorkers(3, worker.Config{PageSize: 20, Slots: 2})
	ctx := testCtx(t, 3*time.Minute)
	done := make(chan error, 1)
	go func() { _, err := r.run(ctx, "cluster"); done <- err }()
	eligible := invariant.Eligible(t, r.policy, r.tags)
	r.waitDeletes(ctx, len(eligible)/4)
	r.StopNode(1)
	if err := <-done; err != nil {
		t.Fatalf("run across the loss of a node: %v", err)
	}
	r.check(true)
}

// --max-deletes: the run stops before its deletions, counted across every worker, exceed the
// cap, and fails saying why; a dry run reports how many a real run would delete.
func TestMaxDeletes(t *testing.T) {
	r := newRig(t, rigConfig{})
	eligible := invariant.Eligible(t, r.policy, r.tags)
	r.startWorkers(3, worker.Config{PageSize: 25, Slots: 2})
	ctx := testCtx(t, 2*time.Minute)

	r.policy.DryRun = true
	dry, err := r.run(ctx, "dry")
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if dry.Tags.Eligible != int64(len(eligible)) || len(r.sim.DeletedTags(repo)) != 0 {
		t.Fatalf("dry run reports %d eligible (want %d) and deleted %d", dry.Tags.Eligible, len(eligible), len(r.sim.DeletedTags(repo)))
	}

	r.policy.DryRun = false
	r.policy.MaxDeletes = int64(len(eligible) / 3)
	rep, err := r.run(ctx, "capped")
	if !errors.Is(err, coordinator.ErrRunFailed) || !strings.Contains(err.Error(), "max deletes") {
		t.Fatalf("capped run: err = %v, want ErrRunFailed saying the cap stopped it", err)
	}
	deleted := len(r.sim.DeletedTags(repo))
	if deleted > int(r.policy.MaxDeletes) || deleted == 0 || rep.Tags.Deleted != int64(deleted) {
		t.Fatalf("capped run deleted %d tags (report %d), want at most the cap %d", deleted, rep.Tags.Deleted, r.policy.MaxDeletes)
	}
	r.check(false)
}
