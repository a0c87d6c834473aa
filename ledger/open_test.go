package ledger

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestOpenWritesOnlyWhatDiffers checks that opening an existing ledger with the same settings
// sends no create or update request (every worker opens it, often at once, and a needless
// stream update racing a consumer creation trips nats-server), while a changed setting is
// still applied.
func TestOpenWritesOnlyWhatDiffers(t *testing.T) {
	srv := testServer(t)
	connect := func() jetstream.JetStream { return srv.JS(t) }
	cfg := Config{AckWait: 2 * time.Second, MaxDeliver: 3}
	if _, err := Open(ctx(t), connect(), cfg); err != nil {
		t.Fatalf("first Open: %v", err)
	}

	// Count JetStream API requests that create or change something.
	spy := srv.Conn(t)
	var mu sync.Mutex
	var writes []string
	_, err := spy.Subscribe("$JS.API.>", func(m *nats.Msg) {
		if s := m.Subject; strings.Contains(s, ".CREATE.") || strings.Contains(s, ".UPDATE.") ||
			strings.Contains(s, ".DURABLE.CREATE.") {
			mu.Lock()
			writes = append(writes, s)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := spy.Flush(); err != nil {
		t.Fatal(err)
	}
	seen := func() []string {
		_ = spy.Flush()
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), writes...)
	}

	// Several processes opening the same ledger at once: no writes, no race.
	var wg sync.WaitGroup
	var failed atomic.Int32
	for range 6 {
		js := connect()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := Open(ctx(t), js, cfg); err != nil {
				t.Errorf("concurrent Open: %v", err)
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	if w := seen(); len(w) != 0 {
		t.Fatalf("re-opening with the same settings sent %d create/update requests: %v", len(w), w)
	}

	// A changed consumer setting is applied.
	cfg.AckWait = 3 * time.Second
	l, err := Open(ctx(t), connect(), cfg)
	if err != nil {
		t.Fatalf("Open with a new AckWait: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if len(seen()) == 0 {
		t.Fatal("a changed AckWait sent no update")
	}
	info, err := l.Consumer().Info(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.AckWait != 3*time.Second {
		t.Fatalf("consumer AckWait %v after re-open, want 3s", info.Config.AckWait)
	}
}
