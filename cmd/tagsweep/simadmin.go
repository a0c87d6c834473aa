package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// simAdminPrefix is where `tagsweep sim --admin` serves its admin endpoint. Registry paths
// start with /v2/ or /api/, so it cannot shadow one.
const simAdminPrefix = "/_sim/"

// simAdmin puts a test harness's window on a simulated registry in front of it, for the
// multi-process tests (test/proc), which run `tagsweep sim` in a process of its own:
//
//	GET  /_sim/state?repo=R   the tags, the deletions in order, the list requests and counters
//	POST /_sim/tags?repo=R    add the tags of a JSON array of names
//	PUT  /_sim/faults         inject faults (JSON, see simFaults); {} turns them off
//	POST /_sim/gc             garbage-collect the manifests no tag (and no time machine row) keeps
//	POST /_sim/reset          zero the counters and forget the list requests
//
// Only loopback clients may use it; everything else goes to the registry, with every
// tags/list request's last= and n recorded on the way.
type simAdmin struct {
	reg *sim.Registry

	mu    sync.Mutex
	lists map[string][]simList // repository -> list requests, in arrival order
}

// simList is one tags/list request.
type simList struct {
	Last string `json:"last"`
	N    int    `json:"n"`
}

// simState is the answer of GET /_sim/state.
type simState struct {
	Tags    []string  `json:"tags"`
	Deleted []string  `json:"deleted"`
	Lists   []simList `json:"lists"`
	// Requests by kind, Statuses by HTTP status, Faults by name, as sim.Stats counts them.
	Requests      map[sim.Kind]int64 `json:"requests"`
	Statuses      map[string]int64   `json:"statuses"`
	Faults        map[string]int64   `json:"faults"`
	TagDeletes    int64              `json:"tag_deletes"`
	DigestDeletes int64              `json:"digest_deletes"`
	TokensIssued  int64              `json:"tokens_issued"`
}

// simFaults is the JSON of PUT /_sim/faults: sim.Faults without its Fail hook, durations as
// Go duration strings ("1s").
type simFaults struct {
	Kinds        []sim.Kind  `json:"kinds"`
	Seed         uint64      `json:"seed"`
	ErrorRate    float64     `json:"error_rate"`
	ErrorStatus  int         `json:"error_status"`
	ErrorBurst   int         `json:"error_burst"`
	ThrottleRate float64     `json:"throttle_rate"`
	RetryAfter   string      `json:"retry_after"`
	ResetRate    float64     `json:"reset_rate"`
	SlowRate     float64     `json:"slow_rate"`
	SlowDelay    string      `json:"slow_delay"`
	Limits       []sim.Limit `json:"limits"`
	// ExpireTokens expires every token issued so far (a 401 for their holders).
	ExpireTokens bool `json:"expire_tokens"`
}

func (f simFaults) faults() (sim.Faults, error) {
	out := sim.Faults{Kinds: f.Kinds, Seed: f.Seed, ErrorRate: f.ErrorRate, ErrorStatus: f.ErrorStatus,
		ErrorBurst: f.ErrorBurst, ThrottleRate: f.ThrottleRate, ResetRate: f.ResetRate, SlowRate: f.SlowRate,
		Limits: f.Limits}
	var err error
	if f.RetryAfter != "" {
		if out.RetryAfter, err = time.ParseDuration(f.RetryAfter); err != nil {
			return sim.Faults{}, fmt.Errorf("retry_after: %w", err)
		}
	}
	if f.SlowDelay != "" {
		if out.SlowDelay, err = time.ParseDuration(f.SlowDelay); err != nil {
			return sim.Faults{}, fmt.Errorf("slow_delay: %w", err)
		}
	}
	return out, nil
}

func (a *simAdmin) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !strings.HasPrefix(req.URL.Path, simAdminPrefix) {
		a.recordList(req)
		a.reg.ServeHTTP(w, req)
		return
	}
	if host, _, err := net.SplitHostPort(req.RemoteAddr); err != nil || !loopbackIP(host) {
		http.Error(w, "the simulator's admin endpoint answers loopback clients only", http.StatusForbidden)
		return
	}
	op := simAdminOp{req.Method, strings.TrimPrefix(req.URL.Path, simAdminPrefix)}
	serve, ok := simAdminOps[op]
	if !ok {
		http.Error(w, "unknown admin request "+req.Method+" "+req.URL.Path, http.StatusNotFound)
		return
	}
	serve(a, w, req, req.URL.Query().Get("repo"))
}

// simAdminOp is an admin request: its method and its path after simAdminPrefix.
type simAdminOp struct{ method, path string }

// simAdminOps serves each admin request, for repository repo (?repo=) where it names one.
var simAdminOps = map[simAdminOp]func(a *simAdmin, w http.ResponseWriter, req *http.Request, repo string){
	{http.MethodGet, "state"}:  (*simAdmin).state,
	{http.MethodPost, "tags"}:  (*simAdmin).addTags,
	{http.MethodPut, "faults"}: (*simAdmin).setFaults,
	{http.MethodPost, "gc"}:    (*simAdmin).gc,
	{http.MethodPost, "reset"}: (*simAdmin).reset,
}

// recordList records a tags/list request's last= and n.
func (a *simAdmin) recordList(req *http.Request) {
	if !strings.HasSuffix(req.URL.Path, "/tags/list") || !strings.HasPrefix(req.URL.Path, "/v2/") {
		return
	}
	repo := strings.TrimSuffix(strings.TrimPrefix(req.URL.Path, "/v2/"), "/tags/list")
	n, _ := strconv.Atoi(req.URL.Query().Get("n"))
	a.mu.Lock()
	a.lists[repo] = append(a.lists[repo], simList{Last: req.URL.Query().Get("last"), N: n})
	a.mu.Unlock()
}

func (a *simAdmin) state(w http.ResponseWriter, _ *http.Request, repo string) {
	st := a.reg.Stats()
	out := simState{Tags: a.reg.Tags(repo), Deleted: a.reg.DeletedTags(repo), Requests: st.Requests,
		Statuses: make(map[string]int64), Faults: st.Faults, TagDeletes: st.TagDeletes,
		DigestDeletes: st.DigestDeletes, TokensIssued: st.TokensIssued}
	for code, n := range st.Statuses {
		out.Statuses[strconv.Itoa(code)] = n
	}
	a.mu.Lock()
	out.Lists = append([]simList(nil), a.lists[repo]...)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (a *simAdmin) addTags(w http.ResponseWriter, req *http.Request, repo string) {
	var tags []string
	if err := json.NewDecoder(io.LimitReader(req.Body, 256<<20)).Decode(&tags); err != nil {
		http.Error(w, "body: want a JSON array of tag names: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := a.reg.AddTags(repo, "", tags...); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *simAdmin) setFaults(w http.ResponseWriter, req *http.Request, _ string) {
	var f simFaults
	dec := json.NewDecoder(io.LimitReader(req.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	faults, err := f.faults()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.reg.SetFaults(faults)
	if f.ExpireTokens {
		a.reg.ExpireTokens()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *simAdmin) gc(w http.ResponseWriter, _ *http.Request, _ string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]int{"manifests_collected": a.reg.GC()})
}

func (a *simAdmin) reset(w http.ResponseWriter, _ *http.Request, _ string) {
	a.reg.ResetStats()
	a.mu.Lock()
	clear(a.lists)
	a.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func loopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// runSimAdmin serves a simulated registry with the admin endpoint in front (see simAdmin)
// until ctx ends. The namespace is generated as without --admin, unless --tags is 0: then the
// repositories start empty and a test loads them through the endpoint.
func runSimAdmin(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config) error {
	reg := sim.New(sim.Config{Latency: cfg.Sim.Latency, Logger: log})
	for i, repo := range cfg.Repositories {
		var tags []string
		if cfg.Sim.Tags > 0 {
			tags = sim.Generate(sim.GenConfig{Seed: uint64(cfg.Sim.Seed) + uint64(i), Tags: cfg.Sim.Tags, Days: cfg.Sim.Days, End: time.Now()})
		}
		if err := reg.AddTags(repo, "", tags...); err != nil {
			return fmt.Errorf("loading simulated repository %s: %w", repo, err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Sim.Addr)
	if err != nil {
		return fmt.Errorf("listen for simulated registry on %s: %w", cfg.Sim.Addr, err)
	}
	srv := &http.Server{Handler: &simAdmin{reg: reg, lists: make(map[string][]simList)}, ReadHeaderTimeout: 10 * time.Second}
	addr := ln.Addr().String()
	for _, repo := range cfg.Repositories {
		fmt.Fprintf(w, "serving %s/%s with %d tags\n", addr, repo, reg.Len(repo))
	}
	fmt.Fprintf(w, "admin endpoint: http://%s%s\n", addr, simAdminPrefix)
	log.Info("simulated registry serving", "addr", addr, "latency", cfg.Sim.Latency, "admin", true)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve simulated registry: %w", err)
	case <-ctx.Done():
	}
	log.Info("simulated registry stopping")
	if err := srv.Close(); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve simulated registry: %w", err)
	}
	return nil
}
