package main

import (
	"context"
	"encoding/xml"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/registry/sim"
)

func TestParseVmHWM(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"Name:\tbench\nVmPeak:\t  9000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n", 12345 << 10},
		{"VmHWM:\t1 MB\n", 0},
		{"Name:\tbench\n", 0},
	}
	for _, tt := range tests {
		if got := parseVmHWM([]byte(tt.in)); got != tt.want {
			t.Errorf("parseVmHWM(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
	if peakRSS() <= 0 {
		t.Error("peakRSS() of this process is not positive")
	}
}

// TestBaseline runs the baseline algorithm against the sim: it must list every tag once,
// page by page, and delete exactly the eligible ones.
func TestBaseline(t *testing.T) {
	sc := scenarios["backlog"]
	gen := sc.genConfig(2500)
	tags := sim.Generate(gen)
	reg := sim.New(sim.Config{PageCap: 100})
	if err := reg.AddTags(benchRepo, "", tags...); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	p := policy.Defaults()
	p.Cutoff = gen.Cutoff
	rules, err := policy.New(p)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, tag := range tags {
		if rules.Decide(tag).Verdict == policy.Delete {
			want++
		}
	}
	got := runBaseline(context.Background(), baselineConfig{Base: srv.URL, Repo: benchRepo, Rules: rules,
		PageSize: 100, Pool: 10, Retries: 1, RetryDelay: time.Millisecond, Client: srv.Client()})
	if got.ListFailed || got.Scanned != int64(len(tags)) || got.Targeted != int64(want) || got.Deleted != int64(want) || got.Failed != 0 {
		t.Errorf("runBaseline = %+v, want %d scanned and %d targeted and deleted", got, len(tags), want)
	}
	st := reg.Stats()
	if lists, pages := st.Requests[sim.KindList], int64((len(tags)+99)/100); lists < pages || lists > pages+1 {
		t.Errorf("baseline listed %d pages, want %d or one more", lists, pages)
	}
	if n := reg.Len(benchRepo); n != len(tags)-want {
		t.Errorf("%d tags left, want %d", n, len(tags)-want)
	}
}

func TestScenarioNames(t *testing.T) {
	if _, err := scenarioNames("daily,nope"); err == nil {
		t.Error("unknown scenario accepted")
	}
	all, err := scenarioNames("all")
	if err != nil || len(all) != len(scenarios) {
		t.Errorf("all = %v, %v; want every scenario", all, err)
	}
}

// benchClient serves n generated tags from an in-process sim with no latency and returns a
// registry client for it.
func benchClient(b *testing.B, n int) (*registry.OCI, *sim.Registry, []string) {
	b.Helper()
	tags := sim.Generate(sim.GenConfig{Seed: 1, Tags: n, End: genEnd})
	srv, err := sim.Start(b.Context(), "127.0.0.1:0", sim.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Close() })
	if err := srv.AddTags(benchRepo, "", tags...); err != nil {
		b.Fatal(err)
	}
	c, err := newClient(srv.Addr(), 8, nil)
	if err != nil {
		b.Fatal(err)
	}
	return c, srv.Registry, tags
}

// BenchmarkListTag is the client side of listing, per listed tag: one tags/list page of
// 100 through the registry client (regclient, the guard, the page check), and the policy's
// decision on each tag. allocs/op is per tag.
func BenchmarkListTag(b *testing.B) {
	c, _, tags := benchClient(b, 100_000)
	p := policy.Defaults()
	p.Cutoff = genEnd
	rules, err := policy.New(p)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	last, listed := "", 0
	for b.Loop() {
		if listed%100 == 0 {
			page, err := c.List(b.Context(), benchRepo, last, 100)
			if err != nil {
				b.Fatal(err)
			}
			if len(page.Tags) < 100 {
				last = ""
			} else {
				last = page.Tags[len(page.Tags)-1]
			}
		}
		_ = rules.Decide(tags[listed%len(tags)])
		listed++
	}
}

// BenchmarkDeleteTag is one tag delete through the registry client.
func BenchmarkDeleteTag(b *testing.B) {
	c, reg, tags := benchClient(b, 200_000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(tags) {
			b.StopTimer()
			_ = reg.AddTags(benchRepo, "", tags...)
			i = 0
			b.StartTimer()
		}
		if err := c.Delete(b.Context(), benchRepo, tags[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// TestShardSpans: the time until every slot held a shard counts shards claimed and not yet
// finished, a shard that ends freeing its slot before one starting at the same moment.
func TestShardSpans(t *testing.T) {
	start := time.UnixMilli(1_000_000)
	at := func(ms int64) time.Time { return time.UnixMilli(1_000_000 + ms) }
	shards := []proto.ShardRecord{
		{StartedAt: at(0), FinishedAt: at(1000)},
		{StartedAt: at(500), FinishedAt: at(3000)},
		{StartedAt: at(1000), FinishedAt: at(4000)}, // takes the slot the first frees
		{StartedAt: at(2500), FinishedAt: at(5000)}, // the third at once: 2.5 s
		{}, // never claimed
	}
	spans, busy := shardSpans(shards, start, 3)
	if len(spans) != 4 || busy != 2.5 {
		t.Errorf("shardSpans = %d spans, busy after %v; want 4, 2.5", len(spans), busy)
	}
	if _, busy := shardSpans(shards, start, 4); busy != -1 {
		t.Errorf("4 slots: busy after %v, want -1 (never)", busy)
	}
}

// TestSVG: the drawing is well-formed XML with a row per side that has a timeline.
func TestSVG(t *testing.T) {
	r := scenarioResult{Scenario: "daily", Tags: 100, Latency: "50ms", Sides: []sideResult{
		{Side: "baseline", WallSeconds: 2, Deleted: 10, Timeline: []sample{{T: 0.1}, {T: 1, Deleted: 5}, {T: 2, Deleted: 10}}},
		{Side: "tagsweep", WallSeconds: 0.3, Deleted: 10, Timeline: []sample{{T: 0.1, Shards: 2}, {T: 0.2, Deleted: 10, Shards: 1}}},
		{Side: "ceiling"},
	}}
	var b strings.Builder
	drawSVG(&b, r)
	dec := xml.NewDecoder(strings.NewReader(b.String()))
	paths := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed: %v\n%s", err, b.String())
		}
		if el, ok := tok.(xml.StartElement); ok && el.Name.Local == "path" {
			paths++
		}
	}
	if paths != 3 { // two deleted lines and one shards line
		t.Errorf("%d paths, want 3", paths)
	}
}

// TestChecks: each scenario reports its own targets in order, then the worker RSS; a failed
// delete is a missed target except where the rate-limited scenario has one of its own; a
// target that needs a side or a ceiling the run lacks is left out or said unmeasured.
func TestChecks(t *testing.T) {
	o := options{rate: 500}
	o.child.slots = 4
	base := sideResult{Side: "baseline", WallSeconds: 100}
	ts := sideResult{Side: "tagsweep", WallSeconds: 1, Requests: 1000, Shards: 40, SlotsBusyAfter: 1,
		SustainedOK: 480, TooMany: 10, PeakRSSBytes: 50 << 20, DeleteFailed: 1}
	ceiling := &sideResult{Side: "ceiling", WallSeconds: 1, Requests: 1100}
	tests := []struct {
		scenario string
		sides    []sideResult
		ceiling  *sideResult
		want     []string // "target: mark"
	}{
		{"daily", []sideResult{base, ts}, ceiling, []string{
			"≥ 80% of the ceiling's request rate: met", "≥ 50× faster than the baseline: met",
			"all 32 slots busy within 3 s of the start: met",
			"requests ≤ 1.1 × (eligible + eligible/100 + shards) (informative): MISSED",
			"worker peak RSS ≤ 100 MiB (run with -worker-procs to measure a worker alone): met", "no failed deletes: MISSED"}},
		{"backlog", []sideResult{ts}, nil, []string{
			"≥ 80% of the ceiling's request rate: not measured by this run",
			"worker peak RSS ≤ 100 MiB (run with -worker-procs to measure a worker alone): met", "no failed deletes: MISSED"}},
		{"rate-limited", []sideResult{base, ts}, nil, []string{
			"sustained ≥ 90% of R: met", "429s ≤ 3% of requests: met", "zero failed deletes: MISSED",
			"worker peak RSS ≤ 100 MiB (run with -worker-procs to measure a worker alone): met"}},
		{"numeric", []sideResult{{Side: "tagsweep", WallSeconds: 3, Shards: 31, PeakRSSBytes: 200 << 20, WorkerPeakRSS: []int64{20 << 20, 30 << 20}}}, nil, []string{
			"≤ 50 shards: met", "≤ 2 s: MISSED", "worker peak RSS ≤ 100 MiB: met"}},
		{"restore", []sideResult{ts}, ceiling, []string{ // no digests or restore side
			"worker peak RSS ≤ 100 MiB (run with -worker-procs to measure a worker alone): met", "no failed deletes: MISSED"}},
		// Both restore sides: the digest path is judged against 70%, the Quay path informative.
		{"restore", []sideResult{ts,
			{Side: "restore", Deleted: 10, Restored: 10, RestoreRequests: 500, RestoreSeconds: 1},
			{Side: "restore-quay", Deleted: 10, Restored: 9, RestoreFailed: 1, RestoreRequests: 100, RestoreSeconds: 1}}, ceiling, []string{
			"every deleted tag restored: met", "restore ≥ 70% of the ceiling's request rate: MISSED",
			"every deleted tag restored (restore-quay): MISSED", "restore-quay: its request rate against the ceiling (informative): met",
			"worker peak RSS ≤ 100 MiB (run with -worker-procs to measure a worker alone): met", "no failed deletes: MISSED"}},
		{"ceiling", []sideResult{*ceiling}, nil, []string{"ceiling (informative): met"}},
		// The plan's balance is judged without splitting: a balanced nosplit side meets it even
		// though the splitting side's shard lifetimes are far apart, and an unbalanced one misses.
		{"skewed", []sideResult{{Side: "tagsweep-nosplit", LongestShard: 15, MedianShard: 10, PeakRSSBytes: 50 << 20},
			{Side: "tagsweep", LongestShard: 40, MedianShard: 5, PeakRSSBytes: 50 << 20}}, nil, []string{
			"longest shard ≤ 2× the median (the plan's balance, without splitting): met",
			"worker peak RSS ≤ 100 MiB (run with -worker-procs to measure a worker alone): met"}},
		{"skewed", []sideResult{{Side: "tagsweep-nosplit", LongestShard: 25, MedianShard: 10, PeakRSSBytes: 50 << 20},
			{Side: "tagsweep", LongestShard: 6, MedianShard: 5, PeakRSSBytes: 50 << 20}}, nil, []string{
			"longest shard ≤ 2× the median (the plan's balance, without splitting): MISSED",
			"worker peak RSS ≤ 100 MiB (run with -worker-procs to measure a worker alone): met"}},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			r := scenarioResult{Scenario: tc.scenario, Workers: 8, Tags: 10, Sides: tc.sides}
			var got []string
			for _, c := range checks(scenarios[tc.scenario], o, r, ceilings{zero: tc.ceiling}) {
				got = append(got, c.Target+": "+c.mark())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("checks:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// TestCeilingShare: a rate is said as a share of the zero-latency ceiling, with the share the
// ceiling's own loop reached at the latency when ceiling-latency ran.
func TestCeilingShare(t *testing.T) {
	zero := &sideResult{Side: "ceiling", WallSeconds: 1, Requests: 1000}
	latency := &sideResult{Side: "ceiling", WallSeconds: 1, Requests: 600}
	x, got := ceilings{zero: zero}.share(500)
	if x != 0.5 || got != "50% (500 vs 1000 requests/s)" {
		t.Errorf("share without ceiling-latency = %v, %q", x, got)
	}
	x, got = ceilings{zero: zero, latency: latency}.share(500)
	if want := "50% (500 vs 1000 requests/s); the ceiling's own loop at this latency reached 60% (ceiling-latency, 600 requests/s)"; x != 0.5 || got != want {
		t.Errorf("share with ceiling-latency = %v, %q, want %q", x, got, want)
	}
}
