package sim

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// benchSizes are the repository sizes the per-request benchmarks compare: the cost of a page
// or a delete must not grow with them.
var benchSizes = []int{10_000, 100_000, 1_000_000}

func benchRegistry(b *testing.B, size int) (*Registry, []string) {
	b.Helper()
	tags := Generate(GenConfig{Seed: 1, Tags: size, End: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	r := New(Config{})
	if err := r.AddTags("openshift/ci", "", tags...); err != nil {
		b.Fatal(err)
	}
	return r, tags
}

// BenchmarkList serves one 100-tag page starting at a random existing tag, through the full
// HTTP handler (routing, JSON, Link) without a network.
func BenchmarkList(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			r, tags := benchRegistry(b, size)
			rng := rand.New(rand.NewPCG(1, 2))
			reqs := make([]*http.Request, 1024)
			for i := range reqs {
				last := tags[rng.IntN(len(tags))]
				reqs[i] = httptest.NewRequest(http.MethodGet, "/v2/openshift/ci/tags/list?n=100&last="+url.QueryEscape(last), nil)
			}
			i := 0
			for b.Loop() {
				w := httptest.NewRecorder()
				r.ServeHTTP(w, reqs[i%len(reqs)])
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
				i++
			}
		})
	}
}

// BenchmarkDelete deletes tags in random order through the HTTP handler. When every tag is
// gone it reloads them, off the clock.
func BenchmarkDelete(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			r, tags := benchRegistry(b, size)
			order := rand.New(rand.NewPCG(3, 4)).Perm(len(tags))
			i := 0
			for b.Loop() {
				if i == len(order) {
					b.StopTimer()
					if err := r.AddTags("openshift/ci", "", tags...); err != nil {
						b.Fatal(err)
					}
					i = 0
					b.StartTimer()
				}
				w := httptest.NewRecorder()
				r.ServeHTTP(w, httptest.NewRequest(http.MethodDelete, "/v2/openshift/ci/manifests/"+tags[order[i]], nil))
				if w.Code != http.StatusAccepted {
					b.Fatalf("status %d", w.Code)
				}
				i++
			}
		})
	}
}

// BenchmarkBulkLoad loads a generated million-tag namespace into an empty registry.
func BenchmarkBulkLoad(b *testing.B) {
	tags := Generate(GenConfig{Seed: 1, Tags: 1_000_000, End: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)})
	for b.Loop() {
		r := New(Config{})
		if err := r.AddTags("openshift/ci", "", tags...); err != nil {
			b.Fatal(err)
		}
	}
}
