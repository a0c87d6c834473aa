package registry

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// callKey carries a *call in a request's context, the way net/http/httptrace carries a
// ClientTrace: regclient passes the call's context to every request it sends for the call.
type callKey struct{}

// call is the one registry request a List or Delete may send, and what the registry
// answered to its last attempt.
type call struct {
	method, path string
	ticket       Ticket // the first attempt's pass from the rate control (OCI.start)

	mu       sync.Mutex
	attempts int
	status   int
	header   http.Header
}

// attempt starts an attempt at the call's request and returns its rate-control ticket: the
// call's own for the first attempt, a new one, waited for, for each of regclient's retries.
func (c *call) attempt(ctx context.Context, rc *RateControl) (Ticket, error) {
	c.mu.Lock()
	c.status, c.header = 0, nil
	c.attempts++
	retry := c.attempts > 1
	c.mu.Unlock()
	if !retry {
		return c.ticket, nil
	}
	return rc.WaitClass(ctx, c.class())
}

// class is the call's class of request for the rate control: registries limit tags/list and
// manifests separately, so a Digest's HEAD counts with the deletes ("delete": the manifests
// endpoint).
func (c *call) class() string {
	if c.method == http.MethodGet {
		return "list"
	}
	return "delete"
}

// answered records the status and, of the headers, the three the call reads (Link,
// Retry-After, Date), rather than a clone of every answer's whole header.
func (c *call) answered(status int, header http.Header) {
	var kept http.Header
	for _, k := range [...]string{"Link", "Retry-After", "Date"} {
		if v := header.Values(k); len(v) > 0 {
			if kept == nil {
				kept = make(http.Header, 2)
			}
			kept[k] = slices.Clone(v)
		}
	}
	c.mu.Lock()
	c.status, c.header = status, kept
	c.mu.Unlock()
}

// result returns the Link header values and the status of the last attempt.
func (c *call) result() (links []string, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.header.Values("Link"), c.status
}

// date returns the last attempt's Date header, zero when it had none or it does not parse.
func (c *call) date() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, err := http.ParseTime(c.header.Get("Date"))
	if err != nil {
		return time.Time{}
	}
	return d
}

// answer returns the status and the kept headers of the last attempt (not to be modified).
func (c *call) answer() (int, http.Header) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status, c.header
}

// registryAPIPath reports whether p is a path of the distribution API that reads or writes
// repository content: /v2/, a name without a newline, then /tags/list, /manifests/, /blobs/ or
// /referrers/ (the regexp ^/v2/.+/(?:tags/list|manifests/|blobs/|referrers/) written out, as
// the guards ask it of every request and answer). Token endpoints (Quay's /v2/auth, a realm elsewhere) are not such paths.
func registryAPIPath(p string) bool {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok || rest == "" {
		return false
	}
	nl := strings.IndexByte(rest, '\n')
	if nl < 0 {
		nl = len(rest)
	}
	for _, m := range [...]string{"/tags/list", "/manifests/", "/blobs/", "/referrers/"} {
		// The first occurrence after the name's first byte: a later one has it before it.
		if i := strings.Index(rest[1:], m); i >= 0 && i+1 <= nl {
			return true
		}
	}
	return false
}

// guard is the transport under regclient. It lets through the call's one registry request
// and what authentication needs (token GET and POST), refuses every other request to the
// registry API and every PUT, PATCH or other DELETE, and, for tags/list,
// moves the Link header out of regclient's sight into the call record, so that regclient
// never follows it.
type guard struct {
	base    http.RoundTripper
	host    string // host[:port] of the registry in request URLs
	control *RateControl
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	c, _ := req.Context().Value(callKey{}).(*call)
	if c == nil || req.Method != c.method || req.URL.Host != g.host || req.URL.Path != c.path {
		switch {
		case req.Method != http.MethodGet && req.Method != http.MethodHead && req.Method != http.MethodPost,
			registryAPIPath(req.URL.Path):
			closeBody(req)
			return nil, fmt.Errorf("%w: %s %s", errRefused, req.Method, req.URL.Path)
		}
		return g.base.RoundTrip(req)
	}
	ticket, err := c.attempt(req.Context(), g.control)
	if err != nil {
		return nil, err
	}
	g.control.SentClass(c.class())
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	c.answered(resp.StatusCode, resp.Header) // the registry's own headers, for edgeError
	if after, ok := g.control.Observe(ticket, resp.StatusCode, resp.Header); ok {
		// A 429 without Retry-After: tell regclient, the one retry layer, to retry when the
		// controller's lowered rate allows rather than escalate its own per-host backoff.
		// regclient reads Retry-After as seconds and accepts fractions.
		resp.Header.Set("Retry-After", after)
	}
	if c.method == http.MethodGet {
		resp.Header.Del("Link")
		resp.Body = &limitedBody{rc: resp.Body, left: maxListBody}
	}
	return resp, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// limitedBody fails a read past its limit instead of silently truncating.
type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, fmt.Errorf("tags/list answer larger than %d bytes", maxListBody)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
