package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// readReport reads and shape-checks a --report file.
func readReport(t *testing.T, path string) proto.Report {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading report: %v", err)
	}
	checkReportShape(t, data)
	var r proto.Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// summaryNumber returns the number on the summary line "label: N".
func summaryNumber(t *testing.T, out, label string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(label) + `: (\d+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("summary lacks %q:\n%s", label, out)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

func TestRunDemo(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		check    func(t *testing.T, r proto.Report, out string)
	}{
		{name: "dry run", wantCode: 0, check: func(t *testing.T, r proto.Report, out string) {
			if !r.DryRun || r.Tags.Deleted != 0 || r.Tags.Eligible == 0 || r.Tags.Eligible != r.Tags.Scanned-r.Tags.Kept-r.Tags.Invalid {
				t.Errorf("report tags = %+v (dry run %v), want a dry run with eligible tags and none deleted", r.Tags, r.DryRun)
			}
			if !strings.Contains(out, "DRY RUN: nothing was deleted.") ||
				summaryNumber(t, out, "Tags that would be pruned") != r.Tags.Eligible {
				t.Errorf("summary does not say what would be pruned:\n%s", out)
			}
		}},
		{name: "confirm", args: []string{"--confirm"}, wantCode: 0, check: func(t *testing.T, r proto.Report, out string) {
			if r.DryRun || r.Tags.Eligible == 0 || r.Tags.Deleted != r.Tags.Eligible || r.Tags.DeleteFailed != 0 {
				t.Errorf("report tags = %+v, want every eligible tag deleted", r.Tags)
			}
			if summaryNumber(t, out, "Tags successfully pruned") != r.Tags.Deleted || strings.Contains(out, "DRY RUN") {
				t.Errorf("summary does not match the report:\n%s", out)
			}
		}},
		{name: "delete cap stops the run", args: []string{"--confirm", "--max-deletes", "50"}, wantCode: exitFailed,
			check: func(t *testing.T, r proto.Report, out string) {
				if r.Tags.Deleted > 50 || r.Shards.Failed == 0 || r.Reason == "" {
					t.Errorf("report = %+v, want at most 50 deleted, failed shards and a reason", r)
				}
				if r.State == proto.RunDone || r.State == proto.RunRunning || r.Policy.MaxDeletes != 50 {
					t.Errorf("report state, policy cap = %q, %d; want a run that did not end done, and the cap of 50", r.State, r.Policy.MaxDeletes)
				}
				if !strings.Contains(out, "Stopped: ") {
					t.Errorf("summary does not say why the run stopped:\n%s", out)
				}
				// A resume of a capped run is refused: the advice is a new run.
				if !strings.Contains(out, "start a new run") || strings.Contains(out, "Resume") {
					t.Errorf("a capped run's summary does not advise a new run:\n%s", out)
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			report := filepath.Join(t.TempDir(), "report.json")
			args := append([]string{"run", "--demo", "--demo-tags", "3000", "--demo-days", "20", "--demo-latency", "0s",
				"--workers", "2", "--slots", "2", "--report", report, "--log-format", "json"}, tc.args...)
			code, out, errOut := execute(t, t.Context(), args...)
			if code != tc.wantCode {
				t.Fatalf("tagsweep %s: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, tc.wantCode, out, errOut)
			}
			r := readReport(t, report)
			for _, label := range []string{"Duration", "Total tags scanned", "Tags targeted for pruning"} {
				if !strings.Contains(out, "\n"+label+": ") {
					t.Errorf("summary lacks the %q line:\n%s", label, out)
				}
			}
			if summaryNumber(t, out, "Total tags scanned") != r.Tags.Scanned || summaryNumber(t, out, "Tags targeted for pruning") != r.Tags.Eligible {
				t.Errorf("summary and report disagree: report %+v\n%s", r.Tags, out)
			}
			if r.Shards.Total == 0 || r.Shards.Total != r.Shards.Done+r.Shards.Failed {
				t.Errorf("report shards = %+v, want every shard terminal", r.Shards)
			}
			if got := r.Cutoff; got.Before(r.StartedAt.Add(-5*24*time.Hour-time.Second)) || got.After(r.StartedAt.Add(-5*24*time.Hour+time.Second)) {
				t.Errorf("report cutoff %s, want started_at %s minus the default 5 days", got, r.StartedAt)
			}
			tc.check(t, r, out)
		})
	}
}

// TestRunAgainstRegistry prunes a simulated registry served over HTTP as a real one would
// be, and checks every tag against the policy: each deleted tag was eligible, each tag
// left is not.
func TestRunAgainstRegistry(t *testing.T) {
	clearEnv(t)
	const repo = "openshift/ci"
	srv, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	all := sim.Generate(sim.GenConfig{Seed: 7, Tags: 2000, Days: 12, End: time.Now(), Odd: true})
	all = append(all, "20200101000000_prune_ci_a_latest", "20200101000000_prune_ci_keep_me")
	if err := srv.AddTags(repo, "", all...); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(t.TempDir(), "report.json")
	code, out, errOut := execute(t, t.Context(), "run", "--registry", srv.Addr(), "--plain-http", "--repository", repo,
		"--ttl", "3d", "--confirm", "--keep-regex", "_keep_", "--shards", "16", "--report", report, "--log-format", "json")
	if code != 0 {
		t.Fatalf("run: exit code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	r := readReport(t, report)
	p := policy.Defaults()
	p.Cutoff = r.Cutoff
	p.KeepPatterns = []string{"_keep_"}
	rules, err := policy.New(p)
	if err != nil {
		t.Fatal(err)
	}
	deleted := srv.DeletedTags(repo)
	if int64(len(deleted)) != r.Tags.Deleted || len(deleted) == 0 {
		t.Errorf("registry saw %d deletes, report says %d", len(deleted), r.Tags.Deleted)
	}
	for _, tag := range deleted {
		if d := rules.Decide(tag); d.Verdict != policy.Delete {
			t.Errorf("deleted %q, which the policy keeps (%s)", tag, d.Reason)
		}
	}
	for _, tag := range srv.Tags(repo) {
		if d := rules.Decide(tag); d.Verdict == policy.Delete {
			t.Errorf("kept %q, which the policy deletes", tag)
		}
	}
	for _, tag := range []string{"19990101000000_prune_ci_stray_latest", "20200101000000_prune_ci_a_latest"} {
		if !slices.Contains(deleted, tag) {
			t.Errorf("%q was not deleted: planning must reach tags years before the others", tag)
		}
	}
	if !srv.HasTag(repo, "20200101000000_prune_ci_keep_me") {
		t.Errorf("the tag matching --keep-regex was deleted")
	}

	// The report says what it is: which tagsweep, which registry, how the run ended and
	// the settings that decided.
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var full runReport
	if err := json.Unmarshal(data, &full); err != nil {
		t.Fatal(err)
	}
	got := full.Report
	if full.Tagsweep.Version == "" || full.Tagsweep.Go == "" {
		t.Errorf("report tagsweep = %+v, want its version and Go version", full.Tagsweep)
	}
	if got.Registry != srv.Addr() || got.State != proto.RunDone || got.TTLSeconds != 3*24*3600 || got.DryRun || got.Policy.DryRun {
		t.Errorf("report registry, state, ttl_seconds, dry_run = %q, %q, %d, %v; want %q, done, %d, false",
			got.Registry, got.State, got.TTLSeconds, got.DryRun, srv.Addr(), 3*24*3600)
	}
	if !slices.Equal(got.Policy.KeepPatterns, []string{"_keep_"}) || got.Policy.PrunePattern != config.DefaultPruneRegex ||
		got.Policy.TimeZone != "UTC" || got.Policy.MaxDeletes != 0 || !got.Policy.Cutoff.Equal(got.Cutoff) {
		t.Errorf("report policy = %+v, want the run's rule (keep _keep_, default prune pattern, UTC, no cap, cutoff %s)", got.Policy, got.Cutoff)
	}
	if got.StartedAt.IsZero() || got.FinishedAt.Before(got.StartedAt) || got.DurationSeconds <= 0 {
		t.Errorf("report timings = %s to %s, %gs; want a start, an end after it and the duration between",
			got.StartedAt, got.FinishedAt, got.DurationSeconds)
	}
}

// TestRunInterruptAndResume stops a run part-way (as a signal would) and runs it again
// with the same --run-id and --data-dir: the second run re-attaches, finishes what is
// left, and the registry ends exactly as one uninterrupted run would leave it.
func TestRunInterruptAndResume(t *testing.T) {
	clearEnv(t)
	const repo = "openshift/ci"
	srv, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{Latency: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.AddTags(repo, "", sim.Generate(sim.GenConfig{Seed: 11, Tags: 4000, Days: 15, End: time.Now()})...); err != nil {
		t.Fatal(err)
	}
	dataDir, report := t.TempDir(), filepath.Join(t.TempDir(), "report.json")
	args := []string{"run", "--registry", srv.Addr(), "--plain-http", "--repository", repo, "--confirm",
		"--run-id", "resume-1", "--data-dir", dataDir, "--report", report, "--workers", "2", "--slots", "2",
		"--delete-concurrency", "4", "--ack-wait", "1s", "--log-format", "json"}

	ctx, cancel := context.WithCancel(t.Context())
	type result struct {
		code        int
		out, errOut string
	}
	first := make(chan result, 1)
	go func() {
		code, out, errOut := execute(t, ctx, args...)
		first <- result{code, out, errOut}
	}()
	// Interrupt once deletes have started.
	var r1 result
	deadline := time.After(60 * time.Second)
wait:
	for {
		select {
		case r1 = <-first:
			t.Fatalf("first run ended before it could be interrupted (exit %d)\n%s", r1.code, r1.out)
		case <-deadline:
			cancel()
			t.Fatal("no delete reached the registry within 60s")
		case <-time.After(5 * time.Millisecond):
			if len(srv.DeletedTags(repo)) > 0 {
				break wait
			}
		}
	}
	cancel()
	r1 = <-first
	if r1.code != exitFailed || !strings.Contains(r1.out, "Resume it: tagsweep run --data-dir "+dataDir+" --run-id resume-1") {
		t.Fatalf("interrupted run: exit %d, want %d and a resume hint\n%s\n%s", r1.code, exitFailed, r1.out, r1.errOut)
	}
	if _, err := os.Stat(report); err == nil {
		t.Errorf("an interrupted run wrote a report")
	}
	// The interrupted run is recorded stopped, its leases given up: it does not look running.
	func() {
		ns, err := natsserver.Start(natsserver.Config{Dir: dataDir})
		if err != nil {
			t.Fatal(err)
		}
		defer ns.Close()
		l := openLedger(t, ns)
		rec, _, err := l.Run(t.Context(), "resume-1")
		if err != nil || rec.State != proto.RunStopped || !strings.Contains(rec.Reason, "interrupted") {
			t.Errorf("interrupted run recorded %s (%q), %v; want stopped", rec.State, rec.Reason, err)
		}
		if lease, err := l.Lease(t.Context(), repo); err == nil {
			t.Errorf("the interrupted run left its lease: %+v", lease)
		}
	}()
	afterFirst := len(srv.DeletedTags(repo))

	code, out, errOut := execute(t, t.Context(), args...)
	if code != 0 {
		t.Fatalf("resumed run: exit %d\n%s\n%s", code, out, errOut)
	}
	r := readReport(t, report)
	if r.RunID != "resume-1" {
		t.Errorf("resumed report run_id = %q, want resume-1", r.RunID)
	}
	p := policy.Defaults()
	p.Cutoff = r.Cutoff
	rules, err := policy.New(p)
	if err != nil {
		t.Fatal(err)
	}
	deleted := srv.DeletedTags(repo)
	if len(deleted) <= afterFirst {
		t.Errorf("the resumed run deleted nothing (%d deletes before, %d after)", afterFirst, len(deleted))
	}
	for _, tag := range deleted {
		if rules.Decide(tag).Verdict != policy.Delete {
			t.Errorf("deleted %q, which the policy keeps", tag)
		}
	}
	for _, tag := range srv.Tags(repo) {
		if rules.Decide(tag).Verdict == policy.Delete {
			t.Errorf("left %q, which the policy deletes", tag)
		}
	}
}
