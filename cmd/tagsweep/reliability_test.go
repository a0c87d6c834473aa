package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// status --stale-after flags a running shard whose record is older than the bound, and says
// what happens to it; without the flag the bound is the ledger's, five times --ack-wait.
func TestStatusStaleAfter(t *testing.T) {
	srv := startNATS(t)
	ctx := t.Context()
	l := openLedger(t, srv)
	if _, err := l.CreateRun(ctx, proto.RunRecord{RunID: "r", Registry: "quay.io", Repositories: []string{"ci/x"},
		State: proto.RunRunning, StartedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateShard(ctx, proto.ShardRecord{RunID: "r", ShardID: "s0", Repository: "ci/x",
		Range: proto.Range{After: "", Through: "2026"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Claim(ctx, "r", "s0", "worker-a", 1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		staleAfter time.Duration
		ackWait    time.Duration
		stale      bool
	}{
		{name: "older than --stale-after", staleAfter: time.Nanosecond, ackWait: time.Hour, stale: true},
		{name: "younger than --stale-after", staleAfter: time.Hour, ackWait: time.Millisecond},
		{name: "default: five times --ack-wait", ackWait: time.Hour},
		{name: "default, older", ackWait: time.Nanosecond, stale: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			cfg := config.Config{Command: config.CmdStatus, NATSURL: srv.ClientURL(), AckWait: tc.ackWait, Status: config.Status{StaleAfter: tc.staleAfter}}
			if err := runStatus(ctx, &out, nil, cfg, "r"); err != nil {
				t.Fatal(err)
			}
			got := strings.Contains(out.String(), "1 running (1 stale)") && strings.Contains(out.String(), "(stale)") &&
				strings.Contains(out.String(), "--run-id r")
			if got != tc.stale {
				t.Errorf("stale shown %v, want %v:\n%s", got, tc.stale, out.String())
			}
		})
	}
}

// The sim's admin endpoint: loading tags, the list requests seen, fault injection, counters;
// loopback clients only.
func TestSimAdmin(t *testing.T) {
	reg := sim.New(sim.Config{TimeMachine: -1})
	if err := reg.CreateRepo("ci/x"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(&simAdmin{reg: reg, lists: make(map[string][]simList)})
	t.Cleanup(srv.Close)
	do := func(method, path, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := do(http.MethodPost, "/_sim/tags?repo=ci/x", `["20260101000000_prune_a","20260102000000_prune_b","latest"]`); r.StatusCode != http.StatusNoContent {
		t.Fatalf("POST tags = %d", r.StatusCode)
	}
	if r := do(http.MethodGet, "/v2/ci/x/tags/list?n=2&last=20260101", ""); r.StatusCode != http.StatusOK {
		t.Fatalf("tags/list = %d", r.StatusCode)
	}
	if r := do(http.MethodDelete, "/v2/ci/x/manifests/20260101000000_prune_a", ""); r.StatusCode != http.StatusAccepted {
		t.Fatalf("delete = %d", r.StatusCode)
	}
	if r := do(http.MethodPut, "/_sim/faults", `{"error_burst":1,"error_status":500,"kinds":["list"]}`); r.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT faults = %d", r.StatusCode)
	}
	if r := do(http.MethodGet, "/v2/ci/x/tags/list?n=5", ""); r.StatusCode != http.StatusInternalServerError {
		t.Fatalf("tags/list during an error burst = %d, want 500", r.StatusCode)
	}
	if r := do(http.MethodPut, "/_sim/faults", `{"bogus":1}`); r.StatusCode != http.StatusBadRequest {
		t.Errorf("PUT faults with an unknown field = %d, want 400", r.StatusCode)
	}
	var st simState
	if err := json.NewDecoder(do(http.MethodGet, "/_sim/state?repo=ci/x", "").Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.Tags, []string{"20260102000000_prune_b", "latest"}) || !slices.Equal(st.Deleted, []string{"20260101000000_prune_a"}) {
		t.Errorf("state tags %q deleted %q", st.Tags, st.Deleted)
	}
	if !slices.Equal(st.Lists, []simList{{Last: "20260101", N: 2}, {Last: "", N: 5}}) || st.TagDeletes != 1 || st.Faults["burst"] != 1 {
		t.Errorf("state lists %+v, tag deletes %d, faults %v", st.Lists, st.TagDeletes, st.Faults)
	}
	if r := do(http.MethodPost, "/_sim/reset", ""); r.StatusCode != http.StatusNoContent {
		t.Fatalf("reset = %d", r.StatusCode)
	}

	// Garbage collection drops the manifest of a deleted tag that nothing else points at.
	img, err := reg.PushImage("ci/x", "lonely")
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.AddTags("ci/x", img, "lonely"); err != nil {
		t.Fatal(err)
	}
	if r := do(http.MethodDelete, "/v2/ci/x/manifests/lonely", ""); r.StatusCode != http.StatusAccepted {
		t.Fatalf("delete lonely = %d", r.StatusCode)
	}
	if r := do(http.MethodGet, "/v2/ci/x/manifests/"+img, ""); r.StatusCode != http.StatusOK {
		t.Fatalf("GET the deleted tag's manifest before GC = %d, want 200", r.StatusCode)
	}
	var gc struct {
		Collected int `json:"manifests_collected"`
	}
	if err := json.NewDecoder(do(http.MethodPost, "/_sim/gc", "").Body).Decode(&gc); err != nil || gc.Collected != 1 {
		t.Errorf("POST gc = %+v, %v; want one manifest collected", gc, err)
	}
	if r := do(http.MethodGet, "/v2/ci/x/manifests/"+img, ""); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET the collected manifest = %d, want 404", r.StatusCode)
	}

	// A client that is not on loopback is refused.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/_sim/state?repo=ci/x", nil)
	req.RemoteAddr = "192.0.2.7:4000"
	(&simAdmin{reg: reg, lists: make(map[string][]simList)}).ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("admin request from 192.0.2.7 = %d, want 403", rec.Code)
	}
}
