package testnats_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testnats"
)

// A node stopped and restarted keeps its address and its file store: a connection made before
// reconnects, and what was written before is read after.
func TestRestartNode(t *testing.T) {
	s := testnats.New(t, testnats.Config{})
	js := s.JS(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "kept", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	s.StopNode(0)
	if err := s.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	for {
		e, err := kv.Get(ctx, "k")
		if err == nil {
			if string(e.Value()) != "v" {
				t.Fatalf("after the restart k = %q, want v", e.Value())
			}
			return
		}
		select { // the connection reconnects in the background
		case <-ctx.Done():
			t.Fatalf("k not readable after the restart: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Closed servers refuse new connections, and closing them again does nothing.
func TestClose(t *testing.T) {
	s, err := testnats.Start(testnats.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Connect(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	if _, err := s.Dial(); err == nil {
		t.Errorf("Dial on closed servers succeeded")
	}
}
