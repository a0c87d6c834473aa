package main

import (
	"fmt"
	"slices"
)

// measured is what a scenario's targets are measured from.
type measured struct {
	sc      scenario
	o       options
	r       scenarioResult
	ts      sideResult // the tagsweep side
	base    sideResult // the reference side, when hasBase
	hasBase bool
	ceilings
}

// ceilings are the ceiling scenarios' sides of this run, those that ran before the scenario.
type ceilings struct {
	zero    *sideResult // ceiling: zero latency, the figure the targets are shares of
	latency *sideResult // ceiling-latency: the same two processes at the run's latency, without tagsweep
}

// share says a rate as a share of the ceiling, and, when ceiling-latency ran too, what
// share the ceiling's own loop reached at the latency: the bound the rig sets.
func (c ceilings) share(rate float64) (float64, string) {
	x := rate / c.zero.RequestsPerSecond()
	got := fmt.Sprintf("%.0f%% (%.0f vs %.0f requests/s)", 100*x, rate, c.zero.RequestsPerSecond())
	if c.latency != nil {
		got += fmt.Sprintf("; the ceiling's own loop at this latency reached %.0f%% (ceiling-latency, %.0f requests/s)",
			100*c.latency.RequestsPerSecond()/c.zero.RequestsPerSecond(), c.latency.RequestsPerSecond())
	}
	return x, got
}

// target measures one performance target; false when it does not apply to the run.
type target func(m measured) (check, bool)

// targets are the performance targets of docs/performance.md that each scenario checks, in
// the order the report lists them; every scenario with a tagsweep side checks
// everyScenario's after its own.
var targets = map[string][]target{
	"daily":        {ofCeiling(0.8), speedup(50), slotsBusy(3), requestBudget},
	"daily-quay":   {speedup(30)},
	"ls":           {speedup(20), sameCount},
	"numeric":      {atMostShards(50), within(2)},
	"backlog":      {speedup(5), ofCeiling(0.8)},
	"rate-limited": {sustained(0.9), tooManyAtMost(0.03), noneFailed},
	"restore":      {digestRequests(2.02), everyTagRestored("restore"), restoreRate("restore", 0.7), everyTagRestored("restore-quay"), restoreRate("restore-quay", 0)},
	"skewed":       {longestShard(2)},
}

var everyScenario = []target{workerRSS(100 << 20), failedDeletes}

// checks measures the targets that apply to the scenario.
func checks(sc scenario, o options, r scenarioResult, ceil ceilings) []check {
	ts, ok := r.side("tagsweep")
	if !ok {
		ts, ok = r.side("tagsweep-ls")
	}
	if !ok {
		if c, ok := r.side("ceiling"); ok {
			got := fmt.Sprintf("%.0f requests/s", c.RequestsPerSecond())
			if sc.DeleteLatency && ceil.zero != nil {
				got += fmt.Sprintf(", %.0f%% of the zero-latency ceiling", 100*c.RequestsPerSecond()/ceil.zero.RequestsPerSecond())
			}
			return []check{{Target: "ceiling (informative)", Got: got, Met: true}}
		}
		return nil
	}
	m := measured{sc: sc, o: o, r: r, ts: ts, ceilings: ceil}
	m.base, m.hasBase = r.reference()
	var out []check
	for _, t := range slices.Concat(targets[sc.Name], everyScenario) {
		if c, ok := t(m); ok {
			out = append(out, c)
		}
	}
	return out
}

// mark is how the report shows whether the check was met.
func (c check) mark() string {
	switch {
	case c.Unmeasured:
		return "not measured by this run"
	case c.Met:
		return "met"
	}
	return "MISSED"
}

func speedup(min float64) target {
	return func(m measured) (check, bool) {
		if !m.hasBase {
			return check{}, false
		}
		x := m.base.WallSeconds / m.ts.WallSeconds
		return check{Target: fmt.Sprintf("≥ %.0f× faster than the %s", min, m.base.Side),
			Got: fmt.Sprintf("%.1f× (%.1fs vs %.1fs)", x, m.ts.WallSeconds, m.base.WallSeconds), Met: x >= min}, true
	}
}

func ofCeiling(min float64) target {
	return func(m measured) (check, bool) {
		name := fmt.Sprintf("≥ %.0f%% of the ceiling's request rate", 100*min)
		if m.zero == nil {
			return check{Target: name, Got: "no ceiling in this run (add -scenario ceiling first)", Unmeasured: true}, true
		}
		x, got := m.share(m.ts.RequestsPerSecond())
		return check{Target: name, Got: got, Met: x >= min}, true
	}
}

func slotsBusy(within float64) target {
	return func(m measured) (check, bool) {
		after := m.ts.SlotsBusyAfter
		c := check{Target: fmt.Sprintf("all %d slots busy within %.0f s of the start", m.r.Workers*m.o.child.slots, within),
			Got: fmt.Sprintf("%.1f s", after), Met: after >= 0 && after <= within}
		if after < 0 {
			c.Got = "never"
		}
		return c, true
	}
}

func requestBudget(m measured) (check, bool) {
	ts := m.ts
	budget := 1.1 * (float64(ts.Eligible) + float64(ts.Eligible)/100 + float64(ts.Shards))
	return check{Target: "requests ≤ 1.1 × (eligible + eligible/100 + shards) (informative)",
		Got: fmt.Sprintf("%d requests vs %.0f (eligible %d, shards %d)", ts.Requests, budget, ts.Eligible, ts.Shards),
		Met: float64(ts.Requests) <= budget}, true
}

func sameCount(m measured) (check, bool) {
	ts, base := m.ts, m.base
	same := ts.Scanned == int64(m.r.Tags) && (!m.hasBase || base.Scanned == ts.Scanned)
	got := fmt.Sprintf("tagsweep ls %d, %s %d, generated %d", ts.Scanned, base.Side, base.Scanned, m.r.Tags)
	if rc, ok := m.r.side("regctl"); ok {
		got += fmt.Sprintf(", regctl %d", rc.Scanned)
		same = same && rc.Scanned == ts.Scanned
	}
	return check{Target: "the same count", Got: got, Met: same}, true
}

func atMostShards(n int) target {
	return func(m measured) (check, bool) {
		return check{Target: fmt.Sprintf("≤ %d shards", n), Got: fmt.Sprintf("%d shards", m.ts.Shards), Met: m.ts.Shards <= n}, true
	}
}

func within(secs float64) target {
	return func(m measured) (check, bool) {
		return check{Target: fmt.Sprintf("≤ %.0f s", secs), Got: fmt.Sprintf("%.1f s (the whole side, NATS start included)", m.ts.WallSeconds),
			Met: m.ts.WallSeconds <= secs}, true
	}
}

func sustained(share float64) target {
	return func(m measured) (check, bool) {
		x := m.ts.SustainedOK / m.o.rate
		return check{Target: fmt.Sprintf("sustained ≥ %.0f%% of R", 100*share), Got: fmt.Sprintf("%.0f%% (%.0f of %.0f requests/s answered, median of 1 s samples)",
			100*x, m.ts.SustainedOK, m.o.rate), Met: x >= share}, true
	}
}

func tooManyAtMost(share float64) target {
	return func(m measured) (check, bool) {
		y := per(float64(m.ts.TooMany), float64(m.ts.Requests))
		return check{Target: fmt.Sprintf("429s ≤ %.0f%% of requests", 100*share), Got: fmt.Sprintf("%.2f%% (%d of %d)", 100*y, m.ts.TooMany, m.ts.Requests),
			Met: y <= share}, true
	}
}

func noneFailed(m measured) (check, bool) {
	return check{Target: "zero failed deletes", Got: fmt.Sprintf("%d", m.ts.DeleteFailed), Met: m.ts.DeleteFailed == 0}, true
}

func digestRequests(most float64) target {
	return func(m measured) (check, bool) {
		td, ok := m.r.side("tagsweep-digests")
		if !ok {
			return check{}, false
		}
		x := per(float64(td.Requests), float64(m.ts.Requests))
		return check{Target: fmt.Sprintf("--record-digests: ≤ %.2f× the requests of the same run without it", most),
			Got: fmt.Sprintf("%.3f× (%d vs %d requests; %d vs %d deleted)", x, td.Requests, m.ts.Requests, td.Deleted, m.ts.Deleted),
			Met: x <= most}, true
	}
}

func everyTagRestored(side string) target {
	return func(m measured) (check, bool) {
		rs, ok := m.r.side(side)
		if !ok {
			return check{}, false
		}
		name := "every deleted tag restored"
		if side != "restore" {
			name += " (" + side + ")"
		}
		return check{Target: name, Got: fmt.Sprintf("%d of %d (%d failed, %d skipped)",
			rs.Restored, rs.Deleted, rs.RestoreFailed, rs.RestoreSkipped), Met: rs.Restored == rs.Deleted && rs.RestoreFailed == 0}, true
	}
}

// restoreRate: the request rate of a restore side against the ceiling, at least min of it;
// min 0 is informative (the restore through Quay's tag history has no target of its own).
func restoreRate(side string, min float64) target {
	return func(m measured) (check, bool) {
		rs, ok := m.r.side(side)
		if !ok || m.zero == nil {
			return check{}, false
		}
		x, got := m.share(per(float64(rs.RestoreRequests), rs.RestoreSeconds))
		name := fmt.Sprintf("restore ≥ %.0f%% of the ceiling's request rate", 100*min)
		if min == 0 {
			name = side + ": its request rate against the ceiling (informative)"
		}
		return check{Target: name, Got: fmt.Sprintf("%s; %d tags in %.1fs, %d requests", got, rs.Restored, rs.RestoreSeconds,
			rs.RestoreRequests), Met: x >= min}, true
	}
}

// longestShard measures the balance of the plan: on the side that does not split
// (tagsweep-nosplit, when the scenario has one), whose shards are the planner's alone. A split
// shard's duration is its whole life, halves split off included, and the split-off shards pull
// the median down, so on the splitting side the ratio no longer measures a tail; it is shown
// beside the judged one.
func longestShard(times float64) target {
	return func(m measured) (check, bool) {
		judged, other := m.ts, sideResult{}
		if ns, ok := m.r.side("tagsweep-nosplit"); ok && ns.MedianShard > 0 {
			judged, other = ns, m.ts
		}
		if judged.MedianShard <= 0 {
			return check{}, false
		}
		got := fmt.Sprintf("%s: %.1fs vs %.1fs (%.1f×), run %.1fs", judged.Side, judged.LongestShard, judged.MedianShard,
			judged.LongestShard/judged.MedianShard, judged.WallSeconds)
		if other.MedianShard > 0 {
			got += fmt.Sprintf("; %s (splitting, not judged): %.1fs vs %.1fs (%.1f×), run %.1fs",
				other.Side, other.LongestShard, other.MedianShard, other.LongestShard/other.MedianShard, other.WallSeconds)
		}
		return check{Target: fmt.Sprintf("longest shard ≤ %.0f× the median (the plan's balance, without splitting)", times),
			Got: got, Met: judged.LongestShard <= times*judged.MedianShard}, true
	}
}

// workerRSS: a worker's peak RSS, measured alone when workers ran in processes of their own.
// Otherwise one process held NATS, the coordinator and every worker: below the bound together
// each worker is too, above it nothing is known of one worker.
func workerRSS(most int64) target {
	return func(m measured) (check, bool) {
		name := fmt.Sprintf("worker peak RSS ≤ %.0f MiB", mib(most))
		if len(m.ts.WorkerPeakRSS) > 0 {
			largest := slices.Max(m.ts.WorkerPeakRSS)
			return check{Target: name, Got: fmt.Sprintf("%.0f MiB (largest worker process)", mib(largest)), Met: largest <= most}, true
		}
		met := m.ts.PeakRSSBytes <= most
		return check{Target: name + " (run with -worker-procs to measure a worker alone)",
			Got: fmt.Sprintf("%.0f MiB for NATS, the coordinator and %d workers together", mib(m.ts.PeakRSSBytes), m.r.Workers),
			Met: met, Unmeasured: !met}, true
	}
}

// failedDeletes: no delete may fail, but on a rate-limited registry, which has a target of
// its own for them.
func failedDeletes(m measured) (check, bool) {
	if m.ts.DeleteFailed == 0 || m.sc.Name == "rate-limited" {
		return check{}, false
	}
	return check{Target: "no failed deletes", Got: fmt.Sprintf("%d", m.ts.DeleteFailed), Met: false}, true
}
