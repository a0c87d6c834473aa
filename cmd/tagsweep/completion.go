package main

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// Shell completion: cobra's `tagsweep completion bash|zsh|fish|powershell` writes the
// script; what it completes beyond commands and flag names is registered here: the values
// of the flags that take one of a few words, and run IDs for `status` and `audit`.

// flagChoices are the values of the flags that take one of a few words (config.Validate
// accepts exactly these).
var flagChoices = map[string][]cobra.Completion{
	"log-format": {
		cobra.CompletionWithDesc("auto", "text on a terminal, JSON otherwise"),
		cobra.CompletionWithDesc("text", "key=value lines"),
		cobra.CompletionWithDesc("json", "one JSON object per line"),
	},
	"log-level": {"debug", "info", "warn", "error"},
}

// registerCompletions registers the value completions of c's flags.
func registerCompletions(c *cobra.Command) {
	for name, choices := range flagChoices {
		if c.Flags().Lookup(name) != nil {
			_ = c.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(choices, cobra.ShellCompDirectiveNoFileComp))
		}
	}
}

// completionTimeout bounds the NATS round trips of completing a run ID: a shell waits for it.
const completionTimeout = 3 * time.Second

// completeRunIDs completes the RUN argument of command name with the run IDs recorded at
// the command's --nats-url (flags, environment and --config apply), newest first, each
// described by its state and start. When NATS cannot be reached it offers nothing.
func completeRunIDs(name string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cfg, err := config.Decode(name, cmd.Flags())
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmp.Or[context.Context](cmd.Context(), context.Background()), completionTimeout)
		defer cancel()
		runs, err := recordedRuns(ctx, cfg)
		if err != nil {
			cobra.CompDebugln("tagsweep: listing runs: "+err.Error(), false) // BASH_COMP_DEBUG_FILE
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return runCompletions(runs, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// runCompletions are the IDs of runs starting with prefix, newest first, described.
func runCompletions(runs []proto.RunRecord, prefix string) []cobra.Completion {
	slices.SortFunc(runs, func(a, b proto.RunRecord) int { return b.StartedAt.Compare(a.StartedAt) })
	var out []cobra.Completion
	for _, r := range runs {
		if strings.HasPrefix(r.RunID, prefix) {
			desc := string(r.State) + ", started " + r.StartedAt.UTC().Format(time.RFC3339)
			if r.Policy.DryRun {
				desc += ", dry run"
			}
			out = append(out, cobra.CompletionWithDesc(r.RunID, desc))
		}
	}
	return out
}

// recordedRuns reads the run records at cfg's NATS, creating nothing.
func recordedRuns(ctx context.Context, cfg config.Config) ([]proto.RunRecord, error) {
	deadline, _ := ctx.Deadline()
	js, closeAll, err := connectJetStream(cfg, "tagsweep-completion", nil, nats.Timeout(time.Until(deadline)), nats.NoReconnect())
	if err != nil {
		return nil, err
	}
	defer closeAll()
	l, err := ledger.Bind(ctx, js, ledger.Config{})
	if err != nil {
		return nil, err
	}
	return l.Runs(ctx)
}
