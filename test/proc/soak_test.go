package proc

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/worker"
)

// TestSoak runs randomized fault schedules against the multi-process deployment until the
// -soak duration has passed: random namespaces, one NATS server or a cluster of three,
// registry faults, and during each run workers killed, stopped, frozen and replaced, NATS
// nodes killed and restarted, the coordinator killed and started again. Every round ends
// with the invariant, exact once the coordinator exits 0. Each round logs its seed;
// -soak.seed replays one.
//
//	go test -run Soak -soak=10m ./test/proc     (task soak)
func TestSoak(t *testing.T) {
	if *soakFor <= 0 && *soakSeed == 0 {
		t.Skip("a soak: run with -soak=10m, or -soak.seed=N to replay one schedule")
	}
	deadline := time.Now().Add(*soakFor)
	for round := 1; ; round++ {
		seed := *soakSeed
		if seed == 0 {
			seed = uint64(time.Now().UnixNano())
		}
		t.Run(fmt.Sprintf("round-%d", round), func(t *testing.T) {
			t.Logf("seed %d; replay: go test -run Soak -soak.seed=%d ./test/proc", seed, seed)
			soakRound(t, seed)
		})
		if *soakSeed != 0 || time.Now().After(deadline) || t.Failed() {
			return
		}
	}
}

// soakRound is one randomized schedule.
func soakRound(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	cfg := deployConfig{nodes: 1, latency: time.Duration(10+rng.IntN(20)) * time.Millisecond}
	if rng.IntN(4) == 0 {
		cfg.nodes = 3
	}
	d := deploy(t, cfg)
	tags := namespace(1000+rng.IntN(3000), seed)
	d.loadTags(tags)
	faults := rng.IntN(2) == 0
	if faults { // kinds the registry client retries, at rates a run survives
		f := map[string]any{"seed": seed, "error_status": 502}
		switch rng.IntN(4) {
		case 0:
			f["error_rate"] = 0.02
		case 1:
			f["throttle_rate"] = 0.05
		case 2:
			f["reset_rate"] = 0.02
		case 3:
			f["error_burst"] = 10 + rng.IntN(20)
			f["kinds"] = []string{"delete"}
		}
		d.setFaults(f)
		t.Logf("registry faults %v", f)
	}
	t.Logf("%d NATS nodes, sim latency %s, %d tags", cfg.nodes, cfg.latency, len(tags))

	workers := make([]*proc, 3)
	spawned := 0
	spawn := func(i int) {
		spawned++
		workers[i] = d.worker(fmt.Sprintf("worker-%d", spawned))
	}
	for i := range workers {
		spawn(i)
	}
	for _, w := range workers {
		w.waitFor(t, "worker started", 1, runWithin)
	}
	const runID = "soak"
	coordinators := 0
	startCoordinator := func() *proc {
		coordinators++
		return d.coordinator(fmt.Sprintf("coordinator-%d", coordinators), runID)
	}
	c := startCoordinator()

	// The schedule: a few events, a random while apart, while the run goes on.
	events := 2 + rng.IntN(5)
	for e := 0; e < events && !c.exited(); e++ {
		time.Sleep(time.Duration(100+rng.IntN(800)) * time.Millisecond)
		if c.exited() {
			break
		}
		i := rng.IntN(len(workers))
		switch k := rng.IntN(6); k {
		case 0:
			t.Logf("event %d: SIGKILL %s, start another", e, workers[i].name)
			workers[i].kill(t)
			spawn(i)
		case 1:
			t.Logf("event %d: SIGTERM %s, start another", e, workers[i].name)
			workers[i].signal(t, syscall.SIGTERM)
			if code := workers[i].wait(t, worker.StopBound+15*time.Second); code != 0 {
				t.Errorf("%s exited %d after SIGTERM, want 0", workers[i].name, code)
			}
			spawn(i)
		case 2:
			freeze := time.Duration(500+rng.IntN(4000)) * time.Millisecond
			t.Logf("event %d: SIGSTOP %s for %s", e, workers[i].name, freeze)
			workers[i].signal(t, syscall.SIGSTOP)
			time.Sleep(freeze)
			workers[i].signal(t, syscall.SIGCONT)
		case 3:
			n := rng.IntN(len(d.nats))
			down := time.Duration(rng.IntN(1500)) * time.Millisecond
			t.Logf("event %d: SIGKILL NATS node %d, restart after %s", e, n, down)
			d.nats[n].p.kill(t)
			time.Sleep(down)
			d.startNATS(n, true)
		case 4:
			t.Logf("event %d: SIGKILL %s, start it again for the same run", e, c.name)
			c.kill(t)
			c = startCoordinator()
		case 5:
			t.Logf("event %d: nothing", e)
		}
	}

	// The run ends. A coordinator that could not carry on (exit 1: NATS was away as it
	// started) or whose shards failed under the registry faults (exit 2) is started again
	// for the same run, which resumes it; with the faults off it must end exact.
	for attempt := 1; ; attempt++ {
		code := c.wait(t, 2*runWithin)
		if code == 0 || d.hasRun(runID) { // a coordinator may die before it records the run
			d.check(runID, tags, code == 0)
		}
		if code == 0 {
			break
		}
		t.Logf("%s exited %d; resuming the run", c.name, code)
		if attempt == 4 {
			t.Fatalf("the run did not end exact after %d coordinators", attempt)
		}
		if code == 2 && !faults {
			t.Errorf("%s exited 2 without registry faults", c.name)
		}
		d.setFaults(map[string]any{})
		c = startCoordinator()
	}
	for _, w := range workers {
		if w.exited() {
			t.Errorf("%s exited by itself (code %d)", w.name, w.code)
		}
	}
}
