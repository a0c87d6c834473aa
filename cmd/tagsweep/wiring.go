package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
)

// quayTokenUser is the user name under which Quay's registry API accepts an OAuth
// application token as the password.
const quayTokenUser = "$oauthtoken"

// ledgerConfig is the JetStream configuration every process of a deployment must share.
// The retention settings are those of the commands that provision the ledger (run,
// coordinator, worker); audit-dry-runs matters only where claims record audit events.
func ledgerConfig(cfg config.Config) ledger.Config {
	return ledger.Config{Replicas: cfg.NATSReplicas, AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver,
		AuditMaxAge: cfg.AuditMaxAge, AuditMaxBytes: cfg.AuditMaxBytes, RecordsMaxAge: cfg.RecordsMaxAge,
		NoDryRunAudit: !cfg.AuditDryRuns}
}

// ociConfig is the registry client configuration for host.
func ociConfig(cfg config.Config, host string, plainHTTP bool, concurrency int, log *slog.Logger) registry.OCIConfig {
	oc := registry.OCIConfig{
		Host:         host,
		PlainHTTP:    plainHTTP,
		DockerConfig: cfg.DockerConfig,
		AuthHosts:    cfg.AuthHosts,
		Concurrency:  concurrency,
		Logger:       log,
	}
	if tok := cfg.Token.Reveal(); tok != "" {
		oc.Username, oc.Password = quayTokenUser, tok
	}
	return oc
}

// errForeignRegistry: a run names a registry other than the one this worker may talk to.
var errForeignRegistry = errors.New("run names a registry this worker is not configured for")

// errPlainHTTP: a run asks for plain HTTP, and this worker holds credentials it was not
// allowed to send in the clear.
var errPlainHTTP = errors.New("run asks for plain HTTP; this worker sends its credentials over HTTPS only unless given --plain-http")

// connector returns the worker's Connect: a registry client for a run's registry. When
// cfg.Registry is set, a run against any other host is refused, so the worker's
// credentials only ever go to the registry they were given for (whoever can write a run
// record could otherwise name any host). Likewise a worker holding credentials talks plain
// HTTP only when it was given --plain-http itself, whatever the run record asks for.
func connector(cfg config.Config, regs *registries, log *slog.Logger) func(context.Context, proto.RunRecord) (registry.Client, error) {
	return func(_ context.Context, run proto.RunRecord) (registry.Client, error) {
		if err := allowed(cfg, run); err != nil {
			return nil, err
		}
		// The worker bounds deletes (DeleteConcurrency) and lists (one per slot) itself;
		// the client's own bound must not be the tighter one.
		oc := regs.config(cfg, run.Registry, run.PlainHTTP, cfg.DeleteConc+cfg.Slots, log.With("repo_registry", run.Registry))
		c, err := registry.NewOCI(oc)
		if err != nil {
			return nil, err
		}
		if cfg.DeleteAPI == config.DeleteAPIQuayV1 {
			q, err := regs.quayClient(cfg, run.Registry, run.PlainHTTP, log.With("repo_registry", run.Registry))
			if err != nil {
				return nil, err
			}
			return quayDeletes{OCI: c, quay: q}, nil
		}
		return c, nil
	}
}

// allowed checks that this worker may talk to run's registry as the run asks: the registry it
// was given (if any), and plain HTTP only if it was given --plain-http or holds no credentials.
func allowed(cfg config.Config, run proto.RunRecord) error {
	if cfg.Registry != "" && run.Registry != cfg.Registry {
		return fmt.Errorf("run %s: registry %q, worker allows %q: %w", run.RunID, run.Registry, cfg.Registry, errForeignRegistry)
	}
	if run.PlainHTTP && !cfg.PlainHTTP && (cfg.Token.Reveal() != "" || cfg.DockerConfig != "") {
		return fmt.Errorf("run %s: registry %q: %w", run.RunID, run.Registry, errPlainHTTP)
	}
	return nil
}

// serveTelemetry serves /healthz, /readyz and /metrics on addr until ctx ends, in the
// background; wait returns the server's error once it has stopped. A server that fails
// (the address is taken) calls fail, so that the process stops rather than run unobserved.
// An empty addr serves nothing.
func serveTelemetry(ctx context.Context, fail context.CancelFunc, addr string, m *telemetry.Metrics,
	ready func() error, log *slog.Logger) (wait func() error) {
	if addr == "" {
		return func() error { return nil }
	}
	srv := telemetry.NewServer(m, telemetry.ServerConfig{Addr: addr, Ready: ready, Logger: log})
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err = srv.Run(ctx); err != nil {
			log.Error("health and metrics server failed", slog.Any("err", err))
			fail()
		}
	}()
	log.Info("serving health and metrics", "addr", addr)
	return func() error {
		<-done
		return err
	}
}
