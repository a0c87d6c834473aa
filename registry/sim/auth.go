package sim

import (
	"cmp"
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Auth configures Quay-style token authentication of /v2.
type Auth struct {
	// Users are the Basic credentials /v2/auth accepts (user → password; Quay robots are
	// "<namespace>+<robot>"). Empty accepts any credentials, or none.
	Users map[string]string
	// TokenLifetime is how long a token is valid; 0 means an hour (Quay's
	// TOKEN_VALIDITY_LIFETIME_S). Like Quay, the token reply carries no expires_in, so
	// clients assume 60 s.
	TokenLifetime time.Duration
	// TokenRequests, when positive, is how many /v2 requests a token is good for: the
	// request after them is refused with 401 invalid_token, as when the token has expired.
	// Unlike TokenLifetime it does not depend on how fast the client runs, so a test can
	// make tokens expire all through a run, however loaded the machine.
	TokenRequests int
	// Service is the service name in challenges and token requests; "" means the
	// request's Host.
	Service string
}

type tokenStore struct {
	mu     sync.Mutex
	tokens map[string]grant
}

// grant is what a token allows: actions (pull, push, *) by repository, until expires or
// for Auth.TokenRequests requests (uses counts them).
type grant struct {
	expires time.Time
	uses    int
	access  map[string][]string
}

// ExpireTokens invalidates every token issued so far, as if their lifetime had passed.
func (r *Registry) ExpireTokens() {
	r.tokens.mu.Lock()
	defer r.tokens.mu.Unlock()
	clear(r.tokens.tokens)
}

// serveAuth issues a token for the requested scopes, after checking Basic credentials.
func (r *Registry) serveAuth(w http.ResponseWriter, req *http.Request) {
	a := r.cfg.Auth
	if a != nil && len(a.Users) > 0 {
		user, pass, ok := req.BasicAuth()
		if want, known := a.Users[user]; !ok || !known || want != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="sim"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid username or password", nil)
			return
		}
	}
	g := grant{access: make(map[string][]string)}
	lifetime := time.Hour
	if a != nil && a.TokenLifetime > 0 {
		lifetime = a.TokenLifetime
	}
	g.expires = r.now().Add(lifetime)
	for _, param := range req.URL.Query()["scope"] {
		for scope := range strings.FieldsSeq(param) {
			// repository:<name>:<actions>; the name may not contain ':' (no port in repo names).
			typ, rest, ok := strings.Cut(scope, ":")
			if !ok || typ != "repository" {
				continue
			}
			i := strings.LastIndex(rest, ":")
			if i < 0 {
				continue
			}
			name := rest[:i]
			for act := range strings.SplitSeq(rest[i+1:], ",") {
				if act == "pull" || act == "push" || act == "*" {
					g.access[name] = append(g.access[name], act)
				}
			}
		}
	}
	tok := "simtok." + rand.Text()
	r.tokens.mu.Lock()
	if r.tokens.tokens == nil {
		r.tokens.tokens = make(map[string]grant)
	}
	r.tokens.tokens[tok] = g
	r.tokens.mu.Unlock()
	r.stats.add(func(s *Stats) { s.TokensIssued++ })
	writeJSON(w, http.StatusOK, map[string]string{"token": tok}) // Quay sends only "token"
}

// authorize checks a /v2 request's bearer token when auth is on, answering 401 with a
// challenge itself when it fails. The token endpoint and API v1 (which checks its own OAuth
// token) are not /v2 requests.
func (r *Registry) authorize(w http.ResponseWriter, req *http.Request, kind Kind, name string) bool {
	if r.cfg.Auth == nil || kind == KindAuth || kind.apiV1() {
		return true
	}
	need := "pull"
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		need = "push"
	}
	tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	g, valid := r.useToken(tok)
	if valid && (kind == KindBase || name == "" || g.allows(name, need)) {
		return true
	}
	invalid := tok != "" && !valid
	if invalid {
		r.stats.add(func(s *Stats) { s.TokensRefused++ })
	}
	w.Header().Set("WWW-Authenticate", r.challenge(req, kind, name, need, invalid))
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "access to the requested resource is not authorized", nil)
	return false
}

// useToken counts a use of tok and returns its grant; false when tok was never issued, has
// expired or is used up (and then it is forgotten).
func (r *Registry) useToken(tok string) (grant, bool) {
	r.tokens.mu.Lock()
	defer r.tokens.mu.Unlock()
	g, ok := r.tokens.tokens[tok]
	if !ok {
		return grant{}, false
	}
	g.uses++
	r.tokens.tokens[tok] = g
	if limit := r.cfg.Auth.TokenRequests; !r.now().Before(g.expires) || limit > 0 && g.uses > limit {
		delete(r.tokens.tokens, tok)
		return grant{}, false
	}
	return g, true
}

// allows reports whether the grant allows action (pull or push) on the repository name.
func (g grant) allows(name, action string) bool {
	return slices.Contains(g.access[name], action) || slices.Contains(g.access[name], "*")
}

// challenge is the WWW-Authenticate of a refused /v2 request, pointing at the sim's own
// token endpoint, with the scope the request needs and, when its token was refused,
// error="invalid_token".
func (r *Registry) challenge(req *http.Request, kind Kind, name, need string, invalid bool) string {
	scheme := "http"
	if req.TLS != nil {
		scheme = "https"
	}
	service := cmp.Or(r.cfg.Auth.Service, req.Host)
	challenge := fmt.Sprintf(`Bearer realm="%s://%s/v2/auth",service="%s"`, scheme, req.Host, service)
	if kind != KindBase && name != "" {
		actions := "pull"
		if need == "push" {
			actions = "push,pull"
		}
		challenge += fmt.Sprintf(`,scope="repository:%s:%s"`, name, actions)
	}
	if invalid {
		challenge += `,error="invalid_token"`
	}
	return challenge
}
