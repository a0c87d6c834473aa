package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/tagsweep/tagsweep/config"
)

// resumeAdvice tells the operator of a run that did not finish how it can go on. It depends
// on the command that ran it: `coordinator` runs against a NATS that outlives it, so any of its
// runs can be resumed; `run` keeps its store in --data-dir, or in a temporary directory that is
// removed at exit, and a run whose store is gone cannot be resumed.
type resumeAdvice struct {
	command string // config.CmdRun or config.CmdCoordinator
	dataDir string // run's --data-dir
	runID   string
}

func adviceFor(cfg config.Config, runID string) resumeAdvice {
	return resumeAdvice{command: cfg.Command, dataDir: cfg.DataDir, runID: runID}
}

// resumable reports whether the run's store survives this process.
func (a resumeAdvice) resumable() bool { return a.command != config.CmdRun || a.dataDir != "" }

// resumeCommand is the command line that resumes the run.
func (a resumeAdvice) resumeCommand() string {
	if a.command == config.CmdRun {
		return fmt.Sprintf("tagsweep run --data-dir %s --run-id %s", shellWord(a.dataDir), a.runID)
	}
	return fmt.Sprintf("tagsweep coordinator --run-id %s", a.runID)
}

// notResumable explains why a `run` without --data-dir cannot be resumed and what to do.
func (a resumeAdvice) notResumable() string {
	return fmt.Sprintf("Run %s cannot be resumed: without --data-dir, `tagsweep run` keeps its store in a temporary "+
		"directory that is removed when it exits. Run `tagsweep run` again to start a new run (tags already deleted "+
		"stay deleted; it lists the rest again). To make a run resumable, give it --data-dir DIR: an interrupted, "+
		"stopped or failed run can then be resumed with the same --data-dir and --run-id.", a.runID)
}

// failed is printed after the summary of a run that ended with failed shards. capped says the
// run used its whole delete cap, which makes a resume stop at once.
func (a resumeAdvice) failed(w io.Writer, failedShards int, capped bool) {
	switch {
	case capped:
		fmt.Fprintf(w, "Run %s used its whole delete cap (--max-deletes): resuming it would stop at once. "+
			"To delete more, start a new run (without --run-id %s), with a higher --max-deletes if need be.\n", a.runID, a.runID)
	case failedShards == 0:
	case !a.resumable():
		fmt.Fprintln(w, a.notResumable())
	default:
		fmt.Fprintf(w, "Resume the failed shards from their cursors: %s\n", a.resumeCommand())
	}
}

// interrupted is printed when the command was interrupted before the run ended.
func (a resumeAdvice) interrupted(w io.Writer) {
	if !a.resumable() {
		fmt.Fprintf(w, "Interrupted. %s\n", a.notResumable())
		return
	}
	fmt.Fprintf(w, "Interrupted: run %s did not finish; its shards keep their checkpoints.\nResume it: %s\n",
		a.runID, a.resumeCommand())
}

// shellWord quotes s for a POSIX shell when it holds anything but plain path characters.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// stopped is printed after the summary of a run an operator stopped.
func (a resumeAdvice) stopped(w io.Writer) {
	if !a.resumable() {
		fmt.Fprintf(w, "Stopped. %s\n", a.notResumable())
		return
	}
	fmt.Fprintf(w, "Run %s was stopped; its unfinished shards keep their checkpoints.\nResume it: %s\n", a.runID, a.resumeCommand())
}
