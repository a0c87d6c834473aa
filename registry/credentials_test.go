package registry_test

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tagsweep/tagsweep/registry"
)

// tokenServer is a token realm: it answers every GET with a bearer token and records the
// Authorization header of each request it receives.
type tokenServer struct {
	host  string // host:port
	token string
	mu    sync.Mutex
	auths []string
}

func (s *tokenServer) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}

// startTokenServer serves a token realm on addr ("127.0.0.2:0").
func startTokenServer(t *testing.T, addr, token string) *tokenServer {
	t.Helper()
	ts := &tokenServer{token: token}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts.mu.Lock()
		ts.auths = append(ts.auths, r.Header.Get("Authorization"))
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"token":%q,"expires_in":300}`, ts.token)
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	ts.host = l.Addr().String()
	return ts
}

// startBearerRegistry is a registry on 127.0.0.1 whose token realm is realm: it asks for a
// bearer token and, given the token, lists one tag.
func startBearerRegistry(t *testing.T, realm func() string, token string) string {
	t.Helper()
	host, _ := startFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q,service="test",scope="repository:team/app:pull"`, realm()))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		writeTags(w, "", "20260101000000_prune_a")
	})
	return host
}

// TestCredentialsOnlyToAllowedAuthHosts: the registry's credentials go to a token realm on
// another host only when that host is allowed; a host is its name and port.
func TestCredentialsOnlyToAllowedAuthHosts(t *testing.T) {
	t.Parallel()
	const user, password, token = "robot", "s3cr3t-Pa55word-XYZ", "issued-token-abcdef123456"
	tests := []struct {
		name      string
		realmAddr string // where the token realm listens; "" = the registry itself
		allow     func(realm string) []string
		anonymous bool
		wantErr   bool
	}{
		{name: "other host, not allowed", realmAddr: "127.0.0.2:0", wantErr: true},
		{name: "other host, allowed with port", realmAddr: "127.0.0.2:0", allow: func(r string) []string { return []string{r} }},
		{name: "other host, allowed without its port", realmAddr: "127.0.0.2:0", wantErr: true,
			allow: func(string) []string { return []string{"127.0.0.2"} }},
		{name: "same address, other port", realmAddr: "127.0.0.1:0", wantErr: true},
		{name: "other host, no credentials to send", realmAddr: "127.0.0.2:0", anonymous: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := startTokenServer(t, tc.realmAddr, token)
			host := startBearerRegistry(t, func() string { return "http://" + ts.host + "/token" }, token)
			cfg := registry.OCIConfig{}
			if !tc.anonymous {
				cfg.Username, cfg.Password = user, password
			}
			if tc.allow != nil {
				cfg.AuthHosts = tc.allow(ts.host)
			}
			c := newClient(t, host, cfg)
			page, err := c.List(t.Context(), "team/app", "", 10)
			if tc.wantErr {
				if !errors.Is(err, registry.ErrAuthHostNotAllowed) || !errors.Is(err, registry.ErrUnauthorized) {
					t.Fatalf("List error = %v, want ErrAuthHostNotAllowed and ErrUnauthorized", err)
				}
				if !strings.Contains(err.Error(), ts.host) {
					t.Errorf("error %q does not name the realm's host %s", err, ts.host)
				}
				for _, a := range ts.received() {
					if a != "" {
						t.Errorf("token realm received credentials %q", a)
					}
				}
				return
			}
			if err != nil || len(page.Tags) != 1 {
				t.Fatalf("List = %v, %v, want one tag", page, err)
			}
			got := ts.received()
			if len(got) == 0 {
				t.Fatal("precondition: the token realm was never asked")
			}
			if sent := got[0] != ""; sent == tc.anonymous {
				t.Errorf("token realm received Authorization %q, credentials configured: %v", got[0], !tc.anonymous)
			}
		})
	}
}

// TestCredentialsToRealmOnRegistryHost: a realm on the registry's own host and port needs no
// allowance.
func TestCredentialsToRealmOnRegistryHost(t *testing.T) {
	t.Parallel()
	const user, password, token = "robot", "s3cr3t-Pa55word-XYZ", "issued-token-abcdef123456"
	var host string
	var mu sync.Mutex
	var realmAuth []string
	host, _ = startFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch {
		case r.URL.Path == "/token":
			mu.Lock()
			realmAuth = append(realmAuth, r.Header.Get("Authorization"))
			mu.Unlock()
			fmt.Fprintf(w, `{"token":%q}`, token)
		case r.Header.Get("Authorization") != "Bearer "+token:
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, host))
			w.WriteHeader(http.StatusUnauthorized)
		default:
			writeTags(w, "", "a")
		}
	})
	c := newClient(t, host, registry.OCIConfig{Username: user, Password: password})
	if _, err := c.List(t.Context(), "team/app", "", 10); err != nil {
		t.Fatalf("List: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(realmAuth) == 0 || realmAuth[0] == "" {
		t.Errorf("realm on the registry's host received %q, want the credentials", realmAuth)
	}
}

func TestNewOCIBadAuthHost(t *testing.T) {
	_, err := registry.NewOCI(registry.OCIConfig{Host: "quay.io", AuthHosts: []string{"https://auth.example"}})
	if err == nil || !strings.Contains(err.Error(), "auth.example") {
		t.Errorf("NewOCI with auth host https://auth.example = %v, want an error naming it", err)
	}
}

// TestObtainedTokenNeverInErrors: a bearer token the client obtained from a token realm at
// runtime (never in its configuration) is redacted from errors and logs when the registry
// echoes it back, bare, in error bodies.
func TestObtainedTokenNeverInErrors(t *testing.T) {
	t.Parallel()
	const user, password = "robot", "s3cr3t-Pa55word-XYZ"
	const token, refresh = "obtained-token-7f3a9c2e51", "refresh-token-0b8d4e6f27"
	var host string
	var echoed atomic.Int64
	host, _ = startFake(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch {
		case r.URL.Path == "/token":
			fmt.Fprintf(w, `{"token":%q,"refresh_token":%q,"expires_in":300}`, token, refresh)
			return
		case r.Header.Get("Authorization") != "Bearer "+token:
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, host))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		echoed.Add(1)
		body := fmt.Sprintf(`{"errors":[{"code":"DENIED","message":"token %s (refresh %s) may not do this"}]}`, token, refresh)
		if r.Method == http.MethodDelete {
			w.WriteHeader(http.StatusForbidden)
		} else {
			w.WriteHeader(http.StatusNotFound)
		}
		io.WriteString(w, body)
	})
	var logs lockedBuffer
	c := newClient(t, host, registry.OCIConfig{Username: user, Password: password,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	_, listErr := c.List(t.Context(), "team/app", "", 10)
	delErr := c.Delete(t.Context(), "team/app", "t1")
	if echoed.Load() == 0 {
		t.Fatal("precondition: the registry never echoed the token")
	}
	if !errors.Is(listErr, registry.ErrNotFound) || !errors.Is(delErr, registry.ErrUnauthorized) {
		t.Errorf("errors = %v, %v; want ErrNotFound, ErrUnauthorized", listErr, delErr)
	}
	for _, s := range []string{fmt.Sprint(listErr), fmt.Sprint(delErr), logs.String()} {
		for _, secret := range []string{token, refresh, password} {
			if strings.Contains(s, secret) {
				t.Errorf("%q leaks into %q", secret, s)
			}
		}
	}
	if !strings.Contains(delErr.Error(), "may not do this") {
		t.Errorf("delete error %q lost the registry's words", delErr)
	}
}

// TestPayloadCredentialsOnlyToAllowedAuthHosts: the payload client, which writes tags, keeps
// the credentials from a foreign token realm too.
func TestPayloadCredentialsOnlyToAllowedAuthHosts(t *testing.T) {
	t.Parallel()
	const token = "issued-token-abcdef123456"
	for _, allowed := range []bool{false, true} {
		ts := startTokenServer(t, "127.0.0.2:0", token)
		host := startBearerRegistry(t, func() string { return "http://" + ts.host + "/token" }, token)
		cfg := registry.PayloadConfig{OCIConfig: registry.OCIConfig{Username: "robot", Password: "s3cr3t-Pa55word-XYZ"}}
		if allowed {
			cfg.AuthHosts = []string{ts.host}
		}
		p := newPayload(t, host, cfg)
		_, err := p.Digest(t.Context(), "team/app", "rc_payload__4.18.0")
		if refused := errors.Is(err, registry.ErrAuthHostNotAllowed); refused == allowed {
			t.Errorf("allowed %v: Digest error = %v, refused by the credential edge: %v", allowed, err, refused)
		}
		sent := slices.ContainsFunc(ts.received(), func(a string) bool { return a != "" })
		if sent != allowed {
			t.Errorf("allowed %v: the token realm received credentials: %v", allowed, sent)
		}
	}
}
