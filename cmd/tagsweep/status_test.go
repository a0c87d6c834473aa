package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/proto"
)

// startNATS starts an embedded JetStream server listening on a random loopback port.
func startNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// openLedger opens the ledger on srv, as a coordinator or worker would, over a connection
// closed when the test ends.
func openLedger(t *testing.T, srv *natsserver.Server) *ledger.Ledger {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), js, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestStatus(t *testing.T) {
	srv := startNATS(t)
	ctx := t.Context()
	cfg := config.Config{Command: config.CmdStatus, NATSURL: srv.ClientURL(), AckWait: time.Minute}
	status := func(t *testing.T, runID, output string, states ...string) string {
		t.Helper()
		c := cfg
		c.Output, c.Status.States = output, states
		var out bytes.Buffer
		if err := runStatus(ctx, &out, nil, c, runID); err != nil {
			t.Fatalf("runStatus(%q, -o %s, --state %v) = %v", runID, output, states, err)
		}
		return out.String()
	}

	if got := status(t, "", ""); !strings.Contains(got, "no tagsweep runs") {
		t.Errorf("runStatus(empty server) printed %q, want no tagsweep runs", got)
	}
	if got := status(t, "", "json"); strings.TrimSpace(got) != `{
  "v": 1,
  "runs": []
}` {
		t.Errorf("runStatus(empty server, json) printed %q, want no runs", got)
	}

	l := openLedger(t, srv)
	start := time.Now().Add(-time.Hour).UTC()
	long := strings.Repeat("x", 200)
	if _, err := l.CreateRun(ctx, proto.RunRecord{RunID: "run-1", Registry: "quay.io", Repositories: []string{"openshift/ci"},
		Policy: proto.Policy{DryRun: true, Cutoff: start.Add(-5 * 24 * time.Hour)}, State: proto.RunRunning, StartedAt: start, Shards: 2,
		Reason: "a reason " + long}); err != nil {
		t.Fatal(err)
	}
	longID := "s2-" + strings.Repeat("y", 60)
	for _, s := range []proto.ShardRecord{
		{RunID: "run-1", ShardID: "s0", Repository: "openshift/ci", Range: proto.Range{After: "", Through: "20260101"}},
		{RunID: "run-1", ShardID: "s1", Repository: "openshift/ci", Range: proto.Range{After: "20260101", Through: "20260102"}},
		{RunID: "run-1", ShardID: longID, Repository: "openshift/ci", Range: proto.Range{After: "20260102", Through: "20260103_" + long}},
	} {
		if _, err := l.CreateShard(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	claim, err := l.Claim(ctx, "run-1", "s1", "worker-a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.Checkpoint(ctx, "20260101120000_prune_x", proto.Counters{Scanned: 7, Eligible: 3, Deleted: 3}); err != nil {
		t.Fatal(err)
	}
	claim, err = l.Claim(ctx, "run-1", longID, "worker-b", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.Fail(ctx, errors.New("listing failed: "+long)); err != nil {
		t.Fatal(err)
	}
	// A finished run: the list shows the counts of its shards, as its detail does.
	if _, err := l.CreateRun(ctx, proto.RunRecord{RunID: "run-0", Registry: "quay.io", Repositories: []string{"openshift/ci"},
		State: proto.RunDone, StartedAt: start.Add(-time.Hour), FinishedAt: start.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateShard(ctx, proto.ShardRecord{RunID: "run-0", ShardID: "a", Repository: "openshift/ci",
		Range: proto.Range{Through: "20260101"}}); err != nil {
		t.Fatal(err)
	}
	claim, err = l.Claim(ctx, "run-0", "a", "worker-a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.Checkpoint(ctx, "20251231000000_prune_a", proto.Counters{Scanned: 11, Eligible: 5, Deleted: 5}); err != nil {
		t.Fatal(err)
	}
	if err := claim.Done(ctx); err != nil {
		t.Fatal(err)
	}

	// run-1's coordinator is alive; run-2's lease lapsed: status marks it abandoned.
	if err := l.AcquireLease(ctx, "openshift/ci", "run-1", "host-a/1", time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := l.AcquireLease(ctx, "openshift/other", "run-2", "host-b/2", time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateRun(ctx, proto.RunRecord{RunID: "run-2", Registry: "quay.io", Repositories: []string{"openshift/other"},
		State: proto.RunRunning, StartedAt: start.Add(-2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}

	got := status(t, "", "")
	for _, want := range []string{"RUN", "run-1", "running", "dry run", "openshift/ci", "0/3", "alive", "run-0", "1/1",
		"run-2", "abandoned"} {
		if !strings.Contains(got, want) {
			t.Errorf("runStatus() output lacks %q:\n%s", want, got)
		}
	}
	if got := status(t, "", "", "done"); strings.Contains(got, "run-1") || !strings.Contains(got, "run-0") {
		t.Errorf("runStatus(--state done) does not show run-0 alone:\n%s", got)
	}
	if rec, _, err := l.Run(ctx, "run-2"); err != nil || rec.State != proto.RunAbandoned ||
		!strings.Contains(rec.Reason, "host-b/2 stopped renewing its lease") || rec.FinishedAt.IsZero() {
		t.Errorf("run-2 = %+v, %v; want it recorded abandoned, naming its coordinator", rec, err)
	}
	if rec, _, err := l.Run(ctx, "run-1"); err != nil || rec.State != proto.RunRunning {
		t.Errorf("run-1 = %s, %v; want running: its coordinator holds its lease", rec.State, err)
	}

	var list statusList
	if err := json.Unmarshal([]byte(status(t, "", "json")), &list); err != nil {
		t.Fatal(err)
	}
	var detail statusDetail
	if err := json.Unmarshal([]byte(status(t, "run-0", "json")), &detail); err != nil {
		t.Fatal(err)
	}
	if len(list.Runs) != 3 || list.Runs[1].Run != "run-0" || list.Runs[1].Tags != detail.Run.Tags || detail.Run.Tags.Deleted != 5 ||
		list.Runs[1].Shards != detail.Run.Shards || detail.Run.Shards.Done != 1 || len(detail.Shards) != 1 {
		t.Errorf("the list and the detail of run-0 disagree, or miss its counts:\nlist %+v\ndetail %+v", list.Runs, detail)
	}

	if _, err := l.RequestStop(ctx, "run-1", proto.StopRequest{Reason: "maintenance", By: "ops@host", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if got := status(t, "", ""); !strings.Contains(got, "stopping: maintenance") {
		t.Errorf("the list does not show run-1 stopping:\n%s", got)
	}
	table := status(t, "run-1", "table")
	if !strings.Contains(table, "Stopping:     asked by ops@host") {
		t.Errorf("status run-1 does not show the stop request:\n%s", table)
	}
	for _, want := range []string{"Shards:       3: 0 done, 1 failed, 1 running (0 stale), 1 pending",
		"Tags:         7 scanned, 3 eligible, 3 deleted", "Coordinator:  alive (host-a/1)", "20260101120000_…"} {
		if !strings.Contains(table, want) {
			t.Errorf("runStatus(run-1) output lacks %q:\n%s", want, table)
		}
	}
	for _, line := range strings.Split(table, "\n") {
		if n := utf8.RuneCountInString(line); n > tableWidth {
			t.Errorf("status RUN -o table: a line of %d characters, want at most %d:\n%s", n, tableWidth, line)
		}
	}
	wide := status(t, "run-1", "wide")
	for _, want := range []string{"worker-a", "20260101120000_prune_x", longID, "listing failed: " + long, "a reason " + long} {
		if !strings.Contains(wide, want) {
			t.Errorf("runStatus(run-1, wide) output lacks %q:\n%s", want, wide)
		}
	}
	if got := status(t, "run-1", "wide", "failed"); !strings.Contains(got, longID) || strings.Contains(got, "worker-a") {
		t.Errorf("runStatus(run-1, --state failed) does not show the failed shard alone:\n%s", got)
	}

	var out bytes.Buffer
	if err := runStatus(ctx, &out, nil, cfg, "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("runStatus(nope) = %v, want not found", err)
	}
	c := cfg
	c.Status.States = []string{"stopped"}
	if err := runStatus(ctx, &out, nil, c, "run-1"); err == nil || !strings.Contains(err.Error(), "not a shard state") {
		t.Errorf("runStatus(run-1, --state stopped) = %v, want not a shard state", err)
	}
}

// TestStatusJSONFields pins the field names of `status -o json`, which docs/operations.md
// documents: renaming one breaks the scripts that read it.
func TestStatusJSONFields(t *testing.T) {
	now := time.Date(2026, 11, 22, 3, 15, 0, 0, time.UTC)
	doc := statusDetail{V: statusVersion, Run: statusRun{Repositories: []string{}, FinishedAt: &now, StopRequested: &statusStop{},
		Coordinator: statusCoord{LeaseExpires: &now}}, Shards: []statusShard{{Heartbeat: &now}}}
	data, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	keys := func(m any) []string {
		out := slices.Collect(maps.Keys(m.(map[string]any)))
		slices.Sort(out)
		return out
	}
	run := got["run"].(map[string]any)
	shard := got["shards"].([]any)[0].(map[string]any)
	for _, tc := range []struct {
		name string
		got  []string
		want string
	}{
		{"document", keys(got), "run shards v"},
		{"run", keys(run), "coordinator cutoff dry_run duration_seconds finished_at reason registry repositories run shards started_at state stop_requested tags"},
		{"run.stop_requested", keys(run["stop_requested"]), "at by reason"},
		{"run.coordinator", keys(run["coordinator"]), "alive holder lease_expires"},
		{"run.shards", keys(run["shards"]), "done failed pending running stale total"},
		{"run.tags", keys(run["tags"]), "already_gone delete_failed deleted eligible invalid kept scanned"},
		{"shard", keys(shard), "after attempt cursor heartbeat kind last_error owner repository shard stale state tags through"},
	} {
		if strings.Join(tc.got, " ") != tc.want {
			t.Errorf("%s fields = %v, want %s", tc.name, tc.got, tc.want)
		}
	}
}
