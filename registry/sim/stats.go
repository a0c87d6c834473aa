package sim

import (
	"maps"
	"sync"
)

// Kind names a class of request in Stats.
type Kind string

// Request kinds.
const (
	KindBase         Kind = "base"          // GET /v2/
	KindList         Kind = "list"          // GET tags/list
	KindDelete       Kind = "delete"        // DELETE manifests/<tag>
	KindDeleteDigest Kind = "delete_digest" // DELETE manifests/<digest>: removes every tag on it
	KindManifestGet  Kind = "manifest_get"  // GET manifests/<ref>
	KindManifestHead Kind = "manifest_head" // HEAD manifests/<ref>
	KindManifestPut  Kind = "manifest_put"  // PUT manifests/<ref>
	KindBlob         Kind = "blob"          // GET or HEAD blobs/<digest>
	KindBlobUpload   Kind = "blob_upload"   // POST, PATCH, PUT, GET, DELETE blobs/uploads/...
	KindAuth         Kind = "auth"          // GET /v2/auth, the token endpoint
	KindAPIList      Kind = "api_list"      // GET /api/v1/repository/<repo>/tag/
	KindAPIDelete    Kind = "api_delete"    // DELETE /api/v1/repository/<repo>/tag/<tag>
	KindAPIPut       Kind = "api_put"       // PUT /api/v1/repository/<repo>/tag/<tag>
	KindAPIRestore   Kind = "api_restore"   // POST /api/v1/repository/<repo>/tag/<tag>/restore
	KindOther        Kind = "other"         // anything else (answered 404 or 405)
)

// apiV1 reports whether k is a request of Quay's API v1.
func (k Kind) apiV1() bool {
	switch k {
	case KindAPIList, KindAPIDelete, KindAPIPut, KindAPIRestore:
		return true
	}
	return false
}

// KindStatus is a (kind, HTTP status) pair. Status 0 counts requests whose client went
// away before an answer was written.
type KindStatus struct {
	Kind   Kind
	Status int
}

// Stats counts the requests a registry served since it was created or last reset. It is a
// copy: changing it does not affect the registry.
type Stats struct {
	Requests   map[Kind]int64       // by kind
	Statuses   map[int]int64        // by HTTP status
	ByStatus   map[KindStatus]int64 // by kind and status
	TagDeletes int64                // tags removed by DELETE manifests/<tag>
	// TagsRestored counts API v1 time machine restores; ManifestsCollected the manifests GC
	// dropped.
	TagsRestored       int64
	ManifestsCollected int64
	// DigestDeletes counts successful DELETE manifests/<digest> requests, and
	// DigestDeletedTags the tags they removed. tagsweep must never cause either.
	DigestDeletes     int64
	DigestDeletedTags int64
	// Faults counts injected faults by name: burst, error, throttle, reset, slow,
	// ratelimit, hook.
	Faults map[string]int64
	// TokensIssued counts bearer tokens handed out by /v2/auth.
	TokensIssued int64
	// TokensRefused counts /v2 requests refused for a token that has expired (its lifetime
	// or its Auth.TokenRequests used up) or was revoked (ExpireTokens).
	TokensRefused int64
}

// Total is the number of requests counted.
func (s Stats) Total() int64 {
	var n int64
	for _, v := range s.Requests {
		n += v
	}
	return n
}

type stats struct {
	mu sync.Mutex
	s  Stats
}

func (st *stats) reset() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s = Stats{
		Requests: make(map[Kind]int64),
		Statuses: make(map[int]int64),
		ByStatus: make(map[KindStatus]int64),
		Faults:   make(map[string]int64),
	}
}

func (st *stats) record(k Kind, status int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.s.Requests[k]++
	st.s.Statuses[status]++
	st.s.ByStatus[KindStatus{k, status}]++
}

func (st *stats) add(f func(*Stats)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(&st.s)
}

func (st *stats) snapshot() Stats {
	st.mu.Lock()
	defer st.mu.Unlock()
	c := st.s
	c.Requests = maps.Clone(st.s.Requests)
	c.Statuses = maps.Clone(st.s.Statuses)
	c.ByStatus = maps.Clone(st.s.ByStatus)
	c.Faults = maps.Clone(st.s.Faults)
	return c
}

// Stats returns a copy of the request counters.
func (r *Registry) Stats() Stats { return r.stats.snapshot() }

// ResetStats zeroes the request counters.
func (r *Registry) ResetStats() { r.stats.reset() }
