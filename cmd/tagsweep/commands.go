package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/tagsweep/tagsweep/config"
)

// configured builds a command whose flags come from the config table and whose RunE
// loads and validates the configuration, then calls fn. Nothing runs when the
// configuration is bad.
func (a *app) configured(c *cobra.Command, name string,
	fn func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, args []string) error) *cobra.Command {
	config.Register(name, c.Flags())
	registerCompletions(c)
	c.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, log, err := a.setup(cmd, name)
		if err != nil {
			return err
		}
		return fn(cmd.Context(), a.stdout, log, cfg, args)
	}
	return c
}

func newRunCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "run",
		Short: "Prune in one process: embedded NATS JetStream, the coordinator and --workers workers",
		Long: `run prunes in one process: it starts an embedded NATS JetStream server, the coordinator
and --workers workers, and prints the run's summary. With --demo it also serves a simulated
registry with a generated namespace and prunes that (a dry run unless --confirm).`,
		Example: `  tagsweep run --demo
  tagsweep run --registry quay.io --repository openshift/ci --docker-config ~/.docker/config.json
  tagsweep run --registry quay.io --repository openshift/ci --ttl-days 60 --confirm --report report.json`,
		Args: cobra.NoArgs,
	}, config.CmdRun, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, _ []string) error {
		return runRun(ctx, w, log, cfg, a.live)
	})
}

func newCoordinatorCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "coordinator",
		Short: "Plan and publish one run against an external NATS JetStream, track it, exit",
		Long: `coordinator plans one run (cutoff, shards), publishes its shards on NATS JetStream at
--nats-url, tracks them until every shard is done or failed, prints the summary and exits:
0 when every shard is done, 2 when any failed (or the delete cap stopped the run),
1 on a configuration or connection error. Reusing the --run-id of an unfinished run
resumes it. Progress shows as a status line on a terminal, as log lines otherwise.`,
		Example: `  # Dry run first: counts what would go, deletes nothing.
  tagsweep coordinator --nats-url nats://nats:4222 --registry quay.io --repository openshift/ci --ttl-days 5

  # Delete, at most 500000 tags, with a run ID that a retry resumes.
  tagsweep coordinator --config /etc/tagsweep/tagsweep.yaml --confirm --max-deletes 500000 --run-id nightly-20261122`,
		Args: cobra.NoArgs,
	}, config.CmdCoordinator, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, _ []string) error {
		return runCoordinator(ctx, w, log, cfg, a.live)
	})
}

func newWorkerCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "worker",
		Short: "Process shards from an external NATS JetStream until stopped",
		Long: `worker takes shards from NATS JetStream at --nats-url, lists and prunes them, and serves
/healthz, /readyz and /metrics on --http-addr. SIGTERM stops it gracefully: shards in
flight are checkpointed and handed back. /readyz answers 200 only while the worker is
connected to NATS and bound to the shard consumer.`,
		Example: `  tagsweep worker --nats-url nats://nats:4222 --registry quay.io --docker-config /secrets/config.json
  QUAY_OAUTH_TOKEN=... tagsweep worker --config /etc/tagsweep/tagsweep.yaml --slots 8 --max-rps 40`,
		Args: cobra.NoArgs,
	}, config.CmdWorker, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, _ []string) error {
		return runWorker(ctx, w, log, cfg)
	})
}

func newStatusCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "status [RUN]",
		Short: "Show runs, or one run's shards, from the ledger",
		Long: `status lists the runs recorded in NATS JetStream at --nats-url (newest first: state,
mode, start, duration, repositories, shards done, tags deleted, whether the run's
coordinator is alive, reason), or, given a run ID, that run's shards: state, range,
cursor, owner, attempts, heartbeat (stale ones flagged), counters and last error.

-o table (the default) fits 120 columns, cutting long values short with "…"; -o wide
shows every column in full; -o json writes one JSON document whose fields are listed in
docs/operations.md. --state keeps only runs (or, with RUN, shards) in the given states.
It only reads.`,
		Example: `  tagsweep status --nats-url nats://nats:4222
  tagsweep status --nats-url nats://nats:4222 --state running,abandoned
  tagsweep status --nats-url nats://nats:4222 nightly-20261122 -o wide
  tagsweep status nightly-20261122 -o json | jq '.shards[] | select(.state == "failed") | .last_error'`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: completeRunIDs(config.CmdStatus),
	}, config.CmdStatus, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, args []string) error {
		run := ""
		if len(args) == 1 {
			run = args[0]
		}
		return runStatus(ctx, w, log, cfg, run)
	})
}

func newAuditCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "audit RUN",
		Short: "Export a run's audit trail (every tag it deleted, or would have) as JSON lines or CSV",
		Long: `audit exports the audit stream of run RUN from NATS JetStream at --nats-url: one JSON
object per line (-o jsonl, the default) for every tag the run deleted, found already gone,
failed to delete, or (in a dry run) would have deleted, in the order they were recorded:

  {"run":"…","shard":"…","repository":"…","tag":"…","outcome":"deleted","time":"…"}

outcome is deleted, already_gone, failed or dry_run; error is set for failed ones. -o csv
writes the same fields as CSV under a header line. --output-file writes a file, replaced
only once the export is complete (--output FILE, its old spelling, still works and warns).
The events are kept for --audit-max-age (90 days by default), within
--audit-max-bytes. It only reads. It exits 1 for a run that has neither a
record nor events.`,
		Example: `  tagsweep audit --nats-url nats://nats:4222 nightly-20261122 > audit.jsonl
  tagsweep audit --nats-url nats://nats:4222 nightly-20261122 -o csv --output-file audit.csv
  tagsweep audit nightly-20261122 | jq -r 'select(.outcome == "failed") | [.tag, .error] | @tsv'`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRunIDs(config.CmdAudit),
	}, config.CmdAudit, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, args []string) error {
		return runAudit(ctx, w, log, cfg, args[0])
	})
}

func newStopCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "stop RUN",
		Short: "Stop a run gracefully: its shards are handed back with their checkpoints, and it can be resumed",
		Long: `stop asks run RUN to stop: workers claim no more of its shards and hand back the ones
they hold once their page is checkpointed, and the run's coordinator then marks it stopped
and exits 2. stop waits up to --wait for that. A run whose coordinator is not alive is
marked stopped at once. Resume a stopped run by running its coordinator (or tagsweep run
with the same --data-dir) again with its --run-id.

The run is found in NATS JetStream at --nats-url, or with --data-dir in the store of a
tagsweep run that has ended (an interrupted or killed one). A tagsweep run that is still
running holds its store's lock, so stop cannot reach it: stop it with Ctrl-C (SIGINT or
SIGTERM), which stops its run the same way and records it stopped.

It exits 0 once the stop is requested (and, within --wait, done), and 1 for a run that
does not exist or has already ended otherwise.`,
		Example: `  tagsweep stop --nats-url nats://nats:4222 nightly-20261122 --reason "registry maintenance"
  tagsweep stop --data-dir /var/lib/tagsweep 20261122T031500Z-3fa2`,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: completeRunIDs(config.CmdStop),
	}, config.CmdStop, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, args []string) error {
		return runStop(ctx, w, log, cfg, args[0])
	})
}

func newSimCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "sim",
		Short: "Serve a simulated registry with a generated namespace until interrupted",
		Long: `sim serves a simulated container registry on --addr until interrupted: the OCI
distribution API as Quay answers it (tags/list pages capped at 100 with Link headers,
DELETE by tag), holding in each --repository a generated namespace of --tags tags whose
YYYYMMDDHHMMSS_prune_ timestamps span the --days ending now, with floating tags, strays
and release payloads among them, the same for the same --seed. --latency is added to
every request. Point run, coordinator or a worker at it with --plain-http to try tagsweep
without a real registry; it deletes nothing but its own tags, which it keeps in memory.
With --admin it also serves /_sim/ to loopback clients, for tests: its tags, the
deletions and list requests it saw, counters, loading tags and injecting faults.`,
		Example: `  tagsweep sim --addr 127.0.0.1:5000 --repository openshift/ci --tags 200000 --days 30 --latency 20ms --seed 1
  tagsweep run --registry 127.0.0.1:5000 --plain-http --repository openshift/ci`,
		Args: cobra.NoArgs,
	}, config.CmdSim, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, _ []string) error {
		return runSim(ctx, w, log, cfg)
	})
}
