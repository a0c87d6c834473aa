package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/registry/sim"
)

// scenario is one shape of repository and registry.
type scenario struct {
	Name        string
	About       string
	DefaultTags int
	Eligible    float64 // share of prune tags dated before the cutoff
	SkewFactor  float64 // one day this many times denser (0: none)
	Limited     bool    // the registry answers 429 above -rate
	ZeroLatency bool
	// Daily: the prune tags span TTL + 2 = 7 days and the cutoff falls at the end of the
	// oldest one, so the eligible tags are that one day (a repository pruned daily).
	Daily bool
	// Latency overrides -latency (daily-quay: Quay's).
	Latency time.Duration
	// PageCap is the most tags the registry returns per page (0: the sim's default, 1000).
	PageCap int
	// Numeric: the tags are seven-digit build numbers, none of them a prune tag.
	Numeric bool
	// DeleteLatency: only deletes wait the latency (lists answer at once), and the ceiling
	// side keeps CeilingInFlight deletes in flight instead of -ceiling-concurrency.
	DeleteLatency   bool
	CeilingInFlight int
	Sides           []string
}

var scenarios = map[string]scenario{
	"daily": {Name: "daily", About: "the daily run: prune tags over TTL + 2 = 7 days, the oldest day (1/7 of them) eligible",
		DefaultTags: 1_000_000, Daily: true, Sides: []string{"baseline", "tagsweep"}},
	"daily-quay": {Name: "daily-quay", About: "the daily run at Quay's latency (200 ms) and page cap (100 tags)",
		DefaultTags: 200_000, Daily: true, Latency: 200 * time.Millisecond, PageCap: 100, Sides: []string{"baseline", "tagsweep"}},
	"ls": {Name: "ls", About: "the inventory (tagsweep ls, nothing deleted) against one sequential n=100 lister, on the daily namespace, 100-tag pages",
		DefaultTags: 1_000_000, Daily: true, PageCap: 100, Sides: []string{"lister", "tagsweep-ls", "regctl"}},
	"numeric": {Name: "numeric", About: "3,000 seven-digit build-number tags, no prune tag: planning must not make a shard per tag",
		DefaultTags: 3_000, Numeric: true, Sides: []string{"baseline", "tagsweep"}},
	"backlog": {Name: "backlog", About: "a backlog: ~95% of the tags are eligible",
		DefaultTags: 1_000_000, Eligible: 0.95, Sides: []string{"baseline", "tagsweep"}},
	"rate-limited": {Name: "rate-limited", About: "a backlog on a registry that answers 429 without Retry-After above R requests/s (all clients together)",
		DefaultTags: 100_000, Eligible: 0.95, Limited: true, Sides: []string{"baseline", "tagsweep"}},
	"skewed": {Name: "skewed", About: "a backlog with one day 20x denser than the rest; tagsweep without and with dynamic splitting",
		DefaultTags: 1_000_000, Eligible: 0.95, SkewFactor: 20, Sides: []string{"baseline", "tagsweep-nosplit", "tagsweep"}},
	"restore": {Name: "restore", About: "undo a backlog: a run without and with --record-digests, then restore every tag the latter deleted by digest (restore), and every tag a run without digests deleted through Quay's tag history (restore-quay); the restore sides time the restore alone",
		DefaultTags: 100_000, Eligible: 1, Sides: []string{"tagsweep", "tagsweep-digests", "restore", "restore-quay"}},
	"ceiling": {Name: "ceiling", About: "requests/s the registry client and the sim reach together with zero latency (deletes, one list per 100)",
		DefaultTags: 300_000, Eligible: 1, ZeroLatency: true, Sides: []string{"ceiling"}},
	"ceiling-latency": {Name: "ceiling-latency", About: "the ceiling's client and sim with every delete waiting the latency and 1,024 deletes in flight (lists answer at once): what HTTP/1.1 at that latency costs the same two processes, without tagsweep",
		DefaultTags: 300_000, Eligible: 1, DeleteLatency: true, CeilingInFlight: 1024, Sides: []string{"ceiling"}},
}

// genEnd is the newest tag time of every generated namespace: fixed, so runs are comparable.
var genEnd = time.Date(2026, 7, 1, 12, 0, 0, 0, time.UTC)

// genConfig is the namespace of a scenario. The cutoff is End - 5 days, and exactly the
// Eligible share of the prune tags is dated before it; a daily scenario's prune tags span 7
// calendar days and its cutoff is the end of the oldest.
func (sc scenario) genConfig(tags int) sim.GenConfig {
	if sc.Daily {
		day := genEnd.Truncate(24 * time.Hour)
		return sim.GenConfig{Seed: 42, Tags: tags, Days: 7, End: genEnd, Cutoff: day.AddDate(0, 0, -5), EligibleFraction: 1.0 / 7}
	}
	g := sim.GenConfig{Seed: 42, Tags: tags, Days: 30, End: genEnd, Cutoff: genEnd.Add(-5 * 24 * time.Hour),
		EligibleFraction: sc.Eligible}
	if sc.SkewFactor > 0 {
		g.SkewDay, g.SkewFactor = 12, sc.SkewFactor // a day well before the cutoff
	}
	return g
}

type scenarioResult struct {
	Scenario    string       `json:"scenario"`
	About       string       `json:"about"`
	Tags        int          `json:"tags"`
	EligibleGen int          `json:"eligible_generated"` // prune tags dated before the cutoff
	Latency     string       `json:"latency"`
	Workers     int          `json:"workers"`
	Rate        float64      `json:"rate_limit,omitempty"`
	Sides       []sideResult `json:"sides"`
	Checks      []check      `json:"checks"`
}

// check is one performance target of docs/performance.md, measured.
type check struct {
	Target string `json:"target"`
	Got    string `json:"got"`
	Met    bool   `json:"met"`
	// Unmeasured: the run cannot tell (Met is then false and means nothing).
	Unmeasured bool `json:"unmeasured,omitempty"`
}

// runScenario generates the scenario's tags and runs each of its sides that o asks for, one
// after the other, each against a fresh copy of the tags.
func runScenario(ctx context.Context, o options, sc scenario, ceil ceilings, progress func(string)) (scenarioResult, error) {
	tags, gen, eligible := sc.generate(o, progress)
	latency := sc.latency(o)
	res := scenarioResult{Scenario: sc.Name, About: sc.About, Tags: len(tags), EligibleGen: eligible,
		Latency: latency.String(), Workers: o.workers}
	if sc.Limited {
		res.Rate = o.rate
	}
	for _, side := range sc.Sides {
		reference := side == "baseline" || side == "lister" || side == "regctl"
		switch {
		case reference && o.reuse != "":
			r, err := reusedBaseline(o.reuse, res, side)
			if err != nil {
				return res, err
			}
			progress(fmt.Sprintf("%s: %s taken from %s (%.1fs)", sc.Name, side, o.reuse, r.WallSeconds))
			res.Sides = append(res.Sides, r)
		case o.runs(side, reference):
			progress(fmt.Sprintf("%s: running %s", sc.Name, side))
			r, err := runSide(ctx, o, sc, side, tags, latency, gen.Cutoff)
			if err != nil {
				return res, fmt.Errorf("%s: %w", side, err)
			}
			progress(fmt.Sprintf("%s: %s took %.1fs (%d requests, %d deleted, %d delete failures)%s", sc.Name, side,
				r.WallSeconds, r.Requests, r.Deleted, r.DeleteFailed, errSuffix(r.Error)))
			res.Sides = append(res.Sides, r)
		}
	}
	res.Checks = checks(sc, o, res, ceil)
	return res, nil
}

// runs says whether o runs side (a reference side when reference): -baseline=false skips the
// reference sides, -tagsweep=false tagsweep's (not the ceiling), and regctl needs its binary.
func (o options) runs(side string, reference bool) bool {
	switch {
	case reference && !o.baseline, !reference && side != "ceiling" && !o.tagsweep:
		return false
	case side == "regctl":
		return o.regctl != ""
	}
	return true
}

// generate makes the scenario's tags (o.tags of them, or its default) and counts the prune
// tags dated before the cutoff.
func (sc scenario) generate(o options, progress func(string)) (tags []string, gen sim.GenConfig, eligible int) {
	n := o.tags
	if n == 0 || sc.Numeric { // the numeric scenario's count is its point
		n = sc.DefaultTags
	}
	gen = sc.genConfig(n)
	start := time.Now()
	if sc.Numeric {
		tags = numericTags(n)
	} else {
		tags = sim.Generate(gen)
	}
	cutoffKey := gen.Cutoff.UTC().Format("20060102150405")
	for _, t := range tags {
		if t < cutoffKey && len(t) > 14 && t[14] == '_' {
			eligible++
		}
	}
	progress(fmt.Sprintf("%s: generated %d tags (%d before the cutoff) in %s", sc.Name, len(tags), eligible, time.Since(start).Round(time.Millisecond)))
	return tags, gen, eligible
}

// latency is what the registry adds to every request in the scenario.
func (sc scenario) latency(o options) time.Duration {
	switch {
	case sc.ZeroLatency:
		return 0
	case sc.Latency > 0:
		return sc.Latency
	}
	return o.latency
}

// reusedBaseline finds the reference side (baseline, lister, regctl) of the same scenario, tag
// count and latency in an earlier run's JSON output.
func reusedBaseline(path string, res scenarioResult, side string) (sideResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return sideResult{}, err
	}
	var earlier []scenarioResult
	if err := json.Unmarshal(b, &earlier); err != nil {
		return sideResult{}, fmt.Errorf("%s: %w", path, err)
	}
	for _, e := range earlier {
		if e.Scenario == res.Scenario && e.Tags == res.Tags && e.Latency == res.Latency && e.Rate == res.Rate {
			if s, ok := e.side(side); ok {
				return s, nil
			}
		}
	}
	return sideResult{}, fmt.Errorf("%s holds no %s of %s with %d tags at %s", path, side, res.Scenario, res.Tags, res.Latency)
}

func errSuffix(s string) string {
	if s == "" {
		return ""
	}
	return "; error: " + s
}

// numericTags are n seven-digit build numbers from 1000000 up, sorted.
func numericTags(n int) []string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = strconv.Itoa(1_000_000 + i)
	}
	return tags
}

// sampler reads the registry's counters once a second.
type sampler struct {
	done     chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	total    []float64 // requests answered in each second
	limited  []float64 // of which 429
	inflight []float64 // requests in the registry (latency included), sampled every 100 ms
	points   []point   // tags deleted and list calls so far, every 100 ms
}

// point is the registry's cumulative counts at one moment.
type point struct {
	at             time.Time
	deleted, lists int64
}

func newSampler(reg *sim.Registry) *sampler {
	s := &sampler{done: make(chan struct{})}
	read := func() (total, limited int64) {
		st := reg.Stats()
		return st.Total(), st.Statuses[http.StatusTooManyRequests]
	}
	s.wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		prevT, prevL := read()
		for tick := 1; ; tick++ {
			select {
			case <-s.done:
				return
			case <-t.C:
			}
			st := reg.Stats()
			s.mu.Lock()
			s.inflight = append(s.inflight, float64(reg.InFlight()))
			s.points = append(s.points, point{at: time.Now(), deleted: st.TagDeletes, lists: st.Requests[sim.KindList]})
			s.mu.Unlock()
			if tick%10 != 0 {
				continue
			}
			tot, l := read()
			s.mu.Lock()
			s.total = append(s.total, float64(tot-prevT))
			s.limited = append(s.limited, float64(l-prevL))
			s.mu.Unlock()
			prevT, prevL = tot, l
		}
	})
	return s
}

func (s *sampler) stop() { close(s.done); s.wg.Wait() }

// timeline is the side's course from begin, every 100 ms: tags deleted and list calls so far
// (the registry's counts), and the tagsweep shards claimed and not yet finished (from spans,
// each a shard's [claimed, finished] in Unix milliseconds).
func (s *sampler) timeline(begin time.Time, spans [][2]int64) []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sample, 0, len(s.points))
	for _, p := range s.points {
		ms := p.at.UnixMilli()
		n := 0
		for _, sp := range spans {
			if sp[0] <= ms && ms < sp[1] {
				n++
			}
		}
		out = append(out, sample{T: p.at.Sub(begin).Seconds(), Deleted: p.deleted, Lists: p.lists, Shards: n})
	}
	return out
}

// rates returns the peak one-second request rate, and the median rate of all requests and
// of the ones not answered 429 over the middle 80% of the run (start-up and the tail left
// out).
func (s *sampler) rates() (peak, sustained, ok, inflight float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.total) == 0 {
		return 0, 0, 0, 0
	}
	if n := len(s.inflight); n > 0 {
		inflight = median(s.inflight[n/10 : n-n/10])
	}
	peak = slices.Max(s.total)
	lo, hi := len(s.total)/10, len(s.total)-len(s.total)/10
	mid := slices.Clone(s.total[lo:hi])
	okr := make([]float64, 0, len(mid))
	for i := lo; i < hi; i++ {
		okr = append(okr, s.total[i]-s.limited[i])
	}
	return peak, median(mid), median(okr), inflight
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	return xs[len(xs)/2]
}

func numCPU() int { return runtime.NumCPU() }

func writeOut(path string, o options, results []scenarioResult) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if filepath.Ext(path) == ".json" {
		enc := json.NewEncoder(f)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	fmt.Fprintf(f, "tagsweep benchmark: %d workers; machine: %s\n\n", o.workers, machine())
	for _, r := range results {
		writeMarkdown(f, r)
	}
	return f.Close()
}
