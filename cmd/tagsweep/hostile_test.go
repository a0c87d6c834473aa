package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/registry/registrytest"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// hostileRepo is the repository the hostile-registry tests prune.
const hostileRepo = "openshift/ci"

// startHostileSim serves tags from a simulated registry behind a hostile one, and returns
// the simulated registry (to see what was deleted) and the hostile one's host:port.
func startHostileSim(t *testing.T, tags []string, h registrytest.Hostile) (*sim.Server, string) {
	t.Helper()
	srv, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.AddTags(hostileRepo, "", tags...); err != nil {
		t.Fatal(err)
	}
	return srv, registrytest.StartHostile(t, srv.Addr(), h)
}

// TestRunRefusesClockSkew: a registry whose Date header is years from this host's clock
// stops a confirmed run before it records anything: exit 1, both times shown, nothing
// deleted. Without the check the cutoff, fixed from this clock alone, would make every tag
// eligible if this clock were the wrong one.
func TestRunRefusesClockSkew(t *testing.T) {
	clearEnv(t)
	now := time.Now()
	tags := sim.Generate(sim.GenConfig{Seed: 3, Tags: 200, Days: 10, End: now, Floating: 20, Signatures: -1})
	registryDate := now.AddDate(-3, 0, 0) // the registry says: this host's clock is 3 years ahead
	srv, host := startHostileSim(t, tags, registrytest.Hostile{Date: registryDate})
	args := []string{"run", "--registry", host, "--plain-http", "--repository", hostileRepo, "--confirm",
		"--ttl-days", "1", "--workers", "1", "--log-format", "json"}

	code, out, errOut := execute(t, t.Context(), args...)
	if code != exitError {
		t.Fatalf("run against a registry 3 years behind: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitError, out, errOut)
	}
	for _, want := range []string{"clock", registryDate.UTC().Format("2006-01-02T15"), now.UTC().Format("2006-01-02T")} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr does not show %q:\n%s", want, errOut)
		}
	}
	if deleted := srv.DeletedTags(hostileRepo); len(deleted) != 0 {
		t.Errorf("deleted %d tags, want none: first %q", len(deleted), deleted[0])
	}

	// Within the allowed skew the same run goes ahead.
	srv, host = startHostileSim(t, tags, registrytest.Hostile{Date: now.Add(-2 * time.Minute)})
	args[2] = host
	if code, out, errOut := execute(t, t.Context(), args...); code != 0 || len(srv.DeletedTags(hostileRepo)) == 0 {
		t.Fatalf("run against a registry 2 minutes behind: exit %d with %d deletes, want 0 and some deletes\nstdout:\n%s\nstderr:\n%s",
			code, len(srv.DeletedTags(hostileRepo)), out, errOut)
	}
}
