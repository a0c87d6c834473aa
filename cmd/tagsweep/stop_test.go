package main

import (
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/proto"
)

// TestStopDataDir: stop reaches the store of a tagsweep run that has ended and marks its run
// stopped there; while a tagsweep run holds the store, it says to stop that process instead.
func TestStopDataDir(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	srv, err := natsserver.Start(natsserver.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	l := openLedger(t, srv)
	if _, err := l.CreateRun(t.Context(), proto.RunRecord{RunID: "killed", Repositories: []string{"openshift/ci"},
		State: proto.RunRunning, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	// The store is in use (as by a running tagsweep run): stop cannot open it and says why.
	code, out, errOut := execute(t, t.Context(), "stop", "--data-dir", dir, "killed")
	if code != exitError || !strings.Contains(errOut, "store directory is in use") || !strings.Contains(errOut, "Ctrl-C") {
		t.Fatalf("stop on a store in use: exit %d, want %d and advice to stop that process\n%s\n%s", code, exitError, out, errOut)
	}

	srv.Close() // the tagsweep run is gone (killed: its run is still recorded running)
	code, out, errOut = execute(t, t.Context(), "stop", "--data-dir", dir, "killed", "--reason", "cleanup")
	if code != 0 || !strings.Contains(out, "Run killed is stopped") {
		t.Fatalf("stop on the store of an ended run: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, _ = execute(t, t.Context(), "stop", "--data-dir", dir, "killed")
	if code != 0 || !strings.Contains(out, "already stopped") || !strings.Contains(out, "cleanup") {
		t.Fatalf("stopping a stopped run again: exit %d\n%s", code, out)
	}
	if code, _, errOut = execute(t, t.Context(), "stop", "--data-dir", dir, "nope"); code != exitError || !strings.Contains(errOut, "not found") {
		t.Fatalf("stop of an unknown run: exit %d\n%s", code, errOut)
	}
}
