package proc

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/natsserver"
)

// TestRunDataDirLocked: a second `tagsweep run` on the --data-dir of a running one exits 1,
// names the process that holds the store, and leaves the first one running.
func TestRunDataDirLocked(t *testing.T) {
	d := &deployment{t: t}
	dataDir := t.TempDir()
	t.Cleanup(d.stopAll) // after TempDir's removal is registered: runs first
	// A slow simulated registry keeps the first run planning while the second starts.
	args := []string{"run", "--demo", "--demo-tags", "2000", "--demo-latency", "500ms", "--workers", "1",
		"--data-dir", dataDir, "--log-format", "json"}
	first := d.start("first", args...)

	pid := first.cmd.Process.Pid
	deadline := time.Now().Add(30 * time.Second)
	for {
		var h natsserver.Holder
		if b, err := os.ReadFile(filepath.Join(dataDir, natsserver.LockFile)); err == nil && json.Unmarshal(b, &h) == nil && h.PID == pid {
			break
		}
		if first.exited() {
			t.Fatalf("first run exited (code %d) before locking its data dir", first.code)
		}
		if time.Now().After(deadline) {
			t.Fatalf("first run did not lock %s within 30s", dataDir)
		}
		time.Sleep(20 * time.Millisecond)
	}

	second := d.start("second", args...)
	if code := second.wait(t, 60*time.Second); code != 1 {
		t.Errorf("second run exit code = %d, want 1", code)
	}
	if out := second.out.String(); !strings.Contains(out, fmt.Sprintf("in use by process %d on host", pid)) {
		t.Errorf("second run output does not name the holder, pid %d:\n%s", pid, out)
	}
	if first.exited() {
		t.Fatalf("first run exited (code %d) while the second was refused", first.code)
	}
	first.signal(t, syscall.SIGTERM)
	first.wait(t, 60*time.Second)
}
