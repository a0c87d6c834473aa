package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/registry"
)

// startSim serves a registry on a random loopback port for the test's lifetime.
func startSim(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := Start(t.Context(), "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// waitFor polls cond until it holds, failing the test after a generous deadline (a safety
// net against hangs, not a timing assertion).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

type listAnswer struct {
	status int
	link   string
	body   tagList
	raw    string
	errs   []ociError
}

func get(t testing.TB, method, u string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, u, nil)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", u, err)
	}
	return resp, b
}

func list(t testing.TB, base, repo, query string) listAnswer {
	t.Helper()
	resp, b := get(t, http.MethodGet, base+"/v2/"+repo+"/tags/list"+query)
	a := listAnswer{status: resp.StatusCode, link: resp.Header.Get("Link"), raw: string(b)}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, &a.body); err != nil {
			t.Fatalf("decoding %s: %v", b, err)
		}
	} else {
		var e struct{ Errors []ociError }
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("decoding error body %s: %v", b, err)
		}
		a.errs = e.Errors
	}
	return a
}

// names returns prefix000 .. prefix(n-1), zero-padded to three digits.
func names(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s%03d", prefix, i))
	}
	return out
}

func TestTagsListPaging(t *testing.T) {
	s := startSim(t, Config{})
	if err := s.AddTags("ns/app", "", names("a", 0, 250)...); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTags("org/team/deep/app", "", "x", "y"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRepo("ns/empty"); err != nil {
		t.Fatal(err)
	}
	link := func(repo, n, last string) string {
		return fmt.Sprintf(`<%s/v2/%s/tags/list?n=%s&last=%s>; rel="next"`, s.URL(), repo, n, last)
	}
	tests := []struct {
		name      string
		repo      string
		query     string
		wantTags  []string
		wantLink  string
		wantCode  string // OCI error code, for non-200 answers
		wantState int
	}{
		{name: "no params is one capped page", query: "", wantTags: names("a", 0, 100), wantLink: link("ns/app", "100", "a099")},
		{name: "small n", query: "?n=10", wantTags: names("a", 0, 10), wantLink: link("ns/app", "10", "a009")},
		{name: "n above cap is clamped silently", query: "?n=1000", wantTags: names("a", 0, 100), wantLink: link("ns/app", "100", "a099")},
		{name: "non-integer n means the cap", query: "?n=lots", wantTags: names("a", 0, 100), wantLink: link("ns/app", "100", "a099")},
		{name: "n=0 is empty without Link", query: "?n=0", wantTags: []string{}},
		{name: "negative n is empty", query: "?n=-3", wantTags: []string{}},
		{name: "last equal to a tag is exclusive", query: "?n=3&last=a100", wantTags: names("a", 101, 104), wantLink: link("ns/app", "3", "a103")},
		{name: "last between tags", query: "?n=2&last=a0995", wantTags: names("a", 100, 102), wantLink: link("ns/app", "2", "a101")},
		{name: "last before every tag", query: "?n=2&last=0", wantTags: names("a", 0, 2), wantLink: link("ns/app", "2", "a001")},
		{name: "bare prefix as last", query: "?n=2&last=a", wantTags: names("a", 0, 2), wantLink: link("ns/app", "2", "a001")},
		{name: "last is trimmed", query: "?n=1&last=%20a100%20", wantTags: names("a", 101, 102), wantLink: link("ns/app", "1", "a101")},
		{name: "exactly full final page has no Link", query: "?n=100&last=a149", wantTags: names("a", 150, 250)},
		{name: "one more than a page has Link", query: "?n=100&last=a148", wantTags: names("a", 149, 249), wantLink: link("ns/app", "100", "a248")},
		{name: "short final page", query: "?n=100&last=a200", wantTags: names("a", 201, 250)},
		{name: "last equal to the last tag", query: "?last=a249", wantTags: []string{}},
		{name: "last past the end", query: "?last=zzz", wantTags: []string{}},
		{name: "deep repository path", repo: "org/team/deep/app", query: "?n=1", wantTags: []string{"x"}, wantLink: link("org/team/deep/app", "1", "x")},
		{name: "empty repository", repo: "ns/empty", wantTags: []string{}},
		{name: "unknown repository", repo: "ns/nope", wantState: http.StatusNotFound, wantCode: "NAME_UNKNOWN"},
		{name: "invalid repository name", repo: "NS/App", wantState: http.StatusBadRequest, wantCode: "NAME_INVALID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			repo := tc.repo
			if repo == "" {
				repo = "ns/app"
			}
			want := tc.wantState
			if want == 0 {
				want = http.StatusOK
			}
			got := list(t, s.URL(), repo, tc.query)
			if got.status != want {
				t.Fatalf("status = %d, want %d (%s)", got.status, want, got.raw)
			}
			if tc.wantCode != "" {
				if len(got.errs) != 1 || got.errs[0].Code != tc.wantCode {
					t.Errorf("errors = %+v, want one %s", got.errs, tc.wantCode)
				}
				return
			}
			if got.body.Name != repo {
				t.Errorf("name = %q, want %q", got.body.Name, repo)
			}
			if got.body.Tags == nil {
				t.Errorf("tags is null, want a list: %s", got.raw)
			}
			if !slices.Equal(got.body.Tags, tc.wantTags) {
				t.Errorf("tags = %v, want %v", got.body.Tags, tc.wantTags)
			}
			if got.link != tc.wantLink {
				t.Errorf("Link = %q, want %q", got.link, tc.wantLink)
			}
		})
	}
}

// TestTagsListFollowLink walks a repository through its Link headers and by last= from
// odd start keys, and checks that every tag is seen once, in order.
func TestTagsListFollowLink(t *testing.T) {
	s := startSim(t, Config{PageCap: 7})
	all := Generate(GenConfig{Seed: 4, Tags: 500, End: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	if err := s.AddTags("ns/app", "", all...); err != nil {
		t.Fatal(err)
	}
	var seen []string
	next := s.URL() + "/v2/ns/app/tags/list"
	for pages := 0; next != ""; pages++ {
		if pages > len(all) {
			t.Fatal("Link chain does not end")
		}
		resp, b := get(t, http.MethodGet, next)
		var page tagList
		if err := json.Unmarshal(b, &page); err != nil {
			t.Fatal(err)
		}
		if err := registry.CheckPage(lastOf(seen), page.Tags); err != nil {
			t.Fatal(err)
		}
		seen = append(seen, page.Tags...)
		next = ""
		if l := resp.Header.Get("Link"); l != "" {
			u, _, ok := strings.Cut(strings.TrimPrefix(l, "<"), ">")
			if !ok {
				t.Fatalf("malformed Link %q", l)
			}
			next = u
		}
	}
	if !slices.Equal(seen, all) {
		t.Fatalf("walked %d tags, want %d", len(seen), len(all))
	}
}

func lastOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

func TestBase(t *testing.T) {
	s := startSim(t, Config{})
	resp, _ := get(t, http.MethodGet, s.URL()+"/v2/")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ = %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Docker-Distribution-API-Version"); got != "registry/2.0" {
		t.Errorf("Docker-Distribution-API-Version = %q, want registry/2.0", got)
	}
}

func do(t testing.TB, method, u string) int {
	t.Helper()
	resp, _ := get(t, method, u)
	return resp.StatusCode
}

func TestDeleteTag(t *testing.T) {
	s := startSim(t, Config{})
	if err := s.AddTags("ns/app", "", "a", "b", "c"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		want         int
	}{
		{http.MethodHead, "/v2/ns/app/manifests/b", http.StatusOK},
		{http.MethodDelete, "/v2/ns/app/manifests/b", http.StatusAccepted},
		{http.MethodDelete, "/v2/ns/app/manifests/b", http.StatusNotFound},
		{http.MethodGet, "/v2/ns/app/manifests/b", http.StatusNotFound},
		{http.MethodDelete, "/v2/ns/app/manifests/never-was", http.StatusNotFound},
		{http.MethodDelete, "/v2/ns/nope/manifests/a", http.StatusNotFound},
		{http.MethodDelete, "/v2/ns/app/manifests/a", http.StatusAccepted},
		{http.MethodGet, "/v2/ns/app/manifests/c", http.StatusOK},
	}
	for _, tc := range tests {
		if got := do(t, tc.method, s.URL()+tc.path); got != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
	if got, want := s.Tags("ns/app"), []string{"c"}; !slices.Equal(got, want) {
		t.Errorf("Tags() = %v, want %v", got, want)
	}
	if got, want := s.DeletedTags("ns/app"), []string{"b", "a"}; !slices.Equal(got, want) {
		t.Errorf("DeletedTags() = %v, want %v", got, want)
	}
	st := s.Stats()
	if got := st.ByStatus[KindStatus{KindDelete, http.StatusAccepted}]; got != 2 {
		t.Errorf("delete 202 count = %d, want 2", got)
	}
	if got := st.ByStatus[KindStatus{KindDelete, http.StatusNotFound}]; got != 3 {
		t.Errorf("delete 404 count = %d, want 3", got)
	}
	if st.TagDeletes != 2 || st.DigestDeletes != 0 {
		t.Errorf("TagDeletes, DigestDeletes = %d, %d, want 2, 0", st.TagDeletes, st.DigestDeletes)
	}
	if st.Total() != int64(len(tests)) {
		t.Errorf("Total() = %d, want %d", st.Total(), len(tests))
	}
	s.ResetStats()
	if got := s.Stats().Total(); got != 0 {
		t.Errorf("Total() after ResetStats = %d, want 0", got)
	}
}

func TestDeleteByDigestRemovesEveryTagOnIt(t *testing.T) {
	s := startSim(t, Config{})
	d, err := s.PutManifest("ns/app", MediaTypeOCIManifest, []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[],"annotations":{"x":"1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddTags("ns/app", d, "shared-1", "shared-2", "shared-3"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddTags("ns/app", "", "other"); err != nil {
		t.Fatal(err)
	}
	if got := do(t, http.MethodDelete, s.URL()+"/v2/ns/app/manifests/"+d); got != http.StatusAccepted {
		t.Fatalf("DELETE by digest = %d, want 202", got)
	}
	if got, want := s.Tags("ns/app"), []string{"other"}; !slices.Equal(got, want) {
		t.Errorf("Tags() = %v, want %v", got, want)
	}
	if got := do(t, http.MethodGet, s.URL()+"/v2/ns/app/manifests/"+d); got != http.StatusNotFound {
		t.Errorf("GET deleted digest = %d, want 404", got)
	}
	if got := do(t, http.MethodDelete, s.URL()+"/v2/ns/app/manifests/"+d); got != http.StatusNotFound {
		t.Errorf("second DELETE by digest = %d, want 404", got)
	}
	st := s.Stats()
	if st.DigestDeletes != 1 || st.DigestDeletedTags != 3 || st.TagDeletes != 0 {
		t.Errorf("DigestDeletes, DigestDeletedTags, TagDeletes = %d, %d, %d, want 1, 3, 0", st.DigestDeletes, st.DigestDeletedTags, st.TagDeletes)
	}
	if got := st.Requests[KindDeleteDigest]; got != 2 {
		t.Errorf("delete_digest requests = %d, want 2", got)
	}
}

// TestConcurrentListAndDelete lists every key range over and over while other goroutines
// delete, and checks each page keeps the keyset contract and the end state is exact.
func TestConcurrentListAndDelete(t *testing.T) {
	s := startSim(t, Config{PageCap: 50})
	var all []string
	for i := range 4000 {
		all = append(all, fmt.Sprintf("t%04d", i))
	}
	if err := s.AddTags("ns/app", "", all...); err != nil {
		t.Fatal(err)
	}
	var keep, drop []string
	for i, tag := range all {
		if i%3 == 0 {
			keep = append(keep, tag)
		} else {
			drop = append(drop, tag)
		}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(client.CloseIdleConnections)
	call := func(ctx context.Context, method, u string) (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	ctx := t.Context()
	errc := make(chan error, 16)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < len(drop); i += 4 {
				resp, _, err := call(ctx, http.MethodDelete, s.URL()+"/v2/ns/app/manifests/"+drop[i])
				if err != nil {
					errc <- err
					return
				}
				if resp.StatusCode != http.StatusAccepted {
					errc <- fmt.Errorf("DELETE %s = %d", drop[i], resp.StatusCode)
					return
				}
			}
		})
	}
	deleting := make(chan struct{})
	go func() { wg.Wait(); close(deleting) }()
	var lw sync.WaitGroup
	for l := range 2 {
		lw.Go(func() {
			for {
				last := ""
				for {
					resp, b, err := call(ctx, http.MethodGet, s.URL()+"/v2/ns/app/tags/list?n=50&last="+url.QueryEscape(last))
					if err != nil {
						errc <- err
						return
					}
					var page tagList
					if err := json.Unmarshal(b, &page); err != nil {
						errc <- fmt.Errorf("lister %d: %w", l, err)
						return
					}
					if err := registry.CheckPage(last, page.Tags); err != nil {
						errc <- err
						return
					}
					if resp.Header.Get("Link") == "" {
						break
					}
					last = page.Tags[len(page.Tags)-1]
				}
				select {
				case <-deleting:
					return
				default:
				}
			}
		})
	}
	lw.Wait()
	<-deleting
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if got := s.Tags("ns/app"); !slices.Equal(got, keep) {
		t.Errorf("Tags() has %d tags, want the %d kept", len(got), len(keep))
	}
	got := s.DeletedTags("ns/app")
	slices.Sort(got)
	if !slices.Equal(got, drop) {
		t.Errorf("DeletedTags() has %d tags, want %d", len(got), len(drop))
	}
}

// TestLatencyHonoursContext: with an hour of latency, a request whose client gives up must
// end at once (the test would time out otherwise) and be counted with status 0.
func TestLatencyHonoursContext(t *testing.T) {
	s := startSim(t, Config{Latency: time.Hour})
	if err := s.AddTags("ns/app", "", "a"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL()+"/v2/ns/app/tags/list", nil)
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
	// Wait until the request is inside the handler, then give up on it.
	waitFor(t, "the request to reach the handler", func() bool { return s.InFlight() > 0 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("request succeeded, want a cancellation error")
	}
	waitFor(t, "the handler to end after its client went away", func() bool {
		return s.Stats().ByStatus[KindStatus{KindList, 0}] == 1
	})
}

func TestAddTagsValidates(t *testing.T) {
	r := New(Config{})
	tests := []struct {
		name   string
		repo   string
		digest string
		tags   []string
	}{
		{"bad repo", "Bad/Repo", "", []string{"a"}},
		{"bad tag", "ns/app", "", []string{"ok", ".dot-first"}},
		{"tag too long", "ns/app", "", []string{strings.Repeat("a", 129)}},
		{"unknown manifest", "ns/app", "sha256:" + strings.Repeat("0", 64), []string{"a"}},
	}
	for _, tc := range tests {
		if err := r.AddTags(tc.repo, tc.digest, tc.tags...); err == nil {
			t.Errorf("%s: AddTags() = nil, want an error", tc.name)
		}
	}
	if err := r.AddTags("ns/app", "", "a", "b"); err != nil {
		t.Fatal(err)
	}
	d, err := r.PutManifest("ns/app", MediaTypeOCIManifest, []byte(`{"schemaVersion":2}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddTags("ns/app", d, "b"); err != nil { // moves b
		t.Fatal(err)
	}
	if got, _ := r.TagDigest("ns/app", "b"); got != d {
		t.Errorf("TagDigest(b) = %s, want %s", got, d)
	}
	if got, _ := r.TagDigest("ns/app", "a"); got != r.DefaultDigest() {
		t.Errorf("TagDigest(a) = %s, want the default %s", got, r.DefaultDigest())
	}
	if !r.HasTag("ns/app", "a") || r.HasTag("ns/app", "z") || r.HasTag("ns/nope", "a") {
		t.Error("HasTag answers wrongly")
	}
}

func TestBulkLoadMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("loads a million tags")
	}
	tags := Generate(GenConfig{Seed: 1, Tags: 1_000_000, End: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	r := New(Config{})
	if err := r.AddTags("openshift/ci", "", tags...); err != nil {
		t.Fatal(err)
	}
	if got := r.Len("openshift/ci"); got != len(tags) {
		t.Fatalf("Len() = %d, want %d", got, len(tags))
	}
	// Adding a few more to a loaded repository goes through the incremental path.
	if err := r.AddTags("openshift/ci", "", "zz-one", "00-two"); err != nil {
		t.Fatal(err)
	}
	if got := r.Len("openshift/ci"); got != len(tags)+2 {
		t.Fatalf("Len() = %d, want %d", got, len(tags)+2)
	}
}
