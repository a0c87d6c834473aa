package natsserver

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestStart(t *testing.T) {
	tests := []struct {
		name    string
		listen  string
		wantURL bool
		ownDir  bool
	}{
		{name: "in process", listen: ""},
		{name: "random tcp port", listen: "127.0.0.1:-1", wantURL: true},
		{name: "port zero is random too", listen: "127.0.0.1:0", wantURL: true, ownDir: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Listen: tc.listen, MaxMemory: 32 << 20, MaxStore: 64 << 20}
			if tc.ownDir {
				cfg.Dir = t.TempDir()
			}
			s, err := Start(cfg)
			if err != nil {
				t.Fatalf("Start(%+v) error = %v", cfg, err)
			}
			closed := false
			t.Cleanup(func() {
				if !closed {
					s.Close()
				}
			})
			url := s.ClientURL()
			if got := url != ""; got != tc.wantURL {
				t.Fatalf("ClientURL() = %q, want a URL: %v", url, tc.wantURL)
			}
			if tc.wantURL && strings.HasSuffix(url, ":4222") {
				t.Errorf("ClientURL() = %q: listening on the default port, want a random one", url)
			}
			nc, err := s.Connect()
			if err != nil {
				t.Fatalf("Connect() error = %v", err)
			}
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatalf("jetstream.New: %v", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "probe"})
			if err != nil {
				t.Fatalf("CreateKeyValue: %v", err)
			}
			if _, err := kv.PutString(ctx, "k", "v"); err != nil {
				t.Fatalf("Put: %v", err)
			}
			e, err := kv.Get(ctx, "k")
			if err != nil || string(e.Value()) != "v" {
				t.Fatalf("Get(k) = %v, %v, want v", e, err)
			}
			nc.Close()

			var dir string
			if tc.ownDir {
				dir = cfg.Dir
			} else {
				dir = s.tempDir
			}
			if _, err := os.Stat(filepath.Join(dir, "jetstream")); err != nil {
				t.Errorf("store dir %s has no jetstream state: %v", dir, err)
			}
			s.Close()
			closed = true
			_, err = os.Stat(dir)
			if tc.ownDir && err != nil {
				t.Errorf("Close removed the caller's dir %s: %v", dir, err)
			}
			if !tc.ownDir && !os.IsNotExist(err) {
				t.Errorf("Close left temp dir %s behind (stat err %v)", dir, err)
			}
		})
	}
}

func TestStartBadListen(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000", "127.0.0.1:-2"} {
		if s, err := Start(Config{Listen: addr}); err == nil {
			s.Close()
			t.Errorf("Start(Listen %q) error = nil, want an error", addr)
		}
	}
}

// A port already taken fails Start at once with nats-server's own reason, for the client and
// for the route listener: not a bare timeout after readyTimeout.
func TestStartPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"client", Config{Listen: taken}},
		{"route", Config{Listen: "127.0.0.1:-1", Cluster: &Cluster{Name: "c", Listen: taken, Routes: []string{taken}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			begin := time.Now()
			s, err := Start(tc.cfg)
			if err == nil {
				s.Close()
				t.Fatalf("Start on taken %s = nil error", taken)
			}
			if !strings.Contains(err.Error(), "address already in use") {
				t.Errorf("Start error %q does not say the address is in use", err)
			}
			if d := time.Since(begin); d >= readyTimeout {
				t.Errorf("Start took %s to fail, the whole ready timeout", d)
			}
		})
	}
}
