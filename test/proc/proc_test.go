package proc

import (
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
	"github.com/tagsweep/tagsweep/test/invariant"
	"github.com/tagsweep/tagsweep/worker"
)

const (
	runWithin  = 3 * time.Minute // how long a run may take in these tests, faults included
	startAfter = 30 * time.Second
)

// listsOf returns the tags/list requests workers made for prune shards: page size 10 (the
// coordinator's are n=1 and n=2), after a timestamp key or from the first tag (release-payload
// family shards list after their family's prefix).
func listsOf(st simState) []string {
	var out []string
	for _, l := range st.Lists {
		if l.N == 10 && (l.Last == "" || l.Last[0] >= '0' && l.Last[0] <= '9') {
			out = append(out, l.Last)
		}
	}
	return out
}

// shardOf returns the run's shard whose range holds tag.
func shardOf(t *testing.T, d *deployment, runID, tag string) proto.ShardRecord {
	t.Helper()
	for _, s := range d.shards(runID) {
		if s.Range.Contains(tag) {
			return s
		}
	}
	t.Fatalf("no shard of run %s holds %s", runID, tag)
	return proto.ShardRecord{}
}

// A worker killed mid-shard (SIGKILL) loses at most its page in flight: after AckWait the
// shard goes to another worker, which resumes from the record's cursor. The sim's list
// requests prove it: the new owner's first list starts at the cursor, and it lists only the
// pages left, not the whole shard again.
func TestKillWorkerResumes(t *testing.T) {
	d := deploy(t, deployConfig{latency: 15 * time.Millisecond})
	tags := dayTags(300, 8) // one shard of 30 pages, not split for the idle slots
	d.loadTags(tags)
	a := d.worker("worker-a", "--split-idle=false")
	aID := a.workerID(t)
	c := d.coordinator("coordinator", "kill", "--shards", "1")
	d.waitDeleted(80, runWithin)
	a.kill(t)
	left := shardOf(t, d, "kill", tags[0]) // as the dead worker left it
	before := len(listsOf(d.sim()))
	if left.Cursor == "" || left.Owner != aID {
		t.Fatalf("after the kill the shard is %+v, want worker-a's with a cursor", left)
	}
	bID := d.worker("worker-b", "--split-idle=false").workerID(t)
	if code := c.wait(t, runWithin); code != 0 {
		t.Fatalf("coordinator exit %d, want 0", code)
	}
	st := d.check("kill", tags, true)
	lists := listsOf(st)
	resumed := lists[before:]
	var remaining int
	for _, tag := range tags {
		if tag > left.Cursor && left.Range.Contains(tag) {
			remaining++
		}
	}
	if len(resumed) == 0 || resumed[0] != left.Cursor {
		t.Fatalf("the new owner's first list was after %q, want the record's cursor %q", resumed[:min(1, len(resumed))], left.Cursor)
	}
	if want := remaining/10 + 2; len(resumed) > want {
		t.Errorf("the new owner listed %d pages for the %d tags left (want at most %d): it did not resume", len(resumed), remaining, want)
	}
	if want := len(tags)/10 + 3; len(lists) > want {
		t.Errorf("%d pages listed in all for a shard of %d, want at most %d", len(lists), len(tags)/10, want)
	}
	if s := shardOf(t, d, "kill", tags[0]); s.State != proto.StateDone || s.Owner != bID || s.Attempt < 2 {
		t.Errorf("final shard %s owned by %s at attempt %d, want done by worker-b on a redelivery", s.State, s.Owner, s.Attempt)
	}
	t.Logf("killed after %d lists (the page in flight and the next, prefetched, among them); cursor %s; %d tags left; the new owner listed %d pages", before, left.Cursor, remaining, len(resumed))
}

// A splitting storm with SIGKILLs: shards split on a short time budget and whenever a slot is
// idle, and two workers are killed in the middle of theirs, one after the other. The shards'
// final ranges still cover the listed range exactly once, and the run ends exact.
func TestSplitStormKill(t *testing.T) {
	d := deploy(t, deployConfig{latency: 10 * time.Millisecond})
	var tags []string
	for i := 7; i <= 9; i++ {
		tags = append(tags, dayTags(400, i)...)
	}
	d.loadTags(tags)
	storm := []string{"--split-after", "150ms", "--slots", "3"}
	a, b := d.worker("worker-a", storm...), d.worker("worker-b", storm...)
	c := d.coordinator("coordinator", "storm", "--shards", "2")
	d.waitDeleted(200, runWithin)
	a.kill(t)
	d.worker("worker-c", storm...)
	d.waitDeleted(600, runWithin)
	b.kill(t)
	d.worker("worker-d", storm...)
	if code := c.wait(t, runWithin); code != 0 {
		t.Fatalf("coordinator exit %d, want 0", code)
	}
	run := d.run("storm")
	rules, err := policy.New(run.Policy)
	if err != nil {
		t.Fatal(err)
	}
	var ranges []proto.Range
	splits, takenOver := 0, 0
	for _, s := range d.shards("storm") {
		if s.Kind != proto.KindPrune {
			continue
		}
		ranges = append(ranges, s.Range)
		if s.Parent != "" {
			splits++
		}
		if s.Attempt > 1 {
			takenOver++
		}
	}
	st := d.sim()
	invariant.Check(t, invariant.State{Policy: run.Policy, Initial: tags, Deleted: st.Deleted, Remaining: st.Tags,
		ExitOK: true, Through: rules.CutoffKey(), Ranges: ranges})
	if splits < 10 || takenOver == 0 {
		t.Errorf("%d splits, %d shards taken over from a killed worker: the storm or the kills did not happen", splits, takenOver)
	}
	t.Logf("%d prune shards, %d split off, %d taken over", len(ranges), splits, takenOver)
}

// SIGTERM: the worker stops taking shards, finishes its page, checkpoints, releases the shard
// and naks its message, so another worker can continue at once; it exits 0 within the stop
// bound the deployment's grace period allows.
func TestStopWorkerHandsBack(t *testing.T) {
	// A long AckWait: only the Nak can hand the shard over before a minute has passed.
	d := deploy(t, deployConfig{latency: 15 * time.Millisecond, ackWait: time.Minute})
	tags := dayTags(300, 8)
	d.loadTags(tags)
	a := d.worker("worker-a")
	a.waitFor(t, "worker started", 1, startAfter)
	c := d.coordinator("coordinator", "stop")
	d.waitDeleted(60, runWithin)
	a.signal(t, syscall.SIGTERM)
	if code := a.wait(t, worker.StopBound+15*time.Second); code != 0 {
		t.Fatalf("worker exit %d after SIGTERM, want 0", code)
	}
	if !strings.Contains(a.out.String(), "shard released for another worker") {
		t.Fatalf("the stopped worker did not release its shard")
	}
	left := shardOf(t, d, "stop", tags[0])
	if left.State != proto.StatePending || left.Cursor == "" || left.Owner != "" {
		t.Fatalf("after SIGTERM the shard is %+v, want pending with a cursor and no owner", left)
	}
	// Naked, so another worker takes it at once: long before the minute of AckWait after
	// which JetStream would redeliver it anyway.
	b := d.worker("worker-b")
	bID := b.workerID(t)
	b.waitFor(t, `"msg":"shard claimed"`, 1, 30*time.Second)
	if code := c.wait(t, runWithin); code != 0 {
		t.Fatalf("coordinator exit %d, want 0", code)
	}
	d.check("stop", tags, true)
	if s := shardOf(t, d, "stop", tags[0]); s.State != proto.StateDone || s.Owner != bID {
		t.Errorf("final shard %s owned by %s, want done by worker-b", s.State, s.Owner)
	}
}

// A worker frozen (SIGSTOP) past AckWait loses its shard to another worker; thawed
// (SIGCONT), its compare-and-swap fails: it says so and stops work on the shard, and the new
// owner's progress stands.
func TestFreezeWorkerFenced(t *testing.T) {
	d := deploy(t, deployConfig{latency: 15 * time.Millisecond})
	tags := dayTags(400, 8)
	d.loadTags(tags)
	a := d.worker("worker-a")
	a.waitFor(t, "worker started", 1, startAfter)
	c := d.coordinator("coordinator", "freeze")
	d.waitDeleted(50, runWithin)
	a.signal(t, syscall.SIGSTOP)
	frozen := shardOf(t, d, "freeze", tags[0])
	b := d.worker("worker-b")
	bID := b.workerID(t)
	b.waitFor(t, `"msg":"shard claimed"`, 1, runWithin)
	// Let the new owner checkpoint past where the frozen one stopped, then thaw it.
	deadline := time.Now().Add(runWithin)
	for s := shardOf(t, d, "freeze", tags[0]); s.Owner != bID || s.Cursor <= frozen.Cursor; s = shardOf(t, d, "freeze", tags[0]) {
		if s.State.Terminal() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker-b made no progress: %+v", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.signal(t, syscall.SIGCONT)
	a.waitFor(t, "lost the shard", 1, runWithin)
	if code := c.wait(t, runWithin); code != 0 {
		t.Fatalf("coordinator exit %d, want 0", code)
	}
	d.check("freeze", tags, true)
	if s := shardOf(t, d, "freeze", tags[0]); s.State != proto.StateDone || s.Owner != bID {
		t.Errorf("final shard %s owned by %s, want done by worker-b", s.State, s.Owner)
	}
	if a.exited() {
		t.Errorf("the fenced worker exited (code %d), want it to go on serving", a.code)
	}
}

// namespace generates a few days of tags around the cutoff (several shards).
func namespace(n int, seed uint64) []string {
	now := time.Now().UTC()
	return sim.Generate(sim.GenConfig{Seed: seed, Tags: n, Days: 10, End: now, Cutoff: now.AddDate(0, 0, -5), EligibleFraction: 0.5})
}

// The NATS server (file storage) killed and restarted mid-run: workers and the coordinator
// reconnect and the run ends with the exact result.
func TestRestartNATS(t *testing.T) {
	d := deploy(t, deployConfig{latency: 5 * time.Millisecond})
	tags := namespace(2500, 1)
	d.loadTags(tags)
	for i := range 3 {
		d.worker(fmt.Sprintf("worker-%d", i)).waitFor(t, "worker started", 1, startAfter)
	}
	c := d.coordinator("coordinator", "nats-restart")
	d.waitDeleted(100, runWithin)
	d.nats[0].p.kill(t)
	before := len(d.sim().Deleted)
	d.startNATS(0, true)
	if code := c.wait(t, runWithin); code != 0 {
		t.Fatalf("coordinator exit %d, want 0", code)
	}
	st := d.check("nats-restart", tags, true)
	if len(st.Deleted) == before {
		t.Errorf("nothing was deleted after the restart: it was not mid-run")
	}
}

// A 3-node JetStream cluster (everything at R3) loses a node mid-run (SIGKILL): the run ends
// with the exact result.
func TestClusterLosesNode(t *testing.T) {
	d := deploy(t, deployConfig{nodes: 3, latency: 5 * time.Millisecond})
	tags := namespace(2500, 2)
	d.loadTags(tags)
	// Workers retry until the cluster can hold R3 streams; the coordinator does not.
	for i := range 3 {
		d.worker(fmt.Sprintf("worker-%d", i)).waitFor(t, "worker started", 1, runWithin)
	}
	c := d.coordinator("coordinator", "cluster")
	d.waitDeleted(100, runWithin)
	before := len(d.sim().Deleted)
	d.nats[1].p.kill(t)
	if code := c.wait(t, runWithin); code != 0 {
		t.Fatalf("coordinator exit %d, want 0", code)
	}
	st := d.check("cluster", tags, true)
	if len(st.Deleted) == before {
		t.Errorf("nothing was deleted after the node was lost: it was not mid-run")
	}
}

// A coordinator killed mid-run and started again for the same run re-attaches: no shard is
// added and no work repeated. Meanwhile a second run for the repository is refused, naming
// the run holding it (the dead coordinator's lease lives until it expires).
func TestCoordinatorRestart(t *testing.T) {
	d := deploy(t, deployConfig{latency: 10 * time.Millisecond})
	tags := namespace(1500, 3)
	d.loadTags(tags)
	for i := range 2 {
		d.worker(fmt.Sprintf("worker-%d", i)).waitFor(t, "worker started", 1, startAfter)
	}
	c1 := d.coordinator("coordinator-1", "run-a")
	c1.waitFor(t, "shards published", 1, runWithin)
	d.waitDeleted(50, runWithin)
	c1.kill(t)
	planned := len(d.shards("run-a"))

	other := d.coordinator("coordinator-other", "run-b")
	if code := other.wait(t, time.Minute); code != 1 {
		t.Fatalf("a second run for the repository: exit %d, want 1", code)
	}
	if !regexp.MustCompile(`held by run run-a \(\S+/\d+\)`).MatchString(other.out.String()) {
		t.Fatalf("the refusal does not name the holder:\n%s", other.out.String())
	}

	c2 := d.coordinator("coordinator-2", "run-a")
	c2.waitFor(t, "re-attaching to run", 1, startAfter)
	if code := c2.wait(t, runWithin); code != 0 {
		t.Fatalf("re-attached coordinator exit %d, want 0", code)
	}
	if n := len(d.shards("run-a")); n < planned || strings.Count(c2.out.String(), `"msg":"repository already planned"`) != 1 {
		t.Errorf("after re-attaching: %d shards (were %d); want the plan reused", n, planned)
	}
	st := d.check("run-a", tags, true)
	// No repeated work: each page listed about once (a few pages are listed twice: a split,
	// or the page in flight of a redelivered shard).
	rules, err := policy.New(d.run("run-a").Policy)
	if err != nil {
		t.Fatal(err)
	}
	var inRange int
	for _, tag := range tags {
		if tag <= rules.CutoffKey() {
			inRange++
		}
	}
	if lists, want := len(listsOf(st)), inRange/10+2*len(d.shards("run-a"))+2; lists > want {
		t.Errorf("%d pages listed for %d tags in %d shards, want at most %d", lists, inRange, len(d.shards("run-a")), want)
	}
}

// --max-deletes at process level: a dry run reports how many tags a real run would delete;
// a real run with a lower cap stops before exceeding it and exits 2 saying why.
func TestMaxDeletes(t *testing.T) {
	d := deploy(t, deployConfig{})
	tags := namespace(600, 4)
	d.loadTags(tags)
	d.worker("worker").waitFor(t, "worker started", 1, startAfter)
	dry := d.coordinator("dry-run", "dry", "--confirm=false")
	if code := dry.wait(t, runWithin); code != 0 {
		t.Fatalf("dry run exit %d, want 0", code)
	}
	eligible := invariant.Eligible(t, d.run("dry").Policy, tags)
	if want := fmt.Sprintf("%d tags would be pruned", len(eligible)); !strings.Contains(dry.out.String(), want) {
		t.Fatalf("dry run output lacks %q:\n%s", want, dry.out.String())
	}
	capped := d.coordinator("capped", "capped", "--max-deletes", "40")
	if code := capped.wait(t, runWithin); code != 2 {
		t.Fatalf("capped run exit %d, want 2", code)
	}
	if !strings.Contains(capped.out.String(), "max deletes reached") {
		t.Errorf("capped run does not say why it stopped:\n%s", capped.out.String())
	}
	st := d.check("capped", tags, false)
	if len(st.Deleted) == 0 || len(st.Deleted) > 40 {
		t.Errorf("capped run deleted %d tags, want 1 to 40", len(st.Deleted))
	}
}
