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

// writeMarkdown writes a scenario's section of the report: what it is, a table of its sides,
// notes on each side, and its targets.
func writeMarkdown(w io.Writer, r scenarioResult) {
	fmt.Fprintf(w, "### %s\n\n%s. %d tags (%d prune tags before the cutoff), latency %s, %d workers",
		r.Scenario, r.About, r.Tags, r.EligibleGen, r.Latency, r.Workers)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", limit %.0f requests/s", r.Rate)
	}
	fmt.Fprint(w, ".\n\n")
	writeTable(w, r)
	fmt.Fprintln(w)
	for _, s := range r.Sides {
		if notes := sideNotes(s); len(notes) > 0 {
			fmt.Fprintf(w, "- %s: %s\n", s.Side, strings.Join(notes, "; "))
		}
	}
	if len(r.Checks) > 0 {
		fmt.Fprintln(w)
		for _, c := range r.Checks {
			fmt.Fprintf(w, "- target %s: %s (%s)\n", c.Target, c.Got, c.mark())
		}
	}
	fmt.Fprintln(w)
}

// writeTable writes the table of a scenario's sides, each with its speed-up over the reference.
func writeTable(w io.Writer, r scenarioResult) {
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
}

// sideNotes are what the table does not show of a side: its shards, its processes, its
// allocations, and how it failed.
func sideNotes(s sideResult) []string {
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
	return notes
}

// reference is the side tagsweep is compared with: the baseline (the existing pruner's
// algorithm), or in the ls scenario the sequential lister.
func (r scenarioResult) reference() (sideResult, bool) {
	if s, ok := r.side("baseline"); ok {
		return s, true
	}
	return r.side("lister")
}
