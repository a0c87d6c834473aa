package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// lsNamespace serves a generated namespace with family and odd tags, and returns the server,
// its tags sorted, and the expected number of eligible tags at a TTL of 3 days from now.
func lsNamespace(t *testing.T) (*sim.Server, []string) {
	t.Helper()
	srv, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	all := sim.Generate(sim.GenConfig{Seed: 9, Tags: 1500, Days: 6, End: time.Now(), Odd: true})
	all = append(all, "rc_payload__4.20.1", "preserved__rc_payload__4.20.1", "rc_payload__4.20.1__component__cli")
	if err := srv.AddTags("openshift/ci", "", all...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(all)
	return srv, all
}

// checkInventory checks an ls JSON document against the namespace it listed, and that the
// registry saw no DELETE.
func checkInventory(t *testing.T, srv *sim.Server, all []string, doc []byte) {
	t.Helper()
	var inv inventoryReport
	if err := json.Unmarshal(doc, &inv); err != nil {
		t.Fatalf("ls -o json: %v\n%s", err, doc)
	}
	p := policy.Defaults()
	p.Cutoff = inv.Cutoff
	rules, err := policy.New(p)
	if err != nil {
		t.Fatal(err)
	}
	var eligible, dated int64
	for _, tag := range all {
		d := rules.Decide(tag)
		if d.Verdict == policy.Delete {
			eligible++
		}
		if !d.Time.IsZero() {
			dated++
		}
	}
	if inv.Tags != int64(len(all)) || inv.Eligible != eligible || inv.PruneTags != dated || eligible == 0 ||
		inv.Families.Payloads != 1 || inv.Families.Markers != 1 || inv.Families.Components != 1 || inv.Shards.Failed != 0 {
		t.Errorf("inventory %+v; want %d tags, %d eligible, %d prune tags, one of each family role", inv, len(all), eligible, dated)
	}
	if got := srv.Stats().Requests[sim.KindDelete]; got != 0 || len(srv.DeletedTags("openshift/ci")) != 0 {
		t.Fatalf("ls sent %d DELETE requests", got)
	}
}

// TestLsLocal: ls in one process prints the inventory as JSON, writes the same to --report,
// and with --names prints every tag, sorted, on stdout.
func TestLsLocal(t *testing.T) {
	clearEnv(t)
	srv, all := lsNamespace(t)
	report := filepath.Join(t.TempDir(), "inventory.json")
	code, out, errOut := execute(t, t.Context(), "ls", "--registry", srv.Addr(), "--plain-http", "--repository", "openshift/ci",
		"--ttl", "3d", "--workers", "2", "--split-after", "100ms", "-o", "json", "--names", "--report", report, "--log-format", "json")
	if code != 0 {
		t.Fatalf("ls: exit code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); !slices.Equal(got, all) {
		t.Errorf("ls --names printed %d lines, want the %d tags sorted (first %q)", len(got), len(all), got[:min(3, len(got))])
	}
	doc, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	checkInventory(t, srv, all, doc)
	i := strings.Index(errOut, "{\n")
	if i < 0 {
		t.Fatalf("ls --names -o json: no JSON inventory on stderr:\n%s", errOut)
	}
	var a, b inventoryReport
	if err := json.NewDecoder(strings.NewReader(errOut[i:])).Decode(&a); err != nil {
		t.Fatalf("ls --names -o json: stderr inventory: %v", err)
	}
	if err := json.Unmarshal(doc, &b); err != nil || a.Tags != b.Tags || a.Eligible != b.Eligible {
		t.Errorf("stderr inventory %+v differs from the report %+v (%v)", a, b, err)
	}

	// The table names the same totals.
	code, out, errOut = execute(t, t.Context(), "ls", "--registry", srv.Addr(), "--plain-http", "--repository", "openshift/ci",
		"--ttl", "3d", "--workers", "2", "--log-format", "json")
	if code != 0 || !strings.Contains(out, " tags\n") || !strings.Contains(out, "Prune tags per day:") {
		t.Errorf("ls table: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestLsDistributed: ls against an external NATS plans and tracks the inventory, and a worker
// command lists it.
func TestLsDistributed(t *testing.T) {
	clearEnv(t)
	srv, all := lsNamespace(t)
	ns := startNATS(t)
	wctx, stopWorker := context.WithCancel(t.Context())
	defer stopWorker()
	workerDone := make(chan int, 1)
	go func() {
		code, _, _ := execute(t, wctx, "worker", "--nats-url", ns.ClientURL(), "--registry", srv.Addr(), "--plain-http",
			"--http-addr", "", "--slots", "2", "--log-format", "json")
		workerDone <- code
	}()
	waitWorker(t, ns)
	code, out, errOut := execute(t, t.Context(), "ls", "--nats-url", ns.ClientURL(), "--registry", srv.Addr(), "--plain-http",
		"--repository", "openshift/ci", "--ttl", "3d", "-o", "json", "--log-format", "json")
	if code != 0 {
		t.Fatalf("ls: exit code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	checkInventory(t, srv, all, []byte(out))
	stopWorker()
	if code := <-workerDone; code != 0 {
		t.Errorf("worker exit code %d", code)
	}
}
