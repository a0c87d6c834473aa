package test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/keyspace"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
	"github.com/tagsweep/tagsweep/worker"
)

// noDeletes wraps a registry so that every DELETE is counted and refused (500) instead of
// served: an inventory that sends one fails the test however the client takes the answer.
func noDeletes(n *atomic.Int64) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodDelete {
				n.Add(1)
				http.Error(w, "this registry fails the test on any DELETE", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// inventoryOf is what an inventory of tags under p must report, computed apart from the
// worker: counters over every tag, prune tags per day, family tags by role.
func inventoryOf(t *testing.T, p proto.Policy, tags []string) (proto.Counters, proto.Inventory) {
	t.Helper()
	rules, err := policy.New(p)
	if err != nil {
		t.Fatal(err)
	}
	var c proto.Counters
	days := map[string]int64{}
	var inv proto.Inventory
	for _, tag := range tags {
		c.Scanned++
		d := rules.Decide(tag)
		switch d.Verdict {
		case policy.Delete:
			c.Eligible++
		case policy.Invalid:
			c.Invalid++
		default:
			c.Kept++
		}
		if !d.Time.IsZero() {
			days[d.Time.Format("2006-01-02")]++
		}
		switch role, _, _ := preserve.Classify(tag); role {
		case preserve.RolePayload:
			inv.Families.Payloads++
		case preserve.RoleMarker:
			inv.Families.Markers++
		case preserve.RoleRemoval:
			inv.Families.RemovalRequests++
		case preserve.RoleComponent:
			inv.Families.Components++
		}
	}
	for _, day := range slices.Sorted(func(yield func(string) bool) {
		for d := range days {
			if !yield(d) {
				return
			}
		}
	}) {
		inv.Days = append(inv.Days, proto.DayCount{Day: day, Tags: days[day]})
	}
	return c, inv
}

// TestInventory: an inventory run lists the whole namespace through the same shards as a
// pruning run and reports every tag once, the prune tags per day, what the TTL would make
// eligible, the invalid ones and the release-payload families; it sends no DELETE although its
// policy asks to delete, and it leaves the repository as it was.
func TestInventory(t *testing.T) {
	end := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	cutoff := end.AddDate(0, 0, -5)
	n := 20_000
	if testing.Short() {
		n = 3_000
	}
	tags := sim.Generate(sim.GenConfig{Seed: 7, Tags: n, Days: 8, End: end, Odd: true, Cutoff: cutoff, EligibleFraction: 0.2})
	tags = append(tags, "rc_payload__4.18.0", "preserved__rc_payload__4.18.0", "remove__rc_payload__4.17.0",
		"rc_payload__4.18.0__component__cli", "rc_payload__4.18.0__component__installer", "latest", "zzz")
	p := policy.Defaults()
	p.Cutoff = cutoff
	p.DryRun = false // the inventory must not delete even so
	wantC, wantInv := inventoryOf(t, p, tags)
	if wantC.Eligible == 0 || wantC.Invalid == 0 || len(wantInv.Days) < 8 {
		t.Fatalf("namespace too plain to test: %+v, %d days", wantC, len(wantInv.Days))
	}

	var deletes atomic.Int64
	s := newStack(t, sim.Config{}, noDeletes(&deletes))
	if err := s.reg.AddTags(repo, "", tags...); err != nil {
		t.Fatal(err)
	}
	s.startWorkers(t, 3, worker.Config{Slots: 2, SplitAfter: 200 * time.Millisecond})
	ctx := testCtx(t, 3*time.Minute)
	co, err := s.Coordinator(coordinator.Config{
		RunID:            "inv",
		Registry:         s.host(),
		PlainHTTP:        true,
		Repositories:     []string{repo},
		Policy:           p,
		PollInterval:     100 * time.Millisecond,
		PreservePayloads: true, // an inventory preserves nothing either
		Inventory:        true,
	}, s.client, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := co.Run(ctx)
	if err != nil {
		t.Fatalf("inventory Run: %v", err)
	}
	if got := deletes.Load(); got != 0 {
		t.Fatalf("the inventory sent %d DELETE requests", got)
	}
	if !slices.Equal(s.reg.Tags(repo), sorted(tags)) {
		t.Fatalf("the inventory changed the repository")
	}
	if rep.Tags != wantC {
		t.Errorf("report tags %+v, want %+v", rep.Tags, wantC)
	}
	if rep.Inventory == nil || !rep.Inventory.Equal(&wantInv) {
		t.Errorf("report inventory %+v, want %+v", rep.Inventory, wantInv)
	}
	if !rep.DryRun || rep.Shards.Failed != 0 || rep.Shards.Done != rep.Shards.Total || rep.Shards.Total < 2 {
		t.Errorf("report %+v, want a dry run with every shard done", rep.Shards)
	}

	l := s.Ledger()
	run, _, err := l.Run(ctx, "inv")
	if err != nil {
		t.Fatal(err)
	}
	if run.Mode != proto.ModeInventory || !run.Policy.DryRun {
		t.Errorf("run record mode %q dry run %v, want an inventory dry run", run.Mode, run.Policy.DryRun)
	}
	shards, err := l.Shards(ctx, "inv")
	if err != nil {
		t.Fatal(err)
	}
	var rs []proto.Range
	for _, sh := range shards {
		if sh.Kind != proto.KindList {
			t.Errorf("shard %s is %q, want only list shards", sh.ShardID, sh.Kind)
		}
		rs = append(rs, sh.Range)
	}
	slices.SortFunc(rs, func(a, b proto.Range) int { return strings.Compare(a.After, b.After) })
	cur := ""
	for _, r := range rs {
		if r.After != cur {
			t.Fatalf("list shards %v do not partition (\"\", %q]", rs, keyspace.End)
		}
		cur = r.Through
	}
	if cur != keyspace.End {
		t.Errorf("list shards end at %q, want %q", cur, keyspace.End)
	}

	// A pruning coordinator cannot re-attach to the inventory run.
	if _, err := s.Run(ctx, coordinator.Config{RunID: "inv", Registry: s.host(), PlainHTTP: true,
		Repositories: []string{repo}, Policy: p}, s.client, nil); err == nil || !strings.Contains(err.Error(), "inventory run") {
		t.Errorf("pruning coordinator on an inventory run: err = %v, want a refusal", err)
	}
}

// TestInventoryWorkerRefuses: the worker, not only the coordinator, keeps an inventory run from
// deleting. A run record that says inventory but holds a prune shard (a forged or buggy
// coordinator) gets the shard failed without a DELETE; a list shard in a pruning run is refused
// as well; and a list shard whose run's policy asks to delete only counts.
func TestInventoryWorkerRefuses(t *testing.T) {
	cutoff := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
	tags := []string{"20261101000000_prune_a", "20261102000000_prune_b", "20261110000000_prune_c", "latest"}
	p := policy.Defaults()
	p.Cutoff, p.DryRun = cutoff, false
	for _, tc := range []struct {
		name      string
		mode      proto.RunMode
		kind      proto.ShardKind
		wantState proto.ShardState
		wantErr   string
	}{
		{"inventory run, prune shard", proto.ModeInventory, proto.KindPrune, proto.StateFailed, "inventory run"},
		{"inventory run, preserve shard", proto.ModeInventory, proto.KindPreserve, proto.StateFailed, "inventory run"},
		{"pruning run, list shard", proto.ModePrune, proto.KindList, proto.StateFailed, "not an inventory run"},
		{"unknown mode", "census", proto.KindPrune, proto.StateFailed, "does not know"},
		{"inventory run, list shard", proto.ModeInventory, proto.KindList, proto.StateDone, ""},
	} {

		t.Run(tc.name, func(t *testing.T) {
			var deletes atomic.Int64
			s := newStack(t, sim.Config{}, noDeletes(&deletes))
			if err := s.reg.AddTags(repo, "", tags...); err != nil {
				t.Fatal(err)
			}
			ctx := testCtx(t, time.Minute)
			l := s.Ledger()
			run := proto.RunRecord{RunID: "forged", Registry: s.host(), PlainHTTP: true,
				Repositories: []string{repo}, Policy: p, Mode: tc.mode, State: proto.RunRunning, StartedAt: time.Now().UTC()}
			if _, err := l.CreateRun(ctx, run); err != nil {
				t.Fatal(err)
			}
			if _, err := l.CreateShard(ctx, proto.ShardRecord{RunID: "forged", ShardID: "s0", Kind: tc.kind, Repository: repo,
				Range: proto.Range{After: "", Through: keyspace.End}}); err != nil {
				t.Fatal(err)
			}
			s.startWorkers(t, 1, worker.Config{Slots: 1})
			var rec proto.ShardRecord
			var err error
			for rec.State != tc.wantState {
				if ctx.Err() != nil {
					t.Fatalf("shard %+v never reached %s", rec, tc.wantState)
				}
				if rec, _, err = l.Shard(ctx, "forged", "s0"); err != nil {
					t.Fatal(err)
				}
				if rec.State.Terminal() && rec.State != tc.wantState {
					t.Fatalf("shard ended %s (%s), want %s", rec.State, rec.LastError, tc.wantState)
				}
				pause(ctx)
			}
			if got := deletes.Load(); got != 0 {
				t.Fatalf("the worker sent %d DELETE requests", got)
			}
			if !strings.Contains(rec.LastError, tc.wantErr) {
				t.Errorf("last error %q, want it to say %q", rec.LastError, tc.wantErr)
			}
			if tc.wantState == proto.StateDone && (rec.Counters.Scanned != int64(len(tags)) || rec.Counters.Eligible != 2 ||
				rec.Counters.Deleted != 0 || rec.Inventory == nil || len(rec.Inventory.Days) != 3) {
				t.Errorf("list shard counters %+v inventory %+v, want 4 scanned, 2 eligible, 0 deleted, 3 days", rec.Counters, rec.Inventory)
			}
		})
	}
}

// pause waits a little between two polls, or until ctx ends.
func pause(ctx context.Context) {
	t := time.NewTimer(20 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// TestInventoryEmptyRange: a list shard whose listing finds nothing where planning saw a tag
// asks the registry whether that tag still exists, through the inventory's list-only client:
// gone, the shard is done and counts nothing; still there, the listing left it out and the
// shard is not done. Neither sends a DELETE.
func TestInventoryEmptyRange(t *testing.T) {
	cutoff := time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)
	p := policy.Defaults()
	p.Cutoff = cutoff
	for _, tc := range []struct {
		name     string
		present  bool
		wantDone bool
	}{
		{"seen tag gone", false, true},
		{"seen tag hidden from the listing", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var deletes atomic.Int64
			hideLists := func(h http.Handler) http.Handler {
				return noDeletes(&deletes)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if strings.HasSuffix(r.URL.Path, "/tags/list") {
						w.Header().Set("Content-Type", "application/json")
						_, _ = w.Write([]byte(`{"name":"` + repo + `","tags":[]}`))
						return
					}
					h.ServeHTTP(w, r)
				}))
			}
			s := newStack(t, sim.Config{}, hideLists)
			const seen = "20261101000000_prune_a"
			if tc.present {
				if err := s.reg.AddTags(repo, "", seen); err != nil {
					t.Fatal(err)
				}
			}
			ctx := testCtx(t, time.Minute)
			l := s.Ledger()
			run := proto.RunRecord{RunID: "inv", Registry: s.host(), PlainHTTP: true,
				Repositories: []string{repo}, Policy: p, Mode: proto.ModeInventory, State: proto.RunRunning, StartedAt: time.Now().UTC()}
			if _, err := l.CreateRun(ctx, run); err != nil {
				t.Fatal(err)
			}
			if _, err := l.CreateShard(ctx, proto.ShardRecord{RunID: "inv", ShardID: "s0", Kind: proto.KindList, Repository: repo,
				Range: proto.Range{After: "", Through: keyspace.End}, Seen: seen}); err != nil {
				t.Fatal(err)
			}
			s.startWorkers(t, 1, worker.Config{Slots: 1, RetryDelay: time.Hour})
			var rec proto.ShardRecord
			var err error
			for !rec.State.Terminal() && rec.LastError == "" { // done, or given back with the reason
				if ctx.Err() != nil {
					t.Fatalf("shard %+v never settled", rec)
				}
				if rec, _, err = l.Shard(ctx, "inv", "s0"); err != nil {
					t.Fatal(err)
				}
				pause(ctx)
			}
			if done := rec.State == proto.StateDone; done != tc.wantDone {
				t.Errorf("shard %s (%s), want done %v", rec.State, rec.LastError, tc.wantDone)
			}
			if !tc.wantDone && !strings.Contains(rec.LastError, "incomplete") {
				t.Errorf("last error %q, want it to say the listing is incomplete", rec.LastError)
			}
			if got := deletes.Load(); got != 0 {
				t.Fatalf("the worker sent %d DELETE requests", got)
			}
		})
	}
}
