package telemetry

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

func TestServerEndpoints(t *testing.T) {
	var notReady atomic.Pointer[error]
	m := New()
	m.AddScanned(3)
	s := NewServer(m, ServerConfig{Ready: func() error {
		if err := notReady.Load(); err != nil {
			return *err
		}
		return nil
	}})
	h := s.Handler()

	noNATS := errors.New("not connected to NATS")
	notReady.Store(&noNATS)
	tests := []struct {
		name     string
		path     string
		before   func()
		wantCode int
		wantBody string
	}{
		{"healthz ignores readiness", PathHealthz, nil, 200, "ok"},
		{"readyz reports the error", PathReadyz, nil, 503, "not ready: not connected to NATS"},
		{"readyz once ready", PathReadyz, func() { notReady.Store(nil) }, 200, "ok"},
		{"metrics", PathMetrics, nil, 200, MetricTagsScanned + " 3"},
		{"unknown path", "/debug", nil, 404, ""},
		{"readyz while stopping", PathReadyz, func() { s.stopping.Store(true) }, 503, "not ready: shutting down"},
		{"healthz while stopping", PathHealthz, nil, 200, "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			code, body := get(t, h, tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Errorf("GET %s = %d %q, want %d containing %q", tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestServerDefaults(t *testing.T) {
	s := NewServer(nil, ServerConfig{})
	if s.cfg.Addr != DefaultAddr || s.cfg.ShutdownTimeout != 5*time.Second {
		t.Errorf("NewServer(nil, {}) config = %+v, want Addr %q and ShutdownTimeout 5s", s.cfg, DefaultAddr)
	}
	if code, _ := get(t, s.Handler(), PathReadyz); code != 200 {
		t.Errorf("readyz with nil Ready = %d, want 200", code)
	}
	if code, body := get(t, s.Handler(), PathMetrics); code != 200 || !strings.Contains(body, MetricTagsScanned) {
		t.Errorf("metrics of a nil *Metrics = %d, lacking %s", code, MetricTagsScanned)
	}
}

// TestServeGracefulShutdown holds a request in flight, stops the server, and checks that the
// request still completes and that Serve returns nil only after it has.
func TestServeGracefulShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls atomic.Int32
	s := NewServer(New(), ServerConfig{Ready: func() error {
		if calls.Add(1) == 1 {
			close(entered)
			<-release
		}
		return nil
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()

	type result struct {
		code int
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + PathReadyz)
		if err != nil {
			got <- result{err: err}
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got <- result{code: resp.StatusCode}
	}()

	select {
	case <-entered:
	case err := <-served:
		t.Fatalf("Serve returned early: %v", err)
	case <-t.Context().Done():
		t.Fatal("request never reached the server")
	}
	cancel()
	select {
	case err := <-served:
		t.Fatalf("Serve returned %v while a request was still in flight", err)
	default:
	}
	close(release)

	if r := <-got; r.err != nil || r.code != http.StatusOK {
		t.Errorf("in-flight request during shutdown = %d, %v; want 200", r.code, r.err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after cancel = %v, want nil", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String() + PathHealthz); err == nil {
		t.Errorf("server still answers after Serve returned")
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	// The port is taken: Run must fail at once, not hang until ctx ends.
	err = NewServer(nil, ServerConfig{Addr: ln.Addr().String()}).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "telemetry server") {
		t.Errorf("Run on a taken port = %v, want a telemetry server listen error", err)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- NewServer(nil, ServerConfig{Addr: "127.0.0.1:0"}).Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel = %v, want nil", err)
	}
}
