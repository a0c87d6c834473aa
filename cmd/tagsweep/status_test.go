package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/proto"
)

// startNATS starts an embedded JetStream server listening on a random loopback port.
func startNATS(t *testing.T) *natsserver.Server {
	t.Helper()
	srv, err := natsserver.Start(natsserver.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

// openLedger opens the ledger on srv, as a coordinator or worker would, over a connection
// closed when the test ends.
func openLedger(t *testing.T, srv *natsserver.Server) *ledger.Ledger {
	t.Helper()
	nc, err := srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(t.Context(), js, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestStatus(t *testing.T) {
	srv := startNATS(t)
	ctx := t.Context()
	cfg := config.Config{Command: config.CmdStatus, NATSURL: srv.ClientURL(), AckWait: time.Minute}

	var out bytes.Buffer
	if err := runStatus(ctx, &out, nil, cfg, ""); err != nil {
		t.Fatalf("runStatus(empty server) = %v", err)
	}
	if !strings.Contains(out.String(), "no tagsweep runs") {
		t.Errorf("runStatus(empty server) printed %q, want no tagsweep runs", out.String())
	}

	l := openLedger(t, srv)
	start := time.Now().Add(-time.Hour).UTC()
	if _, err := l.CreateRun(ctx, proto.RunRecord{RunID: "run-1", Registry: "quay.io", Repositories: []string{"openshift/ci"},
		Policy: proto.Policy{DryRun: true, Cutoff: start.Add(-5 * 24 * time.Hour)}, State: proto.RunRunning, StartedAt: start, Shards: 2}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []proto.ShardRecord{
		{RunID: "run-1", ShardID: "s0", Repository: "openshift/ci", Range: proto.Range{After: "", Through: "20260101"}},
		{RunID: "run-1", ShardID: "s1", Repository: "openshift/ci", Range: proto.Range{After: "20260101", Through: "20260102"}},
	} {
		if _, err := l.CreateShard(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	claim, err := l.Claim(ctx, "run-1", "s1", "worker-a", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := claim.Checkpoint(ctx, "20260101120000_prune_x", proto.Counters{Scanned: 7, Eligible: 3, Deleted: 3}); err != nil {
		t.Fatal(err)
	}

	out.Reset()
	if err := runStatus(ctx, &out, nil, cfg, ""); err != nil {
		t.Fatalf("runStatus() = %v", err)
	}
	for _, want := range []string{"RUN", "run-1", "running", "dry run", "openshift/ci"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("runStatus() output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if err := runStatus(ctx, &out, nil, cfg, "run-1"); err != nil {
		t.Fatalf("runStatus(run-1) = %v", err)
	}
	for _, want := range []string{"Shards:         2: 0 done, 0 failed, 1 running (0 stale), 1 pending",
		"Tags:           7 scanned, 3 eligible, 3 deleted", "worker-a", "20260101120000_prune_x"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("runStatus(run-1) output lacks %q:\n%s", want, out.String())
		}
	}

	if err := runStatus(ctx, &out, nil, cfg, "nope"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("runStatus(nope) = %v, want not found", err)
	}
}
