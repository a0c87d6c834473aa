package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// auditLine is one line of `tagsweep audit`: what became of one tag a run acted on (or, in
// a dry run, would have deleted). The field names are the export's contract (docs/operations.md).
type auditLine struct {
	Run        string        `json:"run"`
	Shard      string        `json:"shard"`
	Repository string        `json:"repository"`
	Tag        string        `json:"tag"`
	Outcome    proto.Outcome `json:"outcome"` // deleted, already_gone, failed or dry_run; a restore's: restored, skipped, failed, dry_run
	Time       time.Time     `json:"time"`
	Error      string        `json:"error,omitempty"`
	Digest     string        `json:"digest,omitempty"` // recorded before the delete (--record-digests); a restore's: where the tag went back
	Of         string        `json:"of,omitempty"`     // a restore's: the run it undoes
}

// errRunNotFound: audit was asked for a run that has neither a record nor audit events.
var errRunNotFound = errors.New("no such run")

// runAudit writes run's audit events as JSON lines or CSV (cfg.Output) to w, or to
// cfg.OutputFile (replaced only once the export is complete). It only reads: it creates or updates no stream or bucket.
// A run with a record but no events (nothing was eligible) exports nothing and succeeds; a
// run with neither is an error.
func runAudit(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, runID string) error {
	if !proto.ValidToken(runID) {
		return withCode(exitError, fmt.Errorf("run %q: not a run ID", runID))
	}
	js, closeAll, err := connectJetStream(cfg, "tagsweep-audit", log)
	if err != nil {
		return err
	}
	defer closeAll()
	l, err := ledger.Bind(ctx, js, ledger.Config{})
	if errors.Is(err, ledger.ErrNoLedger) {
		return fmt.Errorf("run %s: %w (no tagsweep runs at %s)", runID, errRunNotFound, redactNATSURL(cfg.NATSURL))
	}
	if err != nil {
		return err
	}

	format, file, deprecated := cfg.AuditOutput()
	if deprecated {
		log.Warn("--output FILE is deprecated: --output (-o) names the format (jsonl or csv); give the file with --output-file",
			slog.String("output_file", file))
	}
	out, commit, abort, err := auditOutput(w, file)
	if err != nil {
		return err
	}
	defer abort()
	export := exportAudit
	if format == config.OutputCSV {
		export = exportAuditCSV
	}
	n, err := export(out, l.Audit(ctx, runID))
	if err != nil {
		return fmt.Errorf("exporting the audit of run %s after %d events: %w", runID, n, err)
	}
	if n == 0 {
		_, _, err := l.Run(ctx, runID)
		if errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("run %s: %w (no run record and no audit events at %s)", runID, errRunNotFound, redactNATSURL(cfg.NATSURL))
		}
		if err != nil {
			return fmt.Errorf("reading run %s: %w", runID, err)
		}
	}
	if err := commit(); err != nil {
		return err
	}
	log.Info("audit exported", slog.String("run", runID), slog.Int("events", n), slog.String("format", format), slog.String("output", cmp.Or(file, "stdout")))
	return nil
}

// exportAudit writes every event of events to w as a JSON line and returns how many it
// wrote. A missing audit stream is no events.
func exportAudit(w io.Writer, events iter.Seq2[proto.AuditEvent, error]) (int, error) {
	enc := json.NewEncoder(w) // one value per line
	n := 0
	for ev, err := range events {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		line := auditLine{Run: ev.RunID, Shard: ev.ShardID, Repository: ev.Repository, Tag: ev.Tag,
			Outcome: ev.Outcome, Time: ev.Time.UTC(), Error: ev.Error, Digest: ev.Digest, Of: ev.Of}
		if err := enc.Encode(line); err != nil {
			return n, fmt.Errorf("writing: %w", err)
		}
		n++
	}
	return n, nil
}

// auditCSVHeader is the first line of `audit -o csv`: the JSON lines' fields, in order.
var auditCSVHeader = []string{"run", "shard", "repository", "tag", "outcome", "time", "error", "digest", "of"}

// exportAuditCSV is exportAudit as CSV (RFC 4180) with a header line.
func exportAuditCSV(w io.Writer, events iter.Seq2[proto.AuditEvent, error]) (int, error) {
	cw := csv.NewWriter(w)
	if err := cw.Write(auditCSVHeader); err != nil {
		return 0, fmt.Errorf("writing: %w", err)
	}
	n := 0
	for ev, err := range events {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return n, err
		}
		rec := []string{ev.RunID, ev.ShardID, ev.Repository, ev.Tag, string(ev.Outcome), ev.Time.UTC().Format(time.RFC3339Nano), ev.Error,
			ev.Digest, ev.Of}
		if err := cw.Write(rec); err != nil {
			return n, fmt.Errorf("writing: %w", err)
		}
		n++
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return n, fmt.Errorf("writing: %w", err)
	}
	return n, nil
}

// auditOutput returns where the export goes: w (buffered) when path is empty, else a
// temporary file next to path. commit flushes and, for a file, renames it into place; abort
// (always safe to call, also after commit) removes an uncommitted temporary file, so that a
// failed export never leaves a file that looks complete.
func auditOutput(w io.Writer, path string) (out io.Writer, commit func() error, abort func(), err error) {
	if path == "" {
		bw := bufio.NewWriterSize(w, 64<<10)
		return bw, bw.Flush, func() { _ = bw.Flush() }, nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("writing %s: %w", path, err)
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	done := false
	commit = func() error {
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := f.Chmod(0o644); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		if err := os.Rename(f.Name(), path); err != nil {
			return fmt.Errorf("writing %s: %w", path, err)
		}
		done = true
		return nil
	}
	abort = func() {
		if !done {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}
	return bw, commit, abort, nil
}
