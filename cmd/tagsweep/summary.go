package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// printSummary prints a run's outcome with the existing pruner's counter lines
// (Duration, Total tags scanned, Tags targeted for pruning, Tags successfully pruned), so
// its operators and their log searches recognise them, plus tagsweep's own.
func printSummary(w io.Writer, r proto.Report) {
	t := r.Tags
	if r.DryRun {
		fmt.Fprintf(w, "DRY RUN: nothing was deleted. %d tags would be pruned; run again with --confirm to delete them.\n", t.Eligible)
	}
	fmt.Fprintf(w, "Run: %s\n", r.RunID)
	fmt.Fprintf(w, "Repositories: %s\n", strings.Join(r.Repositories, ", "))
	fmt.Fprintf(w, "Cutoff: %s (tags dated before it are eligible)\n", r.Cutoff.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Duration: %s\n", time.Duration(r.DurationSeconds*float64(time.Second)).Round(time.Millisecond))
	fmt.Fprintf(w, "Total tags scanned: %d\n", t.Scanned)
	fmt.Fprintf(w, "Tags targeted for pruning: %d\n", t.Eligible)
	if r.DryRun {
		fmt.Fprintf(w, "Tags that would be pruned: %d\n", t.Eligible)
	} else {
		fmt.Fprintf(w, "Tags successfully pruned: %d\n", t.Deleted)
		fmt.Fprintf(w, "Tags already gone: %d\n", t.AlreadyGone)
		fmt.Fprintf(w, "Tags that failed to delete: %d\n", t.DeleteFailed)
	}
	fmt.Fprintf(w, "Tags kept: %d\n", t.Kept)
	fmt.Fprintf(w, "Tags with an invalid timestamp (kept): %d\n", t.Invalid)
	fmt.Fprintf(w, "Shards: %d total, %d done, %d failed\n", r.Shards.Total, r.Shards.Done, r.Shards.Failed)
	if len(r.FailedShards) > 0 {
		fmt.Fprintf(w, "Failed shards: %s\n", strings.Join(r.FailedShards, ", "))
	}
	if r.Reason != "" {
		fmt.Fprintf(w, "Stopped: %s\n", r.Reason)
	}
}

// writeReport writes r as JSON to path, atomically: a reader never sees half a report.
func writeReport(path string, r any) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding report: %w", err)
	}
	data = append(data, '\n')
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing report %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("writing report %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing report %s: %w", path, err)
	}
	return nil
}
