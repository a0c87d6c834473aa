package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/tagsweep/tagsweep/config"
)

// app is what every command shares: where output goes.
type app struct {
	stdout, stderr io.Writer
	// live is stderr when it is a terminal: logs pass through it, and `run` and
	// `coordinator` keep their progress line at its bottom. nil otherwise.
	live *liveLine
}

// newRoot builds the command tree. Output goes to stdout (results, the summary) and
// stderr (logs, errors).
func newRoot(stdout, stderr io.Writer) *cobra.Command {
	a := &app{stdout: stdout, stderr: stderr}
	if f, ok := stderr.(*os.File); ok && isTerminal(f) {
		a.live = newLiveLine(f, termWidth(f))
		a.stderr = a.live
	}
	root := &cobra.Command{
		Use:   "tagsweep",
		Short: "Prune old tags from very large container-registry repositories, in parallel",
		Long: `tagsweep prunes old tags from container-registry repositories holding millions of tags.
A coordinator splits a repository's tag namespace into key-range shards by the timestamp
prefix of tag names (YYYYMMDDHHMMSS_prune_...) and publishes them on NATS JetStream;
workers list their shard with keyset pagination and delete eligible tags in parallel.

Every flag can also be set in the environment (TAGSWEEP_<FLAG>, e.g. TAGSWEEP_TTL_DAYS)
or in a YAML file given with --config (ttl-days: 5); flags win over the environment,
which wins over the file. Runs are dry runs unless --confirm is given.

Exit codes: 0 ok; 1 configuration or connection error; 2 shards failed or the run stopped.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionLine(version), // --version prints what the version command prints
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(a.stderr)
	root.AddCommand(
		newVersionCmd(a),
		newRunCmd(a),
		newCoordinatorCmd(a),
		newWorkerCmd(a),
		newStatusCmd(a),
		newAuditCmd(a),
		newStopCmd(a),
		newRestoreCmd(a),
		newSimCmd(a),
		newLsCmd(a),
	)
	return root
}

// setup loads and validates the configuration of command name from cmd's flags and
// builds the logger. Any problem is a configError listing every bad field.
func (a *app) setup(cmd *cobra.Command, name string) (config.Config, *slog.Logger, error) {
	cfg, err := config.Load(name, cmd.Flags())
	if err != nil {
		return config.Config{}, nil, withCode(exitError, &configError{err})
	}
	log := newLogger(a.stderr, cfg.LogFormat, cfg.LogLevel)
	log.Debug("configuration", "config", cfg)
	return cfg, log, nil
}

// newLogger builds the process's one logger: text on a terminal and JSON otherwise
// (format auto), or as asked. format and level are validated by config.Validate.
func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationString}
	if format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// durationString logs a duration as text ("20ms", "1m30s"), which both handlers would
// otherwise write as integer nanoseconds in JSON.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	if _, ok := w.(*liveLine); ok {
		return true // only ever made on a terminal
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
