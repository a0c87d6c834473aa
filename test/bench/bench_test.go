package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
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

// TestLimiter checks the rate-limited scenario's registry: 429 without Retry-After once the
// burst is spent.
func TestLimiter(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	l := newLimiter(ok, 0.001, 2)
	var codes []int
	for range 4 {
		rec := httptest.NewRecorder()
		l.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v2/", nil))
		codes = append(codes, rec.Code)
		if rec.Code == http.StatusTooManyRequests && rec.Header().Get("Retry-After") != "" {
			t.Error("429 carries Retry-After; Quay's nginx sends none")
		}
	}
	want := []int{200, 200, 429, 429}
	for i := range want {
		if codes[i] != want[i] {
			t.Fatalf("statuses = %v, want %v", codes, want)
		}
	}
	if l.rejected.Load() != 2 {
		t.Errorf("rejected = %d, want 2", l.rejected.Load())
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
