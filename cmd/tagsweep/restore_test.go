package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// The restore scenarios: the QCI registry (prune tags, release payloads in every state)
// pruned by a confirmed run, then restored from the run's own store (--data-dir).

// restoreQCI starts the QCI scenario with every tenth tag moved to an image of its own, so
// that "every tag at its old digest" is not satisfied by one shared manifest.
func restoreQCI(t *testing.T, cfg sim.Config) *qci {
	t.Helper()
	q := startQCI(t, cfg)
	var digests []string
	for i := range 4 {
		d, err := q.srv.PushImage(qciRepo, fmt.Sprintf("restore-test-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	for i, tag := range q.srv.Tags(qciRepo) {
		if i%10 == 0 && !proto.PayloadFamily(tag) {
			if err := q.srv.AddTags(qciRepo, digests[(i/10)%len(digests)], tag); err != nil {
				t.Fatal(err)
			}
		}
	}
	return q
}

// restoreRun runs `tagsweep restore` of run against the store at dir and returns its exit
// code, output and report.
func (q *qci) restoreRun(t *testing.T, ctx context.Context, dir, run string, token bool, args ...string) (int, string, proto.RestoreReport) {
	t.Helper()
	t.Setenv("QUAY_DOCKERCONFIGJSON_PATH", q.docker)
	if token {
		t.Setenv("QUAY_OAUTH_TOKEN", qciToken)
		args = append(args, "--registry", q.srv.Addr())
	} else {
		t.Setenv("QUAY_OAUTH_TOKEN", "")
	}
	report := filepath.Join(t.TempDir(), "restore.json")
	args = append([]string{"restore", "--data-dir", dir, "--plain-http", "--report", report, "--log-format", "json"}, args...)
	args = append(args, run)
	code, out, errOut := execute(t, ctx, args...)
	all := out + errOut
	for _, s := range q.secrets {
		if strings.Contains(all, s) {
			t.Errorf("a credential (%.6s…) appears in the output", s)
		}
	}
	var r proto.RestoreReport
	if data, err := os.ReadFile(report); err == nil {
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatal(err)
		}
	}
	return code, all, r
}

// checkRestored fails unless every tag of before is there at its digest again, and every tag
// that was not there before is one a preservation pass writes (a component tag or a marker):
// restore puts back what the run deleted, not undoes what it wrote.
func (q *qci) checkRestored(t *testing.T, before map[string]string) {
	t.Helper()
	after := q.tags()
	for tag, d := range before {
		if got, ok := after[tag]; !ok {
			t.Errorf("%s was not restored", tag)
		} else if got != d {
			t.Errorf("%s restored at %s, was %s", tag, got, d)
		}
	}
	for tag := range after {
		if _, ok := before[tag]; !ok && !regexp.MustCompile(`^(preserved__rc_payload__|rc_payload__.*__component__)`).MatchString(tag) {
			t.Errorf("%s appeared, and is not a tag preservation writes", tag)
		}
	}
}

// restoreEvents reads the restore events stored under id in the store at dir.
func restoreEvents(t *testing.T, dir, id string) map[proto.Outcome]int {
	t.Helper()
	ns, err := natsserver.Start(natsserver.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nc, err := ns.Connect()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Bind(t.Context(), js, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[proto.Outcome]int{}
	for ev, err := range l.Audit(t.Context(), id) {
		if err != nil {
			t.Fatal(err)
		}
		out[ev.Outcome]++
	}
	return out
}

// TestRestoreRecordedDigests: a confirmed run with --record-digests, then restore --confirm
// from the run's store, gives back every tag the run deleted (prune tags and release
// payload removals) at its old digest; the dry run before changes nothing; a second restore
// puts nothing back.
func TestRestoreRecordedDigests(t *testing.T) {
	q := restoreQCI(t, sim.Config{TimeMachine: -1})
	before := q.tags()
	dir := t.TempDir()
	code, out, r := q.run(t, false, "--confirm", "--record-digests", "--data-dir", dir, "--run-id", "undo-me")
	if code != 0 || r.Tags.Deleted == 0 || r.Preservation == nil || r.Preservation.RemovalRemoved == 0 {
		t.Fatalf("run: exit %d, tags %+v, preservation %+v\n%s", code, r.Tags, r.Preservation, out)
	}
	deleted := len(before) - len(q.tags()) + int(r.Preservation.ComponentsTagged+r.Preservation.Preserved)
	afterRun := q.tags()

	code, out, dry := q.restoreRun(t, t.Context(), dir, "undo-me", false)
	if code != 0 || !dry.DryRun || !dry.DigestsRecorded || dry.Tags.Restored != int64(deleted) || dry.Tags.Failed != 0 {
		t.Fatalf("dry run: exit %d, report %+v, want %d tags that would be restored\n%s", code, dry, deleted, out)
	}
	if !maps.Equal(q.tags(), afterRun) {
		t.Fatal("the dry run changed the registry")
	}
	if !strings.Contains(out, "DRY RUN: nothing was restored.") || summaryNumber(t, out, "Tags that would be restored") != int64(deleted) {
		t.Errorf("dry-run summary:\n%s", out)
	}

	q.srv.ResetStats()
	code, out, rep := q.restoreRun(t, t.Context(), dir, "undo-me", false, "--confirm")
	if code != 0 || rep.Tags.Restored != int64(deleted) || rep.Tags.Deleted != int64(deleted) || rep.Tags.Failed != 0 {
		t.Fatalf("restore: exit %d, report %+v, want %d restored\n%s", code, rep, deleted, out)
	}
	q.checkRestored(t, before)
	if summaryNumber(t, out, "Tags restored") != int64(deleted) {
		t.Errorf("summary disagrees with the report:\n%s", out)
	}
	st := q.srv.Stats()
	if st.DigestDeletes != 0 || st.TagDeletes != 0 || st.Requests[sim.KindAPIRestore] != 0 {
		t.Errorf("restore deleted or used API v1: %+v", st.Requests)
	}
	if ev := restoreEvents(t, dir, rep.RestoreID); ev[proto.OutcomeRestored] != deleted || len(ev) != 1 {
		t.Errorf("restore audit events = %v, want %d restored", ev, deleted)
	}

	// Again: every tag is present, nothing is written.
	q.srv.ResetStats()
	code, out, again := q.restoreRun(t, t.Context(), dir, "undo-me", false, "--confirm")
	if code != 0 || again.Tags.Restored != 0 || again.Tags.Skipped != int64(deleted) {
		t.Errorf("second restore: exit %d, %+v\n%s", code, again.Tags, out)
	}
	if n := q.srv.Stats().Requests[sim.KindManifestPut]; n != 0 {
		t.Errorf("second restore wrote %d manifests", n)
	}
	q.checkRestored(t, before)
}

// TestRestoreAfterGC: a manifest that the registry's garbage collector removed after the run
// cannot be put back: each tag that pointed at one fails with that reason, the others are
// restored, and the restore exits 2.
func TestRestoreAfterGC(t *testing.T) {
	q := restoreQCI(t, sim.Config{TimeMachine: -1})
	before := q.tags()
	dir := t.TempDir()
	if code, out, _ := q.run(t, false, "--confirm", "--record-digests", "--data-dir", dir, "--run-id", "gc-run"); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	// What GC removes: the manifests no remaining tag points at.
	live := map[string]bool{}
	for _, d := range q.tags() {
		live[d] = true
	}
	afterRun := q.tags()
	lost, kept := map[string]bool{}, map[string]string{}
	for tag, d := range before {
		if _, ok := afterRun[tag]; ok {
			kept[tag] = d
			continue
		}
		if live[d] {
			kept[tag] = d
		} else {
			lost[tag] = true
		}
	}
	if len(lost) == 0 || len(kept) == len(before) {
		t.Fatalf("the scenario has no deleted tag whose manifest GC removes (%d) or none it keeps", len(lost))
	}
	if n := q.srv.GC(); n == 0 {
		t.Fatal("GC removed nothing")
	}

	code, out, rep := q.restoreRun(t, t.Context(), dir, "gc-run", false, "--confirm")
	if code != exitFailed || rep.Tags.Failed != int64(len(lost)) || rep.Tags.Restored != rep.Tags.Deleted-int64(len(lost)) {
		t.Fatalf("restore: exit %d, %+v; want exit 2 and %d failed\n%s", code, rep.Tags, len(lost), out)
	}
	after := q.tags()
	for tag := range lost {
		if _, ok := after[tag]; ok {
			t.Errorf("%s is back, but its manifest was collected", tag)
		}
	}
	for tag, d := range kept {
		if after[tag] != d {
			t.Errorf("%s = %q, want %s", tag, after[tag], d)
		}
	}
	if len(rep.Failures) == 0 || !strings.Contains(rep.Failures[0], "garbage-collected") ||
		!strings.Contains(out, "Failures (the first ") {
		t.Errorf("the failures do not say why: %q\n%s", rep.Failures, out)
	}
}

// TestRestoreQuayHistory: a run without --record-digests is restored through Quay's tag
// history and time machine (API v1, the OAuth token): every tag back at its old digest; a
// second restore puts nothing back.
func TestRestoreQuayHistory(t *testing.T) {
	q := restoreQCI(t, sim.Config{})
	before := q.tags()
	dir := t.TempDir()
	if code, out, _ := q.run(t, false, "--confirm", "--data-dir", dir, "--run-id", "quay-run"); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	deleted := len(before) - len(q.tags())

	// Without the token there is no way to know the digests: every tag fails, saying so.
	code, out, rep := q.restoreRun(t, t.Context(), dir, "quay-run", false, "--confirm")
	if code != exitFailed || rep.Tags.Restored != 0 || rep.Tags.Failed == 0 || !strings.Contains(out, "--record-digests") {
		t.Fatalf("restore without a token: exit %d, %+v\n%s", code, rep.Tags, out)
	}

	code, out, rep = q.restoreRun(t, t.Context(), dir, "quay-run", true, "--confirm")
	if code != 0 || rep.DigestsRecorded || rep.Tags.Failed != 0 || rep.Tags.Restored < int64(deleted) {
		t.Fatalf("restore: exit %d, %+v, want at least %d restored\n%s", code, rep.Tags, deleted, out)
	}
	q.checkRestored(t, before)
	if n := q.srv.Stats().Requests[sim.KindAPIRestore]; n != rep.Tags.Restored {
		t.Errorf("%d API v1 restores, want %d", n, rep.Tags.Restored)
	}

	code, out, again := q.restoreRun(t, t.Context(), dir, "quay-run", true, "--confirm")
	if code != 0 || again.Tags.Restored != 0 || again.Tags.Skipped != rep.Tags.Deleted {
		t.Errorf("second restore: exit %d, %+v\n%s", code, again.Tags, out)
	}
}

// TestRestoreOutsideWindow: once Quay's time machine window has passed, every tag fails with
// that reason and nothing is written.
func TestRestoreOutsideWindow(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	q := restoreQCI(t, sim.Config{Now: clock, TimeMachine: time.Hour})
	dir := t.TempDir()
	if code, out, _ := q.run(t, false, "--confirm", "--data-dir", dir, "--run-id", "old-run", "--preserve-payloads=false"); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	afterRun := q.tags()
	offset.Store(int64(2 * time.Hour))
	code, out, rep := q.restoreRun(t, t.Context(), dir, "old-run", true, "--confirm")
	if code != exitFailed || rep.Tags.Failed == 0 || rep.Tags.Failed != rep.Tags.Deleted || rep.Tags.Restored != 0 {
		t.Fatalf("restore: exit %d, %+v\n%s", code, rep.Tags, out)
	}
	if !strings.Contains(rep.Failures[0], "outside Quay's time machine window") {
		t.Errorf("failure does not say why: %q", rep.Failures[0])
	}
	if !maps.Equal(q.tags(), afterRun) {
		t.Error("the registry changed")
	}
}

// TestRestoreInterrupted: a restore stopped midway exits 2 having stored what it did; run
// again, it completes without error and the state is exactly as before the run.
func TestRestoreInterrupted(t *testing.T) {
	q := restoreQCI(t, sim.Config{TimeMachine: -1, Latency: 2 * time.Millisecond})
	before := q.tags()
	dir := t.TempDir()
	if code, out, _ := q.run(t, false, "--confirm", "--record-digests", "--data-dir", dir, "--run-id", "cut-short"); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	q.srv.ResetStats()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for range tick.C {
			if q.srv.Stats().Requests[sim.KindManifestPut] >= 20 || ctx.Err() != nil {
				cancel()
				return
			}
		}
	}()
	code, out, first := q.restoreRun(t, ctx, dir, "cut-short", false, "--confirm", "--concurrency", "2")
	if code != exitFailed || !strings.Contains(out, "Interrupted") {
		t.Fatalf("interrupted restore: exit %d, %+v\n%s", code, first.Tags, out)
	}
	code, out, second := q.restoreRun(t, t.Context(), dir, "cut-short", false, "--confirm")
	if code != 0 || second.Tags.Failed != 0 || second.Tags.Skipped == 0 || second.Tags.Restored == 0 {
		t.Fatalf("restore again: exit %d, %+v\n%s", code, second.Tags, out)
	}
	q.checkRestored(t, before)
}

// TestRestoreID: restore IDs are valid tokens for the longest run IDs, and two restores of
// one run started in the same second get IDs of their own.
func TestRestoreID(t *testing.T) {
	at := time.Date(2026, 11, 22, 6, 0, 0, 0, time.UTC)
	for _, run := range []string{"r", strings.Repeat("x", 64)} {
		id := restoreID(run, at)
		if !proto.ValidToken(id) || !strings.Contains(id, "-restore-20261122060000-") {
			t.Errorf("restoreID(%q) = %q, not a valid token naming the time", run, id)
		}
	}
	seen := map[string]bool{}
	for range 20 {
		seen[restoreID("r", at)] = true
	}
	if len(seen) < 2 {
		t.Error("restores started in the same second share their ID")
	}
}
