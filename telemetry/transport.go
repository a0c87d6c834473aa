package telemetry

import (
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// Registry operations, the values of the op label.
const (
	OpList     = "list"     // GET /v2/<name>/tags/list
	OpDelete   = "delete"   // DELETE /v2/<name>/manifests/<tag>
	OpManifest = "manifest" // any other method on /v2/<name>/manifests/<ref>
	OpBlob     = "blob"     // /v2/<name>/blobs/...
	OpPing     = "ping"     // /v2/ (API version check, auth challenge)
	OpAuth     = "auth"     // token endpoints: Quay's /v2/auth, .../token, /oauth/...
	OpAPIv1    = "api-v1"   // Quay's /api/v1/...
	OpOther    = otherLabel // anything else
)

// Ops is the whole op vocabulary, in a stable order.
var Ops = []string{OpList, OpDelete, OpManifest, OpBlob, OpPing, OpAuth, OpAPIv1, OpOther}

// Transport returns an http.RoundTripper that sends requests through next (nil means
// http.DefaultTransport) and records each one: the request counter by op and status code, the
// latency histogram by op (time to response headers, not to the end of the body) and the 429
// counter. A registry client takes it as a plain http.RoundTripper and needs to know nothing
// about Prometheus. On a nil *Metrics it returns next unchanged.
func (m *Metrics) Transport(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	if m == nil {
		return next
	}
	return &transport{m: m, next: next}
}

type transport struct {
	m    *Metrics
	next http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	op := Op(req.Method, req.URL.Path)
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.m.duration.WithLabelValues(op).Observe(time.Since(start).Seconds())
	code := codeTransportError
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			t.m.rateLimited.WithLabelValues(op).Inc()
		}
	}
	t.m.requests.WithLabelValues(op, code).Inc()
	return resp, err
}

// Op names the registry operation a request performs, from its method and URL path. It looks
// at the end of a /v2/ path (repository names may have any number of segments, and may even
// contain "manifests" or "tags"), so /v2/a/manifests/tags/list is a list of repository
// "a/manifests", and /v2/a/tags/list/manifests/x a manifest of repository "a/tags/list".
func Op(method, urlPath string) string {
	p := path.Clean("/" + urlPath)
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	n := len(segs)
	switch {
	case p == "/v2":
		return OpPing
	case p == "/v2/auth":
		return OpAuth
	case segs[0] == "api" && n >= 2 && segs[1] == "v1":
		return OpAPIv1
	case segs[0] == "v2" && n >= 4:
		// /v2/<name...>/<kind>/<ref>: name takes at least one segment.
		switch {
		case segs[n-2] == "tags" && segs[n-1] == "list":
			return OpList
		case segs[n-2] == "manifests":
			if method == http.MethodDelete {
				return OpDelete
			}
			return OpManifest
		case segs[n-2] == "blobs", n >= 5 && segs[n-3] == "blobs" && segs[n-2] == "uploads":
			return OpBlob
		}
		return OpOther
	case segs[n-1] == "token", segs[0] == "oauth", segs[0] == "auth":
		return OpAuth
	}
	return OpOther
}
