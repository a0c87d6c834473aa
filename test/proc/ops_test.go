package proc

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/test/invariant"
)

// tagsweep stop: the workers claim no more of the run's shards and hand back the ones they
// hold with their checkpoints, the coordinator marks the run stopped and exits 2, and
// resuming the run afterwards finishes it with the exact end state. The AckWait is long, so
// only the hand-back can free a shard before a minute has passed.
func TestStopRun(t *testing.T) {
	d := deploy(t, deployConfig{latency: 15 * time.Millisecond, ackWait: time.Minute})
	tags := append(dayTags(300, 8), dayTags(300, 9)...) // two shards of 30 pages
	d.loadTags(tags)
	w := d.worker("worker-a")
	w.waitFor(t, "worker started", 1, startAfter)
	c := d.coordinator("coordinator", "stopme")
	d.waitDeleted(60, runWithin)

	s := d.start("stop", "stop", "stopme", "--reason", "registry maintenance", "--nats-url", d.natsURL, "--log-format", "json")
	if code := s.wait(t, runWithin); code != 0 || !strings.Contains(s.out.String(), "Run stopme is stopped") {
		t.Fatalf("stop: exit %d, want 0 and the run stopped\n%s", code, s.out.String())
	}
	if code := c.wait(t, runWithin); code != 2 {
		t.Fatalf("coordinator exit %d after the stop, want 2", code)
	}
	if out := c.out.String(); !strings.Contains(out, "Run stopme was stopped") || !strings.Contains(out, "Resume it: tagsweep coordinator --run-id stopme") {
		t.Errorf("the coordinator's summary does not say the run stopped and how to resume it:\n%s", out)
	}
	run := d.run("stopme")
	if run.State != proto.RunStopped || !strings.Contains(run.Reason, "registry maintenance") {
		t.Errorf("run recorded %s (%q), want stopped with the reason given", run.State, run.Reason)
	}
	deletedAtStop := len(d.sim().Deleted)
	checkpointed := 0
	for _, sh := range d.shards("stopme") {
		if sh.State == proto.StateRunning {
			t.Errorf("shard %s is still running after the stop (owner %s)", sh.ShardID, sh.Owner)
		}
		if sh.State == proto.StatePending && sh.Cursor != "" {
			checkpointed++
		}
	}
	if checkpointed == 0 {
		t.Errorf("no shard was handed back with a checkpoint")
	}
	if !strings.Contains(w.out.String(), "shard handed back for its resume") {
		t.Errorf("the worker did not hand back its shards for the resume")
	}
	if w.exited() {
		t.Fatalf("stopping a run stopped its worker (exit %d)", w.code)
	}

	c2 := d.coordinator("coordinator-2", "stopme")
	if code := c2.wait(t, runWithin); code != 0 {
		t.Fatalf("resumed coordinator exit %d, want 0", code)
	}
	st := d.check("stopme", tags, true)
	if d.run("stopme").State != proto.RunDone || len(st.Deleted) <= deletedAtStop {
		t.Errorf("the resumed run ended %s with %d deletes (%d at the stop), want done and more deleted",
			d.run("stopme").State, len(st.Deleted), deletedAtStop)
	}
}

// A `tagsweep run` killed mid-run and started again on its --data-dir with its --run-id
// hands back at once the shards the killed process held, instead of waiting --ack-wait (an
// hour here, far beyond the test's deadline) for JetStream to redeliver them: the store is
// locked to one process, so nothing in it can still be working.
func TestRunResumesWithoutStall(t *testing.T) {
	d := deploy(t, deployConfig{latency: 15 * time.Millisecond})
	tags := append(dayTags(300, 8), dayTags(300, 9)...)
	d.loadTags(tags)
	dir := t.TempDir()
	report := filepath.Join(dir, "report.json")
	args := []string{"run", "--registry", d.simAddr, "--plain-http", "--repository", repo, "--run-id", "again",
		"--confirm", "--ttl-days", "5", "--data-dir", filepath.Join(dir, "store"), "--ack-wait", "1h",
		"--workers", "1", "--slots", "2", "--page-size", "10", "--report", report, "--log-format", "json"}
	first := d.start("run-1", args...)
	d.waitDeleted(60, runWithin)
	first.kill(t)

	second := d.start("run-2", args...)
	if code := second.wait(t, runWithin); code != 0 {
		t.Fatalf("the second run exit %d, want 0", code)
	}
	if !strings.Contains(second.out.String(), "handed back the shards the previous process left in flight") {
		t.Errorf("the second run did not hand back the killed process's shards")
	}
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep proto.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	p := policy.Defaults()
	p.Cutoff = rep.Cutoff
	st := d.sim()
	invariant.Check(t, invariant.State{Policy: p, Initial: tags, Deleted: st.Deleted, Remaining: st.Tags, ExitOK: true})
}
