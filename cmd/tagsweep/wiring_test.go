package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry/sim"
)

// A worker's credentials go over plain HTTP only if the worker itself was given --plain-http:
// whoever can write a run record must not be able to have them sent in the clear.
func TestAllowedPlainHTTP(t *testing.T) {
	const host = "registry.test:5000"
	plain := proto.RunRecord{RunID: "r1", Registry: host, PlainHTTP: true}
	tls := proto.RunRecord{RunID: "r1", Registry: host}
	for _, tc := range []struct {
		name string
		cfg  config.Config
		run  proto.RunRecord
		want error
	}{
		{"token, plain run", config.Config{Registry: host, Token: "s3cret"}, plain, errPlainHTTP},
		{"docker config, plain run", config.Config{DockerConfig: "/etc/auth.json"}, plain, errPlainHTTP},
		{"token and --plain-http, plain run", config.Config{Registry: host, Token: "s3cret", PlainHTTP: true}, plain, nil},
		{"token, TLS run", config.Config{Registry: host, Token: "s3cret"}, tls, nil},
		{"no credentials, plain run", config.Config{}, plain, nil},
		{"token, other registry", config.Config{Registry: "quay.io", Token: "s3cret", PlainHTTP: true}, plain, errForeignRegistry},
	} {
		if err := allowed(tc.cfg, tc.run); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: allowed = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// A worker holding a token sends it only where it was given: not in the clear because a run
// record asks for plain HTTP (the worker has no --plain-http), and not to a registry other
// than its --registry. Either way the run's shards fail, the coordinator exits 2 and the
// registry sees no delete.
func TestWorkerKeepsItsToken(t *testing.T) {
	tests := []struct {
		name string
		// workerRegistry is the worker's --registry, given the sim's address.
		workerRegistry func(sim string) string
		what           string
	}{
		{name: "plain http asked by the run", workerRegistry: func(sim string) string { return sim },
			what: "over plain HTTP from a worker holding a token"},
		{name: "foreign registry", workerRegistry: func(string) string { return "quay.io" },
			what: "from a worker pinned to another registry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			const repo = "openshift/ci"
			ns := startNATS(t)
			reg, err := sim.Start(t.Context(), "127.0.0.1:0", sim.Config{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { reg.Close() })
			if err := reg.AddTags(repo, "", sim.Generate(sim.GenConfig{Seed: 3, Tags: 600, Days: 8, End: time.Now(), Floating: -1})...); err != nil {
				t.Fatal(err)
			}
			wctx, stopWorker := context.WithCancel(t.Context())
			workerDone := make(chan int, 1)
			go func() {
				code, _, _ := execute(t, wctx, "worker", "--nats-url", ns.ClientURL(), "--registry", tc.workerRegistry(reg.Addr()),
					"--token", "s3cret", "--http-addr", "", "--max-deliver", "1", "--log-format", "json")
				workerDone <- code
			}()
			defer func() {
				stopWorker()
				<-workerDone
			}()
			waitWorker(t, ns)
			code, out, errOut := execute(t, t.Context(), "coordinator", "--nats-url", ns.ClientURL(), "--registry", reg.Addr(),
				"--plain-http", "--repository", repo, "--confirm", "--max-deliver", "1", "--http-addr", "", "--log-format", "json")
			if code != exitFailed {
				t.Fatalf("coordinator: exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailed, out, errOut)
			}
			if n := len(reg.DeletedTags(repo)); n != 0 {
				t.Errorf("the registry saw %d deletes %s", n, tc.what)
			}
		})
	}
}

// TestLedgerConfigRetention: the retention keys reach the ledger every provisioning process
// opens.
func TestLedgerConfigRetention(t *testing.T) {
	cfg := config.Config{AuditMaxAge: 720 * time.Hour, AuditMaxBytes: 8 << 30, RecordsMaxAge: 336 * time.Hour, AuditDryRuns: false}
	got := ledgerConfig(cfg)
	if got.AuditMaxAge != 720*time.Hour || got.AuditMaxBytes != 8<<30 || got.RecordsMaxAge != 336*time.Hour || !got.NoDryRunAudit {
		t.Errorf("ledgerConfig(%+v) = %+v, want the retention and no dry-run audit", cfg, got)
	}
	cfg.AuditDryRuns = true
	if ledgerConfig(cfg).NoDryRunAudit {
		t.Errorf("ledgerConfig with audit-dry-runs: NoDryRunAudit set")
	}
}
