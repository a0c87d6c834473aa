package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
)

func events(evs []proto.AuditEvent, err error) iter.Seq2[proto.AuditEvent, error] {
	return func(yield func(proto.AuditEvent, error) bool) {
		for _, ev := range evs {
			if !yield(ev, nil) {
				return
			}
		}
		if err != nil {
			yield(proto.AuditEvent{}, err)
		}
	}
}

func TestExportAudit(t *testing.T) {
	at := time.Date(2026, 11, 22, 3, 15, 0, 123, time.FixedZone("X", 3600))
	evs := []proto.AuditEvent{
		{V: 1, RunID: "r1", ShardID: "0-20261101", Repository: "openshift/ci", Tag: "20261001000000_prune_a", Outcome: proto.OutcomeDeleted, Time: at},
		{V: 1, RunID: "r1", ShardID: "0-20261101", Repository: "openshift/ci", Tag: "20261001000000_prune_b", Outcome: proto.OutcomeFailed, Time: at, Error: "http 500"},
	}
	want := `{"run":"r1","shard":"0-20261101","repository":"openshift/ci","tag":"20261001000000_prune_a","outcome":"deleted","time":"2026-11-22T02:15:00.000000123Z"}
{"run":"r1","shard":"0-20261101","repository":"openshift/ci","tag":"20261001000000_prune_b","outcome":"failed","time":"2026-11-22T02:15:00.000000123Z","error":"http 500"}
`
	boom := errors.New("stream gone")
	tests := []struct {
		name    string
		seq     iter.Seq2[proto.AuditEvent, error]
		want    string
		wantN   int
		wantErr error
	}{
		{name: "events", seq: events(evs, nil), want: want, wantN: 2},
		{name: "none", seq: events(nil, nil)},
		{name: "no audit stream is no events", seq: events(nil, fmt.Errorf("audit: %w", jetstream.ErrStreamNotFound))},
		{name: "an error ends the export", seq: events(evs[:1], boom), want: strings.SplitAfter(want, "\n")[0], wantN: 1, wantErr: boom},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := exportAudit(&buf, tc.seq)
			if n != tc.wantN || !errors.Is(err, tc.wantErr) || (err != nil) != (tc.wantErr != nil) || buf.String() != tc.want {
				t.Errorf("exportAudit = %d, %v, %q; want %d, %v, %q", n, err, buf.String(), tc.wantN, tc.wantErr, tc.want)
			}
		})
	}
}

// TestAudit prunes a registry through the worker and coordinator commands, then exports the
// run's audit trail: it names exactly the tags the registry saw deleted.
func TestAudit(t *testing.T) {
	clearEnv(t)
	const repo = "openshift/ci"
	ns := startNATS(t)
	reg, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if err := reg.AddTags(repo, "", sim.Generate(sim.GenConfig{Seed: 5, Tags: 800, Days: 9, End: time.Now()})...); err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(t.Context())
	workerDone := make(chan int, 1)
	go func() {
		code, _, _ := execute(t, wctx, "worker", "--nats-url", ns.ClientURL(), "--registry", reg.Addr(),
			"--http-addr", "", "--log-format", "json")
		workerDone <- code
	}()
	defer func() {
		stopWorker()
		<-workerDone
	}()
	waitWorker(t, ns)
	for _, args := range [][]string{{"--confirm", "--run-id", "audit-1"}, {"--run-id", "audit-dry"}} {
		args = append([]string{"coordinator", "--nats-url", ns.ClientURL(), "--registry", reg.Addr(), "--plain-http",
			"--repository", repo, "--http-addr", "", "--log-format", "json"}, args...)
		if code, out, errOut := execute(t, t.Context(), args...); code != 0 {
			t.Fatalf("%v: exit code %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
	}
	deleted := reg.DeletedTags(repo)
	if len(deleted) == 0 {
		t.Fatal("the run deleted nothing; the test needs deletions")
	}

	code, out, errOut := execute(t, t.Context(), "audit", "--nats-url", ns.ClientURL(), "--log-format", "json", "audit-1")
	if code != 0 {
		t.Fatalf("audit: exit code %d\n%s", code, errOut)
	}
	var tags []string
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var line map[string]any
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		ts, _ := line["time"].(string)
		when, err := time.Parse(time.RFC3339Nano, ts)
		if line["run"] != "audit-1" || line["shard"] == "" || line["repository"] != repo || line["outcome"] != "deleted" ||
			err != nil || when.IsZero() || len(line) != 6 {
			t.Errorf("audit line %s: want run, shard, repository, tag, outcome deleted and time", l)
		}
		tag, _ := line["tag"].(string)
		tags = append(tags, tag)
	}
	slices.Sort(tags)
	slices.Sort(deleted)
	if !slices.Equal(tags, deleted) {
		t.Errorf("audit names %d tags, the registry deleted %d (equal: %v)", len(tags), len(deleted), slices.Equal(tags, deleted))
	}

	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // stdout
		file     string // written file, "" = none
		wantFile string
		wantErr  string // in stderr
		check    func(t *testing.T, stdout string)
	}{
		{name: "to a file", args: []string{"audit-1", "--output-file", filepath.Join(dir, "a.jsonl")},
			file: "a.jsonl", wantFile: out},
		{name: "the deprecated --output FILE still works and warns", args: []string{"audit-1", "--output", filepath.Join(dir, "old.jsonl")},
			file: "old.jsonl", wantFile: out, wantErr: "--output FILE is deprecated"},
		{name: "jsonl named", args: []string{"audit-1", "-o", "jsonl"}, wantOut: out},
		{name: "a run with nothing to delete exports nothing", args: []string{"audit-dry", "--output-file", filepath.Join(dir, "dry.jsonl")},
			file: "dry.jsonl", wantFile: ""},
		{name: "unknown run", args: []string{"nope", "--output-file", filepath.Join(dir, "nope.jsonl")}, wantCode: exitError},
		{name: "not a run ID", args: []string{"a.>"}, wantCode: exitError},
		{name: "a format and the file in --output", args: []string{"audit-1", "--output", "x.jsonl", "--output-file", "y.jsonl"},
			wantCode: exitError, wantErr: "--output"},
		{name: "csv", args: []string{"audit-1", "-o", "csv"}, check: func(t *testing.T, stdout string) {
			rows, err := csv.NewReader(strings.NewReader(stdout)).ReadAll()
			if err != nil || len(rows) == 0 || !slices.Equal(rows[0], []string{"run", "shard", "repository", "tag", "outcome", "time", "error", "digest", "of"}) {
				t.Fatalf("csv export: %v, header %v", err, rows[:min(1, len(rows))])
			}
			var csvTags []string
			for _, r := range rows[1:] {
				if _, err := time.Parse(time.RFC3339Nano, r[5]); r[0] != "audit-1" || r[2] != repo || r[4] != "deleted" || err != nil {
					t.Errorf("csv row %v: want run audit-1, %s, deleted and a time", r, repo)
				}
				csvTags = append(csvTags, r[3])
			}
			slices.Sort(csvTags)
			if !slices.Equal(csvTags, deleted) {
				t.Errorf("csv names %d tags, the registry deleted %d", len(csvTags), len(deleted))
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"audit", "--nats-url", ns.ClientURL(), "--log-format", "json"}, tc.args...)
			code, got, errOut := execute(t, t.Context(), args...)
			if tc.wantErr != "" && !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("%v: stderr lacks %q:\n%s", args, tc.wantErr, errOut)
			}
			if tc.check != nil {
				tc.check(t, got)
				return
			}
			if code != tc.wantCode || got != tc.wantOut {
				t.Fatalf("%v: exit %d, stdout %q, want %d, %q\n%s", args, code, got, tc.wantCode, tc.wantOut, errOut)
			}
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.Contains(e.Name(), ".tmp-") {
					t.Errorf("temporary file %s left behind", e.Name())
				}
			}
			if tc.file == "" {
				if _, err := os.Stat(filepath.Join(dir, "nope.jsonl")); err == nil {
					t.Errorf("a failed export left its output file")
				}
				return
			}
			data, err := os.ReadFile(filepath.Join(dir, tc.file))
			if err != nil || string(data) != tc.wantFile {
				t.Errorf("%s = %d bytes, %v; want %d bytes", tc.file, len(data), err, len(tc.wantFile))
			}
		})
	}
}
