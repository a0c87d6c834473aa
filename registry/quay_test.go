package registry_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/registry/sim"
)

const (
	quayToken = "oauth-Secret-Token-3f9a1c7e55d0b2"
	quayRepo  = "openshift/ci"
)

// startQuay serves a sim with API v1 behind quayToken and a repository holding tags.
func startQuay(t *testing.T, cfg sim.Config, tags ...string) *sim.Server {
	t.Helper()
	cfg.APIToken = quayToken
	s, err := sim.Start(t.Context(), "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.CreateRepo(quayRepo); err != nil {
		t.Fatal(err)
	}
	if len(tags) > 0 {
		if err := s.AddTags(quayRepo, "", tags...); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// logBuffer is a concurrency-safe slog text sink.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newQuay(t *testing.T, s *sim.Server, cfg registry.QuayConfig, logs *logBuffer) *registry.Quay {
	t.Helper()
	cfg.Host, cfg.PlainHTTP = s.Addr(), true
	if cfg.Token == "" {
		cfg.Token = quayToken
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Millisecond
	}
	if cfg.RetryDelayMax == 0 {
		cfg.RetryDelayMax = 20 * time.Millisecond
	}
	if logs != nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	q, err := registry.NewQuay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestQuayDeleteTagDigest(t *testing.T) {
	s := startQuay(t, sim.Config{}, "a", "b", "c")
	var logs logBuffer
	q := newQuay(t, s, registry.QuayConfig{}, &logs)
	ctx := t.Context()
	var errs []error

	// Delete: 204, then 404 = already gone.
	if err := q.Delete(ctx, quayRepo, "a"); err != nil {
		t.Fatalf("Delete(a) = %v", err)
	}
	if s.HasTag(quayRepo, "a") {
		t.Error("a still exists")
	}
	err := q.Delete(ctx, quayRepo, "a")
	if !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second Delete(a) = %v, want ErrNotFound", err)
	}
	errs = append(errs, err)

	// Digest of a live tag; of a deleted one (Quay keeps dead rows: onlyActiveTags hides them).
	d, err := q.Digest(ctx, quayRepo, "b")
	if err != nil || d != s.DefaultDigest() {
		t.Errorf("Digest(b) = %q, %v; want %q", d, err, s.DefaultDigest())
	}
	_, err = q.Digest(ctx, quayRepo, "a")
	if !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Digest(deleted a) = %v, want ErrNotFound", err)
	}
	errs = append(errs, err)

	// Tag: create, move, and refuse a manifest the repository does not hold.
	other, err := s.PushImage(quayRepo, "other")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Tag(ctx, quayRepo, "rc_payload__x__component__cli", s.DefaultDigest()); err != nil {
		t.Fatalf("Tag(create) = %v", err)
	}
	if err := q.Tag(ctx, quayRepo, "rc_payload__x__component__cli", other); err != nil {
		t.Fatalf("Tag(move) = %v", err)
	}
	if got, _ := s.TagDigest(quayRepo, "rc_payload__x__component__cli"); got != other {
		t.Errorf("tag points at %s, want %s", got, other)
	}
	err = q.Tag(ctx, quayRepo, "x", "sha256:"+strings.Repeat("0", 64))
	if !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Tag(unknown manifest) = %v, want ErrNotFound", err)
	}
	errs = append(errs, err)

	// Names are checked before anything is sent.
	before := s.Stats().Total()
	for _, err := range []error{
		q.Delete(ctx, quayRepo, "sha256:"+strings.Repeat("0", 64)),
		q.Delete(ctx, quayRepo, "../x"),
		q.Delete(ctx, "Openshift/CI", "b"),
		q.Tag(ctx, quayRepo, "b", "latest"),
	} {
		if err == nil {
			t.Error("a bad name or digest was accepted")
		}
		errs = append(errs, err)
	}
	if n := s.Stats().Total() - before; n != 0 {
		t.Errorf("%d requests sent for bad names", n)
	}
	if n := s.Stats().DigestDeletes; n != 0 {
		t.Errorf("%d deletes by digest", n)
	}
	assertNoSecret(t, quayToken, logs.String(), errs...)
}

func TestQuayUnauthorized(t *testing.T) {
	s := startQuay(t, sim.Config{}, "a")
	const wrong = "wrong-Secret-Token-0c1d2e3f4a5b6c"
	var logs logBuffer
	q := newQuay(t, s, registry.QuayConfig{Token: wrong}, &logs)
	err := q.Delete(t.Context(), quayRepo, "a")
	if !errors.Is(err, registry.ErrUnauthorized) {
		t.Fatalf("Delete() = %v, want ErrUnauthorized", err)
	}
	if !s.HasTag(quayRepo, "a") {
		t.Error("deleted without the right token")
	}
	assertNoSecret(t, wrong, logs.String(), err)
	if s := fmt.Sprintf("%v %+v %s", registry.QuayConfig{Token: wrong}, registry.QuayConfig{Token: wrong},
		registry.QuayConfig{Token: wrong}); strings.Contains(s, wrong) {
		t.Errorf("QuayConfig formats its token: %s", s)
	}
}

// TestQuayRateLimitSlowsDown: Quay's nginx answers 429 without Retry-After once a client's
// bucket is empty. Every delete must still succeed, the client must slow down to the
// bucket's rate instead of hammering it, and the token must never show.
func TestQuayRateLimitSlowsDown(t *testing.T) {
	const n = 60
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("20200101000000_prune_%03d", i)
	}
	s := startQuay(t, sim.Config{Faults: sim.Faults{Limits: []sim.Limit{
		{Kinds: []sim.Kind{sim.KindAPIDelete, sim.KindAPIPut, sim.KindAPIList}, PerSecond: 40, Burst: 5},
	}}}, tags...)
	var logs logBuffer
	q := newQuay(t, s, registry.QuayConfig{RetryLimit: 5, RetryDelay: 5 * time.Millisecond,
		RetryDelayMax: 100 * time.Millisecond}, &logs)

	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, tag := range tags {
		wg.Go(func() {
			if err := q.Delete(t.Context(), quayRepo, tag); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d deletes failed, first: %v", len(errs), errs[0])
	}
	if got := s.Len(quayRepo); got != 0 {
		t.Errorf("%d tags left", got)
	}
	st := s.Stats()
	throttled := st.ByStatus[sim.KindStatus{Kind: sim.KindAPIDelete, Status: http.StatusTooManyRequests}]
	if throttled == 0 {
		t.Fatal("the sim never answered 429: the test tests nothing")
	}
	if st := q.RateControl().Stats(); !st.Limited || st.Decreases == 0 {
		t.Errorf("the client did not slow down after 429s: %+v", st)
	}
	// Without pacing, 60 concurrent deletes retried at once would draw hundreds of 429s.
	t.Logf("%d answers 429, rate control %s", throttled, q.RateControl())
	if throttled > 3*n {
		t.Errorf("%d answers 429 for %d deletes: the client kept hammering", throttled, n)
	}
	if !strings.Contains(logs.String(), "slowing down") {
		t.Error("no warning logged about slowing down")
	}
	assertNoSecret(t, quayToken, logs.String(), errs...)
}

// TestQuayRetries: 5xx and 429 are retried at this one layer; when the retries run out the
// error says rate limited, with Retry-After when the server gave one.
func TestQuayRetries(t *testing.T) {
	tests := []struct {
		name    string
		faults  sim.Faults
		limit   int
		wantErr error
		wantRA  bool
	}{
		{name: "5xx burst then success", faults: sim.Faults{ErrorBurst: 3, ErrorStatus: http.StatusBadGateway}, limit: 5},
		{name: "transport resets then success", faults: sim.Faults{ResetRate: 0.5, Seed: 7}, limit: 10},
		{name: "429 forever", faults: sim.Faults{Fail: func(sim.FaultRequest) int { return http.StatusTooManyRequests }},
			limit: 2, wantErr: registry.ErrRateLimited},
		{name: "429 with Retry-After", faults: sim.Faults{ThrottleRate: 1, RetryAfter: time.Second}, limit: 0,
			wantErr: registry.ErrRateLimited, wantRA: true},
		{name: "5xx forever", faults: sim.Faults{ErrorRate: 1, ErrorStatus: http.StatusServiceUnavailable}, limit: 2,
			wantErr: errors.New("http 503")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startQuay(t, sim.Config{Faults: tc.faults}, "a")
			fast := registry.NewRateControl(registry.RateControlConfig{MinRate: 500})
			q := newQuay(t, s, registry.QuayConfig{RetryLimit: max(tc.limit, 1), RateControl: fast}, nil)
			if tc.limit == 0 {
				// Give the Retry-After case a call budget shorter than the Retry-After.
				q = newQuay(t, s, registry.QuayConfig{RetryLimit: 1, CallTimeout: 500 * time.Millisecond, RateControl: fast}, nil)
			}
			err := q.Delete(t.Context(), quayRepo, "a")
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Delete() = %v", err)
			case tc.wantErr == nil:
				if s.HasTag(quayRepo, "a") {
					t.Error("tag not deleted")
				}
			case errors.Is(tc.wantErr, registry.ErrRateLimited) && !errors.Is(err, registry.ErrRateLimited):
				t.Fatalf("Delete() = %v, want ErrRateLimited", err)
			case !errors.Is(tc.wantErr, registry.ErrRateLimited) && (err == nil || !strings.Contains(err.Error(), tc.wantErr.Error())):
				t.Fatalf("Delete() = %v, want %v", err, tc.wantErr)
			}
			var ra *registry.RetryAfterError
			if tc.wantRA && !errors.As(err, &ra) {
				t.Errorf("Delete() = %v, want a RetryAfterError", err)
			}
		})
	}
}

// TestQuayNoRedirect: the OAuth token never follows a redirect to another server.
func TestQuayNoRedirect(t *testing.T) {
	var leaked atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			leaked.Add(1)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(elsewhere.Close)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirect.Close)
	q, err := registry.NewQuay(registry.QuayConfig{Host: strings.TrimPrefix(redirect.URL, "http://"), PlainHTTP: true, Token: quayToken})
	if err != nil {
		t.Fatal(err)
	}
	err = q.Delete(t.Context(), quayRepo, "a")
	if err == nil {
		t.Error("a redirect counted as a delete")
	}
	if leaked.Load() != 0 {
		t.Error("the token followed the redirect")
	}
	assertNoSecret(t, quayToken, "", err)
}

// TestQuayWrapTransport: the transport wrapper sees every request the Quay client sends, as
// it does the OCI client's, with the client's user agent.
func TestQuayWrapTransport(t *testing.T) {
	t.Parallel()
	s := startQuay(t, sim.Config{}, "a")
	var mu sync.Mutex
	var seen []string
	wrap := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			seen = append(seen, req.Method+" "+req.URL.Path+" "+req.Header.Get("User-Agent"))
			mu.Unlock()
			return next.RoundTrip(req)
		})
	}
	q := newQuay(t, s, registry.QuayConfig{WrapTransport: wrap, UserAgent: "sweeper/1"}, nil)
	if err := q.Delete(t.Context(), quayRepo, "a"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"DELETE /api/v1/repository/openshift/ci/tag/a sweeper/1"}; !slices.Equal(seen, want) {
		t.Errorf("the wrapper saw %q, want %q", seen, want)
	}
}

func TestNewQuayRejects(t *testing.T) {
	for _, cfg := range []registry.QuayConfig{
		{Token: "t"},
		{Host: "quay.io"},
		{Host: "https://quay.io", Token: "t"},
		{Host: "quay.io/x", Token: "t"},
		{Host: "quay.io", Token: "t", RetryLimit: -1},
	} {
		if _, err := registry.NewQuay(cfg); err == nil {
			t.Errorf("NewQuay(%v) accepted", cfg)
		}
	}
}

// assertNoSecret fails if secret appears in logs or any error.
func assertNoSecret(t *testing.T, secret, logs string, errs ...error) {
	t.Helper()
	if strings.Contains(logs, secret) {
		t.Errorf("the secret appears in the logs:\n%s", logs)
	}
	for _, err := range errs {
		if err != nil && strings.Contains(fmt.Sprintf("%v %+v", err, err), secret) {
			t.Errorf("the secret appears in an error: %v", err)
		}
	}
}
