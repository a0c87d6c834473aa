package sim

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

func statuses(t *testing.T, base string, n int, method, path string) []int {
	t.Helper()
	var out []int
	for range n {
		out = append(out, do(t, method, base+path))
	}
	return out
}

func TestFaults(t *testing.T) {
	const list, del = "/v2/ns/app/tags/list", "/v2/ns/app/manifests/"
	tests := []struct {
		name   string
		faults Faults
		// steps run in order; each is a method, a path and the statuses wanted.
		steps []step
	}{
		{
			name:   "burst of errors on one kind",
			faults: Faults{Kinds: []Kind{KindList}, ErrorBurst: 3},
			steps: []step{
				{http.MethodDelete, del + "t1", []int{202}},
				{http.MethodGet, list, []int{503, 503, 503, 200}},
			},
		},
		{
			name:   "every request fails with a chosen status",
			faults: Faults{ErrorRate: 1, ErrorStatus: 500},
			steps:  []step{{http.MethodGet, list, []int{500, 500}}, {http.MethodDelete, del + "t1", []int{500}}},
		},
		{
			name:   "rate limit per kind answers 429",
			faults: Faults{Limits: []Limit{{Kinds: []Kind{KindList}, PerSecond: 1e-9, Burst: 2}}},
			steps: []step{
				{http.MethodGet, list, []int{200, 200, 429, 429}},
				{http.MethodDelete, del + "t1", []int{202}},
			},
		},
		{
			name: "hook fails one key range forever",
			faults: Faults{Fail: func(fr FaultRequest) int {
				r := proto.Range{After: "t2", Through: "t4"}
				if (fr.Kind == KindDelete && r.Contains(fr.Ref)) || (fr.Kind == KindList && r.Contains(fr.Ref)) {
					return http.StatusServiceUnavailable
				}
				return 0
			}},
			steps: []step{
				{http.MethodDelete, del + "t3", []int{503, 503}},
				{http.MethodDelete, del + "t2", []int{202}},
				{http.MethodGet, list + "?last=t3", []int{503}},
				{http.MethodGet, list + "?last=t4", []int{503}},
				{http.MethodGet, list + "?last=t5", []int{200}},
				{http.MethodDelete, del + "t5", []int{202}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startSim(t, Config{Faults: tc.faults})
			if err := s.AddTags("ns/app", "", "t1", "t2", "t3", "t4", "t5", "t6"); err != nil {
				t.Fatal(err)
			}
			for _, st := range tc.steps {
				if got := statuses(t, s.URL(), len(st.want), st.method, st.path); !slices.Equal(got, st.want) {
					t.Errorf("%s %s: statuses %v, want %v", st.method, st.path, got, st.want)
				}
			}
		})
	}
}

type step struct {
	method, path string
	want         []int
}

func TestThrottleRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{{1500 * time.Millisecond, "2"}, {0, ""}} {
		s := startSim(t, Config{Faults: Faults{ThrottleRate: 1, RetryAfter: tc.after}})
		resp, _ := get(t, http.MethodGet, s.URL()+"/v2/")
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("status = %d, want 429", resp.StatusCode)
		}
		if got := resp.Header.Get("Retry-After"); got != tc.want {
			t.Errorf("RetryAfter %v: Retry-After = %q, want %q", tc.after, got, tc.want)
		}
		if got := s.Stats().Faults["throttle"]; got != 1 {
			t.Errorf("throttle faults = %d, want 1", got)
		}
	}
}

func TestResetClosesConnection(t *testing.T) {
	s := startSim(t, Config{Faults: Faults{ResetRate: 1, Kinds: []Kind{KindDelete}}})
	if err := s.AddTags("ns/app", "", "a"); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, s.URL()+"/v2/ns/app/manifests/a", nil)
	if err != nil {
		t.Fatal(err)
	}
	// A fresh transport: a reset DELETE is not retried by net/http (not idempotent).
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	if resp, err := (&http.Client{Transport: tr}).Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("DELETE answered %d, want a transport error", resp.StatusCode)
	}
	// The client sees the reset before the handler returns and counts it: poll.
	waitFor(t, "one reset counted", func() bool {
		st := s.Stats()
		return st.Faults["reset"] == 1 && st.ByStatus[KindStatus{KindDelete, StatusReset}] == 1
	})
	if !s.HasTag("ns/app", "a") {
		t.Error("a reset request still deleted the tag")
	}
	if got := do(t, http.MethodGet, s.URL()+"/v2/"); got != http.StatusOK {
		t.Errorf("GET /v2/ after reset = %d, want 200 (faults limited to deletes)", got)
	}
}

func TestSlowHonoursContext(t *testing.T) {
	s := startSim(t, Config{Faults: Faults{SlowRate: 1, SlowDelay: time.Hour}})
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/v2/", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	waitFor(t, "the request to reach the handler", func() bool { return s.InFlight() > 0 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("slow request succeeded, want cancellation")
	}
	waitFor(t, "the slow handler to end after its client went away", func() bool {
		return s.Stats().ByStatus[KindStatus{KindBase, 0}] == 1
	})
}

func TestFaultsDeterministicAndSettable(t *testing.T) {
	f := Faults{Seed: 7, ErrorRate: 0.5}
	a := startSim(t, Config{Faults: f})
	b := startSim(t, Config{Faults: f})
	sa := statuses(t, a.URL(), 40, http.MethodGet, "/v2/")
	sb := statuses(t, b.URL(), 40, http.MethodGet, "/v2/")
	if !slices.Equal(sa, sb) {
		t.Errorf("same seed, different faults:\n%v\n%v", sa, sb)
	}
	if !slices.Contains(sa, 503) || !slices.Contains(sa, 200) {
		t.Errorf("ErrorRate 0.5 gave %v, want a mix", sa)
	}
	a.SetFaults(Faults{})
	if got := statuses(t, a.URL(), 10, http.MethodGet, "/v2/"); slices.Contains(got, 503) {
		t.Errorf("after SetFaults(Faults{}): %v, want no failures", got)
	}
}

func TestQuayLimitsCoverEveryKind(t *testing.T) {
	kinds := []Kind{KindBase, KindList, KindDelete, KindDeleteDigest, KindManifestGet, KindManifestHead,
		KindManifestPut, KindBlob, KindBlobUpload, KindAuth, KindAPIList, KindAPIDelete, KindAPIPut, KindOther}
	limits := QuayLimits()
	for _, k := range kinds {
		i := slices.IndexFunc(limits, func(l Limit) bool { return len(l.Kinds) == 0 || slices.Contains(l.Kinds, k) })
		if i < 0 {
			t.Errorf("kind %s has no limit", k)
		}
	}
	if l := limits[0]; !slices.Equal(l.Kinds, []Kind{KindList}) || l.PerSecond != 5 || l.Burst != 2 {
		t.Errorf("tags/list limit = %+v, want 5 r/s burst 2", l)
	}
}
