package natsserver

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStartLocksDir: a second server on a store directory in use is refused, naming the
// process that holds it, until the first one closes.
func TestStartLocksDir(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, MaxMemory: 32 << 20, MaxStore: 64 << 20}
	first, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			first.Close()
		}
	})

	second, err := Start(cfg)
	if err == nil {
		second.Close()
		t.Fatal("second Start on the same dir succeeded, want it refused")
	}
	le, ok := errors.AsType[*LockedError](err)
	if !ok || !errors.Is(err, ErrLocked) {
		t.Fatalf("second Start error = %v, want a *LockedError wrapping ErrLocked", err)
	}
	host, _ := os.Hostname()
	if le.Holder.PID != os.Getpid() || le.Holder.Host != host || time.Since(le.Holder.Started) > time.Hour {
		t.Errorf("holder = %+v, want pid %d on %s started just now", le.Holder, os.Getpid(), host)
	}
	if msg := err.Error(); !strings.Contains(msg, "process "+strconv.Itoa(os.Getpid())) || !strings.Contains(msg, host) {
		t.Errorf("error %q does not name the holder's pid and host", msg)
	}

	first.Close()
	closed = true
	third, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start after the holder closed: %v", err)
	}
	third.Close()
}

// TestLockDirHolderNotWritten: a lock taken by a process that has not written its details
// yet is still refused, and says so rather than name a stale holder.
func TestLockDirHolderNotWritten(t *testing.T) {
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if held, err := tryLock(f); err != nil || !held {
		t.Fatalf("tryLock = %v, %v, want held", held, err)
	}
	l, err := lockDir(dir)
	if err == nil {
		l.release()
		t.Fatal("lockDir succeeded on a held lock")
	}
	le, ok := errors.AsType[*LockedError](err)
	if !ok || le.Holder != (Holder{}) || !strings.Contains(err.Error(), "not written its details") {
		t.Fatalf("lockDir error = %v, want a *LockedError without holder details", err)
	}
}
