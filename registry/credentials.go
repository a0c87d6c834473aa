package registry

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// A host, for where credentials may go, is a host name (or IP address) and a port, the
// scheme's default port (443 for https, 80 for http) when none is written: quay.io and
// quay.io:443 are one host, 127.0.0.1:5000 and 127.0.0.1:5001 are two, and so are
// 127.0.0.1 and 127.0.0.2. Host names compare without regard to case.

// authHost is an allowed host: a name and a port, "" meaning the default port of whichever
// scheme the request uses.
type authHost struct{ name, port string }

// parseAuthHost reads host[:port].
func parseAuthHost(s string) (authHost, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.Contains(s, "://") || strings.ContainsAny(s, "/ @?#") {
		return authHost{}, fmt.Errorf("auth host %q is not host[:port]", s)
	}
	if h, p, err := net.SplitHostPort(s); err == nil {
		return authHost{name: strings.ToLower(h), port: p}, nil
	}
	return authHost{name: strings.ToLower(strings.Trim(s, "[]"))}, nil
}

// splitHost returns the host name and port of a URL's host, the port defaulted from scheme.
func splitHost(scheme, host string) (name, port string) {
	// Only a host with a port goes to SplitHostPort: its error for one without allocates, on
	// every registry request.
	if i := strings.LastIndexByte(host, ':'); i > strings.LastIndexByte(host, ']') {
		if h, p, err := net.SplitHostPort(host); err == nil {
			return strings.ToLower(h), p
		}
	}
	if strings.EqualFold(scheme, "http") {
		return strings.ToLower(strings.Trim(host, "[]")), "80"
	}
	return strings.ToLower(strings.Trim(host, "[]")), "443"
}

// defaultPort is the port of scheme when a URL names none.
func defaultPort(scheme string) string {
	if strings.EqualFold(scheme, "http") {
		return "80"
	}
	return "443"
}

// credentialEdge is the transport under both clients' guards, and so under regclient's
// authentication: it sees every request regclient sends, token fetches included, with the
// credentials regclient put into them. It does two things with them.
//
// It teaches the client's redactor every credential that leaves the process: the value of
// every Authorization header (a bearer token regclient obtained, basic credentials and the
// password in them), the password or refresh token of a token POST, and the tokens a token
// realm answers with. So a registry that echoes a token it was sent into an error body cannot
// get it into an error, a log line, an audit event or a report: every error the clients
// return and every line regclient logs is redacted with what the edge has seen.
//
// And it keeps credentials from foreign hosts. A request that carries credentials (an Authorization
// header, or a body, which a token POST fills with a password or refresh token) goes only to
// the registry's own host or an allowed auth host; any other is refused before it leaves the
// process, so that a registry (or whoever answers in its name) cannot have the credentials
// sent to a realm of its choosing. Requests without credentials (an anonymous token fetch,
// a redirect to blob storage, which net/http sends without the Authorization header) pass.
type credentialEdge struct {
	next     http.RoundTripper
	registry authHost // port always set
	allowed  []authHost
	redact   *redactor

	refused atomic.Pointer[error] // the last refusal, for the call's error (regclient drops it)
}

func newCredentialEdge(next http.RoundTripper, host string, plainHTTP bool, allowed []string, redact *redactor) (*credentialEdge, error) {
	scheme := "https"
	if plainHTTP {
		scheme = "http"
	}
	name, port := splitHost(scheme, host)
	e := &credentialEdge{next: next, registry: authHost{name: name, port: port}, redact: redact}
	for _, a := range allowed {
		h, err := parseAuthHost(a)
		if err != nil {
			return nil, err
		}
		e.allowed = append(e.allowed, h)
	}
	return e, nil
}

func (e *credentialEdge) RoundTrip(req *http.Request) (*http.Response, error) {
	if carriesCredentials(req) && !e.mayReceive(req) {
		closeBody(req)
		name, port := splitHost(req.URL.Scheme, req.URL.Host)
		err := fmt.Errorf("%s %s://%s%s: refused to send credentials to %s, which is not the registry's host %s: %w",
			req.Method, req.URL.Scheme, req.URL.Host, req.URL.Path, net.JoinHostPort(name, port),
			net.JoinHostPort(e.registry.name, e.registry.port), ErrAuthHostNotAllowed)
		e.refused.Store(&err)
		return nil, err
	}
	e.learnRequest(req)
	resp, err := e.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK && !registryAPIPath(req.URL.Path) && resp.Body != nil &&
		(strings.Contains(resp.Header.Get("Content-Type"), "json") || resp.ContentLength >= 0 && resp.ContentLength <= maxCapture) {
		// Not the registry API, and small or JSON (not a blob from storage): a token realm (or
		// Quay's /v2/auth) whose answer holds tokens.
		resp.Body = &tokenCapture{rc: resp.Body, redact: e.redact}
	}
	return resp, nil
}

// learnRequest teaches the redactor the credentials req carries.
func (e *credentialEdge) learnRequest(req *http.Request) {
	if auth := req.Header.Get("Authorization"); auth != "" {
		scheme, value, _ := strings.Cut(auth, " ")
		value = strings.TrimSpace(value)
		if e.redact.isLast(value) {
			return // most requests carry what the last one did: learnt already
		}
		if strings.EqualFold(scheme, "basic") {
			if b, err := base64.StdEncoding.DecodeString(value); err == nil {
				if _, pass, ok := strings.Cut(string(b), ":"); ok {
					e.redact.learn(pass)
				}
			}
		}
		e.redact.learn(value) // last, so that isLast recognises the next request's
	}
	if req.Method == http.MethodPost && req.GetBody != nil && req.ContentLength > 0 && req.ContentLength <= maxCapture {
		body, err := req.GetBody()
		if err != nil {
			return
		}
		b, err := io.ReadAll(io.LimitReader(body, maxCapture))
		_ = body.Close()
		if err != nil {
			return
		}
		if form, err := url.ParseQuery(string(b)); err == nil {
			for _, k := range [...]string{"password", "refresh_token"} {
				e.redact.learn(form.Get(k))
			}
		}
	}
}

// maxCapture bounds the token answers and token POST bodies the edge reads for secrets.
const maxCapture = 64 << 10

// tokenCapture passes a token realm's answer through and, once it has been read (or is
// closed), teaches the redactor the tokens in it.
type tokenCapture struct {
	rc     io.ReadCloser
	redact *redactor
	buf    bytes.Buffer
	done   bool
}

func (t *tokenCapture) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if room := maxCapture - t.buf.Len(); room > 0 {
		t.buf.Write(p[:min(n, room)])
	}
	if err == io.EOF {
		t.learn()
	}
	return n, err
}

func (t *tokenCapture) Close() error {
	t.learn()
	return t.rc.Close()
}

func (t *tokenCapture) learn() {
	if t.done {
		return
	}
	t.done = true
	var answer struct {
		Token        string `json:"token"`
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	if json.Unmarshal(t.buf.Bytes(), &answer) == nil {
		t.redact.learn(answer.Token)
		t.redact.learn(answer.AccessToken)
		t.redact.learn(answer.RefreshToken)
	}
}

// mayReceive reports whether req goes to the registry's host or an allowed one.
func (e *credentialEdge) mayReceive(req *http.Request) bool {
	name, port := splitHost(req.URL.Scheme, req.URL.Host)
	if name == e.registry.name && port == e.registry.port {
		return true
	}
	for _, a := range e.allowed {
		if a.name == name && (a.port == port || a.port == "" && port == defaultPort(req.URL.Scheme)) {
			return true
		}
	}
	return false
}

// refusal is the last refusal, if any: a call whose authentication failed after one gets it
// as its error rather than a bare 401.
func (e *credentialEdge) refusal() error {
	if p := e.refused.Load(); p != nil {
		return *p
	}
	return nil
}

// carriesCredentials reports whether req holds credentials: an Authorization header, user
// information in its URL, or a body (regclient's token POST carries a password or a refresh
// token; no request tagsweep sends elsewhere has one).
func carriesCredentials(req *http.Request) bool {
	return req.Header.Get("Authorization") != "" || req.URL.User != nil ||
		(req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0)
}

// authValueRE matches credentials in an Authorization header value written out.
var authValueRE = regexp.MustCompile(`(?i)\b(basic|bearer)\s+[A-Za-z0-9._~+/=-]{16,}`)

// maxLearned bounds the secrets a redactor learns at runtime: a long-running worker fetches a
// fresh token every few minutes, and the oldest have long expired.
const maxLearned = 64

// minLearned is the shortest secret a redactor learns at runtime: replacing every "ab" of a
// message would make it unreadable and protect nothing. Secrets given in the configuration
// are redacted whatever their length.
const minLearned = 6

// redactor removes secrets from text: those of the configuration, those the credential edge
// learns as they are sent or received, and anything shaped like an Authorization value.
// It is safe for concurrent use.
type redactor struct {
	static []string // longest first

	last    atomic.Pointer[string] // the secret learned last: most requests carry the same
	mu      sync.RWMutex
	learned []string // oldest first, at most maxLearned
}

func newRedactor(secrets []string) *redactor {
	r := &redactor{}
	for _, s := range secrets {
		if s != "" && !slices.Contains(r.static, s) {
			r.static = append(r.static, s)
		}
	}
	// Longest first, so that a secret containing another is replaced whole.
	slices.SortFunc(r.static, func(a, b string) int { return len(b) - len(a) })
	return r
}

// isLast reports whether secret is the one learnt last.
func (r *redactor) isLast(secret string) bool {
	p := r.last.Load()
	return p != nil && *p == secret
}

// learn adds a secret seen at runtime.
func (r *redactor) learn(secret string) {
	if len(secret) < minLearned || r.isLast(secret) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last.Store(&secret)
	if slices.Contains(r.static, secret) || slices.Contains(r.learned, secret) {
		return
	}
	if len(r.learned) == maxLearned {
		r.learned = slices.Delete(r.learned, 0, 1)
	}
	r.learned = append(r.learned, secret)
}

func (r *redactor) apply(s string) string {
	r.mu.RLock()
	secrets := append(slices.Clone(r.static), r.learned...)
	r.mu.RUnlock()
	slices.SortStableFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, secret := range secrets {
		s = strings.ReplaceAll(s, secret, "[redacted]")
	}
	return authValueRE.ReplaceAllString(s, "$1 [redacted]")
}
