package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/internal/testnet"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
	"github.com/tagsweep/tagsweep/telemetry"
)

// TestMetricsMatchReports runs a worker command (serving /metrics) and two coordinator runs
// against it, one deleting and one dry, and scrapes the worker: its tag counters equal the
// sum of the two runs' reports, reason by reason.
func TestMetricsMatchReports(t *testing.T) {
	clearEnv(t)
	const repo = "openshift/ci"
	ns := startNATS(t)
	reg, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	tags := sim.Generate(sim.GenConfig{Seed: 11, Tags: 1200, Days: 10, End: time.Now(), Odd: true})
	tags = append(tags, "20261032000000_prune_ci_bad_day") // an impossible date below every cutoff
	if err := reg.AddTags(repo, "", tags...); err != nil {
		t.Fatal(err)
	}
	httpAddr := testnet.FreeAddrs(t, 1)[0]
	wctx, stopWorker := context.WithCancel(t.Context())
	workerDone := make(chan int, 1)
	go func() {
		code, _, _ := execute(t, wctx, "worker", "--nats-url", ns.ClientURL(), "--registry", reg.Addr(),
			"--http-addr", httpAddr, "--slots", "3", "--log-format", "json")
		workerDone <- code
	}()
	defer func() {
		stopWorker()
		<-workerDone
	}()
	hctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, ok := waitHTTP(hctx, "http://"+httpAddr+"/readyz"); !ok {
		t.Fatal("worker never became ready")
	}

	var reports []proto.Report
	for _, args := range [][]string{
		{"--confirm", "--keep-regex", "_4\\.19_", "--run-id", "metrics-1"},
		{"--ttl-days", "1", "--run-id", "metrics-dry"}, // newer tags are eligible again, dry
	} {
		report := filepath.Join(t.TempDir(), "report.json")
		args = append([]string{"coordinator", "--nats-url", ns.ClientURL(), "--registry", reg.Addr(), "--plain-http",
			"--repository", repo, "--report", report, "--http-addr", "", "--log-format", "json"}, args...)
		if code, out, errOut := execute(t, t.Context(), args...); code != 0 {
			t.Fatalf("%v: exit code %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
		reports = append(reports, readReport(t, report))
	}
	var sum proto.Counters
	for _, r := range reports {
		sum.Add(r.Tags)
	}
	dry := reports[1].Tags
	if sum.Deleted == 0 || dry.Eligible == 0 || sum.Invalid == 0 || sum.Kept == 0 {
		t.Fatalf("reports %+v: the test needs deletes, dry-run eligible, invalid and kept tags", reports)
	}

	// The coordinator ends when the last shard record is done; the worker lets go of the
	// shard (acks it) just after. Its counters were all recorded before the record was.
	var body string
	for {
		var ok bool
		if body, ok = waitHTTP(hctx, "http://"+httpAddr+"/metrics"); !ok {
			t.Fatal("worker /metrics did not answer")
		}
		if scrape(t, body, telemetry.MetricShardsInFlight) == 0 || hctx.Err() != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	kept := func(reasons ...telemetry.KeepReason) (n float64) {
		for _, r := range reasons {
			n += scrape(t, body, telemetry.MetricTagsKept+`{reason="`+string(r)+`"}`)
		}
		return n
	}
	var failed float64
	for _, r := range telemetry.FailReasons {
		failed += scrape(t, body, telemetry.MetricTagsFailed+`{reason="`+string(r)+`"}`)
	}
	for _, c := range []struct {
		what      string
		got, want float64
	}{
		{"scanned", scrape(t, body, telemetry.MetricTagsScanned), float64(sum.Scanned)},
		{"deleted", scrape(t, body, telemetry.MetricTagsDeleted+`{result="deleted"}`), float64(sum.Deleted)},
		{"already gone", scrape(t, body, telemetry.MetricTagsDeleted+`{result="already_gone"}`), float64(sum.AlreadyGone)},
		{"failed", failed, float64(sum.DeleteFailed)},
		{"kept by the policy", kept(telemetry.KeptNotPrune, telemetry.KeptTooNew, telemetry.KeptKeepRule, telemetry.KeptPreserved, telemetry.KeptOther), float64(sum.Kept)},
		{"kept by a keep rule (some)", min(kept(telemetry.KeptKeepRule), 1), 1},
		{"invalid", kept(telemetry.KeptInvalidTime), float64(sum.Invalid)},
		{"dry run", kept(telemetry.KeptDryRun), float64(dry.Eligible)},
		{"delete cap", kept(telemetry.KeptDeleteCap), 0},
		{"shards in flight", scrape(t, body, telemetry.MetricShardsInFlight), 0},
		// Every delete reached the registry once and was accepted; lists were timed.
		{"delete requests accepted", scrape(t, body, telemetry.MetricRequests+`{code="202",op="delete"}`), float64(sum.Deleted)},
		{"list requests timed", scrape(t, body, telemetry.MetricRequestDuration+`_count{op="list"}`),
			scrape(t, body, telemetry.MetricRequests+`{code="200",op="list"}`)},
		{"some list requests", min(scrape(t, body, telemetry.MetricRequests+`{code="200",op="list"}`), 1), 1},
		{"429s", scrape(t, body, telemetry.MetricRateLimited+`{op="list"}`) + scrape(t, body, telemetry.MetricRateLimited+`{op="delete"}`), 0},
		{"request rate (unlimited)", scrape(t, body, telemetry.MetricRequestRate), 0},
	} {
		if c.got != c.want {
			t.Errorf("worker metrics: %s = %v, the reports say %v", c.what, c.got, c.want)
		}
	}
}
