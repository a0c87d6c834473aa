// Package testrig runs a tagsweep deployment inside one process, for the tests and the
// benchmark: embedded NATS JetStream from internal/testnats (one server, or several routed
// into a cluster, on random loopback ports), the ledger provisioned on it, workers and
// coordinators, each on a NATS connection of its own as separate pods would be. A test builds
// it with New, which ends everything through t.Cleanup; the benchmark, which has no
// testing.TB, uses Start and Close.
package testrig

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/internal/testnats"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/worker"
)

// provisionWithin bounds how long Start retries provisioning the ledger: a cluster cannot
// place replicated streams until its nodes have formed a meta group.
const provisionWithin = time.Minute

// Config says what deployment to start. The zero value is one server with the ledger's
// defaults (file storage).
type Config struct {
	// Nodes is how many NATS servers to start (0: 1). More than one are routed into a
	// JetStream cluster, and the ledger's Replicas default to Nodes.
	Nodes int
	// URL, when set, names a NATS server that runs elsewhere (another process): the rig
	// starts none and connects there.
	URL string
	// MaxMemory and MaxStore bound each server's JetStream memory and file store (0: the
	// server's defaults).
	MaxMemory, MaxStore int64
	// Ledger is the ledger configuration every worker and coordinator of the rig is given.
	Ledger ledger.Config
}

// Rig is a running deployment: its NATS servers (whose methods it has: URL, Connect, JS,
// StopNode, RestartNode), the ledger, and the workers it started. Its methods are safe for
// concurrent use.
type Rig struct {
	*testnats.Servers
	ledgerCfg ledger.Config
	ledger    *ledger.Ledger

	mu      sync.Mutex
	workers []*Workers
	closed  bool
}

// New starts a deployment for t (see Start) and closes it when t ends.
func New(t testing.TB, cfg Config) *Rig {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*provisionWithin)
	defer cancel()
	r, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// Start starts cfg's NATS servers and provisions the ledger on them. The caller must Close
// the rig.
func Start(ctx context.Context, cfg Config) (*Rig, error) {
	r := &Rig{ledgerCfg: cfg.Ledger}
	if cfg.URL != "" {
		r.Servers = testnats.Attach(cfg.URL)
	} else {
		var err error
		if r.Servers, err = testnats.Start(testnats.Config{Nodes: cfg.Nodes, MaxMemory: cfg.MaxMemory, MaxStore: cfg.MaxStore}); err != nil {
			return nil, err
		}
		if cfg.Nodes > 1 && r.ledgerCfg.Replicas == 0 {
			r.ledgerCfg.Replicas = cfg.Nodes
		}
	}
	if err := r.provision(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// provision creates the ledger's streams and buckets, retrying while a cluster forms.
func (r *Rig) provision(ctx context.Context) error {
	js, err := r.Connect()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, provisionWithin)
	defer cancel()
	for {
		try, cancelTry := context.WithTimeout(ctx, 5*time.Second)
		r.ledger, err = ledger.Open(try, js, r.ledgerCfg)
		cancelTry()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("provisioning the ledger: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LedgerConfig is the ledger configuration the rig provisioned and gives its workers and
// coordinators.
func (r *Rig) LedgerConfig() ledger.Config { return r.ledgerCfg }

// Ledger is the ledger the rig provisioned, on a connection of the rig's.
func (r *Rig) Ledger() *ledger.Ledger { return r.ledger }

// Worker builds a worker with cfg on a connection of its own, its Ledger set to the rig's.
func (r *Rig) Worker(cfg worker.Config, log *slog.Logger) (*worker.Worker, error) {
	js, err := r.Connect()
	if err != nil {
		return nil, err
	}
	cfg.Ledger = r.ledgerCfg
	return worker.New(cfg, js, log)
}

// Coordinator builds a coordinator with cfg on a connection of its own, its Ledger set to the
// rig's.
func (r *Rig) Coordinator(cfg coordinator.Config, lister registry.Lister, log *slog.Logger) (*coordinator.Coordinator, error) {
	js, err := r.Connect()
	if err != nil {
		return nil, err
	}
	cfg.Ledger = r.ledgerCfg
	return coordinator.New(cfg, js, lister, log)
}

// Run runs a coordinator with cfg to the end of its run (see Coordinator).
func (r *Rig) Run(ctx context.Context, cfg coordinator.Config, lister registry.Lister, log *slog.Logger) (proto.Report, error) {
	c, err := r.Coordinator(cfg, lister, log)
	if err != nil {
		return proto.Report{}, err
	}
	return c.Run(ctx)
}

// Close stops the rig's workers, then closes its connections, stops its servers and removes
// their store directories. It may be called more than once.
func (r *Rig) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	workers := r.workers
	r.mu.Unlock()
	for _, w := range workers {
		_ = w.Stop() // a test that wants the workers' errors stops them itself
	}
	r.Servers.Close()
}
