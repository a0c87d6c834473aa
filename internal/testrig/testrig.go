// Package testrig runs a tagsweep deployment inside one process, for the tests and the
// benchmark: embedded NATS JetStream (one server, or several routed into a cluster) listening
// on random loopback ports, the ledger provisioned on it, workers and coordinators, each on a
// NATS connection of its own as separate pods would be. A test builds it with New, which ends
// everything through t.Cleanup; the benchmark, which has no testing.TB, uses Start and Close.
package testrig

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/internal/testnet"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/natsserver"
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

// Rig is a running deployment. Its methods are safe for concurrent use.
type Rig struct {
	ledgerCfg ledger.Config
	nodeCfgs  []natsserver.Config // to restart a node as it was
	url       string              // every node's client URL, comma-separated
	dirs      []string            // store directories the rig made, removed by Close
	ledger    *ledger.Ledger

	mu      sync.Mutex
	nodes   []*natsserver.Server
	conns   []*nats.Conn
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
	r := &Rig{ledgerCfg: cfg.Ledger, url: cfg.URL}
	if cfg.URL == "" {
		if err := r.startNodes(cfg); err != nil {
			r.Close()
			return nil, err
		}
	}
	if err := r.provision(ctx); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// startNodes starts cfg.Nodes servers on loopback addresses picked below the ephemeral port
// range, so that a node can be restarted on the address it had.
func (r *Rig) startNodes(cfg Config) error {
	n := max(cfg.Nodes, 1)
	clients, err := testnet.Free(n)
	if err != nil {
		return err
	}
	var routes []string
	if n > 1 {
		if routes, err = testnet.Free(n); err != nil {
			return err
		}
		if r.ledgerCfg.Replicas == 0 {
			r.ledgerCfg.Replicas = n
		}
	}
	for i := range n {
		dir, err := os.MkdirTemp("", "tagsweep-testrig-")
		if err != nil {
			return err
		}
		r.dirs = append(r.dirs, dir)
		nc := natsserver.Config{Dir: dir, Listen: clients[i], Name: fmt.Sprintf("n%d", i),
			MaxMemory: cfg.MaxMemory, MaxStore: cfg.MaxStore}
		if n > 1 {
			nc.Cluster = &natsserver.Cluster{Name: "tagsweep", Listen: routes[i], Routes: routes}
		}
		r.nodeCfgs = append(r.nodeCfgs, nc)
	}
	r.nodes = make([]*natsserver.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n { // together: a cluster node waits for its peers
		wg.Go(func() { r.nodes[i], errs[i] = natsserver.Start(r.nodeCfgs[i]) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return fmt.Errorf("starting NATS node %d: %w", i, err)
		}
	}
	urls := make([]string, n)
	for i, c := range clients {
		urls[i] = "nats://" + c
	}
	r.url = strings.Join(urls, ",")
	return nil
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

// URL is the NATS client URL of the rig's servers (comma-separated when several), for
// processes of other binaries.
func (r *Rig) URL() string { return r.url }

// LedgerConfig is the ledger configuration the rig provisioned and gives its workers and
// coordinators.
func (r *Rig) LedgerConfig() ledger.Config { return r.ledgerCfg }

// Ledger is the ledger the rig provisioned, on a connection of the rig's.
func (r *Rig) Ledger() *ledger.Ledger { return r.ledger }

// Connect opens a JetStream connection to the rig's servers that reconnects forever, as the
// CLI's does. Close closes it.
func (r *Rig) Connect() (jetstream.JetStream, error) {
	nc, err := nats.Connect(r.url, nats.Name("tagsweep-testrig"), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", r.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		nc.Close()
		return nil, errors.New("testrig: connecting to a closed rig")
	}
	r.conns = append(r.conns, nc)
	return js, nil
}

// JS is Connect for a test: it fails t when the connection cannot be made.
func (r *Rig) JS(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := r.Connect()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// StopNode stops NATS node i (a crash, or the loss of a cluster member).
func (r *Rig) StopNode(i int) {
	r.mu.Lock()
	s := r.nodes[i]
	r.mu.Unlock()
	s.Close()
}

// RestartNode starts NATS node i again on its address and store directory.
func (r *Rig) RestartNode(i int) error {
	s, err := natsserver.Start(r.nodeCfgs[i])
	if err != nil {
		return fmt.Errorf("restarting NATS node %d: %w", i, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.nodes[i] = s
	return nil
}

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

// Close stops the rig's workers, closes its connections, stops its servers and removes their
// store directories. It may be called more than once.
func (r *Rig) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	workers, conns, nodes := r.workers, r.conns, r.nodes
	r.mu.Unlock()
	for _, w := range workers {
		_ = w.Stop() // a test that wants the workers' errors stops them itself
	}
	for _, nc := range conns {
		nc.Close()
	}
	for _, s := range nodes {
		if s != nil {
			s.Close()
		}
	}
	for _, d := range r.dirs {
		_ = os.RemoveAll(d)
	}
}
