package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/config"
)

// clearEnv keeps the developer's TAGSWEEP_* and QUAY_* variables out of the tests.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, f := range config.Flags() {
		for _, e := range f.Env {
			t.Setenv(e, "")
			os.Unsetenv(e)
		}
	}
}

// execute runs the command line args as main would, returning the exit code and output.
func execute(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot(&out, &errb)
	root.SetArgs(args)
	code = exitCode(&errb, root.ExecuteContext(ctx))
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	var buf bytes.Buffer
	if err := printVersion(&buf, "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); !strings.HasPrefix(got, "tagsweep v1.2.3 (") || !strings.Contains(got, "go1.") {
		t.Errorf("printVersion(v1.2.3) = %q, want tagsweep v1.2.3 (… go1.…)", got)
	}
	code, out, errOut := execute(t, t.Context(), "version")
	if code != 0 || !strings.HasPrefix(out, "tagsweep ") || errOut != "" {
		t.Errorf("tagsweep version = %d, %q, %q; want 0, \"tagsweep …\", \"\"", code, out, errOut)
	}
	code, flagOut, errOut := execute(t, t.Context(), "--version")
	if code != 0 || flagOut != out || errOut != "" {
		t.Errorf("tagsweep --version = %d, %q, %q; want 0 and what tagsweep version prints, %q", code, flagOut, errOut, out)
	}
}

func TestConfigErrorRunsNothing(t *testing.T) {
	clearEnv(t)
	dataDir := t.TempDir()
	report := dataDir + "/report.json"
	code, out, errOut := execute(t, t.Context(), "run",
		"--data-dir", dataDir, "--report", report,
		"--registry", "https://quay.io", "--repository", "OpenShift/CI",
		"--ttl-days", "-3", "--shards", "-2", "--workers", "0", "--keep-regex", "[z-a", "--log-format", "xml")
	if code != exitError {
		t.Errorf("exit code = %d, want %d", code, exitError)
	}
	for _, flag := range []string{"--registry", "--repository", "--ttl-days", "--shards", "--workers", "--keep-regex", "--log-format"} {
		if !strings.Contains(errOut, "\n  "+flag+": ") {
			t.Errorf("stderr does not list %s:\n%s", flag, errOut)
		}
	}
	if !strings.HasPrefix(errOut, "tagsweep: invalid configuration:\n") {
		t.Errorf("stderr = %q, want it to start with the configuration error", errOut)
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing (nothing ran)", out)
	}
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("data dir holds %d entries, want none: the run must not have started", len(entries))
	}
}

// TestReportCheckedFirst: a report that could not be written at the end is refused before
// the run starts, not found after it deleted tags.
func TestReportCheckedFirst(t *testing.T) {
	clearEnv(t)
	dataDir := t.TempDir()
	report := filepath.Join(t.TempDir(), "missing", "report.json")
	code, out, errOut := execute(t, t.Context(), "run", "--demo", "--demo-tags", "10", "--confirm",
		"--data-dir", dataDir, "--report", report)
	if code != exitError || !strings.Contains(errOut, "--report: "+strconv.Quote(report)+": directory") {
		t.Errorf("run with a report in a missing directory = %d, %q; want 1 and --report named", code, errOut)
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing (nothing ran)", out)
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("data dir holds %d entries, want none: the run must not have started", len(entries))
	}
}

func TestConfigFileTypo(t *testing.T) {
	clearEnv(t)
	path := t.TempDir() + "/tagsweep.yaml"
	if err := os.WriteFile(path, []byte("registry: quay.io\nrepository: [openshift/ci]\nttl-dayz: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := execute(t, t.Context(), "coordinator", "--config", path)
	if code != exitError || !strings.Contains(errOut, `unknown key "ttl-dayz" (did you mean "ttl-days"?)`) {
		t.Errorf("coordinator with a typo in its file = %d, %q; want 1 and the key named", code, errOut)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"ok", nil, 0},
		{"plain error", errors.New("connection refused"), 1},
		{"config error", withCode(exitError, &configError{errors.New("--x: bad")}), 1},
		{"failed shards", withCode(exitFailed, errors.New("2 shards failed")), 2},
		{"wrapped failed", errors.Join(errors.New("ctx"), withCode(exitFailed, errors.New("stopped"))), 2},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		if got := exitCode(&buf, tc.err); got != tc.want {
			t.Errorf("exitCode(%s) = %d, want %d", tc.name, got, tc.want)
		}
		if (tc.err == nil) != (buf.Len() == 0) {
			t.Errorf("exitCode(%s) printed %q", tc.name, buf.String())
		}
	}
}

func TestNotifyContext(t *testing.T) {
	exited := make(chan int, 1)
	var stderr bytes.Buffer
	ctx, stop := notifyContext(t.Context(), &lockedWriter{w: &stderr}, func(code int) { exited <- code })
	defer stop()

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("context not cancelled by the first SIGTERM")
	}
	select {
	case code := <-exited:
		t.Fatalf("exit(%d) after one signal, want a graceful stop", code)
	default:
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code != exitFailed {
			t.Errorf("exit code after the second signal = %d, want %d", code, exitFailed)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after the second signal")
	}
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		format, level string
		wantPrefix    string
		wantDebug     bool
	}{
		{"json", "info", `{"time":`, false},
		{"text", "debug", "time=", true},
		{"auto", "warn", `{"time":`, false}, // a buffer is not a terminal
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		log := newLogger(&buf, tc.format, tc.level)
		log.Debug("d")
		log.Warn("w", "run", "r1", "latency", 20*time.Millisecond, slog.Group("g", "wait", 90*time.Second))
		out := buf.String()
		if !strings.Contains(out, "20ms") || !strings.Contains(out, "1m30s") || strings.Contains(out, "20000000") {
			t.Errorf("newLogger(%s, %s) wrote %q, want durations as text (20ms, 1m30s)", tc.format, tc.level, out)
		}
		if !strings.HasPrefix(out, tc.wantPrefix) || !strings.Contains(out, "r1") {
			t.Errorf("newLogger(%s, %s) wrote %q, want lines starting %q", tc.format, tc.level, out, tc.wantPrefix)
		}
		if got := strings.Contains(out, `"d"`) || strings.Contains(out, "msg=d"); got != tc.wantDebug {
			t.Errorf("newLogger(%s, %s) debug shown = %v, want %v", tc.format, tc.level, got, tc.wantDebug)
		}
	}
}
