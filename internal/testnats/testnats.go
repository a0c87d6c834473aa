// Package testnats starts embedded NATS JetStream servers for tests and the benchmark: one
// server, or several routed into a JetStream cluster, on random loopback ports below the
// ephemeral range, each restartable on its address and store; and connections to them that
// reconnect forever, as the CLI's do. It is the NATS half of internal/testrig, apart from it
// for tests that want NATS without tagsweep's state on it, such as the ledger's own tests
// (which testrig, built on the ledger, cannot serve).
package testnats

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testnet"
	"github.com/tagsweep/tagsweep/natsserver"
)

// Config says what servers to start. The zero value is one server with natsserver's limits.
type Config struct {
	// Nodes is how many servers to start (0: 1). More than one are routed into a JetStream
	// cluster.
	Nodes int
	// MaxMemory and MaxStore bound each server's JetStream memory and file store (0: the
	// server's defaults).
	MaxMemory, MaxStore int64
}

// Servers are running NATS servers (or, from Attach, servers that run elsewhere) and the
// connections made to them. Their methods are safe for concurrent use.
type Servers struct {
	cfgs []natsserver.Config // to restart a node as it was
	url  string              // every node's client URL, comma-separated
	dirs []string            // store directories made here, removed by Close

	mu     sync.Mutex
	nodes  []*natsserver.Server
	conns  []*nats.Conn
	closed bool
}

// New starts servers for t (see Start) and closes them when t ends.
func New(t testing.TB, cfg Config) *Servers {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// Start starts cfg.Nodes servers. The caller must Close them.
func Start(cfg Config) (*Servers, error) {
	s := &Servers{}
	if err := s.start(cfg); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Attach is Servers for a NATS server that runs elsewhere (another process), at url: only
// connections, which Close closes.
func Attach(url string) *Servers { return &Servers{url: url} }

// start starts the nodes, together (a cluster node waits for its peers), on addresses picked
// below the ephemeral port range so that a node can be restarted on the address it had.
func (s *Servers) start(cfg Config) error {
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
	}
	for i := range n {
		dir, err := os.MkdirTemp("", "tagsweep-testnats-")
		if err != nil {
			return err
		}
		s.dirs = append(s.dirs, dir)
		nc := natsserver.Config{Dir: dir, Listen: clients[i], Name: fmt.Sprintf("n%d", i),
			MaxMemory: cfg.MaxMemory, MaxStore: cfg.MaxStore}
		if n > 1 {
			nc.Cluster = &natsserver.Cluster{Name: "tagsweep", Listen: routes[i], Routes: routes}
		}
		s.cfgs = append(s.cfgs, nc)
	}
	s.nodes = make([]*natsserver.Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { s.nodes[i], errs[i] = natsserver.Start(s.cfgs[i]) })
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
	s.url = strings.Join(urls, ",")
	return nil
}

// URL is the client URL of the servers (comma-separated when several), for processes of
// other binaries.
func (s *Servers) URL() string { return s.url }

// Dial opens a connection to the servers that reconnects forever, as the CLI's does. Close
// closes it.
func (s *Servers) Dial() (*nats.Conn, error) {
	nc, err := nats.Connect(s.url, nats.Name("tagsweep-test"), nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", s.url, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return nil, errors.New("testnats: connecting to closed servers")
	}
	s.conns = append(s.conns, nc)
	return nc, nil
}

// Connect is Dial for JetStream.
func (s *Servers) Connect() (jetstream.JetStream, error) {
	nc, err := s.Dial()
	if err != nil {
		return nil, err
	}
	return jetstream.New(nc)
}

// Conn is Dial for a test: it fails t when the connection cannot be made.
func (s *Servers) Conn(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := s.Dial()
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

// JS is Connect for a test: it fails t when the connection cannot be made.
func (s *Servers) JS(t testing.TB) jetstream.JetStream {
	t.Helper()
	js, err := s.Connect()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// StopNode stops node i (a crash, or the loss of a cluster member).
func (s *Servers) StopNode(i int) {
	s.mu.Lock()
	n := s.nodes[i]
	s.mu.Unlock()
	n.Close()
}

// RestartNode starts node i again on its address and store directory.
func (s *Servers) RestartNode(i int) error {
	n, err := natsserver.Start(s.cfgs[i])
	if err != nil {
		return fmt.Errorf("restarting NATS node %d: %w", i, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes[i] = n
	return nil
}

// Close closes the connections, stops the servers and removes their store directories. It
// may be called more than once.
func (s *Servers) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	conns, nodes := s.conns, s.nodes
	s.mu.Unlock()
	for _, nc := range conns {
		nc.Close()
	}
	for _, n := range nodes {
		if n != nil {
			n.Close()
		}
	}
	for _, d := range s.dirs {
		_ = os.RemoveAll(d)
	}
}
