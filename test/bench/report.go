package main

import (
	"fmt"
	"io"
	"strings"
)

func (r scenarioResult) side(name string) (sideResult, bool) {
	for _, s := range r.Sides {
		if s.Side == name {
			return s, true
		}
	}
	return sideResult{}, false
}

func writeMarkdown(w io.Writer, r scenarioResult) {
	fmt.Fprintf(w, "### %s\n\n%s. %d tags (%d prune tags before the cutoff), latency %s, %d workers",
		r.Scenario, r.About, r.Tags, r.EligibleGen, r.Latency, r.Workers)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", limit %.0f requests/s", r.Rate)
	}
	fmt.Fprint(w, ".\n\n")
	fmt.Fprintln(w, "| side | wall s | lists | deletes | 429s | requests | deleted | failed | tags listed/s | requests/s | sustained req/s | peak RSS MiB | alloc B/tag | speed-up |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	base, hasBase := r.reference()
	for _, s := range r.Sides {
		speed := "—"
		if hasBase && s.Side != base.Side && s.WallSeconds > 0 {
			speed = fmt.Sprintf("%.1f×", base.WallSeconds/s.WallSeconds)
		}
		fmt.Fprintf(w, "| %s | %.1f | %d | %d | %d | %d | %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %s |\n",
			s.Side, s.WallSeconds, s.Lists, s.Deletes, s.TooMany, s.Requests, s.Deleted, s.DeleteFailed,
			s.TagsPerSecond(), s.RequestsPerSecond(), s.Sustained, mib(s.PeakRSSBytes),
			per(float64(s.TotalAlloc), float64(s.Scanned)), speed)
	}
	fmt.Fprintln(w)
	for _, s := range r.Sides {
		var notes []string
		if s.Shards > 0 {
			notes = append(notes, fmt.Sprintf("%d shards (%d split off while running), longest shard %.1fs, median %.1fs",
				s.Shards, s.SplitShards, s.LongestShard, s.MedianShard))
			if s.SlotsBusyAfter >= 0 {
				notes = append(notes, fmt.Sprintf("every slot busy %.1fs after the run's start", s.SlotsBusyAfter))
			} else {
				notes = append(notes, "never every slot busy at once")
			}
		}
		if s.Side == "lister" || s.Side == "regctl" || strings.HasSuffix(s.Side, "-ls") {
			notes = append(notes, fmt.Sprintf("%d tags counted", s.Scanned))
		}
		if len(s.WorkerPeakRSS) > 0 {
			var ws []string
			for _, b := range s.WorkerPeakRSS {
				ws = append(ws, fmt.Sprintf("%.0f", mib(b)))
			}
			notes = append(notes, "worker processes' peak RSS MiB: "+strings.Join(ws, ", "))
			notes = append(notes, fmt.Sprintf("NATS process %.0f MiB, coordinator process %.0f MiB", mib(s.NATSPeakRSS), mib(s.PeakRSSBytes)))
		}
		if s.InFlight > 0 {
			notes = append(notes, fmt.Sprintf("median %.0f requests inside the registry at once", s.InFlight))
		}
		if s.Scanned > 0 && s.Mallocs > 0 {
			notes = append(notes, fmt.Sprintf("%.1f allocations per listed tag (whole process)", per(float64(s.Mallocs), float64(s.Scanned))))
		}
		if s.ListFailed {
			notes = append(notes, "gave up listing after its retries")
		}
		if s.Error != "" {
			notes = append(notes, "error: "+s.Error)
		}
		if len(notes) > 0 {
			fmt.Fprintf(w, "- %s: %s\n", s.Side, strings.Join(notes, "; "))
		}
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(w)
		for _, c := range r.Checks {
			mark := "MISSED"
			switch {
			case c.Unmeasured:
				mark = "not measured by this run"
			case c.Met:
				mark = "met"
			}
			fmt.Fprintf(w, "- target %s: %s (%s)\n", c.Target, c.Got, mark)
		}
	}
	fmt.Fprintln(w)
}

// reference is the side tagsweep is compared with: the baseline (the existing pruner's
// algorithm), or in the ls scenario the sequential lister.
func (r scenarioResult) reference() (sideResult, bool) {
	if s, ok := r.side("baseline"); ok {
		return s, true
	}
	return r.side("lister")
}

// checks measures the performance targets (docs/performance.md) that apply to the scenario.
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
	var out []check
	base, hasBase := r.reference()
	speedup := func(min float64) {
		if !hasBase {
			return
		}
		x := base.WallSeconds / ts.WallSeconds
		out = append(out, check{Target: fmt.Sprintf("≥ %.0f× faster than the %s", min, base.Side),
			Got: fmt.Sprintf("%.1f× (%.1fs vs %.1fs)", x, ts.WallSeconds, base.WallSeconds), Met: x >= min})
	}
	ofCeiling := func(min float64) {
		if ceiling == nil {
			out = append(out, check{Target: fmt.Sprintf("≥ %.0f%% of the ceiling's request rate", 100*min),
				Got: "no ceiling in this run (add -scenario ceiling first)", Unmeasured: true})
			return
		}
		x := ts.RequestsPerSecond() / ceiling.RequestsPerSecond()
		out = append(out, check{Target: fmt.Sprintf("≥ %.0f%% of the ceiling's request rate", 100*min),
			Got: fmt.Sprintf("%.0f%% (%.0f vs %.0f requests/s)", 100*x, ts.RequestsPerSecond(), ceiling.RequestsPerSecond()), Met: x >= min})
	}
	slotsBusy := func(within float64) {
		slots := r.Workers * o.child.slots
		out = append(out, check{Target: fmt.Sprintf("all %d slots busy within %.0f s of the start", slots, within),
			Got: fmt.Sprintf("%.1f s", ts.SlotsBusyAfter), Met: ts.SlotsBusyAfter >= 0 && ts.SlotsBusyAfter <= within})
		if ts.SlotsBusyAfter < 0 {
			out[len(out)-1].Got = "never"
		}
	}
	switch sc.Name {
	case "daily":
		ofCeiling(0.8)
		speedup(50)
		slotsBusy(3)
		budget := 1.1 * (float64(ts.Eligible) + float64(ts.Eligible)/100 + float64(ts.Shards))
		out = append(out, check{Target: "requests ≤ 1.1 × (eligible + eligible/100 + shards) (informative)",
			Got: fmt.Sprintf("%d requests vs %.0f (eligible %d, shards %d)", ts.Requests, budget, ts.Eligible, ts.Shards),
			Met: float64(ts.Requests) <= budget})
	case "daily-quay":
		speedup(30)
	case "ls":
		speedup(20)
		same := ts.Scanned == int64(r.Tags) && (!hasBase || base.Scanned == ts.Scanned)
		got := fmt.Sprintf("tagsweep ls %d, %s %d, generated %d", ts.Scanned, base.Side, base.Scanned, r.Tags)
		if rc, ok := r.side("regctl"); ok {
			got += fmt.Sprintf(", regctl %d", rc.Scanned)
			same = same && rc.Scanned == ts.Scanned
		}
		out = append(out, check{Target: "the same count", Got: got, Met: same})
	case "numeric":
		out = append(out, check{Target: "≤ 50 shards", Got: fmt.Sprintf("%d shards", ts.Shards), Met: ts.Shards <= 50})
		out = append(out, check{Target: "≤ 2 s", Got: fmt.Sprintf("%.1f s (the whole side, NATS start included)", ts.WallSeconds), Met: ts.WallSeconds <= 2})
	case "backlog":
		speedup(5)
		ofCeiling(0.8)
	case "rate-limited":
		x := ts.SustainedOK / o.rate
		out = append(out, check{Target: "sustained ≥ 90% of R", Got: fmt.Sprintf("%.0f%% (%.0f of %.0f requests/s answered, median of 1 s samples)", 100*x, ts.SustainedOK, o.rate), Met: x >= 0.9})
		y := per(float64(ts.TooMany), float64(ts.Requests))
		out = append(out, check{Target: "429s ≤ 3% of requests", Got: fmt.Sprintf("%.2f%% (%d of %d)", 100*y, ts.TooMany, ts.Requests), Met: y <= 0.03})
		out = append(out, check{Target: "zero failed deletes", Got: fmt.Sprintf("%d", ts.DeleteFailed), Met: ts.DeleteFailed == 0})
	case "restore":
		if td, ok := r.side("tagsweep-digests"); ok {
			x := per(float64(td.Requests), float64(ts.Requests))
			out = append(out, check{Target: "--record-digests: ≤ 2.02× the requests of the same run without it",
				Got: fmt.Sprintf("%.3f× (%d vs %d requests; %d vs %d deleted)", x, td.Requests, ts.Requests, td.Deleted, ts.Deleted), Met: x <= 2.02})
		}
		if rs, ok := r.side("restore"); ok {
			out = append(out, check{Target: "every deleted tag restored", Got: fmt.Sprintf("%d of %d (%d failed, %d skipped)",
				rs.Restored, rs.Deleted, rs.RestoreFailed, rs.RestoreSkipped), Met: rs.Restored == rs.Deleted && rs.RestoreFailed == 0})
			if ceiling != nil {
				rate := per(float64(rs.RestoreRequests), rs.RestoreSeconds)
				x := rate / ceiling.RequestsPerSecond()
				out = append(out, check{Target: "restore ≥ 70% of the ceiling's request rate",
					Got: fmt.Sprintf("%.0f%% (%.0f vs %.0f requests/s; %d tags in %.1fs, %d requests)", 100*x, rate,
						ceiling.RequestsPerSecond(), rs.Restored, rs.RestoreSeconds, rs.RestoreRequests), Met: x >= 0.7})
			}
		}
	case "skewed":
		if ts.MedianShard > 0 {
			got := fmt.Sprintf("%.1fs vs %.1fs (%.1f×), run %.1fs", ts.LongestShard, ts.MedianShard, ts.LongestShard/ts.MedianShard, ts.WallSeconds)
			if ns, ok := r.side("tagsweep-nosplit"); ok && ns.MedianShard > 0 {
				got += fmt.Sprintf("; without splitting %.1fs vs %.1fs (%.0f×), run %.1fs",
					ns.LongestShard, ns.MedianShard, ns.LongestShard/ns.MedianShard, ns.WallSeconds)
			}
			out = append(out, check{Target: "longest shard ≤ 2× the median", Got: got, Met: ts.LongestShard <= 2*ts.MedianShard})
		}
	}
	if len(ts.WorkerPeakRSS) > 0 {
		m := int64(0)
		for _, b := range ts.WorkerPeakRSS {
			m = max(m, b)
		}
		out = append(out, check{Target: "worker peak RSS ≤ 100 MiB", Got: fmt.Sprintf("%.0f MiB (largest worker process)", mib(m)), Met: m <= 100<<20})
	} else {
		// One process holds NATS, the coordinator and every worker: below 100 MiB together
		// each worker is too, above it nothing is known of one worker.
		met := ts.PeakRSSBytes <= 100<<20
		out = append(out, check{Target: "worker peak RSS ≤ 100 MiB (run with -worker-procs to measure a worker alone)",
			Got: fmt.Sprintf("%.0f MiB for NATS, the coordinator and %d workers together", mib(ts.PeakRSSBytes), r.Workers),
			Met: met, Unmeasured: !met})
	}
	if ts.DeleteFailed > 0 && sc.Name != "rate-limited" {
		out = append(out, check{Target: "no failed deletes", Got: fmt.Sprintf("%d", ts.DeleteFailed), Met: false})
	}
	return out
}
