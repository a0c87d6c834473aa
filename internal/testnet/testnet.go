// Package testnet gives tests loopback addresses to listen on when the address must be known
// before the listener exists: the route addresses of a NATS cluster, which every node is given
// before any starts, and a node restarted on the address it had.
//
// A port the kernel hands out for "127.0.0.1:0" comes from the ephemeral range, the same range
// outgoing connections take their source ports from. Between the moment a test learns such a
// port and the moment its server binds it, any of the thousands of HTTP connections other
// packages' tests open in parallel can take it, and the server cannot listen. So FreeAddrs picks
// ports below the ephemeral range, which only an explicit bind can take.
package testnet

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Ports outside Linux's default ephemeral range (32768–60999) and above the registered ports
// most services use.
const (
	lowPort  = 20000
	highPort = 32768 // exclusive
)

// FreeAddrs returns n distinct "127.0.0.1:port" addresses whose ports were free a moment ago
// and lie outside the kernel's ephemeral port range.
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs, err := Free(n)
	if err != nil {
		t.Fatal(err)
	}
	return addrs
}

// Free is FreeAddrs for callers without a testing.TB (the benchmark).
func Free(n int) ([]string, error) {
	lo, hi := portWindow()
	var out []string
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			_ = ln.Close()
		}
	}()
	for tries := 0; len(out) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("testnet: no free loopback port in [%d, %d) after %d tries", lo, hi, tries)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(lo+rand.IntN(hi-lo)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue // taken: try another
		}
		held = append(held, ln) // held until all n are chosen, so none is chosen twice
		out = append(out, addr)
	}
	return out, nil
}

// portWindow is [lowPort, highPort), moved below the ephemeral range when the machine
// configures that range lower than Linux's default.
func portWindow() (int, int) {
	lo, hi := lowPort, highPort
	if first, ok := ephemeralFirst(); ok && first < hi {
		hi = first
		lo = min(lo, hi/2)
	}
	return lo, hi
}

func ephemeralFirst() (int, bool) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, false
	}
	fields := strings.Fields(string(b))
	if len(fields) != 2 {
		return 0, false
	}
	first, err := strconv.Atoi(fields[0])
	if err != nil || first <= 1024 {
		return 0, false
	}
	return first, true
}
