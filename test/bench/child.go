package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testrig"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/worker"
)

// childFlags are what the parent passes to a child process (the hidden -child mode).
type childFlags struct {
	side        string
	registry    string
	repo        string
	cutoff      string // RFC 3339
	result      string
	timeout     time.Duration
	retryDelay  time.Duration
	workers     int
	slots       int
	deleteConc  int
	splitAfter  time.Duration
	workerProcs bool
	natsURL     string
	concurrency int
	cpuProfile  string
	memProfile  string
	verbose     bool
	rcDecrease  float64
	rcIncrease  float64
	// The restore scenario.
	recordDigests bool
	restoreConc   int
	restoreQuay   bool
}

func (c *childFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.side, "child", "", "internal: run one side of a scenario in this process (baseline, tagsweep, worker, ceiling)")
	fs.StringVar(&c.registry, "child-registry", "", "internal: host:port of the simulated registry")
	fs.StringVar(&c.repo, "child-repo", benchRepo, "internal: repository")
	fs.StringVar(&c.cutoff, "child-cutoff", "", "internal: the run's cutoff, RFC 3339")
	fs.StringVar(&c.result, "child-result", "", "internal: where to write the side's JSON result")
	fs.StringVar(&c.natsURL, "child-nats", "", "internal: NATS URL for a worker process")
	fs.BoolVar(&c.workerProcs, "worker-procs", false, "run NATS and each tagsweep worker in a process of its own, so that the peak RSS of a worker, of NATS and of the coordinator are each their own")
	fs.DurationVar(&c.retryDelay, "baseline-retry-delay", time.Minute, "the baseline's sleep before retrying a failed list call (the pruner's is 1 minute)")
	fs.IntVar(&c.slots, "slots", 4, "shards each tagsweep worker processes at once")
	fs.IntVar(&c.deleteConc, "delete-concurrency", 256, "tag deletes in flight per tagsweep worker")
	fs.IntVar(&c.concurrency, "ceiling-concurrency", 64, "requests in flight in the ceiling measurement")
	fs.BoolVar(&c.verbose, "v", false, "log the tagsweep side's warnings to stderr")
	fs.Float64Var(&c.rcDecrease, "rc-decrease", 0, "workers' adaptive rate control: multiplicative decrease (0 = registry.DefaultRateDecrease)")
	fs.Float64Var(&c.rcIncrease, "rc-increase", 0, "workers' adaptive rate control: additive increase (0 = registry.DefaultRateIncrease)")
	fs.BoolVar(&c.recordDigests, "record-digests", false, "internal: the tagsweep run records digests")
	fs.IntVar(&c.restoreConc, "restore-concurrency", 1024, "restore: tags restored at once (each one request in flight at a time)")
	fs.BoolVar(&c.restoreQuay, "restore-quay", false, "internal: the run before the restore records no digests, and the restore goes through Quay's tag history")
}

func (c childFlags) rules() (*policy.Rules, proto.Policy, error) {
	cutoff, err := time.Parse(time.RFC3339, c.cutoff)
	if err != nil {
		return nil, proto.Policy{}, fmt.Errorf("cutoff: %w", err)
	}
	p := policy.Defaults()
	p.Cutoff = cutoff
	r, err := policy.New(p)
	return r, p, err
}

func (c childFlags) logger() *slog.Logger {
	if !c.verbose {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// runChild runs one side and writes its result; the exit status is 0 whenever a result was
// written, even for a failed run (the result says what failed).
func runChild(c childFlags) error {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if c.timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, c.timeout)
		defer stop()
	}
	stopProfile, err := startCPUProfile(c.cpuProfile)
	if err != nil {
		return err
	}
	var res sideResult
	start := time.Now()
	switch c.side {
	case "baseline":
		err = childBaseline(ctx, c, &res)
	case "tagsweep":
		err = childTagsweep(ctx, c, &res, false)
	case "tagsweep-ls":
		err = childTagsweep(ctx, c, &res, true)
	case "lister":
		err = childLister(ctx, c, &res)
	case "worker":
		err = childWorker(ctx, c)
	case "nats":
		err = childNATS(ctx, c)
	case "ceiling":
		err = childCeiling(ctx, c, &res)
	case "restore":
		err = childRestore(ctx, c, &res)
	default:
		err = fmt.Errorf("unknown side %q", c.side)
	}
	stopProfile()
	if perr := writeMemProfile(c.memProfile); perr != nil {
		err = errors.Join(err, perr)
	}
	res.Side = c.side
	if err != nil {
		res.Error = err.Error()
	}
	res.finish(start)
	if c.result == "" {
		return err
	}
	return writeResult(c.result, res)
}

func childBaseline(ctx context.Context, c childFlags, res *sideResult) error {
	rules, _, err := c.rules()
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 128
	counts := runBaseline(ctx, baselineConfig{
		Base: "http://" + c.registry, Repo: c.repo, Rules: rules,
		PageSize: 100, Pool: 100, Retries: 5, RetryDelay: c.retryDelay,
		Client: &http.Client{Transport: tr},
	})
	res.Scanned, res.Eligible, res.Deleted, res.DeleteFailed = counts.Scanned, counts.Targeted, counts.Deleted, counts.Failed
	res.ListFailed = counts.ListFailed
	if ctx.Err() != nil {
		return fmt.Errorf("baseline: %w", ctx.Err())
	}
	return nil
}

// childLister is the sequential lister of the ls scenario: the existing pruner's listing
// (tags/list?n=100, one page after the other) counting the tags, without deciding or
// deleting anything.
func childLister(ctx context.Context, c childFlags, res *sideResult) error {
	client, err := newClient(c.registry, 2, nil)
	if err != nil {
		return err
	}
	last := ""
	for {
		page, err := client.List(ctx, c.repo, last, 100)
		if err != nil {
			return err
		}
		res.Scanned += int64(len(page.Tags))
		if len(page.Tags) == 0 || !page.More {
			return nil
		}
		last = page.Tags[len(page.Tags)-1]
	}
}

// childTagsweep runs tagsweep: a pruning run, or with inventory an inventory (tagsweep ls).
func childTagsweep(ctx context.Context, c childFlags, res *sideResult, inventory bool) error {
	_, p, err := c.rules()
	if err != nil {
		return err
	}
	p.RecordDigests = c.recordDigests
	cfg := stackConfig{
		Registry: c.registry, Repo: c.repo, Policy: p, Workers: c.workers, Slots: c.slots,
		DeleteConc: c.deleteConc, SplitAfter: c.splitAfter, Log: c.logger(), Inventory: inventory,
		RateControl: registry.RateControlConfig{Decrease: c.rcDecrease, Increase: c.rcIncrease},
	}
	natsURL := "" // NATS in this process
	if c.workerProcs {
		url, stopNATS, err := spawnNATS(ctx, c)
		if err != nil {
			return err
		}
		defer func() { res.NATSPeakRSS = stopNATS() }()
		natsURL = url
		cfg.WorkerProcs = func(ctx context.Context, url string) (func() []int64, error) {
			return spawnWorkers(ctx, c, url)
		}
	}
	rig, err := testrig.Start(ctx, testrig.Config{URL: natsURL})
	if err != nil {
		return err
	}
	defer rig.Close()
	out, err := runStack(ctx, rig, cfg)
	t := out.Report.Tags
	res.Scanned, res.Eligible, res.Deleted, res.AlreadyGone, res.DeleteFailed = t.Scanned, t.Eligible, t.Deleted, t.AlreadyGone, t.DeleteFailed
	res.Shards = len(out.Shards)
	longest, median, splits := shardDurations(out.Shards)
	res.LongestShard, res.MedianShard, res.SplitShards = longest.Seconds(), median.Seconds(), splits
	res.WorkerPeakRSS = out.WorkerRSS
	res.ShardSpans, res.SlotsBusyAfter = shardSpans(out.Shards, out.Report.StartedAt, c.workers*c.slots)
	return err
}

// shardSpans returns each shard's [claimed, finished] in Unix milliseconds (a shard not
// finished ends now), and the time from start until slots shards were held at once (-1:
// never).
func shardSpans(shards []proto.ShardRecord, start time.Time, slots int) ([][2]int64, float64) {
	var spans [][2]int64
	type edge struct {
		at    int64
		delta int
	}
	var edges []edge
	for _, s := range shards {
		if s.StartedAt.IsZero() {
			continue
		}
		end := time.Now()
		if !s.FinishedAt.IsZero() {
			end = s.FinishedAt
		}
		sp := [2]int64{s.StartedAt.UnixMilli(), end.UnixMilli()}
		spans = append(spans, sp)
		edges = append(edges, edge{sp[0], 1}, edge{sp[1], -1})
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if a.at != b.at {
			return cmp.Compare(a.at, b.at)
		}
		return cmp.Compare(a.delta, b.delta) // a shard that ends frees its slot before the next starts
	})
	held := 0
	for _, e := range edges {
		if held += e.delta; held >= slots {
			return spans, time.UnixMilli(e.at).Sub(start).Seconds()
		}
	}
	return spans, -1
}

// spawnWorkers starts c.workers worker processes against the NATS at url; wait stops them
// (SIGTERM: a graceful stop) and returns each one's peak RSS.
func spawnWorkers(ctx context.Context, c childFlags, url string) (func() []int64, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tagsweep-bench-workers-")
	if err != nil {
		return nil, err
	}
	var cmds []*exec.Cmd
	var results []string
	for i := range c.workers {
		path := filepath.Join(dir, "worker-"+strconv.Itoa(i+1)+".json")
		args := []string{"-child", "worker", "-child-registry", c.registry, "-child-repo", c.repo,
			"-child-nats", url, "-child-result", path, "-slots", strconv.Itoa(c.slots),
			"-delete-concurrency", strconv.Itoa(c.deleteConc), "-split-after", c.splitAfter.String(),
			"-child-cutoff", c.cutoff, "-timeout", c.timeout.String(),
			"-rc-decrease", fmt.Sprint(c.rcDecrease), "-rc-increase", fmt.Sprint(c.rcIncrease)}
		if c.verbose {
			args = append(args, "-v")
		}
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		cmds, results = append(cmds, cmd), append(results, path)
	}
	var once sync.Once
	var rss []int64
	wait := func() []int64 {
		once.Do(func() {
			for _, cmd := range cmds {
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
			for i, cmd := range cmds {
				_ = cmd.Wait()
				r, err := readResult(results[i])
				if err == nil {
					rss = append(rss, r.PeakRSSBytes)
				}
			}
			_ = os.RemoveAll(dir)
		})
		return rss
	}
	context.AfterFunc(ctx, func() { wait() })
	return wait, nil
}

// spawnNATS starts the NATS server in a process of its own; stop ends it and returns its
// peak RSS.
func spawnNATS(ctx context.Context, c childFlags) (url string, stop func() int64, err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "tagsweep-bench-nats-proc-")
	if err != nil {
		return "", nil, err
	}
	urlFile, result := filepath.Join(dir, "url"), filepath.Join(dir, "result.json")
	cmd := exec.Command(exe, "-child", "nats", "-child-nats", urlFile, "-child-result", result, "-timeout", c.timeout.String())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop = func() int64 {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		r, _ := readResult(result)
		_ = os.RemoveAll(dir)
		return r.PeakRSSBytes
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if b, err := os.ReadFile(urlFile); err == nil && len(b) > 0 && b[len(b)-1] == '\n' {
			return string(b[:len(b)-1]), stop, nil
		}
		select {
		case <-ctx.Done():
			stop()
			return "", nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	stop()
	return "", nil, errors.New("the NATS process did not start within 30s")
}

// childNATS serves JetStream on a random loopback port until told to stop; it writes its
// URL, newline-terminated, to the file c.natsURL names.
func childNATS(ctx context.Context, c childFlags) error {
	dir, err := os.MkdirTemp("", "tagsweep-bench-js-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ns, err := natsserver.Start(natsserver.Config{Dir: dir, Listen: "127.0.0.1:-1"})
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := os.WriteFile(c.natsURL, []byte(ns.ClientURL()+"\n"), 0o644); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// childWorker runs one worker until it is told to stop.
func childWorker(ctx context.Context, c childFlags) error {
	nc, err := nats.Connect(c.natsURL, nats.Name("tagsweep-bench-worker"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := stackConfig{Registry: c.registry, Slots: c.slots, DeleteConc: c.deleteConc, SplitAfter: c.splitAfter, Log: c.logger(),
		RateControl: registry.RateControlConfig{Decrease: c.rcDecrease, Increase: c.rcIncrease}}
	w, err := worker.New(cfg.workerConfig(fmt.Sprintf("bench-proc-%d", os.Getpid())), js, cfg.Log)
	if err != nil {
		return err
	}
	return w.Run(ctx)
}

// childCeiling measures the request rate the registry client and the sim reach together:
// one lister feeding c.concurrency goroutines that delete every listed tag, through the same
// registry client the workers use, with nothing else in the way (no NATS, no policy, no
// checkpoints). One list per 100 deletes, as in a backlog run.
func childCeiling(ctx context.Context, c childFlags, res *sideResult) error {
	client, err := newClient(c.registry, c.concurrency+1, nil)
	if err != nil {
		return err
	}
	tags := make(chan string, 4096)
	var deleted, failed, gone int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range c.concurrency {
		wg.Go(func() {
			var d, f, g int64
			for t := range tags {
				switch err := client.Delete(ctx, c.repo, t); {
				case err == nil:
					d++
				case errors.Is(err, registry.ErrNotFound):
					g++
				default:
					f++
				}
			}
			mu.Lock()
			deleted, failed, gone = deleted+d, failed+f, gone+g
			mu.Unlock()
		})
	}
	var listErr error
	last := ""
	for {
		page, err := client.List(ctx, c.repo, last, 100)
		if err != nil {
			listErr = err
			break
		}
		for _, t := range page.Tags {
			res.Scanned++
			tags <- t
		}
		if len(page.Tags) == 0 {
			break
		}
		last = page.Tags[len(page.Tags)-1]
	}
	close(tags)
	wg.Wait()
	res.Eligible, res.Deleted, res.DeleteFailed, res.AlreadyGone = res.Scanned, deleted, failed, gone
	return listErr
}

func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// writeMemProfile writes the allocation profile (every allocation since start, sampled).
func writeMemProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}
