package main

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
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
	if _, err := scenarioNames("steady,nope"); err == nil {
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
