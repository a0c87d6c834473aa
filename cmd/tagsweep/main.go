// Command tagsweep prunes old tags from container-registry repositories holding millions
// of tags: a coordinator shards a repository's tag namespace by the timestamp prefix of tag
// names and publishes the shards on NATS JetStream, and workers list and prune them in
// parallel. See README.md and docs/.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	_ "time/tzdata" // --tag-timezone works on images without a zone database
)

// Exit codes. Operators' jobs and alerts depend on them.
const (
	exitOK     = 0
	exitError  = 1 // configuration or connection error: nothing (more) ran
	exitFailed = 2 // the run ended with failed shards, or was stopped
)

func main() {
	os.Exit(exitCode(os.Stderr, run()))
}

func run() error {
	ctx, stop := notifyContext(context.Background(), os.Stderr, os.Exit)
	defer stop()
	root := newRoot(os.Stdout, os.Stderr)
	root.SetArgs(os.Args[1:])
	return root.ExecuteContext(ctx)
}

// exitError carries the process exit code of an error.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

// withCode marks err with an exit code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &codeError{code: code, err: err}
}

// configError is a configuration that failed to load or validate; it prints every
// problem on its own line.
type configError struct{ err error }

func (e *configError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	return "invalid configuration:\n  " + strings.Join(lines, "\n  ")
}
func (e *configError) Unwrap() error { return e.err }

// exitCode prints err (if any) to w and returns the process exit code for it.
func exitCode(w io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(w, "tagsweep:", err)
	if ce, ok := errors.AsType[*codeError](err); ok {
		return ce.code
	}
	return exitError
}

// notifyContext returns a context cancelled by the first SIGINT or SIGTERM (a graceful
// stop: components finish or hand back their work). A second signal exits at once,
// through exit, with exitFailed.
func notifyContext(parent context.Context, stderr io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-ch:
			fmt.Fprintf(stderr, "tagsweep: %s: stopping; send it again to exit at once\n", sig)
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-ch:
			fmt.Fprintf(stderr, "tagsweep: %s again: exiting now\n", sig)
			exit(exitFailed)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel()
	}
}
