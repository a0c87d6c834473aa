// Package proc is tagsweep's multi-process suite: the Kubernetes topology on loopback, each
// part in a process of its own, built from the real binary. A NATS server (or three, routed
// into a JetStream cluster) runs in a helper mode of this test binary (there is no
// nats-server binary to run); `tagsweep sim --admin` serves the simulated registry;
// `tagsweep worker` processes and a `tagsweep coordinator` do the run. The tests kill
// (SIGKILL), stop (SIGTERM), freeze (SIGSTOP, SIGCONT) and restart workers, the coordinator and
// NATS during runs, and check the invariant (test/invariant) against the sim's state.
//
// The fast scenarios run in `go test ./...`; `go test -run Soak -soak=10m ./test/proc`
// runs randomized fault schedules for that long, each with its seed printed for replay
// (-soak.seed).
package proc

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tagsweep/tagsweep/natsserver"
)

var (
	soakFor  = flag.Duration("soak", 0, "run TestSoak's randomized fault schedules for this long (0: skip it)")
	soakSeed = flag.Uint64("soak.seed", 0, "replay one TestSoak schedule by its seed")
)

// bin is the tagsweep binary built for this test binary's run.
var bin string

// helperEnv selects a helper mode of the test binary: "nats" runs an embedded NATS server.
const helperEnv = "TAGSWEEP_PROC_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "nats" {
		os.Exit(natsHelper())
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "tagsweep-proc-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "tagsweep")
	build := exec.Command("go", "build", "-o", bin, "github.com/tagsweep/tagsweep/cmd/tagsweep")
	build.Env = append(os.Environ(), "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building tagsweep: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Environment of the NATS helper.
const (
	envNATSListen  = "TAGSWEEP_PROC_NATS_LISTEN"  // client address host:port
	envNATSDir     = "TAGSWEEP_PROC_NATS_DIR"     // JetStream store directory
	envNATSName    = "TAGSWEEP_PROC_NATS_NAME"    // server name
	envNATSCluster = "TAGSWEEP_PROC_NATS_CLUSTER" // route address host:port; empty: no cluster
	envNATSRoutes  = "TAGSWEEP_PROC_NATS_ROUTES"  // every node's route address, comma-separated
	envNATSConf    = "TAGSWEEP_PROC_NATS_CONF"    // nats-server configuration file (authorization, TLS); empty: none
)

// natsHelper runs an embedded NATS server (natsserver) until SIGTERM or SIGINT, announcing
// "nats ready <url>" on stdout once it accepts connections.
func natsHelper() int {
	cfg := natsserver.Config{Listen: os.Getenv(envNATSListen), Dir: os.Getenv(envNATSDir), Name: os.Getenv(envNATSName),
		MaxMemory: 64 << 20, MaxStore: 512 << 20}
	if addr := os.Getenv(envNATSCluster); addr != "" {
		cfg.Cluster = &natsserver.Cluster{Name: "tagsweep", Listen: addr, Routes: strings.Split(os.Getenv(envNATSRoutes), ",")}
	}
	if conf := os.Getenv(envNATSConf); conf != "" {
		cfg.Options = func(o *server.Options) error { return o.ProcessConfigFile(conf) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := natsserver.Start(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "nats helper:", err)
		return 1
	}
	fmt.Printf("nats ready %s\n", s.ClientURL())
	<-ctx.Done()
	s.Close()
	return 0
}
