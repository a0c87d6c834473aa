package sim

import (
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// StatusReset, returned by a Faults.Fail hook, closes the connection without an answer.
const StatusReset = -1

// Faults are failures the registry injects. The zero value injects nothing. Random faults
// draw from a PCG seeded with Seed, so a single-threaded sequence of requests fails the same
// way every time (concurrent requests race for the draws).
type Faults struct {
	// Kinds limits the random faults (ErrorRate, ErrorBurst, ThrottleRate, ResetRate,
	// SlowRate) to these request kinds; empty means every kind. Fail and Limits apply
	// regardless.
	Kinds []Kind
	Seed  uint64

	// ErrorRate is the fraction of requests answered ErrorStatus (default 503).
	ErrorRate   float64
	ErrorStatus int
	// ErrorBurst makes the next ErrorBurst matching requests fail with ErrorStatus, then
	// stops; SetFaults restarts it.
	ErrorBurst int

	// ThrottleRate is the fraction of requests answered 429, with a Retry-After of
	// RetryAfter (whole seconds, rounded up) when it is positive, without one otherwise.
	ThrottleRate float64
	RetryAfter   time.Duration

	// ResetRate is the fraction of requests whose connection is closed without an answer.
	ResetRate float64

	// SlowRate is the fraction of requests delayed by SlowDelay before they are served
	// (on top of Config.Latency), honouring the request's context.
	SlowRate  float64
	SlowDelay time.Duration

	// Limits are token-bucket rate limits per client IP, as Quay's nginx applies them:
	// a request over its bucket is answered 429 without Retry-After. A request is checked
	// against the first limit that lists its kind (or lists no kinds).
	Limits []Limit

	// Fail is called for every request before it is served; a non-zero status is answered
	// instead (StatusReset closes the connection). Ref is the tag or digest of manifest
	// requests and the last= parameter of list requests, so a test can make one key range
	// fail forever. It may be called concurrently.
	Fail func(FaultRequest) int
}

// Limit is one rate limit.
type Limit struct {
	Kinds     []Kind  // empty means every kind
	PerSecond float64 // sustained rate
	Burst     int     // bucket size; 0 means 1
}

// FaultRequest describes a request to a Faults.Fail hook.
type FaultRequest struct {
	Kind   Kind
	Method string
	Repo   string
	Ref    string // tag or digest; last= for a list; "" otherwise
	N      int    // n= of a list (0 when absent); 0 otherwise
	Client string // remote IP
}

// QuayLimits are the per-IP HTTP/1.1 limits of Quay's bundled nginx configuration
// (conf/nginx/rate-limiting.conf.jnj): tags/list 5 r/s (burst 2), manifests 50 r/s
// (burst 10), /v2/auth 120 r/s (burst 2), the rest of /v2 60 r/s (burst 20), /api 5 r/s
// (burst 25).
func QuayLimits() []Limit {
	return []Limit{
		{Kinds: []Kind{KindList}, PerSecond: 5, Burst: 2},
		{Kinds: []Kind{KindDelete, KindDeleteDigest, KindManifestGet, KindManifestHead, KindManifestPut}, PerSecond: 50, Burst: 10},
		{Kinds: []Kind{KindAuth}, PerSecond: 120, Burst: 2},
		{Kinds: []Kind{KindAPIList, KindAPIDelete, KindAPIPut, KindAPIRestore}, PerSecond: 5, Burst: 25},
		{PerSecond: 60, Burst: 20},
	}
}

// faultState is the live fault configuration and its random and rate-limit state.
type faultState struct {
	mu      sync.Mutex
	f       Faults
	rng     *rand.Rand
	burst   int
	buckets map[bucketKey]*rate.Limiter
}

type bucketKey struct {
	limit  int
	client string
}

// SetFaults replaces the injected faults; it is safe while serving. It restarts ErrorBurst
// and the random sequence, and empties the rate-limit buckets.
func (r *Registry) SetFaults(f Faults) {
	r.faults.mu.Lock()
	defer r.faults.mu.Unlock()
	r.faults.f = f
	r.faults.rng = rand.New(rand.NewPCG(f.Seed, f.Seed^0xda3e39cb94b95bdb))
	r.faults.burst = f.ErrorBurst
	r.faults.buckets = make(map[bucketKey]*rate.Limiter)
}

// fault is what to do with one request.
type fault struct {
	name       string        // Stats.Faults key; "" means serve normally
	status     int           // status to answer, or StatusReset
	retryAfter time.Duration // > 0: send Retry-After
	delay      time.Duration // wait before serving (slow) or failing
}

// decide picks the fault for a request. It is called after Config.Latency.
func (fs *faultState) decide(fr FaultRequest) fault {
	fs.mu.Lock()
	f := fs.f
	hook := f.Fail
	var out fault
	if fs.rng != nil {
		out = fs.random(fr)
		if out.name == "" {
			out = fs.limit(fr)
		}
	}
	fs.mu.Unlock()
	if hook != nil {
		if st := hook(fr); st != 0 {
			return fault{name: "hook", status: st, delay: out.delay}
		}
	}
	return out
}

// random draws the random faults; fs.mu is held.
func (fs *faultState) random(fr FaultRequest) fault {
	f := fs.f
	if len(f.Kinds) > 0 && !slices.Contains(f.Kinds, fr.Kind) {
		return fault{}
	}
	errStatus := f.ErrorStatus
	if errStatus == 0 {
		errStatus = http.StatusServiceUnavailable
	}
	var out fault
	if f.SlowRate > 0 && fs.rng.Float64() < f.SlowRate {
		out.delay = f.SlowDelay
	}
	switch {
	case fs.burst > 0:
		fs.burst--
		out.name, out.status = "burst", errStatus
	case f.ErrorRate > 0 && fs.rng.Float64() < f.ErrorRate:
		out.name, out.status = "error", errStatus
	case f.ThrottleRate > 0 && fs.rng.Float64() < f.ThrottleRate:
		out.name, out.status, out.retryAfter = "throttle", http.StatusTooManyRequests, f.RetryAfter
	case f.ResetRate > 0 && fs.rng.Float64() < f.ResetRate:
		out.name, out.status = "reset", StatusReset
	case out.delay > 0:
		out.name = "slow"
	}
	return out
}

// limit applies the rate limits; fs.mu is held.
func (fs *faultState) limit(fr FaultRequest) fault {
	for i, l := range fs.f.Limits {
		if len(l.Kinds) > 0 && !slices.Contains(l.Kinds, fr.Kind) {
			continue
		}
		k := bucketKey{i, fr.Client}
		b := fs.buckets[k]
		if b == nil {
			b = rate.NewLimiter(rate.Limit(l.PerSecond), max(l.Burst, 1))
			fs.buckets[k] = b
		}
		if !b.Allow() {
			return fault{name: "ratelimit", status: http.StatusTooManyRequests}
		}
		return fault{}
	}
	return fault{}
}

// inject answers a fault; it reports false when the request is to be served normally.
func (r *Registry) inject(w *recorder, req *http.Request, fr FaultRequest) bool {
	ft := r.faults.decide(fr)
	if ft.delay > 0 && !sleep(req, ft.delay) {
		return true // client gone
	}
	if ft.name == "" || ft.name == "slow" {
		if ft.name != "" {
			r.stats.add(func(s *Stats) { s.Faults[ft.name]++ })
		}
		return false
	}
	r.stats.add(func(s *Stats) { s.Faults[ft.name]++ })
	switch {
	case ft.status == StatusReset:
		if conn, _, err := w.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST, not FIN: the client sees a reset
			}
			_ = conn.Close()
			return true
		}
		// Not hijackable (HTTP/2, a recorder): the closest thing is a 502.
		writeError(w, http.StatusBadGateway, "UNAVAILABLE", "connection reset (simulated)", nil)
	case ft.status == http.StatusTooManyRequests:
		if ft.retryAfter > 0 {
			secs := int((ft.retryAfter + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
		}
		writeError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "too many requests", nil)
	case ft.status == http.StatusUnauthorized:
		writeError(w, ft.status, "UNAUTHORIZED", "authentication required (simulated)", nil)
	case ft.status == http.StatusNotFound:
		writeError(w, ft.status, "MANIFEST_UNKNOWN", "manifest unknown (simulated)", nil)
	default:
		writeError(w, ft.status, "UNAVAILABLE", "simulated failure", nil)
	}
	return true
}

// sleep waits d or until the request's client goes away; it reports whether d passed.
func sleep(req *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-req.Context().Done():
		return false
	}
}

// clientIP is the remote address without its port.
func clientIP(req *http.Request) string {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		return req.RemoteAddr
	}
	return host
}
