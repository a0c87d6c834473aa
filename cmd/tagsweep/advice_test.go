package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tagsweep/tagsweep/config"
)

// TestResumeAdvice checks what a run that did not finish tells its operator: a capped run is
// not resumed (a new run is), a `run` without --data-dir cannot be resumed and says how to make
// one resumable, and `run` is told to run `run` again, not a coordinator.
func TestResumeAdvice(t *testing.T) {
	tests := []struct {
		name        string
		advice      resumeAdvice
		write       func(a resumeAdvice, w *bytes.Buffer)
		want, never []string
	}{
		{name: "capped coordinator run starts anew",
			advice: resumeAdvice{command: config.CmdCoordinator, runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.failed(w, 3, true) },
			want:   []string{"used its whole delete cap", "start a new run (without --run-id r1)"},
			never:  []string{"Resume", "coordinator --run-id"}},
		{name: "capped run starts anew",
			advice: resumeAdvice{command: config.CmdRun, dataDir: "/var/lib/ts", runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.failed(w, 3, true) },
			want:   []string{"start a new run"},
			never:  []string{"Resume", "--data-dir /var/lib/ts --run-id"}},
		{name: "failed shards of a coordinator run",
			advice: resumeAdvice{command: config.CmdCoordinator, runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.failed(w, 2, false) },
			want:   []string{"Resume the failed shards from their cursors: tagsweep coordinator --run-id r1"}},
		{name: "failed shards of a run with a store",
			advice: resumeAdvice{command: config.CmdRun, dataDir: "/var/lib/my ts", runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.failed(w, 2, false) },
			want:   []string{"Resume the failed shards from their cursors: tagsweep run --data-dir '/var/lib/my ts' --run-id r1"},
			never:  []string{"coordinator"}},
		{name: "failed shards of a run without a store",
			advice: resumeAdvice{command: config.CmdRun, runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.failed(w, 2, false) },
			want:   []string{"Run r1 cannot be resumed", "temporary", "give it --data-dir DIR"},
			never:  []string{"Resume the", "coordinator"}},
		{name: "no failed shards, no advice",
			advice: resumeAdvice{command: config.CmdRun, runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.failed(w, 0, false) },
			never:  []string{"r1"}},
		{name: "interrupted run with a store",
			advice: resumeAdvice{command: config.CmdRun, dataDir: "d", runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.interrupted(w) },
			want:   []string{"Interrupted", "Resume it: tagsweep run --data-dir d --run-id r1"},
			never:  []string{"coordinator"}},
		{name: "interrupted run without a store",
			advice: resumeAdvice{command: config.CmdRun, runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.interrupted(w) },
			want:   []string{"Interrupted", "cannot be resumed", "--data-dir DIR"},
			never:  []string{"Resume it", "coordinator"}},
		{name: "interrupted coordinator",
			advice: resumeAdvice{command: config.CmdCoordinator, runID: "r1"},
			write:  func(a resumeAdvice, w *bytes.Buffer) { a.interrupted(w) },
			want:   []string{"Resume it: tagsweep coordinator --run-id r1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			tc.write(tc.advice, &buf)
			got := buf.String()
			for _, s := range tc.want {
				if !strings.Contains(got, s) {
					t.Errorf("advice lacks %q:\n%s", s, got)
				}
			}
			for _, s := range tc.never {
				if strings.Contains(got, s) {
					t.Errorf("advice says %q:\n%s", s, got)
				}
			}
		})
	}
}
