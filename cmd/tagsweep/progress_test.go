package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/proto"
)

func TestRenderBar(t *testing.T) {
	base := progressView{Shards: 25, Done: 12, Scanned: 15_527, Deleted: 3_000, Eligible: 4_000, Rate: 2345, ETA: 80 * time.Second}
	tests := []struct {
		name  string
		v     progressView
		width int
		want  string
	}{
		{name: "wide", v: base, width: 100,
			want: "[=============>                 ]  12/25 shards  15.5k scanned  3.0k deleted  2.3k tags/s  ETA 1m20s"},
		{name: "bar at most 40 wide", v: base, width: 200,
			want: "[==================>                     ]  12/25 shards  15.5k scanned  3.0k deleted  2.3k tags/s  ETA 1m20s"},
		{name: "no room for the bar", v: base, width: 75,
			want: "12/25 shards  15.5k scanned  3.0k deleted  2.3k tags/s  ETA 1m20s"},
		{name: "text cut to the width", v: base, width: 30,
			want: "12/25 shards  15.5k scanned  3"},
		{name: "start: nothing known", v: progressView{Shards: 3, Rate: -1, ETA: -1}, width: 80,
			want: "[                           ]  0/3 shards  0 scanned  0 deleted  - tags/s  ETA -"},
		{name: "no room for a bar of 10", v: progressView{Rate: -1, ETA: -1}, width: 62,
			want: "0/0 shards  0 scanned  0 deleted  - tags/s  ETA -"},
		{name: "room for a bar of 10", v: progressView{Rate: -1, ETA: -1}, width: 63,
			want: "[          ]  0/0 shards  0 scanned  0 deleted  - tags/s  ETA -"},
		{name: "done", v: progressView{Shards: 4, Done: 4, Scanned: 999, Deleted: 999, Rate: 0, ETA: 0}, width: 70,
			want: "[============]  4/4 shards  999 scanned  999 deleted  0 tags/s  ETA 0s"},
		{name: "failed shards count as finished and are named",
			v:     progressView{Shards: 10, Done: 4, Failed: 1, Scanned: 2_500_000, Deleted: 1_200_000, Rate: 12_000, ETA: 2*time.Hour + 5*time.Minute},
			width: 100,
			want:  "[=========>           ]  5/10 shards (1 failed)  2.5M scanned  1.2M deleted  12.0k tags/s  ETA 2h05m"},
		{name: "dry run shows what would go", v: progressView{Shards: 2, Done: 1, Scanned: 10, Eligible: 7, DryRun: true, Rate: 5, ETA: time.Second}, width: 90,
			want: "[==========>            ]  1/2 shards  10 scanned  7 to delete (dry run)  5 tags/s  ETA 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := renderBar(tc.v, tc.width)
			if got != tc.want {
				t.Errorf("renderBar(%+v, %d) =\n%q\nwant\n%q", tc.v, tc.width, got, tc.want)
			}
			if n := utf8.RuneCountInString(got); n > tc.width {
				t.Errorf("renderBar is %d wide, more than %d", n, tc.width)
			}
		})
	}
}

func TestHumanCountAndETA(t *testing.T) {
	counts := []struct {
		n    int64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1.0k"}, {15_527, "15.5k"}, {99_949, "99.9k"}, {99_950, "100k"},
		{250_000, "250k"}, {999_999, "1000k"}, {1_234_567, "1.2M"}, {3_400_000_000, "3.4G"}}
	for _, tc := range counts {
		if got := humanCount(tc.n); got != tc.want {
			t.Errorf("humanCount(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	etas := []struct {
		d    time.Duration
		want string
	}{{0, "0s"}, {1400 * time.Millisecond, "1s"}, {45 * time.Second, "45s"}, {200 * time.Second, "3m20s"},
		{59*time.Minute + 59*time.Second, "59m59s"}, {time.Hour, "1h00m"}, {2*time.Hour + 5*time.Minute + 31*time.Second, "2h06m"}, {30 * time.Hour, "30h00m"}}
	for _, tc := range etas {
		if got := formatETA(tc.d); got != tc.want {
			t.Errorf("formatETA(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestRateMeter(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	m := rateMeter{window: 10 * time.Second}
	steps := []struct {
		at   time.Duration
		n    int64
		want float64
	}{
		{0, 0, -1},              // one sample: no rate yet
		{0, 0, -1},              // no time passed
		{time.Second, 100, 100}, // 100 in 1s
		{5 * time.Second, 500, 100},
		{10 * time.Second, 2000, 200}, // 2000 over the 10s window
		{15 * time.Second, 2000, 150}, // from the sample at 5s (500) to 2000: 1500 in 10s
		{40 * time.Second, 2000, 0},   // idle: the rate falls to 0
	}
	for i, s := range steps {
		if got := m.add(t0.Add(s.at), s.n); got != s.want {
			t.Errorf("step %d: add(+%v, %d) = %v, want %v", i, s.at, s.n, got, s.want)
		}
	}
	if len(m.samples) > 3 {
		t.Errorf("the meter keeps %d samples; it should drop those older than its window", len(m.samples))
	}
}

// progressT0 is the clock of the progress tests at their first status; the run's first
// prune shard was claimed a second before.
var progressT0 = time.Unix(1_800_000_000, 0)

// status is a run of prune shards alone.
func status(total, done, failed int, scanned int64, elapsed time.Duration) coordinator.Status {
	shards := proto.ShardTotals{Total: total, Done: done, Failed: failed}
	return coordinator.Status{Report: proto.Report{
		RunID:           "r1",
		Shards:          shards,
		Tags:            proto.Counters{Scanned: scanned, Eligible: scanned / 2, Deleted: scanned / 2},
		DurationSeconds: elapsed.Seconds(),
	}, Pending: total - done - failed, Prune: shards, PruneStarted: progressT0.Add(-time.Second)}
}

// TestETAPacedByPruneShards: the release-payload shards, done in an instant at the start,
// give no ETA; the first ETA comes from the first prune shard finished, paced from the
// first prune shard's claim.
func TestETAPacedByPruneShards(t *testing.T) {
	claimed := progressT0
	tests := []struct {
		name string
		s    coordinator.Status
		now  time.Time
		want time.Duration // -1 = not shown
	}{
		{name: "nothing claimed", s: coordinator.Status{Prune: proto.ShardTotals{Total: 10}}, now: claimed, want: -1},
		{name: "payload shards done, no prune shard finished",
			s: coordinator.Status{Report: proto.Report{Shards: proto.ShardTotals{Total: 12, Done: 2}, DurationSeconds: 1},
				Prune: proto.ShardTotals{Total: 10}, PruneStarted: claimed},
			now: claimed.Add(time.Second), want: -1},
		{name: "first prune shard finished",
			s: coordinator.Status{Report: proto.Report{Shards: proto.ShardTotals{Total: 12, Done: 3}, DurationSeconds: 41},
				Prune: proto.ShardTotals{Total: 10, Done: 1}, PruneStarted: claimed},
			now: claimed.Add(40 * time.Second), want: 9 * 40 * time.Second},
		{name: "half the prune shards finished",
			s: coordinator.Status{Report: proto.Report{Shards: proto.ShardTotals{Total: 12, Done: 6, Failed: 1}, DurationSeconds: 101},
				Prune: proto.ShardTotals{Total: 10, Done: 4, Failed: 1}, PruneStarted: claimed},
			now: claimed.Add(100 * time.Second), want: 100 * time.Second},
	}
	for _, tc := range tests {
		if got := viewOf(tc.s, -1, tc.now).ETA; got != tc.want {
			t.Errorf("%s: ETA = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Without a terminal, progress is a "progress" log line: the first status at once, then one
// per logEvery however often statuses come, and nothing for the final status.
func TestProgressLogLines(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	t0 := progressT0
	now := t0
	p := newProgress(nil, log)
	p.now = func() time.Time { return now }
	p.logEvery = 30 * time.Second

	for _, s := range []struct {
		at time.Duration
		st coordinator.Status
	}{
		{0, status(10, 0, 0, 0, time.Second)},
		{10 * time.Second, status(10, 1, 0, 1000, 11*time.Second)}, // within logEvery: not logged
		{30 * time.Second, status(10, 4, 1, 5000, 31*time.Second)},
		{31 * time.Second, status(10, 5, 1, 5100, 32*time.Second)}, // not logged
	} {
		now = t0.Add(s.at)
		p.RunStatus(s.st)
	}
	final := status(10, 9, 1, 9000, 60*time.Second)
	final.Final = true
	now = t0.Add(60 * time.Second)
	p.RunStatus(final)
	p.RunStatus(status(10, 9, 1, 9999, 61*time.Second)) // after the end: ignored

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("logged %d lines, want 2:\n%s", len(lines), buf.String())
	}
	first, second := lines[0], lines[1]
	if first["msg"] != "progress" || first["shards"] != 10.0 || first["scanned"] != 0.0 || first["eta"] != nil || first["tags_per_second"] != nil {
		t.Errorf("first line = %v, want progress of 10 shards, nothing scanned, no rate or ETA yet", first)
	}
	// 5 of 10 shards finished in 31s: 31s more. The rate spans the 10s window from the
	// status at 10s (1000 tags, not logged but measured) to 5000 tags at 30s: 200/s.
	want := map[string]any{"msg": "progress", "run": "r1", "shards": 10.0, "shards_done": 4.0, "shards_failed": 1.0, "scanned": 5000.0,
		"eligible": 2500.0, "deleted": 2500.0, "tags_per_second": 200.0, "eta": "31s"}
	for k, v := range want {
		if second[k] != v {
			t.Errorf("second line %s = %v, want %v (line %v)", k, second[k], v, second)
		}
	}
}

// On a terminal, progress redraws one status line; log lines written meanwhile appear above
// it, and the final status takes the line away before the summary.
func TestProgressLiveLine(t *testing.T) {
	var term bytes.Buffer
	live := newLiveLine(&term, func() int { return 81 })
	log := slog.New(slog.NewTextHandler(live, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	p := newProgress(live, log)
	t0 := progressT0
	now := t0
	p.now = func() time.Time { return now }

	p.RunStatus(status(4, 0, 0, 0, time.Second))
	log.Warn("registry slow")
	now = t0.Add(2 * time.Second)
	p.RunStatus(status(4, 2, 0, 200, 3*time.Second))
	final := status(4, 4, 0, 400, 4*time.Second)
	final.Final = true
	p.RunStatus(final)
	log.Info("after")

	bar1 := "[                           ]  0/4 shards  0 scanned  0 deleted  - tags/s  ETA -"
	bar2 := "[=========>          ]  2/4 shards  200 scanned  100 deleted  100 tags/s  ETA 3s"
	want := eraseLine + bar1 +
		eraseLine + "level=WARN msg=\"registry slow\"\n" + bar1 +
		eraseLine + bar2 +
		eraseLine +
		"level=INFO msg=after\n"
	if got := term.String(); got != want {
		t.Errorf("terminal got\n%q\nwant\n%q", got, want)
	}
}

func TestLevelFloor(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(levelFloor{slog.NewTextHandler(&buf, nil), slog.LevelWarn}).With("worker", "w1")
	log.Info("shard claimed")
	log.Warn("shard will be retried")
	if got := buf.String(); strings.Contains(got, "shard claimed") || !strings.Contains(got, "shard will be retried") || !strings.Contains(got, "worker=w1") {
		t.Errorf("levelFloor(warn) logged %q, want the warning only, with its attributes", got)
	}
}

// A run whose stderr is not a terminal logs its progress as structured lines.
func TestRunLogsProgress(t *testing.T) {
	clearEnv(t)
	code, out, errOut := execute(t, t.Context(), "run", "--demo", "--demo-tags", "500", "--demo-latency", "0s",
		"--workers", "1", "--log-format", "json")
	if code != 0 {
		t.Fatalf("run: exit code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var progressLines int
	for _, l := range strings.Split(strings.TrimSpace(errOut), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("stderr line %q is not JSON: %v", l, err)
		}
		if m["msg"] == "progress" {
			progressLines++
			if _, ok := m["shards"].(float64); !ok {
				t.Errorf("progress line without a shard count: %s", l)
			}
		}
	}
	if progressLines == 0 {
		t.Errorf("no progress line in the run's log:\n%s", errOut)
	}
	if strings.Contains(errOut, eraseLine) {
		t.Errorf("terminal escapes in a log that is not a terminal")
	}
}
