package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

func TestPrintSummary(t *testing.T) {
	start := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	base := proto.Report{RunID: "r1", Cutoff: start.Add(-120 * time.Hour), StartedAt: start, FinishedAt: start.Add(90 * time.Second),
		DurationSeconds: 90, Repositories: []string{"openshift/ci"}, Shards: proto.ShardTotals{Total: 3, Done: 2, Failed: 1},
		Tags:         proto.Counters{Scanned: 1000, Eligible: 400, Deleted: 390, AlreadyGone: 7, DeleteFailed: 3, Kept: 599, Invalid: 1},
		FailedShards: []string{"s2"}}
	dry := base
	dry.DryRun = true
	dry.Tags.Deleted, dry.Tags.AlreadyGone, dry.Tags.DeleteFailed = 0, 0, 0
	tests := []struct {
		name    string
		report  proto.Report
		want    []string
		notWant []string
	}{
		{name: "confirm", report: base, want: []string{"Duration: 1m30s\n", "Total tags scanned: 1000\n",
			"Tags targeted for pruning: 400\n", "Tags successfully pruned: 390\n", "Tags already gone: 7\n",
			"Tags that failed to delete: 3\n", "Tags kept: 599\n", "Tags with an invalid timestamp (kept): 1\n",
			"Shards: 3 total, 2 done, 1 failed\n", "Failed shards: s2\n", "Cutoff: 2026-11-17T03:00:00Z"},
			notWant: []string{"DRY RUN", "would be pruned"}},
		{name: "dry run", report: dry, want: []string{"DRY RUN: nothing was deleted. 400 tags would be pruned",
			"Tags targeted for pruning: 400\n", "Tags that would be pruned: 400\n"},
			notWant: []string{"Tags successfully pruned"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			printSummary(&buf, tc.report)
			for _, w := range tc.want {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("printSummary() lacks %q:\n%s", w, buf.String())
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(buf.String(), w) {
					t.Errorf("printSummary() has %q:\n%s", w, buf.String())
				}
			}
		})
	}
}

// checkReportShape checks the JSON report has the documented shape.
func checkReportShape(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, data)
	}
	for _, k := range []string{"run_id", "dry_run", "cutoff", "started_at", "finished_at", "duration_seconds", "repositories", "shards", "tags"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("report lacks %q: %s", k, data)
		}
	}
	if c, ok := doc["cutoff"].(string); !ok {
		t.Errorf("report cutoff = %v, want an RFC 3339 string", doc["cutoff"])
	} else if _, err := time.Parse(time.RFC3339, c); err != nil {
		t.Errorf("report cutoff %q is not RFC 3339: %v", c, err)
	}
	var keys []string
	for k := range doc["shards"].(map[string]any) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"done", "failed", "total"}; !slices.Equal(keys, want) {
		t.Errorf("report shards keys = %v, want %v", keys, want)
	}
	keys = keys[:0]
	for k := range doc["tags"].(map[string]any) {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"already_gone", "delete_failed", "deleted", "eligible", "invalid", "kept", "scanned"}; !slices.Equal(keys, want) {
		t.Errorf("report tags keys = %v, want %v", keys, want)
	}
	return doc
}

func TestWriteReport(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.json")
	r := proto.Report{RunID: "r1", DryRun: true, Cutoff: time.Date(2026, 11, 17, 3, 0, 0, 0, time.UTC),
		Repositories: []string{"openshift/ci"}, Tags: proto.Counters{Scanned: 5, Eligible: 2}}
	if err := writeReport(path, r); err != nil {
		t.Fatalf("writeReport() = %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := checkReportShape(t, data)
	if doc["run_id"] != "r1" || doc["dry_run"] != true {
		t.Errorf("report = %s, want run r1, dry run", data)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries after writeReport, want only the report (no temp files)", len(entries))
	}
	if err := writeReport(filepath.Join(dir, "missing", "r.json"), r); err == nil {
		t.Errorf("writeReport(missing dir) = nil, want an error")
	}
}
