// Package test holds tagsweep's end-to-end tests: a real coordinator and real workers against
// an embedded NATS server and the simulated registry over HTTP on 127.0.0.1.
package test

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
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

const repo = "openshift/ci"

// stack is one tagsweep deployment in process: a simulated registry behind an httptest
// server, and a rig (embedded NATS, the ledger, workers and coordinators).
type stack struct {
	*testrig.Rig
	reg    *sim.Registry
	srv    *httptest.Server
	client *registry.OCI
	// planPage is the page size of the coordinator's planning (0: the default), shards its
	// target shard count (0: the default).
	planPage, shards int
}

// ledgerConfig is the ledger of the in-process tests: in memory, redelivered soon.
func ledgerConfig() ledger.Config {
	return ledger.Config{Storage: jetstream.MemoryStorage, AckWait: 5 * time.Second, MaxDeliver: 5}
}

func newStack(t *testing.T, simCfg sim.Config, wrap func(http.Handler) http.Handler) *stack {
	t.Helper()
	s := &stack{reg: sim.New(simCfg)}
	var h http.Handler = s.reg
	if wrap != nil {
		h = wrap(h)
	}
	s.srv = httptest.NewServer(h)
	t.Cleanup(s.srv.Close)
	var err error
	s.client, err = registry.NewOCI(registry.OCIConfig{Host: s.host(), PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Rig = testrig.New(t, testrig.Config{MaxMemory: 256 << 20, MaxStore: 256 << 20, Ledger: ledgerConfig()})
	return s
}

// host is the sim's host:port.
func (s *stack) host() string { return strings.TrimPrefix(s.srv.URL, "http://") }

// startWorkers runs n workers on the rig until the test ends, then stops them and fails the
// test if a Run returned an error.
func startWorkers(t *testing.T, r *testrig.Rig, n int, cfg worker.Config) {
	t.Helper()
	ws, err := r.StartWorkers(context.Background(), n, cfg, testLog(t, cmp.Or(cfg.ID, "w")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ws.Stop(); err != nil {
			t.Errorf("workers: %v", err)
		}
	})
}

// startWorkers runs n workers, each with the stack's registry client, until the test ends.
func (s *stack) startWorkers(t *testing.T, n int, cfg worker.Config) {
	t.Helper()
	cfg.Connect = func(_ context.Context, run proto.RunRecord) (registry.Client, error) {
		if run.Registry != s.host() {
			return nil, fmt.Errorf("run names registry %q, want the sim", run.Registry)
		}
		return s.client, nil
	}
	startWorkers(t, s.Rig, n, cfg)
}

// observerFunc is a coordinator.Observer made of a function.
type observerFunc func(coordinator.Status)

func (f observerFunc) RunStatus(s coordinator.Status) { f(s) }

// coordinator is a coordinator of the run runID on the stack; observe, if set, is told the
// run's status (the first time once the shards are published).
func (s *stack) coordinator(t *testing.T, runID string, p proto.Policy, observe func(coordinator.Status)) *coordinator.Coordinator {
	t.Helper()
	var obs coordinator.Observer
	if observe != nil {
		obs = observerFunc(observe)
	}
	c, err := s.Coordinator(coordinator.Config{
		RunID:        runID,
		Registry:     s.host(),
		PlainHTTP:    true,
		Repositories: []string{repo},
		Policy:       p,
		PollInterval: 100 * time.Millisecond,
		Observer:     obs,
		PageSize:     s.planPage,
		Shards:       s.shards,
	}, s.client, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// listed counts the tags of tags a run lists: those in ("", cutoff key].
func listed(t *testing.T, p proto.Policy, tags []string) int64 {
	t.Helper()
	rules, err := policy.New(p)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, tag := range tags {
		if tag <= rules.CutoffKey() {
			n++
		}
	}
	return n
}

// without returns the tags of tags not in drop (sorted), sorted.
func without(tags, drop []string) []string {
	var out []string
	for _, tag := range sorted(tags) {
		if _, ok := slices.BinarySearch(drop, tag); !ok {
			out = append(out, tag)
		}
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestEndToEnd(t *testing.T) {
	end := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	cutoff := end.AddDate(0, 0, -5)
	n := 50_000
	if testing.Short() {
		n = 5_000
	}
	tags := sim.Generate(sim.GenConfig{Seed: 42, Tags: n, Days: 30, End: end, Odd: true, BurstSize: 500,
		SkewDay: 12, SkewFactor: 6, Cutoff: cutoff, EligibleFraction: 0.3})
	p := policy.Defaults()
	p.Cutoff = cutoff
	eligible := invariant.Eligible(t, p, tags)
	keep, scanned := without(tags, eligible), listed(t, p, tags)
	if len(eligible) < n/5 || len(keep) < n/2 {
		t.Fatalf("generated namespace too lopsided to test: %d eligible, %d kept", len(eligible), len(keep))
	}

	for _, dry := range []bool{true, false} {
		t.Run(map[bool]string{true: "dry run", false: "confirm"}[dry], func(t *testing.T) {
			s := newStack(t, sim.Config{}, nil)
			if err := s.reg.AddTags(repo, "", tags...); err != nil {
				t.Fatal(err)
			}
			s.startWorkers(t, 4, worker.Config{Slots: 2, SplitAfter: time.Second})
			p := p
			p.DryRun = dry
			ctx := testCtx(t, 3*time.Minute)
			began := time.Now()
			rep, err := s.coordinator(t, "e2e", p, nil).Run(ctx)
			if err != nil {
				t.Fatalf("coordinator Run: %v", err)
			}
			t.Logf("%d tags, %d eligible: %d shards in %s (dry run %v)", len(tags), len(eligible), rep.Shards.Total,
				time.Since(began).Round(time.Millisecond), dry)

			deleted := s.reg.DeletedTags(repo)
			invariant.Check(t, invariant.State{Policy: p, Initial: tags, Deleted: deleted, Remaining: s.reg.Tags(repo), ExitOK: true})
			if len(deleted) != len(slices.Compact(sorted(deleted))) {
				t.Errorf("a tag was deleted twice")
			}
			if dry {
				if len(deleted) != 0 || rep.Tags.Deleted != 0 {
					t.Fatalf("dry run deleted %d tags (report %d), want none", len(deleted), rep.Tags.Deleted)
				}
				if !slices.Equal(s.reg.Tags(repo), sorted(tags)) {
					t.Fatalf("dry run changed the repository")
				}
			} else {
				if got := sorted(deleted); !slices.Equal(got, eligible) {
					t.Fatalf("deleted tags differ from the eligible ones: %s", invariant.Diff(got, eligible))
				}
				if got := s.reg.Tags(repo); !slices.Equal(got, keep) {
					t.Fatalf("remaining tags differ from generated - eligible: %s", invariant.Diff(got, keep))
				}
				if rep.Tags.Deleted != int64(len(eligible)) || rep.Tags.AlreadyGone != 0 || rep.Tags.DeleteFailed != 0 {
					t.Errorf("report deleted %d, already gone %d, failed %d; want %d, 0, 0", rep.Tags.Deleted,
						rep.Tags.AlreadyGone, rep.Tags.DeleteFailed, len(eligible))
				}
			}
			if rep.Tags.Eligible != int64(len(eligible)) || rep.Tags.Scanned != scanned ||
				rep.Tags.Scanned != rep.Tags.Eligible+rep.Tags.Kept+rep.Tags.Invalid {
				t.Errorf("report tags %+v, want eligible %d, scanned %d = eligible + kept + invalid", rep.Tags, len(eligible), scanned)
			}
			if rep.Shards.Failed != 0 || rep.Shards.Done != rep.Shards.Total || rep.DryRun != dry {
				t.Errorf("report shards %+v dry %v, want all done", rep.Shards, rep.DryRun)
			}

			// The audit stream holds one event per eligible tag.
			l := s.Ledger()
			want := proto.OutcomeDeleted
			if dry {
				want = proto.OutcomeDryRun
			}
			var audited []string
			for ev, err := range l.Audit(ctx, "e2e") {
				if err != nil {
					t.Fatal(err)
				}
				if ev.Outcome != want {
					t.Fatalf("audit event %+v, want outcome %s", ev, want)
				}
				audited = append(audited, ev.Tag)
			}
			if got := sorted(audited); !slices.Equal(got, eligible) {
				t.Errorf("audit events differ from eligible tags: %s", invariant.Diff(got, eligible))
			}

			// The same run again adds no shards and deletes nothing more.
			before, err := l.Shards(ctx, "e2e")
			if err != nil {
				t.Fatal(err)
			}
			again, err := s.coordinator(t, "e2e", p, nil).Run(ctx)
			if err != nil {
				t.Fatalf("second Run of the same run: %v", err)
			}
			after, _ := l.Shards(ctx, "e2e")
			if len(after) != len(before) || again.Shards != rep.Shards || again.Tags != rep.Tags {
				t.Errorf("second Run: %d shards (was %d), report %+v %+v (was %+v %+v)", len(after), len(before),
					again.Shards, again.Tags, rep.Shards, rep.Tags)
			}
			if n := len(s.reg.DeletedTags(repo)); n != len(deleted) {
				t.Errorf("second Run deleted %d more tags", n-len(deleted))
			}
		})
	}
}

// TestEdges: shard boundaries that are existing tags, a tag deleted between two pages (so
// `last` names a tag that no longer exists), a range emptied after planning, and short pages
// that say more tags follow (page cap 2 below the workers' page size 3).
func TestEdges(t *testing.T) {
	cutoff := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
	var tags []string
	for day := 1; day <= 8; day++ {
		d := fmt.Sprintf("202611%02d", day)
		tags = append(tags, d) // a bare date: a key a shard may end on
		for i := range 7 {
			tag := fmt.Sprintf("%s%02d%02d00_prune_ns_img_%d", d, i*3, i, i)
			if i == 1 || i == 2 {
				tag += "_keep_" // kept; two in a row, so that one ends a worker's page however the pages fall
			}
			tags = append(tags, tag)
		}
	}
	tags = append(tags,
		"20261105000000",                   // exactly the cutoff key: listed, kept
		"20261104235959_prune_last_second", // the last eligible second
		"20261105000000_prune_at_cutoff",   // not before the cutoff
		"19990101000000_prune_stray",       // decades before the rest
		"20261032000000_prune_bad_date",    // impossible date: kept, counted invalid
		"rc_payload__4.22.0",               // preservation family
		"latest",
	)
	p := policy.Defaults()
	p.Cutoff = cutoff
	p.KeepPatterns = []string{`_keep_$`}

	// Planning probes with pages of 4 (capped at 2 too) into small shards; the workers ask for 3.
	const planPage, workerPage = 4, 3
	var mu sync.Mutex
	var vanished []string // kept tags deleted behind the workers' backs, just before a page after them
	s := newStack(t, sim.Config{PageCap: 2}, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			last := r.URL.Query().Get("last")
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			if strings.HasSuffix(r.URL.Path, "/tags/list") && n == workerPage && strings.HasSuffix(last, "_keep_") {
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, httptest.NewRequestWithContext(r.Context(), http.MethodDelete, "/v2/"+repo+"/manifests/"+last, nil))
				if rec.Code == http.StatusAccepted {
					mu.Lock()
					vanished = append(vanished, last)
					mu.Unlock()
				}
			}
			next.ServeHTTP(w, r)
		})
	})
	s.planPage, s.shards = planPage, 8
	if err := s.reg.AddTags(repo, "", tags...); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, time.Minute)

	// Workers start only once the plan is published (the Observer's first status), after
	// everything in (20261103, 20261104] was deleted behind tagsweep's back: that stretch is
	// empty when listed.
	var emptied []string
	var startOnce sync.Once
	started := func(coordinator.Status) {
		startOnce.Do(func() {
			for _, tag := range s.reg.Tags(repo) {
				if tag > "20261103" && tag <= "20261104" {
					if err := s.client.Delete(ctx, repo, tag); err != nil {
						t.Errorf("emptying a shard: %v", err)
					}
					emptied = append(emptied, tag)
				}
			}
			s.startWorkers(t, 2, worker.Config{PageSize: workerPage, Slots: 2})
		})
	}
	rep, err := s.coordinator(t, "edges", p, started).Run(ctx)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	gone := slices.Concat(vanished, emptied)
	var ours []string
	for _, d := range s.reg.DeletedTags(repo) {
		if !slices.Contains(gone, d) {
			ours = append(ours, d)
		}
	}
	invariant.Check(t, invariant.State{Policy: p, Initial: tags, Deleted: ours, Gone: gone, Remaining: s.reg.Tags(repo), ExitOK: true})
	if len(vanished) < 3 || len(emptied) != 8 {
		t.Fatalf("%d tags vanished between pages, %d emptied: the edges were not exercised", len(vanished), len(emptied))
	}
	var present []string // what the workers could list
	for _, tag := range tags {
		if !slices.Contains(emptied, tag) {
			present = append(present, tag)
		}
	}
	eligible, scanned := invariant.Eligible(t, p, present), listed(t, p, present)
	wantDeleted := sorted(slices.Concat(eligible, emptied, vanished))
	if got := sorted(s.reg.DeletedTags(repo)); !slices.Equal(got, wantDeleted) {
		t.Fatalf("deleted: %s", invariant.Diff(got, wantDeleted))
	}
	var wantRemaining []string
	for _, tag := range tags {
		if _, gone := slices.BinarySearch(wantDeleted, tag); !gone {
			wantRemaining = append(wantRemaining, tag)
		}
	}
	if got := s.reg.Tags(repo); !slices.Equal(got, sorted(wantRemaining)) {
		t.Fatalf("remaining: %s", invariant.Diff(got, sorted(wantRemaining)))
	}
	if rep.Tags.Eligible != int64(len(eligible)) || rep.Tags.Deleted != int64(len(eligible)) ||
		rep.Tags.Invalid != 1 || rep.Tags.Scanned != scanned {
		t.Errorf("report %+v, want eligible = deleted = %d, one invalid, %d scanned", rep.Tags, len(eligible), scanned)
	}
	shards, err := s.Ledger().Shards(ctx, "edges")
	if err != nil {
		t.Fatal(err)
	}
	// Every shard scanned exactly the tags present in its range, and some shard ends on a
	// tag (planning cuts a range where a probe's page ends).
	onTag := false
	for _, sh := range shards {
		if sh.Kind != proto.KindPrune {
			continue
		}
		var want int64
		for _, tag := range present {
			if sh.Range.Contains(tag) && tag <= p.Cutoff.UTC().Format("20060102150405") {
				want++
			}
		}
		if sh.Counters.Scanned != want {
			t.Errorf("shard %v: scanned %d, want %d", sh.Range, sh.Counters.Scanned, want)
		}
		onTag = onTag || slices.Contains(tags, sh.Range.Through)
	}
	if !onTag {
		t.Errorf("no shard ends on a tag: the edge was not exercised")
	}
}
