package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echoRegistry is a hostile registry that authenticates with bearer tokens from a realm on
// its own host and echoes the credentials it was sent (the bearer token bare, the basic
// credentials, the password) into the body of every error it answers. Deleting a tag named
// *_denied answers 403, *_gone 404, every other delete succeeds; a worker's list after its first
// page answers 403.
type echoRegistry struct {
	host, token string
	echoed      atomic.Int64 // error bodies that held the token

	mu   sync.Mutex
	tags []string
}

const (
	echoUser, echoPassword = "robot+prune", "pa55-w0rd-never-shown"
)

func startEchoRegistry(t *testing.T, tags []string) *echoRegistry {
	t.Helper()
	r := &echoRegistry{token: "runtime-token-" + strconv.FormatInt(time.Now().UnixNano(), 36), tags: slices.Sorted(slices.Values(tags))}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

func (r *echoRegistry) serve(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/token" {
		if u, p, ok := req.BasicAuth(); !ok || u != echoUser || p != echoPassword {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"token":%q,"expires_in":3600}`, r.token)
		return
	}
	if req.Header.Get("Authorization") != "Bearer "+r.token {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="echo"`, r.host))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	fail := func(status int) {
		r.echoed.Add(1)
		basic := base64.StdEncoding.EncodeToString([]byte(echoUser + ":" + echoPassword))
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"errors":[{"code":"DENIED","message":"token %s, basic %s, password %s: no"}]}`, r.token, basic, echoPassword)
	}
	repo, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/v2/"), "/")
	switch {
	case req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/tags/list"):
		n, _ := strconv.Atoi(req.URL.Query().Get("n"))
		last := req.URL.Query().Get("last")
		if n > 2 && last != "" {
			// A worker's page after the first (the coordinator plans with n of 1 and 2): the
			// shard fails, its error quoting this body.
			fail(http.StatusForbidden)
			return
		}
		r.mu.Lock()
		var page []string
		for _, tag := range r.tags {
			if tag > last && len(page) < n {
				page = append(page, tag)
			}
		}
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"name":%q,"tags":[%s]}`, repo, quoteTags(page))
	case req.Method == http.MethodDelete:
		tag := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
		switch {
		case strings.HasSuffix(tag, "_denied"):
			fail(http.StatusForbidden)
		case strings.HasSuffix(tag, "_gone"):
			fail(http.StatusNotFound)
		default:
			r.mu.Lock()
			r.tags = slices.DeleteFunc(r.tags, func(s string) bool { return s == tag })
			r.mu.Unlock()
			w.WriteHeader(http.StatusAccepted)
		}
	default:
		fail(http.StatusNotFound)
	}
}

func quoteTags(tags []string) string {
	q := make([]string, len(tags))
	for i, t := range tags {
		q[i] = strconv.Quote(t)
	}
	return strings.Join(q, ",")
}

// TestSecretsNeverLeak prunes a registry that echoes every credential it is sent, the bearer
// token tagsweep obtained at runtime included, into its error bodies. The credentials appear
// nowhere: not in the logs of the worker and coordinator, their output, the report, the shard
// errors status shows, or the audit trail.
func TestSecretsNeverLeak(t *testing.T) {
	clearEnv(t)
	const repo = "openshift/ci"
	old := time.Now().UTC().AddDate(0, 0, -10).Format("20060102150405")
	reg := startEchoRegistry(t, []string{
		old + "_prune_a", old + "_prune_b_denied", old + "_prune_c_gone", old + "_prune_d",
	})
	dir := t.TempDir()
	basic := base64.StdEncoding.EncodeToString([]byte(echoUser + ":" + echoPassword))
	dockerConfig := filepath.Join(dir, "config.json")
	if err := os.WriteFile(dockerConfig, fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, reg.host, basic), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := startNATS(t)
	common := []string{"--nats-url", ns.ClientURL(), "--registry", reg.host, "--docker-config", dockerConfig,
		"--http-addr", "", "--log-format", "json", "--log-level", "debug", "--max-deliver", "2", "--ack-wait", "2s"}

	wctx, stopWorker := context.WithCancel(t.Context())
	type result struct {
		code        int
		out, errOut string
	}
	workerDone := make(chan result, 1)
	go func() {
		code, out, errOut := execute(t, wctx, append([]string{"worker", "--plain-http"}, common...)...)
		workerDone <- result{code, out, errOut}
	}()
	stopped := false
	var worker result
	stop := func() {
		if !stopped {
			stopped = true
			stopWorker()
			worker = <-workerDone
		}
	}
	defer stop()
	waitWorker(t, ns)

	report := filepath.Join(dir, "report.json")
	code, out, errOut := execute(t, t.Context(), append([]string{"coordinator", "--plain-http", "--repository", repo,
		"--run-id", "echo-1", "--confirm", "--ttl-days", "5", "--report", report}, common...)...)
	stop()
	if code != exitFailed {
		t.Errorf("coordinator exit code = %d, want %d (a delete the registry refused)\nstdout:\n%s\nstderr:\n%s", code, exitFailed, out, errOut)
	}
	if reg.echoed.Load() == 0 {
		t.Fatal("precondition: the registry never echoed the credentials into an error")
	}
	rep, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	_, status, _ := execute(t, t.Context(), "status", "--nats-url", ns.ClientURL(), "--log-format", "json", "-o", "json", "echo-1")
	if !strings.Contains(status, `"state": "failed"`) || !strings.Contains(status, "[redacted]") {
		t.Errorf("status shows no failed shard whose error quotes the registry, redacted:\n%s", status)
	}
	auditCode, audit, _ := execute(t, t.Context(), "audit", "--nats-url", ns.ClientURL(), "--log-format", "json", "echo-1")
	if auditCode != 0 || !strings.Contains(audit, `"outcome":"failed"`) || !strings.Contains(audit, "[redacted]") {
		t.Errorf("audit (exit %d) has no failed delete with the registry's words redacted:\n%s", auditCode, audit)
	}
	places := map[string]string{
		"coordinator stdout": out, "coordinator stderr": errOut, "worker stdout": worker.out, "worker stderr": worker.errOut,
		"report": string(rep), "status": status, "audit": audit,
	}
	for where, text := range places {
		for name, secret := range map[string]string{"token": reg.token, "password": echoPassword, "basic credentials": basic} {
			if n := strings.Count(text, secret); n > 0 {
				t.Errorf("the %s appears %d times in the %s", name, n, where)
			}
		}
	}
}
