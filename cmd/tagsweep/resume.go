package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/coordinator"
)

// resumeRecorded checks a command whose --run-id names a recorded run against the run's
// record, before anything runs. A resumed run is the same run: every setting the command was
// given explicitly (a flag, the environment or the file) must be the record's, or the command
// is refused naming every difference; the settings it was not given are taken from the record,
// and a banner says so, and whether the run is DELETING or a DRY RUN. A run ID that names no
// recorded run starts a new run, which needs --registry and --repository. It returns cfg with
// the recorded settings.
func resumeRecorded(ctx context.Context, w io.Writer, js jetstream.JetStream, cfg config.Config) (config.Config, error) {
	if cfg.RunID == "" {
		return cfg, nil
	}
	run, ok, err := coordinator.Lookup(ctx, js, ledgerConfig(cfg), cfg.RunID)
	if err != nil {
		return cfg, fmt.Errorf("reading run %s: %w", cfg.RunID, err)
	}
	if !ok {
		var missing []string
		if cfg.Registry == "" {
			missing = append(missing, "--registry")
		}
		if len(cfg.Repositories) == 0 {
			missing = append(missing, "--repository")
		}
		if len(missing) > 0 {
			return cfg, withCode(exitError, fmt.Errorf("run %s is not recorded: to start it, give %s", cfg.RunID, strings.Join(missing, " and ")))
		}
		return cfg, nil
	}
	ccfg := coordinatorConfig(cfg)
	if d := coordinator.Differences(ccfg, run); len(d) > 0 {
		return cfg, withCode(exitError, fmt.Errorf("run %s was recorded with other settings; resume it with --run-id alone "+
			"(its recorded settings), or start a new run with another --run-id: %w:\n  %s",
			cfg.RunID, coordinator.ErrSettingsDiffer, strings.Join(d, "\n  ")))
	}
	p := run.Policy
	if !cfg.Demo.Enabled { // a demo serves its own registry
		cfg.Registry, cfg.PlainHTTP = run.Registry, run.PlainHTTP
	}
	cfg.Repositories = slices.Clone(run.Repositories)
	cfg.Confirm = !p.DryRun
	cfg.PruneRegex, cfg.KeepRegex, cfg.TagTimezone = p.PrunePattern, slices.Clone(p.KeepPatterns), p.TimeZone
	cfg.MaxDeletes = p.MaxDeletes
	cfg.Preserve, cfg.RepoAliases = run.Preservation.Enabled, slices.Clone(run.Preservation.Aliases)
	fmt.Fprintf(w, "Resuming run %s with the settings it was recorded with:\n  %s\n", cfg.RunID,
		strings.ReplaceAll(coordinator.Describe(run), "\n", "\n  "))
	return cfg, nil
}

// given says which run settings cfg was given explicitly, for the coordinator to hold a
// resumed run's record to.
func given(cfg config.Config) coordinator.Given {
	return coordinator.Given{
		Registry:     cfg.Given("registry") && !cfg.Demo.Enabled,
		DryRun:       cfg.Given("confirm"),
		TTL:          cfg.Given("ttl") || cfg.Given("ttl-days"),
		PrunePattern: cfg.Given("prune-regex"),
		KeepPatterns: cfg.Given("keep-regex"),
		TimeZone:     cfg.Given("tag-timezone"),
		MaxDeletes:   cfg.Given("max-deletes"),
		Preserve:     cfg.Given("preserve-payloads"),
		Aliases:      cfg.Given("repository-alias"),
	}
}
