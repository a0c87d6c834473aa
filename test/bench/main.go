// Command bench measures tagsweep against the algorithm it replaces (the existing pruner:
// one sequential keyset lister feeding a pool of 100 deletes) on the same simulated
// registry, one side after the other, each on a fresh copy of the same tags and each in a
// child process of its own so that its peak RSS is its own.
//
//	go run ./test/bench -scenario daily             # 1M tags over 7 days, the oldest day eligible, 50 ms
//	go run ./test/bench -scenario backlog -tags 200000 -baseline=false
//	go run ./test/bench -scenario all -out docs/bench.md -svg docs
//
// Scenarios: daily, daily-quay, ls, numeric, backlog, rate-limited, skewed, restore, ceiling, ceiling-latency
// (see scenarios below). The
// registry is registry/sim over HTTP on 127.0.0.1 in this (the parent) process; its request
// counters are the numbers in the table. It is not part of `go test ./...`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"
)

const benchRepo = "openshift/ci"

// benchAPIToken is the simulated Quay's API v1 token (the restore-quay side restores through it).
const benchAPIToken = "bench-api-token"

type options struct {
	scenario   string
	tags       int
	latency    time.Duration
	workers    int
	out        string
	baseline   bool
	tagsweep   bool
	reuse      string
	rate       float64
	burst      int
	splitAfter time.Duration
	timeout    time.Duration
	cpuProfile string
	memProfile string
	regctl     string
	svg        string
	child      childFlags
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(args []string, w io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&o.scenario, "scenario", "daily", "daily, daily-quay, ls, numeric, backlog, rate-limited, skewed, restore, ceiling, ceiling-latency, or a comma-separated list, or all")
	fs.IntVar(&o.tags, "tags", 0, "tags in the repository (0 = the scenario's default: 1,000,000; 200,000 for daily-quay; 100,000 for rate-limited; 300,000 for ceiling; numeric always has 3,000)")
	fs.DurationVar(&o.latency, "latency", 50*time.Millisecond, "latency the simulated registry adds to every request (the ceiling always uses 0)")
	fs.IntVar(&o.workers, "workers", 8, "tagsweep workers")
	fs.StringVar(&o.out, "out", "", "also write the results to this file: JSON if it ends in .json, else markdown")
	fs.BoolVar(&o.baseline, "baseline", true, "run the baseline (slow: it lists every tag sequentially)")
	fs.BoolVar(&o.tagsweep, "tagsweep", true, "run the tagsweep sides")
	fs.StringVar(&o.reuse, "baseline-from", "", "take the baseline of each scenario (and ls's lister and regctl) from this JSON output of an earlier run (same -tags and -latency) instead of running it")
	fs.Float64Var(&o.rate, "rate", 500, "rate-limited: requests/s above which the registry answers 429 without Retry-After")
	fs.IntVar(&o.burst, "burst", 0, "rate-limited: the limit's burst (0 = rate/10)")
	fs.DurationVar(&o.splitAfter, "split-after", 10*time.Second, "tagsweep workers split a shard still unfinished after this long, and split for idle slots (0 = never split)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound on each side's run")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write CPU profiles to files with this prefix (PREFIX.<scenario>.<side>.cpu for the side, .sim.cpu for the registry)")
	fs.StringVar(&o.memProfile, "memprofile", "", "write allocation profiles to files with this prefix")
	fs.StringVar(&o.regctl, "regctl", "", "path of a regctl binary to measure `regctl tag ls` in the ls scenario (default: regctl on $PATH, if any)")
	fs.StringVar(&o.svg, "svg", "", "write each scenario's timeline as an SVG into this directory (<scenario>.svg)")
	o.child.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.child.side != "" {
		o.child.workers, o.child.splitAfter, o.child.timeout = o.workers, o.splitAfter, o.timeout
		// A child's profile paths are given in full by the parent.
		o.child.cpuProfile, o.child.memProfile = o.cpuProfile, o.memProfile
		return runChild(o.child)
	}
	if o.regctl == "" {
		o.regctl, _ = exec.LookPath("regctl")
	}
	names, err := scenarioNames(o.scenario)
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt)
	defer cancel()
	fmt.Fprintf(w, "tagsweep benchmark: %s; %d workers; latency %s; machine: %s\n\n", strings.Join(names, ", "), o.workers, o.latency, machine())
	var results []scenarioResult
	var ceil ceilings
	for _, name := range names {
		sc := scenarios[name]
		res, err := runScenario(ctx, o, sc, ceil, func(s string) { fmt.Fprintln(os.Stderr, s) })
		if err != nil {
			return fmt.Errorf("scenario %s: %w", name, err)
		}
		if len(res.Sides) > 0 {
			switch name {
			case "ceiling":
				ceil.zero = &res.Sides[0]
			case "ceiling-latency":
				ceil.latency = &res.Sides[0]
			}
		}
		results = append(results, res)
		writeMarkdown(w, res)
		if o.svg != "" {
			if err := writeSVG(filepath.Join(o.svg, name+".svg"), res); err != nil {
				return err
			}
		}
	}
	if o.out != "" {
		return writeOut(o.out, o, results)
	}
	return nil
}

func scenarioNames(s string) ([]string, error) {
	if s == "all" {
		return []string{"ceiling", "ceiling-latency", "daily", "daily-quay", "ls", "numeric", "backlog", "skewed", "rate-limited", "restore"}, nil
	}
	var out []string
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(n)
		if _, ok := scenarios[n]; !ok {
			return nil, fmt.Errorf("unknown scenario %q (want daily, daily-quay, ls, numeric, backlog, rate-limited, skewed, restore, ceiling, ceiling-latency or all)", n)
		}
		out = append(out, n)
	}
	return out, nil
}

// machine describes where the numbers come from.
func machine() string {
	load, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(load))
	la := "?"
	if len(f) > 0 {
		la = f[0]
	}
	return fmt.Sprintf("%d CPUs, load average %s at start", numCPU(), la)
}
