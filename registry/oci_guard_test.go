package registry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/regclient/regclient/types/ref"
)

// recordingTransport answers every request with 200 and a Link header, and records it.
type recordingTransport struct {
	mu   sync.Mutex
	reqs []string
}

func (rt *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.reqs = append(rt.reqs, req.Method+" "+req.URL.Host+req.URL.Path)
	rt.mu.Unlock()
	h := http.Header{"Link": {`</next>; rel="next"`}}
	return &http.Response{StatusCode: 200, Header: h, Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
}

func TestGuard(t *testing.T) {
	t.Parallel()
	const reg = "registry.example:5000"
	del := &call{method: http.MethodDelete, path: "/v2/team/app/manifests/t1"}
	list := &call{method: http.MethodGet, path: "/v2/team/app/tags/list"}
	tests := []struct {
		name    string
		call    *call // nil: a request outside any call (regclient's token fetches)
		method  string
		url     string
		allowed bool
	}{
		{name: "the tag delete", call: del, method: "DELETE", url: "http://" + reg + "/v2/team/app/manifests/t1", allowed: true},
		{name: "delete by digest", call: del, method: "DELETE", url: "http://" + reg + "/v2/team/app/manifests/sha256:0123", allowed: false},
		{name: "delete of another tag", call: del, method: "DELETE", url: "http://" + reg + "/v2/team/app/manifests/t2", allowed: false},
		{name: "delete on another host", call: del, method: "DELETE", url: "http://other.example/v2/team/app/manifests/t1", allowed: false},
		{name: "fallback HEAD", call: del, method: "HEAD", url: "http://" + reg + "/v2/team/app/manifests/t1", allowed: false},
		{name: "fallback blob upload", call: del, method: "POST", url: "http://" + reg + "/v2/team/app/blobs/uploads/", allowed: false},
		{name: "fallback manifest push", call: del, method: "PUT", url: "http://" + reg + "/v2/team/app/manifests/t1", allowed: false},
		{name: "delete outside a call", method: "DELETE", url: "http://" + reg + "/v2/team/app/manifests/t1", allowed: false},
		{name: "tags list", call: list, method: "GET", url: "http://" + reg + "/v2/team/app/tags/list", allowed: true},
		{name: "Link followed to another host", call: list, method: "GET", url: "http://other.example/v2/team/app/tags/list", allowed: false},
		{name: "Quay token endpoint", method: "GET", url: "http://" + reg + "/v2/auth", allowed: true},
		{name: "token realm elsewhere", method: "GET", url: "https://auth.example/token", allowed: true},
		{name: "OAuth token POST", method: "POST", url: "https://auth.example/token", allowed: true},
		{name: "PUT anywhere", method: "PUT", url: "https://auth.example/token", allowed: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := &recordingTransport{}
			g := &guard{base: rt, host: reg}
			ctx := t.Context()
			if tc.call != nil {
				ctx = context.WithValue(ctx, callKey{}, tc.call)
			}
			req, err := http.NewRequestWithContext(ctx, tc.method, tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := g.RoundTrip(req)
			if resp != nil {
				resp.Body.Close()
			}
			if got := err == nil; got != tc.allowed {
				t.Fatalf("RoundTrip(%s %s) error = %v, want allowed=%v", tc.method, tc.url, err, tc.allowed)
			}
			if !tc.allowed && !errors.Is(err, errRefused) {
				t.Errorf("RoundTrip error = %v, want errRefused", err)
			}
			if got := len(rt.reqs); got != map[bool]int{true: 1, false: 0}[tc.allowed] {
				t.Errorf("requests sent = %q", rt.reqs)
			}
			if tc.allowed && tc.call == list {
				if resp.Header.Get("Link") != "" {
					t.Errorf("tags/list response still carries Link: regclient would follow it")
				}
				if links, _ := list.result(); !hasNextLink(links) {
					t.Errorf("call record Link = %q, want the registry's rel=next", links)
				}
			}
		})
	}
}

// TestGuardStopsTagDeleteFallback drives regclient's own TagDelete, which on a refused tag
// delete pushes a dummy manifest and deletes it by digest: the guard must stop it at once.
func TestGuardStopsTagDeleteFallback(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.Method == http.MethodDelete && strings.HasSuffix(r.URL.Path, "/manifests/t1") {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusOK) // would let the fallback go on
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	o, err := NewOCI(OCIConfig{Host: host, PlainHTTP: true, DockerConfig: "/dev/null"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := o.repoRef("team/app")
	if err != nil {
		t.Fatal(err)
	}
	c := &call{method: http.MethodDelete, path: "/v2/team/app/manifests/t1"}
	ctx, cancel, err := o.start(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	err = o.rc.TagDelete(ctx, ref.Ref{Scheme: r.Scheme, Registry: r.Registry, Repository: r.Repository, Tag: "t1"})
	if !errors.Is(err, errRefused) {
		t.Errorf("regclient TagDelete through the guard: error = %v, want errRefused", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"DELETE /v2/team/app/manifests/t1"}; !slices.Equal(seen, want) {
		t.Errorf("registry saw %q, want %q", seen, want)
	}
}
