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
	ceiling *sideResult // the ceiling scenario's side of this run, if it ran first
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
	"restore":      {digestRequests(2.02), everyTagRestored, restoreOfCeiling(0.7)},
	"skewed":       {longestShard(2)},
}

var everyScenario = []target{workerRSS(100 << 20), failedDeletes}

// checks measures the targets that apply to the scenario.
func checks(sc scenario, o options, r scenarioResult, ceiling *sideResult) []check {
	ts, ok := r.side("tagsweep")
	if !ok {
		ts, ok = r.side("tagsweep-ls")
	}
	if !ok {
		if c, ok := r.side("ceiling"); ok {
			return []check{{Target: "ceiling (informative)", Got: fmt.Sprintf("%.0f requests/s", c.RequestsPerSecond()), Met: true}}
		}
		return nil
	}
	m := measured{sc: sc, o: o, r: r, ts: ts, ceiling: ceiling}
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
		if m.ceiling == nil {
			return check{Target: name, Got: "no ceiling in this run (add -scenario ceiling first)", Unmeasured: true}, true
		}
		x := m.ts.RequestsPerSecond() / m.ceiling.RequestsPerSecond()
		return check{Target: name, Got: fmt.Sprintf("%.0f%% (%.0f vs %.0f requests/s)", 100*x, m.ts.RequestsPerSecond(),
			m.ceiling.RequestsPerSecond()), Met: x >= min}, true
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

func everyTagRestored(m measured) (check, bool) {
	rs, ok := m.r.side("restore")
	if !ok {
		return check{}, false
	}
	return check{Target: "every deleted tag restored", Got: fmt.Sprintf("%d of %d (%d failed, %d skipped)",
		rs.Restored, rs.Deleted, rs.RestoreFailed, rs.RestoreSkipped), Met: rs.Restored == rs.Deleted && rs.RestoreFailed == 0}, true
}

func restoreOfCeiling(min float64) target {
	return func(m measured) (check, bool) {
		rs, ok := m.r.side("restore")
		if !ok || m.ceiling == nil {
			return check{}, false
		}
		rate := per(float64(rs.RestoreRequests), rs.RestoreSeconds)
		x := rate / m.ceiling.RequestsPerSecond()
		return check{Target: fmt.Sprintf("restore ≥ %.0f%% of the ceiling's request rate", 100*min),
			Got: fmt.Sprintf("%.0f%% (%.0f vs %.0f requests/s; %d tags in %.1fs, %d requests)", 100*x, rate,
				m.ceiling.RequestsPerSecond(), rs.Restored, rs.RestoreSeconds, rs.RestoreRequests), Met: x >= min}, true
	}
}

func longestShard(times float64) target {
	return func(m measured) (check, bool) {
		ts := m.ts
		if ts.MedianShard <= 0 {
			return check{}, false
		}
		got := fmt.Sprintf("%.1fs vs %.1fs (%.1f×), run %.1fs", ts.LongestShard, ts.MedianShard, ts.LongestShard/ts.MedianShard, ts.WallSeconds)
		if ns, ok := m.r.side("tagsweep-nosplit"); ok && ns.MedianShard > 0 {
			got += fmt.Sprintf("; without splitting %.1fs vs %.1fs (%.0f×), run %.1fs",
				ns.LongestShard, ns.MedianShard, ns.LongestShard/ns.MedianShard, ns.WallSeconds)
		}
		return check{Target: fmt.Sprintf("longest shard ≤ %.0f× the median", times), Got: got, Met: ts.LongestShard <= times*ts.MedianShard}, true
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
