package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/proto"
)

// connectNATS connects to the NATS servers at url. name identifies the process to
// the server (nats server's connz). Reconnects are unbounded: a worker outlives a
// NATS rolling restart.
func connectNATS(url, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nc, err := nats.Connect(url, append([]nats.Option{
		nats.Name(name),
		nats.Timeout(10 * time.Second),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", slog.Any("err", err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats at %s: %w", redactNATSURL(url), err)
	}
	return nc, nil
}

// closeNATS closes nc after a round trip to the server, so that what the process sent
// last (a worker's Nak handing a shard back on a graceful stop) has been processed, not
// just written: a lost Nak leaves the shard idle until its AckWait runs out.
func closeNATS(nc *nats.Conn, log *slog.Logger) {
	if nc.IsConnected() {
		if err := nc.FlushTimeout(5 * time.Second); err != nil && log != nil {
			log.Warn("flushing nats before closing", slog.Any("err", err))
		}
	}
	nc.Close()
}

// redactNATSURL hides credentials in a NATS URL list for error messages.
func redactNATSURL(url string) string {
	return config.Config{NATSURL: url}.Redacted().NATSURL
}

// runStatus prints the runs, or one run's shards, from the state bucket. It only reads:
// it neither creates nor updates any stream, consumer or bucket, so it cannot change a
// deployment's JetStream settings.
func runStatus(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, runID string) error {
	if runID != "" && !proto.ValidToken(runID) {
		return withCode(exitError, fmt.Errorf("run %q: not a run ID", runID))
	}
	nc, err := connectNATS(cfg.NATSURL, "tagsweep-status", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	kv, err := js.KeyValue(ctx, proto.BucketState)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		fmt.Fprintf(w, "no tagsweep runs at %s (bucket %s does not exist yet)\n", redactNATSURL(cfg.NATSURL), proto.BucketState)
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening bucket %s: %w", proto.BucketState, err)
	}
	staleAfter := cfg.StaleAfter
	if staleAfter <= 0 {
		staleAfter = 2 * cfg.AckWait
	}
	if runID == "" {
		runs, err := readRecords[proto.RunRecord](ctx, kv, "run.*")
		if err != nil {
			return err
		}
		printRuns(w, runs, time.Now())
		return nil
	}
	runs, err := readRecords[proto.RunRecord](ctx, kv, proto.RunKey(runID))
	if err != nil {
		return err
	}
	if len(runs) == 0 {
		return fmt.Errorf("run %s: not found", runID)
	}
	shards, err := readRecords[proto.ShardRecord](ctx, kv, proto.ShardKeyPrefix(runID))
	if err != nil {
		return err
	}
	printRun(w, runs[0], shards, time.Now(), staleAfter)
	return nil
}

// readRecords reads and decodes every record under the key filter. A record with a newer
// wire version is refused, not guessed at.
func readRecords[T any](ctx context.Context, kv jetstream.KeyValue, filter string) ([]T, error) {
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", filter, err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []T
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted since listed
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", k, err)
		}
		var hdr struct {
			V int `json:"v"`
		}
		if err := json.Unmarshal(e.Value(), &hdr); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", k, err)
		}
		if hdr.V > proto.Version {
			return nil, fmt.Errorf("%s: wire version %d is newer than this tagsweep's %d: upgrade it", k, hdr.V, proto.Version)
		}
		var v T
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", k, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func printRuns(w io.Writer, runs []proto.RunRecord, now time.Time) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs")
		return
	}
	slices.SortFunc(runs, func(a, b proto.RunRecord) int { return b.StartedAt.Compare(a.StartedAt) })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATE\tMODE\tSTARTED\tDURATION\tREPOSITORIES\tSHARDS\tSCANNED\tELIGIBLE\tDELETED\tREASON")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n",
			r.RunID, r.State, mode(r.Policy.DryRun), r.StartedAt.UTC().Format(time.RFC3339),
			runDuration(r, now), strings.Join(r.Repositories, ","), r.Shards,
			r.Totals.Scanned, r.Totals.Eligible, r.Totals.Deleted, r.Reason)
	}
	tw.Flush()
}

func printRun(w io.Writer, r proto.RunRecord, shards []proto.ShardRecord, now time.Time, staleAfter time.Duration) {
	var sum proto.Counters
	var done, failed, running, pending, stale int
	for _, s := range shards {
		sum.Add(s.Counters)
		switch s.State {
		case proto.StateDone:
			done++
		case proto.StateFailed:
			failed++
		case proto.StateRunning:
			running++
			if isStale(s, now, staleAfter) {
				stale++
			}
		default:
			pending++
		}
	}
	fmt.Fprintf(w, "Run:            %s (%s, %s)\n", r.RunID, r.State, mode(r.Policy.DryRun))
	fmt.Fprintf(w, "Registry:       %s %s\n", r.Registry, strings.Join(r.Repositories, ", "))
	fmt.Fprintf(w, "Cutoff:         %s\n", r.Policy.Cutoff.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "Started:        %s (%s)\n", r.StartedAt.UTC().Format(time.RFC3339), runDuration(r, now))
	if r.Reason != "" {
		fmt.Fprintf(w, "Reason:         %s\n", r.Reason)
	}
	fmt.Fprintf(w, "Shards:         %d: %d done, %d failed, %d running (%d stale), %d pending\n",
		len(shards), done, failed, running, stale, pending)
	fmt.Fprintf(w, "Tags:           %d scanned, %d eligible, %d deleted, %d already gone, %d delete failed, %d kept, %d invalid\n\n",
		sum.Scanned, sum.Eligible, sum.Deleted, sum.AlreadyGone, sum.DeleteFailed, sum.Kept, sum.Invalid)

	slices.SortFunc(shards, func(a, b proto.ShardRecord) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.Range.After, b.Range.After))
	})
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SHARD\tSTATE\tREPOSITORY\tAFTER\tTHROUGH\tCURSOR\tOWNER\tATTEMPT\tHEARTBEAT\tSCANNED\tELIGIBLE\tDELETED\tERROR")
	for _, s := range shards {
		hb := "-"
		if !s.Heartbeat.IsZero() {
			hb = now.Sub(s.Heartbeat).Round(time.Second).String() + " ago"
			if isStale(s, now, staleAfter) {
				hb += " (stale)"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\n",
			s.ShardID, s.State, s.Repository, dash(s.Range.After), dash(s.Range.Through), dash(s.Cursor),
			dash(s.Owner), s.Attempt, hb, s.Counters.Scanned, s.Counters.Eligible, s.Counters.Deleted,
			truncate(s.LastError, 80))
	}
	tw.Flush()
	if stale > 0 {
		fmt.Fprintf(w, "\n%d running shards were not written for more than %s (stale): their worker may be gone. JetStream "+
			"redelivers a shard whose worker stopped heartbeating; one on its last delivery is failed as abandoned, and "+
			"resuming the run (--run-id %s) resumes it from its cursor.\n", stale, staleAfter, r.RunID)
	}
}

// isStale reports whether a running shard's holder has gone quiet for longer than
// JetStream's redelivery bound: its worker has likely died and the shard awaits redelivery.
func isStale(s proto.ShardRecord, now time.Time, staleAfter time.Duration) bool {
	return s.State == proto.StateRunning && !s.Heartbeat.IsZero() && now.Sub(s.Heartbeat) > staleAfter
}

func runDuration(r proto.RunRecord, now time.Time) string {
	end := r.FinishedAt
	if end.IsZero() {
		end = now
	}
	return end.Sub(r.StartedAt).Round(time.Second).String()
}

func mode(dryRun bool) string {
	if dryRun {
		return "dry run"
	}
	return "confirm"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
