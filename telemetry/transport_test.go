package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestOp(t *testing.T) {
	tests := []struct {
		method, path, want string
	}{
		{"GET", "/v2/", OpPing},
		{"GET", "/v2", OpPing},
		{"GET", "/v2/openshift/ci/tags/list", OpList},
		{"GET", "/v2/ci/tags/list", OpList},
		{"DELETE", "/v2/openshift/ci/manifests/20240101000000_prune_a_b_c", OpDelete},
		{"GET", "/v2/openshift/ci/manifests/latest", OpManifest},
		{"HEAD", "/v2/openshift/ci/manifests/sha256:abc", OpManifest},
		{"PUT", "/v2/openshift/ci/manifests/rc_payload__4.18__component__cli", OpManifest},
		// Repository names may contain the API's own words.
		{"GET", "/v2/a/manifests/tags/list", OpList},
		{"DELETE", "/v2/a/tags/list/manifests/x", OpDelete},
		{"GET", "/v2/tags/list/tags/list", OpList},
		{"GET", "/v2/openshift/ci/blobs/sha256:abc", OpBlob},
		{"POST", "/v2/openshift/ci/blobs/uploads/", OpBlob},
		{"PATCH", "/v2/openshift/ci/blobs/uploads/0b1f-uuid", OpBlob},
		{"GET", "/v2/auth", OpAuth}, // Quay's token endpoint
		{"GET", "/token", OpAuth},   // Docker Hub, GHCR style
		{"GET", "/auth/token", OpAuth},
		{"POST", "/oauth/token", OpAuth},
		{"GET", "/v2/auth/tags/list", OpList}, // a repository called "auth"
		{"GET", "/api/v1/repository/openshift/ci/tag/", OpAPIv1},
		{"PUT", "/api/v1/repository/openshift/ci/tag/x", OpAPIv1},
		{"GET", "/v2/_catalog", OpOther},
		{"GET", "/v2/openshift/ci/referrers/sha256:abc", OpOther},
		{"GET", "/", OpOther},
		{"GET", "", OpOther},
		{"GET", "/v2/a/../../token", OpAuth}, // cleaned before matching
	}
	for _, tc := range tests {
		if got := Op(tc.method, tc.path); got != tc.want {
			t.Errorf("Op(%q, %q) = %q, want %q", tc.method, tc.path, got, tc.want)
		}
	}
}

func TestTransportRecordsRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodDelete && strings.HasSuffix(r.URL.Path, "/gone"):
			w.WriteHeader(http.StatusNotFound)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusTooManyRequests)
		case strings.HasSuffix(r.URL.Path, "/tags/list"):
			fmt.Fprint(w, `{"name":"a/b","tags":["t1"]}`)
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	}))
	t.Cleanup(srv.Close)

	m := New()
	client := &http.Client{Transport: m.Transport(nil)}
	do := func(method, path string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
	}
	do("GET", "/v2/a/b/tags/list?n=100&last=x")
	do("GET", "/v2/a/b/tags/list?n=100")
	do("DELETE", "/v2/a/b/manifests/t1")
	do("DELETE", "/v2/a/b/manifests/gone")
	do("GET", "/v2/")

	// A request that gets no response at all is counted with code="error".
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "http://" + ln.Addr().String()
	ln.Close()
	req, _ := http.NewRequestWithContext(t.Context(), "DELETE", deadURL+"/v2/a/b/manifests/t2", nil)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("DELETE against a closed port succeeded")
	}

	want := `
# HELP tagsweep_registry_requests_total HTTP requests sent to registries, by operation and status code (code=error: no response).
# TYPE tagsweep_registry_requests_total counter
tagsweep_registry_requests_total{code="200",op="list"} 2
tagsweep_registry_requests_total{code="404",op="delete"} 1
tagsweep_registry_requests_total{code="418",op="ping"} 1
tagsweep_registry_requests_total{code="429",op="delete"} 1
tagsweep_registry_requests_total{code="error",op="delete"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), MetricRequests); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(m.rateLimited.WithLabelValues(OpDelete)); got != 1 {
		t.Errorf("%s{op=delete} = %v, want 1", MetricRateLimited, got)
	}
	if got := testutil.ToFloat64(m.rateLimited.WithLabelValues(OpList)); got != 0 {
		t.Errorf("%s{op=list} = %v, want 0", MetricRateLimited, got)
	}
	// Every request, answered or not, has one latency observation under its op.
	for op, want := range map[string]uint64{OpList: 2, OpDelete: 3, OpPing: 1, OpManifest: 0} {
		if got := histogramCount(t, m, op); got != want {
			t.Errorf("%s{op=%s} count = %d, want %d", MetricRequestDuration, op, got, want)
		}
	}
}

func histogramCount(t *testing.T, m *Metrics, op string) uint64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != MetricRequestDuration {
			continue
		}
		for _, metric := range mf.GetMetric() {
			for _, l := range metric.GetLabel() {
				if l.GetName() == labelOp && l.GetValue() == op {
					return metric.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return 0
}

func TestTransportNil(t *testing.T) {
	var m *Metrics
	if got := m.Transport(nil); got != http.DefaultTransport {
		t.Errorf("(*Metrics)(nil).Transport(nil) = %T, want http.DefaultTransport", got)
	}
	base := &http.Transport{}
	if got := m.Transport(base); got != base {
		t.Errorf("(*Metrics)(nil).Transport(base) wrapped base; want base unchanged")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestFailReasonOf(t *testing.T) {
	tests := []struct {
		err  error
		want FailReason
	}{
		{fmt.Errorf("deleting t: %w", errors.New("rate limited")), FailedOther}, // the caller's to recognise
		{fmt.Errorf("deleting t: %w", context.DeadlineExceeded), FailedTimeout},
		{&net.OpError{Op: "read", Err: timeoutErr{}}, FailedTimeout},
		{fmt.Errorf("deleting t: %w", context.Canceled), FailedCanceled},
		{errors.New("500 internal server error"), FailedOther},
	}
	for _, tc := range tests {
		if got := FailReasonOf(tc.err); got != tc.want {
			t.Errorf("FailReasonOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
