package sim

import (
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
// challenge itself when it fails.
func (r *Registry) authorize(w http.ResponseWriter, req *http.Request, kind Kind, name string) bool {
	a := r.cfg.Auth
	if a == nil || kind == KindAuth || kind == KindAPIList || kind == KindAPIDelete || kind == KindAPIPut || kind == KindAPIRestore {
		return true
	}
	need := "pull"
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		need = "push"
	}
	tok, _ := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	r.tokens.mu.Lock()
	g, ok := r.tokens.tokens[tok]
	if ok {
		g.uses++
		r.tokens.tokens[tok] = g
	}
	if ok && (!r.now().Before(g.expires) || a.TokenRequests > 0 && g.uses > a.TokenRequests) {
		delete(r.tokens.tokens, tok)
		ok = false
	}
	r.tokens.mu.Unlock()
	if ok && (kind == KindBase || name == "" || slices.Contains(g.access[name], need) || slices.Contains(g.access[name], "*")) {
		return true
	}
	scheme := "http"
	if req.TLS != nil {
		scheme = "https"
	}
	service := a.Service
	if service == "" {
		service = req.Host
	}
	challenge := fmt.Sprintf(`Bearer realm="%s://%s/v2/auth",service="%s"`, scheme, req.Host, service)
	if kind != KindBase && name != "" {
		actions := "pull"
		if need == "push" {
			actions = "push,pull"
		}
		challenge += fmt.Sprintf(`,scope="repository:%s:%s"`, name, actions)
	}
	if tok != "" && !ok {
		challenge += `,error="invalid_token"`
		r.stats.add(func(s *Stats) { s.TokensRefused++ })
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "access to the requested resource is not authorized", nil)
	return false
}
