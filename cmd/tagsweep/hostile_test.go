package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/registrytest"
	"github.com/tagsweep/tagsweep/registry/sim"
	"github.com/tagsweep/tagsweep/test/invariant"
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

// hostileScenario is a namespace of prune tags and two preserved release payloads, served
// behind a hostile registry.
type hostileScenario struct {
	srv  *sim.Server
	host string
	tags []string // every tag before the run
}

// The two preserved payloads of every hostile scenario.
var hostileVersions = []string{"4.18.0-0.ci-2026-12-01-000000", "4.19.0-0.ci-2026-12-02-000000"}

func newHostileScenario(t *testing.T, h registrytest.Hostile) *hostileScenario {
	t.Helper()
	tags := sim.Generate(sim.GenConfig{Seed: 9, Tags: 300, Days: 10, End: time.Now(), Floating: 20, Signatures: -1})
	for _, v := range hostileVersions {
		tags = append(tags, preserve.PayloadTag(v), preserve.MarkerTag(v), preserve.ComponentTag(v, "cli"), preserve.ComponentTag(v, "tests"))
	}
	srv, host := startHostileSim(t, tags, h)
	return &hostileScenario{srv: srv, host: host, tags: tags}
}

// run prunes the scenario with a confirmed run (TTL 3 days, one delivery per shard so that a
// failure is final at once) and checks the invariant: nothing but eligible tags deleted, and
// every eligible tag deleted if the run exited 0. It returns the exit code and output.
func (s *hostileScenario) run(t *testing.T) (code int, out string) {
	t.Helper()
	report := filepath.Join(t.TempDir(), "report.json")
	args := []string{"run", "--registry", s.host, "--plain-http", "--repository", hostileRepo, "--confirm",
		"--ttl", "3d", "--workers", "1", "--slots", "2", "--max-deliver", "1", "--report", report, "--log-format", "json"}
	code, out, errOut := execute(t, t.Context(), args...)
	out += errOut
	r := readReport(t, report)
	p := policy.Defaults()
	p.Cutoff = r.Cutoff
	if !invariant.Check(t, invariant.State{Policy: p, Initial: s.tags, Deleted: s.srv.DeletedTags(hostileRepo),
		Remaining: s.srv.Tags(hostileRepo), ExitOK: code == 0}) {
		t.Logf("exit %d, report %+v\n%s", code, r, out)
	}
	return code, out
}

// lastIn reports whether a list request asks for the tags after a key starting with prefix.
func lastIn(req registrytest.ListRequest, prefix string) bool {
	return strings.HasPrefix(req.Last, prefix)
}

// TestHostileListings runs whole runs against registries that lie in their listings. Each must
// either finish exactly (exit 0, every eligible tag deleted) or fail (exit 2), never delete a
// tag that is not eligible, and never exit 0 having left eligible tags behind.
func TestHostileListings(t *testing.T) {
	v2 := preserve.PayloadTag(hostileVersions[1])
	tests := []struct {
		name     string
		list     func(req registrytest.ListRequest, tags []string, link bool) ([]string, bool)
		wantCode int
		wantOut  string // in the output when the run fails
	}{
		{
			// A page that is empty but says more follows: the end of no shard is proven.
			name: "empty pages with Link",
			list: func(req registrytest.ListRequest, tags []string, link bool) ([]string, bool) {
				if req.N > 1 {
					return nil, true
				}
				return tags, link
			},
			wantCode: exitFailed, wantOut: "registry listing is incomplete",
		},
		{
			// Pages capped at 3 tags, never a Link: a short page proves nothing, so the
			// listing goes on after it and finds everything.
			name: "pages capped at 3 without Link",
			list: func(req registrytest.ListRequest, tags []string, _ bool) ([]string, bool) {
				return tags[:min(3, len(tags))], false
			},
			wantCode: 0,
		},
		{
			// Prune pages that are empty and end the listing, where planning saw tags: each
			// key shows its tags to planning's probe and nothing to the worker after it.
			name: "empty prune pages where planning saw tags",
			list: answeredOnce(), wantCode: exitFailed, wantOut: "where planning saw",
		},
		{
			// Release payload pages cut to one tag without Link: a listing that stopped
			// there would take the second payload's marker and components for orphans.
			name: "payload pages truncated",
			list: func(req registrytest.ListRequest, tags []string, link bool) ([]string, bool) {
				if lastIn(req, proto.PayloadPrefix) {
					return tags[:min(1, len(tags))], false
				}
				return tags, link
			},
			wantCode: 0,
		},
		{
			// A listing that leaves a payload out altogether, with every page well formed:
			// only asking for the payload itself shows it exists.
			name: "payload left out of every listing",
			list: func(req registrytest.ListRequest, tags []string, link bool) ([]string, bool) {
				return slices.DeleteFunc(tags, func(t string) bool { return t == v2 }), link
			},
			wantCode: exitFailed, wantOut: "the payload exists, although the listing did not show it",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			s := newHostileScenario(t, registrytest.Hostile{List: tc.list})
			code, out := s.run(t)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\n%s", code, tc.wantCode, out)
			}
			if tc.wantOut != "" && !strings.Contains(out, tc.wantOut) {
				t.Errorf("output does not say %q:\n%s", tc.wantOut, out)
			}
			for _, v := range hostileVersions {
				for _, tag := range []string{preserve.PayloadTag(v), preserve.MarkerTag(v), preserve.ComponentTag(v, "cli")} {
					if !s.srv.HasTag(hostileRepo, tag) {
						t.Errorf("%s was deleted: its payload exists", tag)
					}
				}
			}
		})
	}
}

// TestResumeRefusesOtherSettings: a confirmed run interrupted during planning is resumed with
// other settings. The resume is refused (exit 1), naming every difference, and deletes
// nothing; a resume giving only the run ID (and data dir) takes the recorded settings, says
// so with a DELETING banner, and deletes exactly what the recorded policy makes eligible.
func TestResumeRefusesOtherSettings(t *testing.T) {
	clearEnv(t)
	now := time.Now()
	tags := sim.Generate(sim.GenConfig{Seed: 4, Tags: 300, Days: 15, End: now, Floating: 20, Signatures: -1})
	keep := now.AddDate(0, 0, -12).UTC().Format("20060102150405") + "_prune_ci_keepme_latest"
	tags = append(tags, keep)
	var (
		holding  atomic.Bool // planning's probes are held
		held     = make(chan struct{}, 1)
		released atomic.Bool
	)
	holding.Store(true)
	srv, host := startHostileSim(t, tags, registrytest.Hostile{Hold: func(req registrytest.ListRequest) bool {
		if !holding.Load() || req.N <= 2 { // planning's probes, after the keyset probe's two
			return false
		}
		select {
		case held <- struct{}{}:
		default:
		}
		return !released.Load()
	}})
	dataDir := t.TempDir()
	base := []string{"run", "--run-id", "resume-r", "--data-dir", dataDir, "--workers", "1", "--log-format", "json"}
	first := append(slices.Clone(base), "--registry", host, "--plain-http", "--repository", hostileRepo, "--confirm")

	// 1. A confirmed run, interrupted while it plans.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() {
		code, _, _ := execute(t, ctx, first...)
		done <- code
	}()
	select {
	case <-held:
	case code := <-done:
		t.Fatalf("the first run ended (exit %d) before planning was held", code)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("planning never reached the registry")
	}
	cancel()
	if code := <-done; code != exitFailed {
		t.Fatalf("interrupted run: exit %d, want %d", code, exitFailed)
	}
	if d := srv.DeletedTags(hostileRepo); len(d) != 0 {
		t.Fatalf("the interrupted run deleted %d tags during planning", len(d))
	}
	released.Store(true)

	// 2. Resumes with other settings: refused, every difference named, nothing deleted.
	refused := []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{args: []string{"--registry", host, "--plain-http", "--repository", hostileRepo, "--ttl-days", "30", "--keep-regex", "keepme"},
			want: []string{"cutoff: given TTL 720h0m0s", "keep patterns: given [\"keepme\"], recorded []"}},
		{args: []string{"--confirm=false"}, want: []string{"mode: given DRY RUN, recorded DELETING"}},
		{env: map[string]string{"TAGSWEEP_MAX_DELETES": "10", "TAGSWEEP_TAG_TIMEZONE": "Europe/Prague"},
			want: []string{"delete cap: given 10, recorded none", "time zone: given Europe/Prague, recorded UTC"}},
		{args: []string{"--preserve-payloads=false", "--repository", "other/repo"},
			want: []string{"release payload preservation: given off, recorded on", "repositories: given [other/repo], recorded [openshift/ci]"}},
	}
	for _, r := range refused {
		for k, v := range r.env {
			t.Setenv(k, v)
		}
		code, out, errOut := execute(t, t.Context(), append(slices.Clone(base), r.args...)...)
		for k := range r.env {
			os.Unsetenv(k) // restored by t.Setenv at the end of the test
		}
		if code != exitError {
			t.Fatalf("resume with %q %v: exit %d, want %d\n%s\n%s", r.args, r.env, code, exitError, out, errOut)
		}
		for _, w := range append(r.want, "settings differ from the recorded run's") {
			if !strings.Contains(errOut, w) {
				t.Errorf("resume with %q %v: stderr does not say %q:\n%s", r.args, r.env, w, errOut)
			}
		}
		if d := srv.DeletedTags(hostileRepo); len(d) != 0 {
			t.Fatalf("a refused resume deleted %d tags, first %q", len(d), d[0])
		}
	}

	// 3. The run ID alone: the recorded settings, said plainly.
	report := filepath.Join(t.TempDir(), "report.json")
	code, out, errOut := execute(t, t.Context(), append(slices.Clone(base), "--report", report)...)
	if code != 0 {
		t.Fatalf("resume with the run ID alone: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, w := range []string{"Resuming run resume-r with the settings it was recorded with:", "DELETING: registry " + host} {
		if !strings.Contains(out, w) {
			t.Errorf("stdout does not say %q:\n%s", w, out)
		}
	}
	r := readReport(t, report)
	p := policy.Defaults()
	p.Cutoff = r.Cutoff
	if got := r.StartedAt.Sub(r.Cutoff); got != 5*24*time.Hour {
		t.Errorf("resumed run's TTL = %s, want the recorded default 120h", got)
	}
	invariant.Check(t, invariant.State{Policy: p, Initial: tags, Deleted: srv.DeletedTags(hostileRepo),
		Remaining: srv.Tags(hostileRepo), ExitOK: true})
	if !slices.Contains(srv.DeletedTags(hostileRepo), keep) {
		t.Errorf("%s was kept: the refused resume's --keep-regex leaked into the run", keep)
	}
}

// answeredOnce returns a List rewrite under which the prune pages (after keys below "3", n
// above the keyset probe's 2) show their tags the first time their key is asked, and are empty
// and end the listing every time after: a listing that lost its tags between planning and the
// workers.
func answeredOnce() func(registrytest.ListRequest, []string, bool) ([]string, bool) {
	var mu sync.Mutex
	asked := make(map[string]bool)
	return func(req registrytest.ListRequest, tags []string, link bool) ([]string, bool) {
		if req.N <= 2 || req.Last >= "3" {
			return tags, link
		}
		mu.Lock()
		defer mu.Unlock()
		if asked[req.Last] {
			return nil, false
		}
		asked[req.Last] = true
		return tags, link
	}
}
