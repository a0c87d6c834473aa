package natsserver

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testnet"
)

// startCluster starts n nodes routed on loopback, each given every node's route address.
func startCluster(t *testing.T, n int) []*Server {
	t.Helper()
	routes := testnet.FreeAddrs(t, n)
	nodes := make([]*Server, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			s, err := Start(Config{Dir: t.TempDir(), Listen: "127.0.0.1:-1", Name: fmt.Sprintf("n%d", i),
				MaxMemory: 32 << 20, MaxStore: 64 << 20,
				Cluster: &Cluster{Name: "test", Listen: routes[i], Routes: routes}})
			nodes[i] = s
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("Start: %v", err)
		}
	}
	for i, s := range nodes {
		t.Cleanup(s.Close)
		if s.ClusterAddr() != routes[i] {
			t.Fatalf("node %d: ClusterAddr() = %q, want %q", i, s.ClusterAddr(), routes[i])
		}
	}
	return nodes
}

// A three-node cluster holds an R3 bucket that survives the loss of any one node.
func TestCluster(t *testing.T) {
	nodes := startCluster(t, 3)
	var urls []string
	for _, s := range nodes {
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	// Until the three have formed the meta group, an R3 bucket cannot be placed: retry.
	var kv jetstream.KeyValue
	for {
		c, cancelTry := context.WithTimeout(ctx, 2*time.Second)
		kv, err = js.CreateOrUpdateKeyValue(c, jetstream.KeyValueConfig{Bucket: "r3", Replicas: 3, Storage: jetstream.MemoryStorage})
		cancelTry()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("R3 bucket never created: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := kv.PutString(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	nodes[0].Close() // the first node, which the others route to
	for {
		c, cancelTry := context.WithTimeout(ctx, 2*time.Second)
		_, err = kv.PutString(c, "k", "v2")
		cancelTry()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("bucket not writable after losing one node: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil || string(e.Value()) != "v2" {
		t.Fatalf("Get after losing a node = %v, %v; want v2", e, err)
	}
}

func TestClusterConfigErrors(t *testing.T) {
	for _, c := range []Cluster{
		{Listen: "127.0.0.1:-1"},                                   // no name
		{Name: "x", Listen: "nowhere"},                             // bad listen
		{Name: "x", Listen: "127.0.0.1:-1", Routes: []string{"x"}}, // bad route
	} {
		if s, err := Start(Config{Cluster: &c}); err == nil {
			s.Close()
			t.Errorf("Start(Cluster %+v) error = nil, want an error", c)
		}
	}
}
