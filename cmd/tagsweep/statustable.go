package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/tagsweep/tagsweep/proto"
)

// tableWidth is what `status RUN -o table` fits in; -o wide cuts nothing short.
const tableWidth = 120

func printRuns(w io.Writer, runs []statusRun, wide bool) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "RUN\tSTATE\tMODE\tSTARTED\tDURATION\tREPOSITORIES\tSHARDS\tSCANNED\tELIGIBLE\tDELETED\tCOORDINATOR\tREASON")
	} else {
		fmt.Fprintln(tw, "RUN\tSTATE\tMODE\tSTARTED\tDURATION\tREPOSITORIES\tSHARDS\tDELETED\tCOORDINATOR\tREASON")
	}
	for _, r := range runs {
		repos, reason := strings.Join(r.Repositories, ","), oneLine(r.Reason)
		if r.StopRequested != nil && r.State == proto.RunRunning {
			reason = "stopping: " + oneLine(r.StopRequested.Reason)
		}
		shards := fmt.Sprintf("%d/%d", r.Shards.Done, r.Shards.Total)
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.Run, r.State, mode(r.DryRun),
				r.StartedAt.Format(time.RFC3339), duration(r), repos, shards, r.Tags.Scanned, r.Tags.Eligible,
				r.Tags.Deleted, coordinatorState(r, true), reason)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Run, r.State, mode(r.DryRun),
			r.StartedAt.Format("2006-01-02 15:04"), duration(r), truncate(repos, 24), shards, r.Tags.Deleted,
			coordinatorState(r, false), truncate(reason, 36))
	}
	tw.Flush()
}

// coordinatorState describes a run's coordinator: alive or gone while the run is running, and who
// it is in the wide table.
func coordinatorState(r statusRun, wide bool) string {
	if r.State.Finished() && !r.Coordinator.Alive {
		return "-"
	}
	s := "gone"
	if r.Coordinator.Alive {
		s = "alive"
	}
	if wide && r.Coordinator.Holder != "" {
		s += " (" + r.Coordinator.Holder + ")"
	}
	return s
}

func printRun(w io.Writer, r statusRun, shards []statusShard, wide bool, staleAfter time.Duration) {
	line := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		if !wide {
			s = truncate(s, tableWidth)
		}
		fmt.Fprintln(w, s)
	}
	line("Run:          %s (%s, %s)", r.Run, r.State, mode(r.DryRun))
	line("Coordinator:  %s", coordinatorState(r, true))
	line("Registry:     %s %s", r.Registry, strings.Join(r.Repositories, ", "))
	line("Cutoff:       %s", r.Cutoff.Format(time.RFC3339))
	line("Started:      %s (%s)", r.StartedAt.Format(time.RFC3339), duration(r))
	if r.Reason != "" {
		line("Reason:       %s", oneLine(r.Reason))
	}
	if st := r.StopRequested; st != nil && r.State == proto.RunRunning {
		line("Stopping:     asked by %s at %s: %s", st.By, st.At.Format(time.RFC3339), oneLine(st.Reason))
	}
	s := r.Shards
	line("Shards:       %d: %d done, %d failed, %d running (%d stale), %d pending", s.Total, s.Done, s.Failed, s.Running, s.Stale, s.Pending)
	t := r.Tags
	line("Tags:         %d scanned, %d eligible, %d deleted, %d already gone, %d delete failed", t.Scanned, t.Eligible,
		t.Deleted, t.AlreadyGone, t.DeleteFailed)
	line("              %d kept, %d invalid", t.Kept, t.Invalid)
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "SHARD\tSTATE\tREPOSITORY\tAFTER\tTHROUGH\tCURSOR\tOWNER\tATTEMPT\tHEARTBEAT\tSCANNED\tELIGIBLE\tDELETED\tERROR")
	} else {
		fmt.Fprintln(tw, "SHARD\tSTATE\tTHROUGH\tCURSOR\tTRY\tHEARTBEAT\tSCANNED\tDELETED\tERROR")
	}
	for _, s := range shards {
		hb := "-"
		if s.Heartbeat != nil {
			hb = s.heartbeat.String()
			if s.Stale {
				hb += " stale"
			}
		}
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\n",
				s.Shard, s.State, s.Repository, dash(s.After), dash(s.Through), dash(s.Cursor), dash(s.Owner), s.Attempt,
				hb, s.Counters.Scanned, s.Counters.Eligible, s.Counters.Deleted, oneLine(s.LastError))
			continue
		}
		// At most 22+7+16+16+3+10+9+9 characters and 8 gaps of 2 before ERROR: ERROR gets the rest of 120.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n",
			truncate(s.Shard, 22), s.State, truncate(dash(s.Through), 16), truncate(dash(s.Cursor), 16), min(s.Attempt, 999),
			truncate(hb, 10), truncate(strconv.FormatInt(s.Counters.Scanned, 10), 9),
			truncate(strconv.FormatInt(s.Counters.Deleted, 10), 9), truncate(oneLine(s.LastError), 12))
	}
	tw.Flush()
	if r.Shards.Stale > 0 {
		fmt.Fprintf(w, "\n%d running shards were not written for more than %s (stale): their worker may be gone.\n"+
			"JetStream redelivers a shard whose worker stopped heartbeating; one on its last delivery is failed\n"+
			"as abandoned, and resuming the run (--run-id %s) resumes it from its cursor.\n", r.Shards.Stale, staleAfter, r.Run)
	}
}

func duration(r statusRun) string {
	return (time.Duration(r.DurationSeconds) * time.Second).String()
}

func mode(dryRun bool) string {
	if dryRun {
		return "dry run"
	}
	return "confirm"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a multi-line text (joined errors) on one table line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// truncate cuts s to at most n characters (runes), marking a cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
