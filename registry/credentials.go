package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
)

// ErrAuthHostNotAllowed: authentication would send the registry's credentials to a host other
// than the registry's own (a token realm elsewhere) that the configuration does not allow.
var ErrAuthHostNotAllowed = errors.New("registry credentials go only to the registry's own host " +
	"and the auth hosts allowed explicitly (--auth-host)")

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
	if h, p, err := net.SplitHostPort(host); err == nil {
		return strings.ToLower(h), p
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
// credentials regclient put into them. A request that carries credentials (an Authorization
// header, or a body, which a token POST fills with a password or refresh token) goes only to
// the registry's own host or an allowed auth host; any other is refused before it leaves the
// process, so that a registry (or whoever answers in its name) cannot have the credentials
// sent to a realm of its choosing. Requests without credentials (an anonymous token fetch,
// a redirect to blob storage, which net/http sends without the Authorization header) pass.
type credentialEdge struct {
	next     http.RoundTripper
	registry authHost // port always set
	allowed  []authHost

	refused atomic.Pointer[error] // the last refusal, for the call's error (regclient drops it)
}

func newCredentialEdge(next http.RoundTripper, host string, plainHTTP bool, allowed []string) (*credentialEdge, error) {
	scheme := "https"
	if plainHTTP {
		scheme = "http"
	}
	name, port := splitHost(scheme, host)
	e := &credentialEdge{next: next, registry: authHost{name: name, port: port}}
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
	return e.next.RoundTrip(req)
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
