package testnet

import (
	"net"
	"strconv"
	"testing"
)

func TestFreeAddrs(t *testing.T) {
	addrs := FreeAddrs(t, 5)
	if len(addrs) != 5 {
		t.Fatalf("got %d addresses, want 5", len(addrs))
	}
	lo, hi := portWindow()
	first, haveRange := ephemeralFirst()
	seen := map[string]bool{}
	for _, a := range addrs {
		if seen[a] {
			t.Errorf("%s given twice", a)
		}
		seen[a] = true
		host, p, err := net.SplitHostPort(a)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("%q is not a loopback host:port", a)
		}
		port, _ := strconv.Atoi(p)
		if port < lo || port >= hi || (haveRange && port >= first) {
			t.Errorf("port %d outside [%d, %d) or inside the ephemeral range (from %d)", port, lo, hi, first)
		}
		ln, err := net.Listen("tcp", a) // released by FreeAddrs: a server can bind it
		if err != nil {
			t.Fatalf("listening on %s: %v", a, err)
		}
		ln.Close()
	}
}
