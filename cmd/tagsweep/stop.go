package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/natsserver"
	"github.com/tagsweep/tagsweep/proto"
)

// runStop stops run runID gracefully: it records the stop request in the run's record
// (ledger.RequestStop), so that workers claim no more of its shards and hand back the ones
// they hold with their checkpoints, and the run's coordinator marks it stopped and exits 2.
// It waits up to cfg.Stop.Wait for that. A run whose coordinator is not alive is marked stopped
// at once, as nobody else will.
//
// The run's ledger is the NATS at cfg.NATSURL, or, with cfg.DataDir, the store of a
// `tagsweep run` that has ended: a running `tagsweep run` holds its store's lock (it is
// stopped with Ctrl-C or SIGINT instead, which stops its run the same way).
func runStop(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, runID string) error {
	if !proto.ValidToken(runID) {
		return withCode(exitError, fmt.Errorf("run %q: not a run ID", runID))
	}
	js, where, closeAll, err := connectLedger(cfg, "tagsweep-stop", log)
	if errors.Is(err, natsserver.ErrLocked) {
		return withCode(exitError, fmt.Errorf("%w\n"+
			"A `tagsweep run` is using this store, and only it can reach its run while it runs: stop it with Ctrl-C, "+
			"or send its process SIGINT or SIGTERM (kill -INT PID). It hands back its shards with their checkpoints "+
			"and records the run stopped; resume it later with the same --data-dir and --run-id", err))
	}
	if err != nil {
		return err
	}
	defer closeAll()
	l, err := ledger.Bind(ctx, js, ledgerConfig(cfg))
	if errors.Is(err, ledger.ErrNoLedger) {
		return fmt.Errorf("run %s: not found (no tagsweep runs in %s)", runID, where)
	}
	if err != nil {
		return err
	}
	req := proto.StopRequest{Reason: cmp.Or(cfg.Stop.Reason, "stopped by an operator"), By: whoAmI(), At: time.Now()}
	rec, err := l.RequestStop(ctx, runID, req)
	switch {
	case errors.Is(err, ledger.ErrNotFound):
		return fmt.Errorf("run %s: not found in %s", runID, where)
	case errors.Is(err, ledger.ErrNotRunning):
		cur, _, rerr := l.Run(ctx, runID)
		if rerr == nil && cur.State == proto.RunStopped {
			fmt.Fprintf(w, "Run %s is already stopped: %s\n", runID, cur.Reason)
			return nil
		}
		return fmt.Errorf("run %s has ended (%s): there is nothing to stop", runID, cur.State)
	case err != nil:
		return err
	}
	fmt.Fprintf(w, "Stop requested for run %s: %s\n", runID, rec.Stop.Reason)
	alive, lease, err := l.Coordinator(ctx, rec)
	if err != nil {
		return err
	}
	if !alive {
		// Nobody will mark it stopped: do it now. Workers still holding its shards hand them
		// back as they see the request.
		if rec, err = l.MarkStopped(ctx, runID, ""); err != nil && !errors.Is(err, ledger.ErrNotRunning) {
			return err
		}
		return reportStopped(ctx, w, l, runID)
	}
	if cfg.Stop.Wait <= 0 {
		fmt.Fprintf(w, "Its coordinator (%s) marks it stopped once its workers have handed back their shards; "+
			"see tagsweep status %s.\n", lease.Holder, runID)
		return nil
	}
	fmt.Fprintf(w, "Waiting up to %s for its coordinator (%s) to mark it stopped once its workers have handed back their shards...\n",
		config.FormatDuration(cfg.Stop.Wait), lease.Holder)
	wctx, cancel := context.WithTimeout(ctx, cfg.Stop.Wait)
	defer cancel()
	if err := waitStopped(wctx, l, runID); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		fmt.Fprintf(w, "The stop is requested but not done after %s: its coordinator marks the run stopped once its "+
			"workers have handed back their shards; see tagsweep status %s.\n", config.FormatDuration(cfg.Stop.Wait), runID)
		return nil
	}
	return reportStopped(ctx, w, l, runID)
}

// waitStopped waits until the run is no longer running, watching its record.
func waitStopped(ctx context.Context, l *ledger.Ledger, runID string) error {
	for {
		updates, err := l.WatchRun(ctx, runID)
		if err != nil {
			return err
		}
		for r := range updates {
			if r.State.Finished() && r.State != proto.RunAbandoned {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// reportStopped prints what a stopped run left.
func reportStopped(ctx context.Context, w io.Writer, l *ledger.Ledger, runID string) error {
	rec, _, err := l.Run(ctx, runID)
	if err != nil {
		return err
	}
	shards, err := l.Shards(ctx, runID)
	if err != nil {
		return err
	}
	var done, left int
	for _, s := range shards {
		if s.State == proto.StateDone {
			done++
		} else if !s.State.Terminal() {
			left++
		}
	}
	fmt.Fprintf(w, "Run %s is %s: %d of %d shards done, %d left with their checkpoints. Resume it with --run-id %s.\n",
		runID, rec.State, done, len(shards), left, runID)
	return nil
}

// whoAmI names the operator in a stop request: user@host.
func whoAmI() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	host, _ := os.Hostname()
	return name + "@" + cmp.Or(host, "unknown")
}
