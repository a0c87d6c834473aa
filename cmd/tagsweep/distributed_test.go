package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testnet"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/registry/sim"
	"github.com/tagsweep/tagsweep/telemetry"
)

// waitHTTP polls url until it answers 200 or ctx ends, returning the last body.
func waitHTTP(ctx context.Context, url string) (string, bool) {
	for ctx.Err() == nil {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body), true
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return "", false
}

// waitWorker waits until a worker pulls from the shard queue: its setup (ledger.Open) is
// over, so the coordinator does not race it.
func waitWorker(t *testing.T, ns *natsserver.Server) {
	t.Helper()
	nc, err := ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := waitPulling(t.Context(), js, 1, 20*time.Second); err != nil {
		t.Fatalf("worker not pulling: %v", err)
	}
}

// TestDistributed runs the production shape: an external NATS, a long-running worker
// command and a one-shot coordinator command, each with its own configuration.
func TestDistributed(t *testing.T) {
	clearEnv(t)
	const repo = "openshift/ci"
	ns := startNATS(t)
	reg, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if err := reg.AddTags(repo, "", sim.Generate(sim.GenConfig{Seed: 3, Tags: 1500, Days: 10, End: time.Now()})...); err != nil {
		t.Fatal(err)
	}
	before := reg.Len(repo)

	// The worker pins the registry, as the deployment's shared config file does.
	httpAddr := testnet.FreeAddrs(t, 1)[0]
	wctx, stopWorker := context.WithCancel(t.Context())
	defer stopWorker()
	type result struct {
		code        int
		out, errOut string
	}
	workerDone := make(chan result, 1)
	go func() {
		code, out, errOut := execute(t, wctx, "worker", "--nats-url", ns.ClientURL(), "--registry", reg.Addr(),
			"--http-addr", httpAddr, "--slots", "2", "--log-format", "json")
		workerDone <- result{code, out, errOut}
	}()
	hctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, ok := waitHTTP(hctx, "http://"+httpAddr+"/readyz"); !ok {
		stopWorker()
		r := <-workerDone
		t.Fatalf("worker never became ready on %s (exit %d)\n%s", httpAddr, r.code, r.errOut)
	}

	waitWorker(t, ns)

	report := filepath.Join(t.TempDir(), "report.json")
	code, out, errOut := execute(t, t.Context(), "coordinator", "--nats-url", ns.ClientURL(), "--registry", reg.Addr(),
		"--plain-http", "--repository", repo, "--confirm", "--run-id", "nightly-1", "--report", report,
		"--http-addr", "", "--log-format", "json")
	if code != 0 {
		t.Fatalf("coordinator: exit code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	r := readReport(t, report)
	if r.RunID != "nightly-1" || r.Tags.Deleted == 0 || int64(before-reg.Len(repo)) != r.Tags.Deleted {
		t.Errorf("report = %+v; registry went from %d to %d tags", r, before, reg.Len(repo))
	}
	body, ok := waitHTTP(hctx, "http://"+httpAddr+"/metrics")
	if !ok {
		t.Errorf("worker /metrics did not answer")
	}
	if got := scrape(t, body, telemetry.MetricTagsScanned); got < float64(r.Tags.Scanned) {
		t.Errorf("worker %s = %v, want at least the report's %d", telemetry.MetricTagsScanned, got, r.Tags.Scanned)
	}
	if got := scrape(t, body, telemetry.MetricTagsDeleted+`{result="deleted"}`); got != float64(r.Tags.Deleted) {
		t.Errorf("worker deleted metric = %v, want the report's %d", got, r.Tags.Deleted)
	}

	// status reads what the run left behind.
	code, out, _ = execute(t, t.Context(), "status", "--nats-url", ns.ClientURL(), "nightly-1")
	if code != 0 || !strings.Contains(out, "Run:          nightly-1 (done, confirm)") {
		t.Errorf("status nightly-1: exit %d\n%s", code, out)
	}

	// The coordinator holds a resumed run to its record: other settings are refused, the run
	// ID alone takes the record's and says so.
	code, _, errOut = execute(t, t.Context(), "coordinator", "--nats-url", ns.ClientURL(), "--run-id", "nightly-1",
		"--ttl-days", "30", "--http-addr", "", "--log-format", "json")
	if code != exitError || !strings.Contains(errOut, "settings differ from the recorded run's") || !strings.Contains(errOut, "cutoff: given TTL 720h0m0s") {
		t.Errorf("coordinator resuming nightly-1 with --ttl-days 30: exit %d, want %d and the difference named\n%s", code, exitError, errOut)
	}
	code, out, errOut = execute(t, t.Context(), "coordinator", "--nats-url", ns.ClientURL(), "--run-id", "nightly-1",
		"--http-addr", "", "--log-format", "json")
	if code != 0 || !strings.Contains(out, "Resuming run nightly-1 with the settings it was recorded with:\n  DELETING: registry "+reg.Addr()) {
		t.Errorf("coordinator resuming nightly-1 with its run ID alone: exit %d, want 0 and the recorded settings\n%s\n%s", code, out, errOut)
	}

	stopWorker()
	select {
	case res := <-workerDone:
		if res.code != 0 {
			t.Errorf("worker stopped with exit code %d, want 0 (graceful)\n%s", res.code, res.errOut)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("worker did not stop after its context was cancelled")
	}
}
