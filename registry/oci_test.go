package registry_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/registry/registrytest"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// writeDockerConfig writes a docker config.json into a temp dir and returns its path. Tests
// always pass one, so that the machine's own docker logins never take part.
func writeDockerConfig(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// newClient returns an OCI client for a loopback registry, with short backoff delays.
func newClient(t testing.TB, host string, cfg registry.OCIConfig) *registry.OCI {
	t.Helper()
	cfg.Host = host
	cfg.PlainHTTP = true
	if cfg.DockerConfig == "" {
		cfg.DockerConfig = writeDockerConfig(t, `{}`)
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Millisecond
	}
	c, err := registry.NewOCI(cfg)
	if err != nil {
		t.Fatalf("NewOCI(%v): %v", cfg, err)
	}
	return c
}

// fakeRegistry is a focused httptest registry for what Distribution cannot be made to do.
// It records every request as "METHOD path?query".
type fakeRegistry struct {
	mu   sync.Mutex
	reqs []string
}

func startFake(t testing.TB, handle func(w http.ResponseWriter, r *http.Request, i int)) (string, *fakeRegistry) {
	t.Helper()
	f := &fakeRegistry{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		i := len(f.reqs)
		f.reqs = append(f.reqs, r.Method+" "+r.URL.RequestURI())
		f.mu.Unlock()
		handle(w, r, i)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), f
}

func (f *fakeRegistry) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func writeTags(w http.ResponseWriter, link string, tags ...string) {
	if link != "" {
		w.Header().Set("Link", link)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"name":"team/app","tags":[%s]}`, quoteAll(tags))
}

func quoteAll(tags []string) string {
	q := make([]string, len(tags))
	for i, t := range tags {
		q[i] = `"` + t + `"`
	}
	return strings.Join(q, ",")
}

// distTags are the tags of the listing tests: upper and lower case, tags outside the prune
// pattern, and several on one timestamp.
var distTags = []string{
	"20260101000000_prune_a", "20260101000000_prune_B", "20260101000000_prune_Z",
	"20260101120000_prune_x", "20260102000000_prune_a", "20260102000000_prune_b",
	"20260103000000_prune_D", "20260103000000_prune_c", "latest", "v1.0", "V2",
}

func TestListDistribution(t *testing.T) {
	t.Parallel()
	host := registrytest.StartDistribution(t)
	registrytest.CreateTags(t, host, "team/app", distTags...)
	all := slices.Sorted(slices.Values(distTags)) // Go byte order, as Distribution lists
	last := len(all) - 1

	// Distribution answers the page after the last tag with "tags": null.
	resp, err := http.Get("http://" + host + "/v2/team/app/tags/list?n=3&last=" + all[last])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(body, []byte(`"tags":null`)) {
		t.Fatalf("precondition: past-the-end page body = %s, want \"tags\":null", body)
	}

	tests := []struct {
		name     string
		last     string
		n        int
		want     []string
		wantMore bool
	}{
		{name: "first page", last: "", n: 3, want: all[:3], wantMore: true},
		{name: "last that is no tag (a bare prefix)", last: "20260102", n: 2,
			want: []string{"20260102000000_prune_a", "20260102000000_prune_b"}, wantMore: true},
		{name: "last equal to a tag is excluded", last: "20260102000000_prune_a", n: 2,
			want: []string{"20260102000000_prune_b", "20260103000000_prune_D"}, wantMore: true},
		{name: "upper case sorts before lower case", last: "20260101000000_prune_", n: 3,
			want: []string{"20260101000000_prune_B", "20260101000000_prune_Z", "20260101000000_prune_a"}, wantMore: true},
		{name: "final full page still has a Link", last: all[last-3], n: 3, want: all[last-2:], wantMore: true},
		{name: "short final page has no Link", last: all[last-2], n: 5, want: all[last-1:], wantMore: false},
		{name: "tags null is an empty page", last: all[last], n: 3, want: nil, wantMore: false},
		{name: "last beyond every tag", last: "zzz", n: 3, want: nil, wantMore: false},
	}
	c := newClient(t, host, registry.OCIConfig{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.List(t.Context(), "team/app", tc.last, tc.n)
			if err != nil {
				t.Fatalf("List(%q, %d): %v", tc.last, tc.n, err)
			}
			if !slices.Equal(got.Tags, tc.want) || got.More != tc.wantMore {
				t.Errorf("List(%q, %d) = %q more=%v, want %q more=%v", tc.last, tc.n, got.Tags, got.More, tc.want, tc.wantMore)
			}
		})
	}

	t.Run("unknown repository", func(t *testing.T) {
		_, err := c.List(t.Context(), "team/none", "", 3)
		if !errors.Is(err, registry.ErrNotFound) {
			t.Errorf("List(team/none) error = %v, want ErrNotFound", err)
		}
	})
}

// walk lists repo page by page the way a worker does, and returns every tag and the number
// of pages.
func walk(t *testing.T, c registry.Lister, repo string, n int) ([]string, int) {
	t.Helper()
	var all []string
	last := ""
	for pages := 1; ; pages++ {
		p, err := c.List(t.Context(), repo, last, n)
		if err != nil {
			t.Fatalf("List(%q, %d): %v", last, n, err)
		}
		all = append(all, p.Tags...)
		if !p.More || len(p.Tags) == 0 {
			return all, pages
		}
		last = p.Tags[len(p.Tags)-1]
		if pages > 1000 {
			t.Fatalf("walk: more than 1000 pages")
		}
	}
}

func TestListDistributionCapsN(t *testing.T) {
	t.Parallel()
	host := registrytest.StartDistributionWith(t, registrytest.DistributionConfig{MaxTags: 4})
	registrytest.CreateTags(t, host, "team/app", distTags...)
	c := newClient(t, host, registry.OCIConfig{})

	got, err := c.List(t.Context(), "team/app", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Tags) != 4 || !got.More {
		t.Errorf("List(n=10) against maxtags 4 = %q more=%v, want 4 tags and more", got.Tags, got.More)
	}
	tags, pages := walk(t, c, "team/app", 10)
	if want := slices.Sorted(slices.Values(distTags)); !slices.Equal(tags, want) {
		t.Errorf("walk = %q, want %q", tags, want)
	}
	// 11 tags in pages of 4: 4+4+3, no Link on the short page.
	if pages != 3 {
		t.Errorf("walk took %d pages, want 3", pages)
	}
}

func TestDeleteDistribution(t *testing.T) {
	t.Parallel()
	host := registrytest.StartDistribution(t)
	// Both tags share one manifest: a delete by digest would remove both.
	registrytest.CreateTags(t, host, "team/app", "20260101000000_prune_gone", "keep")
	c := newClient(t, host, registry.OCIConfig{})
	ctx := t.Context()

	if err := c.Delete(ctx, "team/app", "20260101000000_prune_gone"); err != nil {
		t.Fatalf("first Delete: %v", err)
	}
	if err := c.Delete(ctx, "team/app", "20260101000000_prune_gone"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second Delete error = %v, want ErrNotFound", err)
	}
	if err := c.Delete(ctx, "team/app", "never_was"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Delete(never_was) error = %v, want ErrNotFound", err)
	}
	got, err := c.List(ctx, "team/app", "", 10)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Tags, []string{"keep"}) {
		t.Errorf("after Delete, tags = %q, want [keep]: the tag sharing the manifest must survive", got.Tags)
	}

	// The last tag of a repository goes too; Distribution then still lists the repository.
	if err := c.Delete(ctx, "team/app", "keep"); err != nil {
		t.Fatalf("Delete(keep): %v", err)
	}
	got, err = c.List(ctx, "team/app", "", 10)
	if err != nil || len(got.Tags) != 0 || got.More {
		t.Errorf("List of an emptied repository = %q more=%v err=%v, want an empty page", got.Tags, got.More, err)
	}
}

// TestExistsDistribution: Exists asks the registry for the tag itself (a manifest HEAD), and
// sends nothing else that could change the repository; it also reads the Date the registry
// sent with a listing.
func TestExistsDistribution(t *testing.T) {
	t.Parallel()
	host := registrytest.StartDistribution(t)
	registrytest.CreateTags(t, host, "team/app", "rc_payload__4.18.0", "keep")
	c := newClient(t, host, registry.OCIConfig{})
	ctx := t.Context()
	for _, tc := range []struct {
		repo, tag string
		want      bool
	}{
		{"team/app", "rc_payload__4.18.0", true},
		{"team/app", "rc_payload__4.19.0", false},
		{"team/other", "keep", false},
	} {
		got, err := c.Exists(ctx, tc.repo, tc.tag)
		if err != nil || got != tc.want {
			t.Errorf("Exists(%s, %s) = %v, %v; want %v, nil", tc.repo, tc.tag, got, err, tc.want)
		}
	}
	if _, err := c.Exists(ctx, "team/app", "sha256:abc"); err == nil {
		t.Errorf("Exists(a digest) = nil error, want the tag refused")
	}
	if got, err := c.List(ctx, "team/app", "", 10); err != nil || len(got.Tags) != 2 {
		t.Fatalf("List after Exists = %q, %v; want both tags still there", got.Tags, err)
	} else if d := time.Since(got.Date); got.Date.IsZero() || d < -time.Minute || d > time.Minute {
		t.Errorf("List Date = %s, want the registry's clock (now)", got.Date)
	}
}

func TestDeleteDistributionDisabled(t *testing.T) {
	t.Parallel()
	host := registrytest.StartDistributionWith(t, registrytest.DistributionConfig{DeleteDisabled: true})
	registrytest.CreateTags(t, host, "team/app", "t1")
	c := newClient(t, host, registry.OCIConfig{})
	if err := c.Delete(t.Context(), "team/app", "t1"); !errors.Is(err, registry.ErrDeleteUnsupported) {
		t.Errorf("Delete with deletes disabled: error = %v, want ErrDeleteUnsupported", err)
	}
	got, err := c.List(t.Context(), "team/app", "", 10)
	if err != nil || !slices.Equal(got.Tags, []string{"t1"}) {
		t.Errorf("after refused Delete, tags = %q err=%v, want [t1]", got.Tags, err)
	}
}

// TestDeleteSendsOnlyTheTagDelete checks every outcome of a tag delete, and that whatever
// the registry answers, nothing but DELETE /v2/<repo>/manifests/<tag> is sent: no HEAD, no
// dummy manifest push, no delete by digest (regclient's TagDelete fallback).
func TestDeleteSendsOnlyTheTagDelete(t *testing.T) {
	t.Parallel()
	const del = "DELETE /v2/team/app/manifests/20260101000000_prune_x"
	tests := []struct {
		name     string
		statuses []int // answer to the i-th request; the last one repeats
		wantErr  error
		wantReqs []string
	}{
		{name: "202 deleted", statuses: []int{202}, wantReqs: []string{del}},
		{name: "200 deleted", statuses: []int{200}, wantReqs: []string{del}},
		{name: "404 already gone", statuses: []int{404}, wantErr: registry.ErrNotFound, wantReqs: []string{del}},
		{name: "405 unsupported", statuses: []int{405}, wantErr: registry.ErrDeleteUnsupported, wantReqs: []string{del}},
		{name: "400 unsupported", statuses: []int{400}, wantErr: registry.ErrDeleteUnsupported, wantReqs: []string{del}},
		{name: "403 unauthorized", statuses: []int{403}, wantErr: registry.ErrUnauthorized, wantReqs: []string{del}},
		{name: "429 retried by regclient, once", statuses: []int{429, 202}, wantReqs: []string{del, del}},
		{name: "502 retried by regclient, once", statuses: []int{502, 202}, wantReqs: []string{del, del}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host, f := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
				w.WriteHeader(tc.statuses[min(i, len(tc.statuses)-1)])
			})
			c := newClient(t, host, registry.OCIConfig{})
			err := c.Delete(t.Context(), "team/app", "20260101000000_prune_x")
			if tc.wantErr == nil && err != nil || !errors.Is(err, tc.wantErr) {
				t.Errorf("Delete error = %v, want %v", err, tc.wantErr)
			}
			if got := f.requests(); !slices.Equal(got, tc.wantReqs) {
				t.Errorf("requests = %q, want %q", got, tc.wantReqs)
			}
		})
	}
}

func TestDeleteRefusesNonTags(t *testing.T) {
	t.Parallel()
	host, f := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) { w.WriteHeader(202) })
	c := newClient(t, host, registry.OCIConfig{})
	for _, tag := range []string{
		"sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b",
		"", ".hidden", "a/b", "x y", strings.Repeat("a", 129),
	} {
		if err := c.Delete(t.Context(), "team/app", tag); err == nil {
			t.Errorf("Delete(%q) = nil, want an error", tag)
		}
	}
	if err := c.Delete(t.Context(), "Team/App", "t1"); err == nil {
		t.Errorf("Delete in repository Team/App = nil, want an error")
	}
	if got := f.requests(); len(got) != 0 {
		t.Errorf("requests = %q, want none", got)
	}
}

func TestListPageContract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		last     string
		n        int
		tags     []string
		link     string
		want     []string
		wantMore bool
		wantErr  error
		alsoErr  error
	}{
		{name: "out of order", n: 3, tags: []string{"b", "a", "c"}, wantErr: registry.ErrBadPage},
		{name: "repeats last", last: "b", n: 3, tags: []string{"b", "c"},
			wantErr: registry.ErrBadPage, alsoErr: registry.ErrKeysetUnsupported},
		{name: "before last (restarted)", last: "b", n: 3, tags: []string{"a", "b", "c"},
			wantErr: registry.ErrBadPage, alsoErr: registry.ErrKeysetUnsupported},
		{name: "after last, then out of order", last: "b", n: 3, tags: []string{"c", "a"}, wantErr: registry.ErrBadPage},
		{name: "duplicate", n: 3, tags: []string{"a", "a"}, wantErr: registry.ErrBadPage},
		{name: "n ignored: cut to n, more", n: 2, tags: []string{"a", "b", "c", "d"}, want: []string{"a", "b"}, wantMore: true},
		{name: "short page with Link is not followed", n: 5, tags: []string{"a", "b"},
			link: `</v2/team/app/tags/list?last=b&n=5>; rel="next"`, want: []string{"a", "b"}, wantMore: true},
		{name: "no Link", n: 2, tags: []string{"a", "b"}, want: []string{"a", "b"}},
		{name: "unquoted rel, absolute URL", n: 2, tags: []string{"a", "b"},
			link: `<https://elsewhere.example/v2/team/app/tags/list?last=b&n=2>; rel=next`, want: []string{"a", "b"}, wantMore: true},
		{name: "rel prev only", n: 2, tags: []string{"a", "b"}, link: `</x>; rel="prev"`, want: []string{"a", "b"}},
		{name: "next after a comma inside a URL", n: 2, tags: []string{"a", "b"},
			link: `</x?a=1,2>; rel="prev", </y>; rel="next"`, want: []string{"a", "b"}, wantMore: true},
		{name: "rel=next inside another parameter", n: 2, tags: []string{"a", "b"},
			link: `</x>; title="rel=next, <y>"; rel="last"`, want: []string{"a", "b"}},
		{name: "several rel values", n: 2, tags: []string{"a", "b"}, link: `</x>; rel="prev next"`,
			want: []string{"a", "b"}, wantMore: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			host, f := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
				writeTags(w, tc.link, tc.tags...)
			})
			c := newClient(t, host, registry.OCIConfig{})
			got, err := c.List(t.Context(), "team/app", tc.last, tc.n)
			if !errors.Is(err, tc.wantErr) || tc.wantErr == nil && err != nil {
				t.Fatalf("List error = %v, want %v", err, tc.wantErr)
			}
			if got := errors.Is(err, registry.ErrKeysetUnsupported); got != (tc.alsoErr != nil) {
				t.Errorf("List error = %v: wraps ErrKeysetUnsupported = %v, want %v", err, got, tc.alsoErr != nil)
			}
			if !slices.Equal(got.Tags, tc.want) || got.More != tc.wantMore {
				t.Errorf("List = %q more=%v, want %q more=%v", got.Tags, got.More, tc.want, tc.wantMore)
			}
			if reqs := f.requests(); len(reqs) != 1 {
				t.Errorf("requests = %q, want exactly one", reqs)
			}
		})
	}
}

func TestListRejectsBadArguments(t *testing.T) {
	t.Parallel()
	host, f := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) { writeTags(w, "") })
	c := newClient(t, host, registry.OCIConfig{})
	for _, tc := range []struct {
		repo string
		n    int
	}{{"team/app", 0}, {"team/app", -1}, {"Team/App", 10}, {"team/app:tag", 10}, {"", 10}} {
		if _, err := c.List(t.Context(), tc.repo, "", tc.n); err == nil {
			t.Errorf("List(%q, n=%d) = nil error, want one", tc.repo, tc.n)
		}
	}
	if got := f.requests(); len(got) != 0 {
		t.Errorf("requests = %q, want none", got)
	}
}

func TestProbeKeyset(t *testing.T) {
	t.Parallel()
	t.Run("distribution honours last", func(t *testing.T) {
		t.Parallel()
		host := registrytest.StartDistribution(t)
		registrytest.CreateTags(t, host, "team/app", distTags...)
		if err := registry.ProbeKeyset(t.Context(), newClient(t, host, registry.OCIConfig{}), "team/app"); err != nil {
			t.Errorf("ProbeKeyset against Distribution: %v", err)
		}
	})
	t.Run("registry ignoring last is refused", func(t *testing.T) {
		t.Parallel()
		host := registrytest.IgnoringLastRegistry(t)
		err := registry.ProbeKeyset(t.Context(), newClient(t, host, registry.OCIConfig{}), "team/app")
		if !errors.Is(err, registry.ErrKeysetUnsupported) {
			t.Fatalf("ProbeKeyset error = %v, want ErrKeysetUnsupported", err)
		}
		for _, want := range []string{"team/app", "last=", registrytest.DefaultIgnoringLastTags[0]} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("ProbeKeyset error %q does not mention %q", err, want)
			}
		}
	})
}

// TestConcurrency checks that regclient's per-host limit of 3 concurrent requests does not
// apply, even when a docker config holds an entry (which regclient creates with 3) for the
// host: the handler holds every request until `want` are in flight at once.
func TestConcurrency(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		concurrency int
		want        int
	}{
		{name: "default", concurrency: 0, want: 12},
		{name: "configured", concurrency: 5, want: 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var inFlight, peak atomic.Int64
			reached, giveUp := make(chan struct{}), make(chan struct{})
			var reachedOnce sync.Once
			timer := time.AfterFunc(10*time.Second, func() { close(giveUp) })
			t.Cleanup(func() { timer.Stop() })
			host, _ := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				if n >= int64(tc.want) {
					reachedOnce.Do(func() { close(reached) })
				}
				select {
				case <-reached:
				case <-giveUp:
				case <-r.Context().Done():
				}
				writeTags(w, "", "a")
			})
			login := base64.StdEncoding.EncodeToString([]byte("robot:secret"))
			dockerConfig := writeDockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, login))
			c := newClient(t, host, registry.OCIConfig{Concurrency: tc.concurrency, DockerConfig: dockerConfig})

			var wg sync.WaitGroup
			errs := make([]error, tc.want)
			for i := range tc.want {
				wg.Go(func() { _, errs[i] = c.List(t.Context(), "team/app", "", 10) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if got := peak.Load(); got < int64(tc.want) {
				t.Errorf("peak concurrent requests = %d, want %d", got, tc.want)
			}
		})
	}
}

// lockedBuffer is a log sink safe for concurrent writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestCredentialsNeverInErrors uses a registry that echoes the credentials it receives in
// its error body, which regclient quotes in its errors.
func TestCredentialsNeverInErrors(t *testing.T) {
	t.Parallel()
	const user, password = "ns+robot", "s3cr3t-Pa55word-XYZ"
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + password))
	tests := []struct {
		name   string
		docker bool // credentials from a docker config, else from OCIConfig
	}{{name: "docker config", docker: true}, {name: "explicit password"}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sawCreds atomic.Bool
			host, _ := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
				auth := r.Header.Get("Authorization")
				if auth == "" {
					w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				u, p, _ := r.BasicAuth()
				sawCreds.Store(u == user && p == password)
				w.WriteHeader(http.StatusForbidden)
				fmt.Fprintf(w, `{"errors":[{"code":"DENIED","message":"denied %s (user %s password %s, %s)"}]}`, auth, u, p, basic)
			})
			var logs lockedBuffer
			cfg := registry.OCIConfig{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			if tc.docker {
				cfg.DockerConfig = writeDockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, basic))
			} else {
				cfg.Username, cfg.Password = user, password
			}
			c := newClient(t, host, cfg)
			_, listErr := c.List(t.Context(), "team/app", "", 10)
			delErr := c.Delete(t.Context(), "team/app", "t1")
			if !sawCreds.Load() {
				t.Fatal("precondition: the registry never received the credentials")
			}
			for _, err := range []error{listErr, delErr} {
				if !errors.Is(err, registry.ErrUnauthorized) {
					t.Errorf("error = %v, want ErrUnauthorized", err)
				}
				if err != nil && (strings.Contains(err.Error(), password) || strings.Contains(err.Error(), basic)) {
					t.Errorf("error leaks the credentials: %v", err)
				}
			}
			for _, s := range []string{logs.String(), fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg)} {
				if strings.Contains(s, password) || strings.Contains(s, basic) {
					t.Errorf("credentials leak into %q", s)
				}
			}
		})
	}
}

func TestRateLimited(t *testing.T) {
	t.Parallel()
	t.Run("without Retry-After", func(t *testing.T) {
		t.Parallel()
		host, f := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
			w.WriteHeader(http.StatusTooManyRequests)
		})
		c := newClient(t, host, registry.OCIConfig{RetryLimit: 3})
		_, err := c.List(t.Context(), "team/app", "", 10)
		var ra *registry.RetryAfterError
		if !errors.Is(err, registry.ErrRateLimited) || errors.As(err, &ra) {
			t.Errorf("List error = %v, want ErrRateLimited without RetryAfterError", err)
		}
		// regclient is the one retry layer: at most RetryLimit+1 attempts.
		if got := len(f.requests()); got < 2 || got > 4 {
			t.Errorf("requests = %d, want 2 to 4", got)
		}
	})
	// Retry-After as whole or fractional seconds (regclient reads both).
	for _, tc := range []struct {
		value string
		want  time.Duration
	}{{"1", time.Second}, {"0.5", 500 * time.Millisecond}} {
		t.Run("with Retry-After "+tc.value, func(t *testing.T) {
			t.Parallel()
			host, _ := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
				w.Header().Set("Retry-After", tc.value)
				w.WriteHeader(http.StatusTooManyRequests)
			})
			c := newClient(t, host, registry.OCIConfig{RetryLimit: 1})
			err := c.Delete(t.Context(), "team/app", "t1")
			var ra *registry.RetryAfterError
			if !errors.Is(err, registry.ErrRateLimited) || !errors.As(err, &ra) || ra.After != tc.want {
				t.Errorf("Delete error = %v, want ErrRateLimited with RetryAfterError of %s", err, tc.want)
			}
		})
	}
}

// TestHungRegistry checks that a registry that never answers cannot hang a call.
func TestHungRegistry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  registry.OCIConfig
	}{
		{name: "call timeout", cfg: registry.OCIConfig{Timeout: time.Hour, CallTimeout: 200 * time.Millisecond}},
		{name: "request timeout", cfg: registry.OCIConfig{Timeout: 50 * time.Millisecond, CallTimeout: time.Hour, RetryLimit: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stop := make(chan struct{})
			host, _ := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
				select {
				case <-r.Context().Done():
				case <-stop:
				}
			})
			t.Cleanup(func() { close(stop) }) // runs before the server's Close
			c := newClient(t, host, tc.cfg)
			if _, err := c.List(t.Context(), "team/app", "", 10); err == nil {
				t.Errorf("List against a hung registry = nil error")
			} else if tc.cfg.Timeout == time.Hour && !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("List error = %v, want DeadlineExceeded", err)
			}
			if err := c.Delete(t.Context(), "team/app", "t1"); err == nil {
				t.Errorf("Delete against a hung registry = nil error")
			}
		})
	}
}

func TestNewOCIConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  registry.OCIConfig
	}{
		{name: "no host", cfg: registry.OCIConfig{}},
		{name: "scheme", cfg: registry.OCIConfig{Host: "https://quay.io"}},
		{name: "path", cfg: registry.OCIConfig{Host: "quay.io/openshift"}},
		{name: "missing docker config", cfg: registry.OCIConfig{Host: "quay.io", DockerConfig: "/nonexistent/config.json"}},
		{name: "negative concurrency", cfg: registry.OCIConfig{Host: "quay.io", Concurrency: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := registry.NewOCI(tc.cfg); err == nil {
				t.Errorf("NewOCI(%v) = nil error, want one", tc.cfg)
			}
		})
	}
	t.Run("malformed docker config", func(t *testing.T) {
		_, err := registry.NewOCI(registry.OCIConfig{Host: "quay.io", DockerConfig: writeDockerConfig(t, `{"auths":`)})
		if err == nil {
			t.Errorf("NewOCI with a malformed docker config = nil error")
		}
	})
}

// BenchmarkDistribution measures one list page and one delete against Distribution holding
// a few thousand tags.
func BenchmarkDistribution(b *testing.B) {
	const total = 5000
	host := registrytest.StartDistribution(b)
	tags := make([]string, total)
	for i := range tags {
		tags[i] = fmt.Sprintf("202601%02d%06d_prune_ns_img_%d", 1+i%28, i, i)
	}
	registrytest.CreateTags(b, host, "team/app", tags...)
	c := newClient(b, host, registry.OCIConfig{})
	sorted := slices.Sorted(slices.Values(tags))

	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprintf("list n=%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := c.List(b.Context(), "team/app", sorted[total/2], n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("delete", func(b *testing.B) {
		victims := make([]string, b.N)
		for i := range victims {
			victims[i] = fmt.Sprintf("20250101000000_prune_victim_%d", i)
		}
		registrytest.CreateTags(b, host, "team/app", victims...)
		b.ResetTimer()
		for i := range b.N {
			if err := c.Delete(b.Context(), "team/app", victims[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestUserAgent: the OCI and Quay clients send DefaultOCIUserAgent unless told otherwise.
func TestUserAgent(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var agents []string
	host, _ := startFake(t, func(w http.ResponseWriter, r *http.Request, i int) {
		mu.Lock()
		agents = append(agents, r.Header.Get("User-Agent"))
		mu.Unlock()
		writeTags(w, "", "a")
	})
	if _, err := newClient(t, host, registry.OCIConfig{}).List(t.Context(), "team/app", "", 10); err != nil {
		t.Fatal(err)
	}
	s := startQuay(t, sim.Config{}, "a")
	var quayAgent string
	wrap := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			quayAgent = req.Header.Get("User-Agent")
			return next.RoundTrip(req)
		})
	}
	if err := newQuay(t, s, registry.QuayConfig{WrapTransport: wrap}, nil).Delete(t.Context(), quayRepo, "a"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, got := range append(agents, quayAgent) {
		if got != registry.DefaultOCIUserAgent {
			t.Errorf("User-Agent %q, want %q", got, registry.DefaultOCIUserAgent)
		}
	}
}
