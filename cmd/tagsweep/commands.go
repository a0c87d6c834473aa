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
1 on a configuration or connection error.`,
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
flight are checkpointed and handed back.`,
		Args: cobra.NoArgs,
	}, config.CmdWorker, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, _ []string) error {
		return runWorker(ctx, w, log, cfg)
	})
}

func newStatusCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "status [RUN]",
		Short: "Show runs, or one run's shards, from the ledger",
		Args:  cobra.MaximumNArgs(1),
	}, config.CmdStatus, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, args []string) error {
		run := ""
		if len(args) == 1 {
			run = args[0]
		}
		return runStatus(ctx, w, log, cfg, run)
	})
}

func newSimCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "sim",
		Short: "Serve a simulated registry with a generated namespace until interrupted",
		Example: `  tagsweep sim --addr 127.0.0.1:5000 --repository openshift/ci --tags 200000 --days 30 --latency 20ms --seed 1
  tagsweep run --registry 127.0.0.1:5000 --plain-http --repository openshift/ci`,
		Args: cobra.NoArgs,
	}, config.CmdSim, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, _ []string) error {
		return runSim(ctx, w, log, cfg)
	})
}
