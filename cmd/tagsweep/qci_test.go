package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// The QCI scenarios: the simulated Quay holds prune tags and about twenty release
// payloads in every state (preserved, unpreserved, partially preserved, multi-arch, with a
// component in another repository, removal requests, orphan markers and components), behind
// Quay-style token auth, and tagsweep runs through its command line as operators would.

const (
	qciRepo      = "openshift/ci"
	qciAlias     = "quay-proxy.ci.openshift.org/openshift/ci"
	qciToken     = "quay-Oauth-Token-5c2e9f1a7b3d"
	qciRobot     = "openshift+qci_pruner"
	qciRobotPass = "robot-Pass-Word-81d4c6e0a2"
)

// qci is one scenario's registry and what a correct run must leave.
type qci struct {
	srv *sim.Server
	fam *sim.PayloadFamily
	// first and last are the prune rules of the first and the latest run: their cutoffs
	// differ by the time between them, so a tag the first kept the latest may delete.
	first, last *policy.Rules
	docker      string // docker config with the robot's login
	secrets     []string
}

func startQCI(t *testing.T, cfg sim.Config) *qci {
	t.Helper()
	clearEnv(t)
	cfg.APIToken = qciToken
	if cfg.Auth == nil {
		cfg.Auth = &sim.Auth{}
	}
	cfg.Auth.Users = map[string]string{qciRobot: qciRobotPass, quayTokenUser: qciToken}
	srv, err := sim.Start(t.Context(), "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	end := time.Now().UTC().Add(-time.Hour)
	fam, err := srv.Load(qciRepo, sim.GenConfig{Seed: 5, Tags: 1500, Days: 15, End: end}, &sim.PayloadConfig{Seed: 9, Count: 22})
	if err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte(qciRobot + ":" + qciRobotPass))
	docker := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(docker, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, srv.Addr(), auth), 0o600); err != nil {
		t.Fatal(err)
	}
	return &qci{srv: srv, fam: fam, docker: docker, secrets: []string{qciToken, qciRobotPass, auth}}
}

// run runs tagsweep against the scenario's registry and returns its exit code, output and
// report. token adds the OAuth token (QUAY_OAUTH_TOKEN); the robot's docker config
// (QUAY_DOCKERCONFIGJSON_PATH) is always given.
func (q *qci) run(t *testing.T, token bool, args ...string) (int, string, runReport) {
	t.Helper()
	t.Setenv("QUAY_DOCKERCONFIGJSON_PATH", q.docker)
	if token {
		t.Setenv("QUAY_OAUTH_TOKEN", qciToken)
	} else {
		t.Setenv("QUAY_OAUTH_TOKEN", "")
	}
	report := filepath.Join(t.TempDir(), "report.json")
	args = append([]string{"run", "--registry", q.srv.Addr(), "--plain-http", "--repository", qciRepo,
		"--repository-alias", qciAlias, "--ttl", "5d", "--workers", "2", "--slots", "3", "--report", report,
		"--log-format", "json", "--log-level", "debug"}, args...)
	code, out, errOut := execute(t, t.Context(), args...)
	all := out + errOut
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatalf("tagsweep %s: no report (exit %d): %v\n%s", strings.Join(args, " "), code, err, all)
	}
	for _, s := range q.secrets {
		if strings.Contains(all, s) || strings.Contains(string(data), s) {
			t.Errorf("a credential (%.6s…) appears in the output or the report", s)
		}
	}
	var r runReport
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	p := policy.Defaults()
	p.Cutoff = r.Cutoff
	if q.last, err = policy.New(p); err != nil {
		t.Fatal(err)
	}
	if q.first == nil {
		q.first = q.last
	}
	return code, all, r
}

// tags maps every tag of the repository to its digest.
func (q *qci) tags() map[string]string {
	out := map[string]string{}
	for _, tag := range q.srv.Tags(qciRepo) {
		out[tag], _ = q.srv.TagDigest(qciRepo, tag)
	}
	return out
}

// want is the preservation a correct run reports, from the generated cases.
func (q *qci) want(dry bool) proto.PreserveCounters {
	var w proto.PreserveCounters
	for _, c := range q.fam.Cases {
		switch c.State {
		case sim.PayloadUnpreserved, sim.PayloadPartiallyPreserved, sim.PayloadMultiArch, sim.PayloadForeignComponent:
			w.NeedingPreservation++
			w.Preserved++
			for _, comp := range c.Components {
				if comp.Repo == qciRepo && !slices.Contains(c.Initial, sim.ComponentTag(c.Version, comp.Name)) {
					w.ComponentsTagged++
				}
			}
		case sim.PayloadRemoval, sim.PayloadRemovalUnpreserved, sim.PayloadRemovalPartial, sim.PayloadOrphanRequest:
			w.RemovalRequests++
			w.RemovalTargeted += int64(len(c.Initial))
		case sim.PayloadOrphanMarker, sim.PayloadOrphanComponents:
			w.Orphans += int64(len(c.Initial))
		}
		w.FamilyTags += int64(len(c.Initial))
	}
	if !dry {
		w.RemovalRemoved, w.OrphansRemoved = w.RemovalTargeted, w.Orphans
	}
	return w
}

// checkEndState checks every tag: the payload families exactly as wanted (each tag at its
// digest, nothing else of the family), every prune tag the rule deletes gone, every other
// tag still there at its digest.
func (q *qci) checkEndState(t *testing.T, before map[string]string) {
	t.Helper()
	for _, d := range q.fam.Check(q.srv.Registry) {
		t.Errorf("payload family: %s", d)
	}
	after := q.tags()
	for tag, d := range before {
		if proto.PayloadFamily(tag) {
			continue
		}
		got, ok := after[tag]
		switch {
		case q.first.Decide(tag).Verdict == policy.Delete && ok:
			t.Errorf("%s is eligible and still there", tag)
		case q.last.Decide(tag).Verdict != policy.Delete && !ok:
			t.Errorf("%s was deleted, but the prune rule keeps it", tag)
		case ok && got != d:
			t.Errorf("%s moved from %s to %s", tag, d, got)
		}
	}
	for tag := range after {
		if _, ok := before[tag]; !ok && !proto.PayloadFamily(tag) {
			t.Errorf("%s appeared", tag)
		}
	}
	if n := q.srv.Stats().DigestDeletes; n != 0 {
		t.Errorf("%d deletes by digest", n)
	}
}

func checkPreservation(t *testing.T, what string, got *proto.PreserveCounters, want proto.PreserveCounters) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: the report has no preservation", what)
	}
	if *got != want {
		t.Errorf("%s: preservation = %+v\nwant %+v", what, *got, want)
	}
}

// TestQCIScenario: a dry run changes nothing and reports what the confirmed run then does;
// the confirmed run (v2 deletes, the robot's docker config) leaves exactly the wanted tags.
func TestQCIScenario(t *testing.T) {
	q := startQCI(t, sim.Config{})
	before := q.tags()

	code, out, dry := q.run(t, false)
	if code != 0 {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}
	if after := q.tags(); !maps.Equal(after, before) {
		t.Fatalf("the dry run changed the registry")
	}
	checkPreservation(t, "dry run", dry.Preservation, q.want(true))
	for _, line := range []string{"Release payloads needing preservation: ", "Release payloads that would be preserved: ",
		"Removal requests processed: ", "Release payload tags targeted for removal: "} {
		if !strings.Contains(out, "\n"+line) {
			t.Errorf("dry-run summary lacks %q", line)
		}
	}

	code, out, confirmed := q.run(t, false, "--confirm")
	if code != 0 {
		t.Fatalf("confirmed run: exit %d\n%s", code, out)
	}
	q.checkEndState(t, before)
	checkPreservation(t, "confirmed run", confirmed.Preservation, q.want(false))
	if want := q.want(false); summaryNumber(t, out, "Release payloads preserved") != want.Preserved ||
		summaryNumber(t, out, "Release payload tags successfully removed") != want.RemovalRemoved {
		t.Errorf("summary lines disagree with the report:\n%s", out)
	}
	// The dry run reported the same counts the confirmed run acted on.
	d, c := *dry.Preservation, *confirmed.Preservation
	if d.NeedingPreservation != c.NeedingPreservation || d.Preserved != c.Preserved || d.RemovalRequests != c.RemovalRequests ||
		d.RemovalTargeted != c.RemovalTargeted || d.Orphans != c.Orphans || dry.Tags.Eligible != confirmed.Tags.Eligible {
		t.Errorf("dry run %+v / %+v\nconfirmed %+v / %+v", d, dry.Tags, c, confirmed.Tags)
	}
	if confirmed.Tags.DeleteFailed != 0 || confirmed.Tags.Deleted != confirmed.Tags.Eligible {
		t.Errorf("prune tags = %+v", confirmed.Tags)
	}
	st := q.srv.Stats()
	if st.Requests[sim.KindAPIDelete]+st.Requests[sim.KindAPIPut] != 0 {
		t.Errorf("the default run used Quay API v1: %v", st.Requests)
	}

	// A second run finds everything done: nothing to preserve, nothing to remove.
	code, out, again := q.run(t, false, "--confirm")
	if code != 0 || again.Preservation.NeedingPreservation != 0 || again.Preservation.RemovalRequests != 0 ||
		again.Preservation.Orphans != 0 || again.Tags.DeleteFailed != 0 {
		t.Errorf("second run: exit %d, %+v, %+v\n%s", code, again.Preservation, again.Tags, out)
	}
	q.checkEndState(t, before)
}

// TestQCIQuayV1: --delete-api quay-v1 (deletes and tag writes through API v1 with the OAuth
// token) reaches the same end state.
func TestQCIQuayV1(t *testing.T) {
	q := startQCI(t, sim.Config{})
	before := q.tags()
	code, out, r := q.run(t, true, "--confirm", "--delete-api", "quay-v1")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	q.checkEndState(t, before)
	checkPreservation(t, "quay-v1", r.Preservation, q.want(false))
	st := q.srv.Stats()
	if st.Requests[sim.KindAPIDelete] == 0 || st.Requests[sim.KindAPIPut] == 0 || st.Requests[sim.KindDelete] != 0 {
		t.Errorf("quay-v1 did not delete and tag through API v1: %v", st.Requests)
	}
}

// TestQCIPageCache: with Quay's 120 s tags/list cache, a second run right after the first
// lists tags the first deleted; their deletes answer 404 and count as already gone, never as
// failures, and the end state is unchanged.
func TestQCIPageCache(t *testing.T) {
	q := startQCI(t, sim.Config{ListCacheTTL: 120 * time.Second})
	before := q.tags()
	if code, out, _ := q.run(t, false, "--confirm"); code != 0 {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	code, out, r := q.run(t, false, "--confirm")
	if code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, out)
	}
	if r.Tags.AlreadyGone == 0 || r.Tags.DeleteFailed != 0 {
		t.Errorf("second run tags = %+v, want re-listed deletes counted as already gone", r.Tags)
	}
	if p := r.Preservation; p == nil || p.RemovalFailed != 0 || p.PreserveFailed != 0 || p.RemovalRemoved != p.RemovalTargeted {
		t.Errorf("second run preservation = %+v, want cached removals counted as removed", p)
	}
	q.checkEndState(t, before)
}

// TestQCITokenExpiry: a run through many token lifetimes completes. A token is good for a
// number of requests rather than a time, so that it expires all through the run however
// loaded the machine: every shard meets expired tokens, and none may fail for it.
func TestQCITokenExpiry(t *testing.T) {
	q := startQCI(t, sim.Config{Auth: &sim.Auth{TokenRequests: 150}})
	before := q.tags()
	code, out, r := q.run(t, false, "--confirm", "--slots", "1", "--workers", "1")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, out)
	}
	if st := q.srv.Stats(); st.TokensRefused < 3 {
		t.Errorf("%d requests refused for an expired token (%d tokens issued): the run did not outlive its tokens",
			st.TokensRefused, st.TokensIssued)
	}
	q.checkEndState(t, before)
	// A token that expires in the middle of a preserve shard fails that attempt (regclient
	// does not log in again on a 401) and the shard is redelivered. The retry finds the
	// component tags the failed attempt wrote and counts only those it writes itself (a
	// shard's result is its last attempt's; worker TestPreservationShards), so here
	// ComponentsTagged may fall short of the tags written. The end state above is exact.
	want := q.want(false)
	got := r.Preservation
	if got != nil && got.ComponentsTagged > 0 && got.ComponentsTagged <= want.ComponentsTagged {
		t.Logf("components tagged by the last attempts: %d of %d", got.ComponentsTagged, want.ComponentsTagged)
		want.ComponentsTagged = got.ComponentsTagged
	}
	checkPreservation(t, "token expiry", got, want)
}
