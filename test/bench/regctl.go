package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tagsweep/tagsweep/registry/sim"
)

// runRegctl measures `regctl tag ls` (github.com/regclient/regclient's CLI, at the path
// o.regctl) against the simulated registry at addr: a peer's sequential listing, for the ls
// scenario. It counts the names regctl prints; the registry counts its requests.
func runRegctl(ctx context.Context, o options, reg *sim.Registry, addr string) (sideResult, error) {
	r := sideResult{Side: "regctl"}
	dir, err := os.MkdirTemp("", "tagsweep-bench-regctl-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	env := append(os.Environ(), "REGCTL_CONFIG="+filepath.Join(dir, "config.json"))
	set := exec.CommandContext(ctx, o.regctl, "registry", "set", "--tls", "disabled", addr)
	set.Env = env
	if out, err := set.CombinedOutput(); err != nil {
		return r, fmt.Errorf("regctl registry set: %w: %s", err, out)
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, o.regctl, "tag", "ls", addr+"/"+benchRepo)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	reg.ResetStats()
	samples := newSampler(reg)
	begin := time.Now()
	if err := cmd.Start(); err != nil {
		samples.stop()
		return r, err
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		r.Scanned++
	}
	runErr := cmd.Wait()
	r.WallSeconds = time.Since(begin).Seconds()
	r.ChildSeconds = r.WallSeconds
	samples.stop()
	if runErr != nil {
		r.Error = runErr.Error()
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.PeakRSSBytes = ru.Maxrss << 10 // kB on Linux
	}
	st := reg.Stats()
	r.Lists, r.Deletes, r.Requests = st.Requests[sim.KindList], st.Requests[sim.KindDelete], st.Total()
	r.TooMany = st.Statuses[http.StatusTooManyRequests]
	r.PeakRate, r.Sustained, r.SustainedOK, r.InFlight = samples.rates()
	r.Timeline = samples.timeline(begin, nil)
	return r, nil
}
