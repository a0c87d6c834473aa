package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/restore"
	"github.com/tagsweep/tagsweep/telemetry"
)

func newRestoreCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "restore RUN",
		Short: "Undo a run: put back the tags it deleted, each at the digest it pointed to",
		Long: `restore puts back the tags that run RUN deleted, each at the manifest digest it pointed
to, reading what the run deleted from its audit events: from NATS JetStream at --nats-url,
or from the store of a 'tagsweep run' at --data-dir. It is a dry run unless --confirm.

A run with --record-digests kept each deleted tag's digest: restore reads the manifest by
digest and writes it under the tag again, on any OCI registry, as long as the registry's
garbage collector has not removed the manifest. Otherwise the digest comes from Quay's tag
history (API v1, --token), and the tag is restored through Quay's time machine, within the
namespace's time machine window (two weeks by default).

A tag that exists again is left alone and counted as skipped, so an interrupted restore is
simply run again. Exit status: 0 when every tag is back (or present), 2 when a tag could not
be put back (the reasons are in the summary, the report and the restore's audit events,
under the restore ID it prints), 1 on a configuration or connection error.`,
		Example: `  # What would come back, and from where:
  tagsweep restore --nats-url nats://nats:4222 nightly-20261122
  # Put back the tags of one day only:
  QUAY_OAUTH_TOKEN=... tagsweep restore --nats-url nats://nats:4222 --registry quay.io \
      --tag-regex '^20261115' --confirm nightly-20261122
  # Undo a 'tagsweep run --data-dir /var/lib/tagsweep':
  tagsweep restore --data-dir /var/lib/tagsweep --confirm --report restore.json run-20261122`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRunIDs(config.CmdRestore),
	}, config.CmdRestore, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, args []string) error {
		return runRestore(ctx, w, log, cfg, args[0])
	})
}

// runRestore undoes run runID: it connects to the run's ledger (NATS at --nats-url, or the
// store at --data-dir), restores through the run's registry, prints the summary and writes the
// report. Exit status: nil when every selected tag is back or present, exitFailed when a tag
// could not be put back or the restore was interrupted, exitError when it could not start.
func runRestore(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, runID string) error {
	if !proto.ValidToken(runID) {
		return withCode(exitError, fmt.Errorf("run %q: not a run ID", runID))
	}
	js, where, closeLedger, err := connectLedger(cfg, "tagsweep-restore", log)
	if err != nil {
		return withCode(exitError, err)
	}
	defer closeLedger()
	l, err := ledger.Bind(ctx, js, ledgerConfig(cfg))
	if errors.Is(err, ledger.ErrNoLedger) {
		return withCode(exitError, fmt.Errorf("run %s: %w (no tagsweep runs in %s)", runID, errRunNotFound, where))
	}
	if err != nil {
		return withCode(exitError, err)
	}
	rs, err := newRestore(ctx, l, cfg, runID, log)
	if err != nil {
		return withCode(exitError, err)
	}
	rep, err := rs.Run(ctx)
	return reportRestore(ctx, w, cfg, rep, err)
}

// newRestore is the restore of run runID that cfg asks for, through the registry the run
// recorded (which this restore must be allowed to talk to): by manifest, and, given a
// token, through Quay's tag history.
func newRestore(ctx context.Context, l *ledger.Ledger, cfg config.Config, runID string, log *slog.Logger) (*restore.Restore, error) {
	run, _, err := l.Run(ctx, runID)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, fmt.Errorf("run %s: %w: %w", runID, err, errRunNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading run %s: %w", runID, err)
	}
	if err := allowed(cfg, run); err != nil {
		return nil, err
	}
	regs := newRegistries(telemetry.New())
	regLog := log.With("repo_registry", run.Registry)
	manifests, err := registry.NewRestorer(regs.config(cfg, run.Registry, run.PlainHTTP, cfg.Restore.Concurrency, regLog))
	if err != nil {
		return nil, err
	}
	var history restore.History
	if cfg.Token.Reveal() != "" {
		q, err := regs.quayClient(cfg, run.Registry, run.PlainHTTP, regLog)
		if err != nil {
			return nil, err
		}
		history = q
	}
	var tagRE *regexp.Regexp
	if cfg.Restore.TagRegex != "" {
		tagRE = regexp.MustCompile(cfg.Restore.TagRegex) // validated with the configuration
	}
	return restore.New(restore.Config{
		RunID:       runID,
		ID:          restoreID(runID, time.Now()),
		TagRegex:    tagRE,
		Confirm:     cfg.Confirm,
		Concurrency: cfg.Restore.Concurrency,
		MaxRPS:      cfg.MaxRPS,
		Manifests:   manifests,
		History:     history,
	}, l, log)
}

// reportRestore prints the summary of a restore that returned rep and err and writes its
// report (also for an interrupted one), and returns the command's error: nil when every tag
// is back or present, exitFailed when a tag could not be put back or the restore was
// interrupted, exitError when it could not be carried out.
func reportRestore(ctx context.Context, w io.Writer, cfg config.Config, rep proto.RestoreReport, err error) error {
	if errors.Is(err, restore.ErrNothingDeleted) {
		fmt.Fprintf(w, "Run %s was a dry run: it deleted nothing, so there is nothing to restore.\n", rep.Of)
		return nil
	}
	if err == nil || ctx.Err() != nil {
		if rep.Of != "" {
			printRestoreSummary(w, rep)
			if ctx.Err() != nil {
				fmt.Fprintf(w, "Interrupted: run restore again to finish; the tags already back are left alone.\n")
			}
		}
		if cfg.Report != "" {
			if werr := writeReport(cfg.Report, rep); werr != nil {
				return errors.Join(withCode(exitFailed, err), werr)
			}
		}
	}
	switch {
	case err != nil && ctx.Err() != nil:
		return withCode(exitFailed, err)
	case err != nil:
		return withCode(exitError, err)
	case rep.Tags.Failed > 0:
		return withCode(exitFailed, fmt.Errorf("restore %s: %d of %d tags could not be put back", rep.RestoreID, rep.Tags.Failed, rep.Tags.Deleted))
	}
	return nil
}

// restoreID names a restore of runID started at t: the run's ID (cut to 35 characters),
// "-restore-", the UTC time to the second and 4 random hex digits (two restores may start in
// the same second), a valid token of at most 63 characters.
func restoreID(runID string, t time.Time) string {
	return fmt.Sprintf("%s-restore-%s-%04x", runID[:min(len(runID), 35)], t.UTC().Format("20060102150405"), rand.N(1<<16))
}

// printRestoreSummary prints what a restore did, in the style of the run's summary.
func printRestoreSummary(w io.Writer, r proto.RestoreReport) {
	t := r.Tags
	if r.DryRun {
		fmt.Fprintf(w, "DRY RUN: nothing was restored. %d tags would be put back; run again with --confirm to restore them.\n", t.Restored)
	}
	fmt.Fprintf(w, "Restore: %s\n", r.RestoreID)
	fmt.Fprintf(w, "Undoing run: %s\n", r.Of)
	fmt.Fprintf(w, "Repositories: %s\n", strings.Join(r.Repositories, ", "))
	if r.DigestsRecorded {
		fmt.Fprintf(w, "Digests: recorded by the run (restored by manifest)\n")
	} else {
		fmt.Fprintf(w, "Digests: not recorded by the run (restored through Quay's tag history)\n")
	}
	if r.TagRegex != "" {
		fmt.Fprintf(w, "Tags matching: %s\n", r.TagRegex)
	}
	fmt.Fprintf(w, "Duration: %s\n", time.Duration(r.DurationSeconds*float64(time.Second)).Round(time.Millisecond))
	fmt.Fprintf(w, "Tags the run deleted: %d\n", t.Deleted)
	if r.DryRun {
		fmt.Fprintf(w, "Tags that would be restored: %d\n", t.Restored)
	} else {
		fmt.Fprintf(w, "Tags restored: %d\n", t.Restored)
	}
	fmt.Fprintf(w, "Tags already present (left alone): %d\n", t.Skipped)
	fmt.Fprintf(w, "Tags that could not be restored: %d\n", t.Failed)
	if len(r.Failures) > 0 {
		fmt.Fprintf(w, "Failures (the first %d; every one is in the restore's audit events):\n", len(r.Failures))
		for _, f := range r.Failures {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
	if r.Reason != "" {
		fmt.Fprintf(w, "Stopped: %s\n", r.Reason)
	}
}
