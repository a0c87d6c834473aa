package proc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/internal/testnet"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/test/invariant"
)

const repo = "openshift/ci"

// output collects a process's stdout and stderr.
type output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// proc is one process of a deployment.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *output
	done chan struct{} // closed when the process has exited
	code int           // exit code once done; -1 when a signal ended it
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process (nothing if it has exited).
func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if p.exited() {
		return
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("%s: signal %s: %v", p.name, sig, err)
	}
}

// wait waits for the process to exit, at most d, and returns its exit code.
func (p *proc) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s", p.name, d)
		return 0
	}
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	p.wait(t, 30*time.Second)
}

// waitFor polls the process's output until it holds want n times, for at most d. It fails
// the test if the process exits first (unless the text is already there).
func (p *proc) waitFor(t testing.TB, want string, n int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if strings.Count(p.out.String(), want) >= n {
			return
		}
		if p.exited() {
			t.Fatalf("%s exited (code %d) before printing %q %d times", p.name, p.code, want, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q %d times within %s", p.name, want, n, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// workerID is the owner name a worker process writes into the shards it claims, read from
// its "worker started" log line.
func (p *proc) workerID(t testing.TB) string {
	t.Helper()
	p.waitFor(t, `"msg":"worker started"`, 1, 30*time.Second)
	for line := range strings.Lines(p.out.String()) {
		var l struct {
			Msg    string `json:"msg"`
			Worker string `json:"worker"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "worker started" && l.Worker != "" {
			return l.Worker
		}
	}
	t.Fatalf("%s: no worker ID in its log", p.name)
	return ""
}

// natsNode is how to (re)start one NATS server of a deployment.
type natsNode struct {
	listen, dir, name, cluster, routes string
	p                                  *proc
}

// deployment is the Kubernetes topology on loopback: NATS, the sim, workers, coordinators.
type deployment struct {
	t        testing.TB
	procs    []*proc
	nats     []*natsNode
	natsURL  string
	simAddr  string
	ackWait  string
	replicas int

	mu sync.Mutex
	nc *nats.Conn // the test's own connection, for reading records

	secure *secureNATS // nil: NATS without authentication or TLS
}

type deployConfig struct {
	nodes   int           // NATS servers: 1 (default) or 3
	latency time.Duration // the sim's latency per request
	ackWait time.Duration // default 2s
	// secure turns NATS authentication (a user per role, allowed only tagsweep's subjects)
	// and TLS (client certificates verified) on.
	secure bool
}

func deploy(t testing.TB, cfg deployConfig) *deployment {
	t.Helper()
	d := &deployment{t: t, ackWait: (max(cfg.ackWait, 2*time.Second)).String(), replicas: 1}
	// Cleanups run last-registered first: the store directories' removal must be registered
	// before stopAll, or it runs while the NATS processes still write to them.
	stores := t.TempDir()
	t.Cleanup(d.stopAll)
	if cfg.secure {
		d.secure = newSecureNATS(t)
	}
	n := max(cfg.nodes, 1)
	clients := testnet.FreeAddrs(t, n)
	var routes []string
	if n > 1 {
		routes = testnet.FreeAddrs(t, n)
		d.replicas = n
	}
	var urls []string
	for i := range n {
		name := fmt.Sprintf("nats-%d", i)
		dir := filepath.Join(stores, name)
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		node := &natsNode{listen: clients[i], dir: dir, name: name}
		if n > 1 {
			node.cluster, node.routes = routes[i], strings.Join(routes, ",")
		}
		d.nats = append(d.nats, node)
		urls = append(urls, "nats://"+clients[i])
	}
	d.natsURL = strings.Join(urls, ",")
	for i := range d.nats {
		d.startNATS(i, false)
	}
	for i := range d.nats {
		d.nats[i].p.waitFor(t, "nats ready", 1, 30*time.Second)
	}
	sim := d.start("sim", "sim", "--addr", "127.0.0.1:0", "--tags", "0", "--admin", "--repository", repo,
		"--latency", cfg.latency.String(), "--log-level", "warn")
	sim.waitFor(t, "admin endpoint", 1, 30*time.Second)
	for line := range strings.Lines(sim.out.String()) {
		if rest, ok := strings.CutPrefix(line, "serving "); ok {
			d.simAddr, _, _ = strings.Cut(rest, "/")
		}
	}
	if d.simAddr == "" {
		t.Fatalf("sim did not say where it serves: %q", sim.out.String())
	}
	return d
}

// env is the environment of every process: the test's, without tagsweep's own variables.
func env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TAGSWEEP_") && !strings.HasPrefix(kv, "QUAY_") {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}

// start runs the tagsweep binary with args.
func (d *deployment) start(name string, args ...string) *proc {
	return d.startCmd(name, exec.Command(bin, args...))
}

func (d *deployment) startCmd(name string, cmd *exec.Cmd) *proc {
	d.t.Helper()
	p := &proc{name: name, cmd: cmd, out: &output{}, done: make(chan struct{})}
	if cmd.Env == nil {
		cmd.Env = env()
	}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if err != nil && p.code == 0 {
			p.code = -1
		}
		close(p.done)
	}()
	d.mu.Lock()
	d.procs = append(d.procs, p)
	d.mu.Unlock()
	return p
}

// startNATS (re)starts NATS node i, in this test binary's helper mode; wait says whether to
// wait until it serves.
func (d *deployment) startNATS(i int, wait bool) {
	n := d.nats[i]
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = env(helperEnv+"=nats", envNATSListen+"="+n.listen, envNATSDir+"="+n.dir, envNATSName+"="+n.name,
		envNATSCluster+"="+n.cluster, envNATSRoutes+"="+n.routes)
	if d.secure != nil {
		cmd.Env = append(cmd.Env, envNATSConf+"="+d.secure.conf)
	}
	n.p = d.startCmd(n.name, cmd)
	if wait {
		n.p.waitFor(d.t, "nats ready", 1, 30*time.Second)
	}
}

// natsArgs are the flags every process of the deployment shares: they must agree.
func (d *deployment) natsArgs() []string {
	return []string{"--nats-url", d.natsURL, "--ack-wait", d.ackWait, "--max-deliver", "5",
		"--nats-replicas", fmt.Sprint(d.replicas), "--http-addr=", "--log-format", "json"}
}

// trustArgs are the NATS credentials and TLS files of role ("coordinator" or "worker") on a
// secure deployment, none otherwise.
func (d *deployment) trustArgs(role string) []string {
	if d.secure == nil {
		return nil
	}
	return d.secure.args(role)
}

// worker starts a worker process with small pages, so a shard takes many.
func (d *deployment) worker(name string, extra ...string) *proc {
	args := append([]string{"worker", "--slots", "2", "--page-size", "10"}, d.natsArgs()...)
	args = append(args, d.trustArgs("worker")...)
	p := d.start(name, append(args, extra...)...)
	return p
}

// coordinator starts a coordinator process for runID (a real run unless extra says otherwise).
func (d *deployment) coordinator(name, runID string, extra ...string) *proc {
	args := append([]string{"coordinator", "--registry", d.simAddr, "--plain-http", "--repository", repo,
		"--run-id", runID, "--confirm", "--ttl-days", "5"}, d.natsArgs()...)
	args = append(args, d.trustArgs("coordinator")...)
	return d.start(name, append(args, extra...)...)
}

func (d *deployment) stopAll() {
	d.mu.Lock()
	procs := slices.Clone(d.procs)
	nc := d.nc
	d.mu.Unlock()
	if nc != nil {
		nc.Close()
	}
	for _, p := range procs {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGCONT) // a frozen process cannot die otherwise
			_ = p.cmd.Process.Kill()
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
		}
	}
	if d.t.Failed() {
		for _, p := range procs {
			lines := strings.Split(strings.TrimSpace(p.out.String()), "\n")
			d.t.Logf("--- last lines of %s (exit %d):\n%s", p.name, p.code, strings.Join(lines[max(0, len(lines)-25):], "\n"))
		}
	}
}

// simState is the sim's admin answer (cmd/tagsweep simadmin.go).
type simState struct {
	Tags    []string `json:"tags"`
	Deleted []string `json:"deleted"`
	Lists   []struct {
		Last string `json:"last"`
		N    int    `json:"n"`
	} `json:"lists"`
	Requests      map[string]int64 `json:"requests"`
	Faults        map[string]int64 `json:"faults"`
	DigestDeletes int64            `json:"digest_deletes"`
}

func (d *deployment) admin(method, path string, body any) *http.Response {
	d.t.Helper()
	var buf bytes.Buffer
	if body != nil {
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			d.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, "http://"+d.simAddr+"/_sim/"+path, &buf)
	if err != nil {
		d.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		d.t.Fatalf("sim admin %s %s: %v", method, path, err)
	}
	if resp.StatusCode >= 300 {
		resp.Body.Close()
		d.t.Fatalf("sim admin %s %s: %s", method, path, resp.Status)
	}
	return resp
}

func (d *deployment) loadTags(tags []string) {
	d.admin(http.MethodPost, "tags?repo="+repo, tags).Body.Close()
}

func (d *deployment) setFaults(f map[string]any) {
	d.admin(http.MethodPut, "faults", f).Body.Close()
}

func (d *deployment) sim() simState {
	d.t.Helper()
	resp := d.admin(http.MethodGet, "state?repo="+repo, nil)
	defer resp.Body.Close()
	var st simState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		d.t.Fatal(err)
	}
	return st
}

// waitDeleted polls the sim until at least n tags are deleted.
func (d *deployment) waitDeleted(n int, within time.Duration) {
	d.t.Helper()
	deadline := time.Now().Add(within)
	for len(d.sim().Deleted) < n {
		if time.Now().After(deadline) {
			d.t.Fatalf("fewer than %d tags deleted after %s", n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// state returns the key-value bucket of run and shard records, read through the test's own
// connection (never through a ledger, whose Open would write the queue's configuration).
func (d *deployment) state() jetstream.KeyValue {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nc == nil {
		opts := []nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}
		if d.secure != nil {
			opts = append(opts, d.secure.options("coordinator")...)
		}
		nc, err := nats.Connect(d.natsURL, opts...)
		if err != nil {
			d.t.Fatal(err)
		}
		d.nc = nc
	}
	js, err := jetstream.New(d.nc)
	if err != nil {
		d.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, proto.BucketState)
	if err != nil {
		d.t.Fatalf("state bucket: %v", err)
	}
	return kv
}

func record[T any](d *deployment, key string) T {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var v T
	e, err := d.state().Get(ctx, key)
	if err != nil {
		d.t.Fatalf("reading %s: %v", key, err)
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		d.t.Fatal(err)
	}
	return v
}

// hasRun reports whether the run is recorded.
func (d *deployment) hasRun(runID string) bool {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.state().Get(ctx, proto.RunKey(runID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	if err != nil {
		d.t.Fatalf("reading run %s: %v", runID, err)
	}
	return true
}

func (d *deployment) run(runID string) proto.RunRecord {
	return record[proto.RunRecord](d, proto.RunKey(runID))
}

// shards returns a run's shard records.
func (d *deployment) shards(runID string) []proto.ShardRecord {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lister, err := d.state().ListKeysFiltered(ctx, proto.ShardKeyPrefix(runID))
	if err != nil {
		d.t.Fatal(err)
	}
	var out []proto.ShardRecord
	for k := range lister.Keys() {
		out = append(out, record[proto.ShardRecord](d, k))
	}
	return out
}

// check checks the invariant for run runID against the sim, with the run's own policy and
// cutoff, and that nothing was deleted by digest.
func (d *deployment) check(runID string, initial []string, exitOK bool) simState {
	d.t.Helper()
	st := d.sim()
	invariant.Check(d.t, invariant.State{Policy: d.run(runID).Policy, Initial: initial, Deleted: st.Deleted,
		Remaining: st.Tags, ExitOK: exitOK})
	if st.DigestDeletes != 0 {
		d.t.Errorf("%d deletes by digest, want none", st.DigestDeletes)
	}
	return st
}

// dayTags makes n prune tags on the day daysAgo days back (one shard), a second apart.
func dayTags(n, daysAgo int) []string {
	day := time.Now().UTC().AddDate(0, 0, -daysAgo).Truncate(24 * time.Hour)
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s_prune_ci-op-x_pipeline_%04d", day.Add(time.Duration(i)*time.Second).Format("20060102150405"), i))
	}
	return out
}
