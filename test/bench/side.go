package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tagsweep/tagsweep/registry/sim"
)

// runSide serves a fresh copy of tags and runs one side against it in a child process.
func runSide(ctx context.Context, o options, sc scenario, side string, tags []string, latency time.Duration, cutoff time.Time) (sideResult, error) {
	simCfg, concurrency := sc.simConfig(o, latency)
	reg := sim.New(simCfg)
	if err := reg.AddTags(benchRepo, "", tags...); err != nil {
		return sideResult{}, err
	}
	addr, stopServing, err := serve(reg)
	if err != nil {
		return sideResult{}, err
	}
	defer stopServing()
	if side == "regctl" {
		return runRegctl(ctx, o, reg, addr)
	}
	dir, err := os.MkdirTemp("", "tagsweep-bench-")
	if err != nil {
		return sideResult{}, err
	}
	defer os.RemoveAll(dir)
	resultPath := filepath.Join(dir, "result.json")
	args := childArgs(o, sc.Name, side, addr, cutoff, resultPath, concurrency)
	stopProfile, err := profileSim(o, sc.Name, side)
	if err != nil {
		return sideResult{}, err
	}
	samples := newSampler(reg)
	begin := time.Now()
	runErr := runChildProcess(ctx, o, args)
	childSecs := time.Since(begin).Seconds()
	samples.stop()
	stopProfile()

	r, err := readResult(resultPath)
	if err != nil {
		return sideResult{}, errors.Join(runErr, err)
	}
	r.Side = side
	r.ChildSeconds = childSecs
	st := reg.Stats()
	r.Lists, r.Deletes = st.Requests[sim.KindList], st.Requests[sim.KindDelete]
	r.Requests = st.Total()
	r.TooMany = st.Statuses[http.StatusTooManyRequests]
	r.PeakRate, r.Sustained, r.SustainedOK, r.InFlight = samples.rates()
	r.Timeline = samples.timeline(begin, r.ShardSpans)
	return r, nil
}

// simConfig is the registry of the scenario at latency, and how many deletes the ceiling
// side keeps in flight.
func (sc scenario) simConfig(o options, latency time.Duration) (sim.Config, int) {
	cfg := sim.Config{Latency: latency, PageCap: sc.PageCap, APIToken: benchAPIToken}
	concurrency := o.child.concurrency
	if sc.DeleteLatency {
		cfg.Latency = 0
		cfg.Faults = sim.Faults{Kinds: []sim.Kind{sim.KindDelete}, SlowRate: 1, SlowDelay: latency}
		concurrency = sc.CeilingInFlight
	}
	if sc.Limited {
		// One bucket for every client: they all come from 127.0.0.1, and Quay's nginx keys
		// its HTTP/1.1 limits by client IP. Over it: 429 without Retry-After.
		burst := o.burst
		if burst <= 0 {
			burst = max(1, int(o.rate/10))
		}
		cfg.Faults.Limits = []sim.Limit{{PerSecond: o.rate, Burst: burst}}
	}
	return cfg, concurrency
}

// serve serves reg over HTTP on a random loopback port until stop.
func serve(reg *sim.Registry) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: reg, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// childArgs are the flags of the child process that runs side against the registry at addr
// and writes its result to resultPath.
func childArgs(o options, scenario, side, addr string, cutoff time.Time, resultPath string, concurrency int) []string {
	childSide := side
	splitAfter := o.splitAfter
	var extra []string
	switch side {
	case "tagsweep-nosplit":
		childSide, splitAfter = "tagsweep", 0
	case "tagsweep-digests":
		childSide, extra = "tagsweep", []string{"-record-digests"}
	case "restore":
		extra = []string{"-restore-concurrency", strconv.Itoa(o.child.restoreConc)}
	case "restore-quay":
		childSide, extra = "restore", []string{"-restore-concurrency", strconv.Itoa(o.child.restoreConc), "-restore-quay"}
	}
	args := []string{"-child", childSide, "-child-registry", addr, "-child-repo", benchRepo,
		"-child-cutoff", cutoff.UTC().Format(time.RFC3339), "-child-result", resultPath,
		"-workers", strconv.Itoa(o.workers), "-split-after", splitAfter.String(), "-timeout", o.timeout.String(),
		"-slots", strconv.Itoa(o.child.slots), "-delete-concurrency", strconv.Itoa(o.child.deleteConc),
		"-ceiling-concurrency", strconv.Itoa(concurrency),
		"-baseline-retry-delay", o.child.retryDelay.String(),
		"-rc-decrease", fmt.Sprint(o.child.rcDecrease), "-rc-increase", fmt.Sprint(o.child.rcIncrease)}
	args = append(args, extra...)
	if o.child.workerProcs {
		args = append(args, "-worker-procs")
	}
	if o.child.verbose {
		args = append(args, "-v")
	}
	if o.cpuProfile != "" {
		args = append(args, "-cpuprofile", fmt.Sprintf("%s.%s.%s.cpu", o.cpuProfile, scenario, side))
	}
	if o.memProfile != "" {
		args = append(args, "-memprofile", fmt.Sprintf("%s.%s.%s.alloc", o.memProfile, scenario, side))
	}
	return args
}

// profileSim profiles this process (the registry's) while a side runs, when o asks for
// profiles; stop ends the CPU profile and writes the allocation profile.
func profileSim(o options, scenario, side string) (stop func(), err error) {
	stopCPU := func() {}
	if o.cpuProfile != "" {
		if stopCPU, err = startCPUProfile(fmt.Sprintf("%s.%s.%s.sim.cpu", o.cpuProfile, scenario, side)); err != nil {
			return nil, err
		}
	}
	return func() {
		stopCPU()
		if o.memProfile != "" {
			_ = writeMemProfile(fmt.Sprintf("%s.%s.%s.sim.alloc", o.memProfile, scenario, side))
		}
	}, nil
}

// runChildProcess runs this binary with args, interrupting it when o's timeout (and a minute
// to write its result) has passed or ctx ends.
func runChildProcess(ctx context.Context, o options, args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	return cmd.Run()
}
