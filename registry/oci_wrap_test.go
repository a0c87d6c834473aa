package registry_test

import (
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/tagsweep/tagsweep/registry"
)

// seen records what a wrapping transport saw: "METHOD path status", and Link headers.
type seen struct {
	mu    sync.Mutex
	reqs  []string
	links int
}

func (s *seen) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(req)
		s.mu.Lock()
		defer s.mu.Unlock()
		status := "error"
		if err == nil {
			status = http.StatusText(resp.StatusCode)
			if resp.Header.Get("Link") != "" {
				s.links++
			}
		}
		s.reqs = append(s.reqs, req.Method+" "+req.URL.RequestURI()+" "+status)
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// The wrapped transport sees every request the registry receives, regclient's retries
// included, with the registry's own answer.
func TestWrapTransport(t *testing.T) {
	t.Parallel()
	host, f := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
		switch {
		case r.Method == http.MethodDelete && i < 2: // the first delete fails once, then goes
			w.WriteHeader(http.StatusBadGateway)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusAccepted)
		default:
			writeTags(w, `</v2/team/app/tags/list?n=2&last=b>; rel="next"`, "a", "b")
		}
	})
	rec := &seen{}
	c := newClient(t, host, registry.OCIConfig{WrapTransport: rec.wrap})
	if _, err := c.List(t.Context(), "team/app", "", 2); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(t.Context(), "team/app", "a"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"GET /v2/team/app/tags/list?n=2 OK",
		"DELETE /v2/team/app/manifests/a Bad Gateway",
		"DELETE /v2/team/app/manifests/a Accepted",
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.reqs, want) {
		t.Errorf("the wrapper saw %q, want %q", rec.reqs, want)
	}
	if got := f.requests(); len(got) != len(rec.reqs) {
		t.Errorf("the registry got %d requests, the wrapper saw %d", len(got), len(rec.reqs))
	}
	if rec.links != 1 {
		t.Errorf("the wrapper saw %d Link headers, want the registry's 1", rec.links)
	}
}
