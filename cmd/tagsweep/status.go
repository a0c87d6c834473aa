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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// connectNATS connects to the NATS servers at url. name identifies the process to
// the server (nats server's connz). Reconnects are unbounded: a worker outlives a
// NATS rolling restart.
func connectNATS(cfg config.Config, name string, log *slog.Logger, opts ...nats.Option) (*nats.Conn, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	url := cfg.NATSURL
	trust, err := natsTrust(cfg.NATS)
	if err != nil {
		return nil, fmt.Errorf("connecting to nats at %s: %w", redactNATSURL(url), err)
	}
	nc, err := nats.Connect(url, append(append([]nats.Option{
		nats.Name(name),
		nats.Timeout(10 * time.Second),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", slog.Any("err", err))
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	}, trust...), opts...)...)
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

// runStatus prints the runs, or one run's shards, from the ledger, as cfg.Output says (table,
// wide or json), keeping only those in the states of --state when given. It creates and
// updates no stream, consumer or bucket, so it cannot change a deployment's JetStream settings;
// the one record it may write marks a running run whose coordinator's lease lapsed abandoned.
func runStatus(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, runID string) error {
	if runID != "" && !proto.ValidToken(runID) {
		return withCode(exitError, fmt.Errorf("run %q: not a run ID", runID))
	}
	states := cfg.StateList()
	if err := checkStates(states, runID != ""); err != nil {
		return withCode(exitError, &configError{err})
	}
	format := cmp.Or(cfg.Output, config.OutputTable)
	nc, err := connectNATS(cfg, "tagsweep-status", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	lc := ledgerConfig(cfg)
	lc.StaleAfter = cfg.StaleAfter
	l, err := ledger.Bind(ctx, js, lc)
	if errors.Is(err, ledger.ErrNoLedger) {
		if runID != "" {
			return fmt.Errorf("run %s: not found (no tagsweep runs at %s)", runID, redactNATSURL(cfg.NATSURL))
		}
		if format == config.OutputJSON {
			return writeJSON(w, statusList{V: statusVersion, Runs: []statusRun{}})
		}
		fmt.Fprintf(w, "no tagsweep runs at %s (bucket %s does not exist yet)\n", redactNATSURL(cfg.NATSURL), proto.BucketState)
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now()
	if runID == "" {
		runs, err := readRuns(ctx, l, log, now)
		if err != nil {
			return err
		}
		runs = slices.DeleteFunc(runs, func(r statusRun) bool {
			return len(states) > 0 && !slices.Contains(states, string(r.State))
		})
		switch format {
		case config.OutputJSON:
			return writeJSON(w, statusList{V: statusVersion, Runs: runs})
		default:
			printRuns(w, runs, format == config.OutputWide)
		}
		return nil
	}
	rec, _, err := l.Run(ctx, runID)
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("run %s: not found", runID)
	}
	if err != nil {
		return err
	}
	rec = abandonedYet(ctx, l, rec, log)
	records, err := l.Shards(ctx, runID)
	if err != nil {
		return err
	}
	run, err := describeRun(ctx, l, rec, records, now)
	if err != nil {
		return err
	}
	shards := make([]statusShard, 0, len(records))
	for _, s := range records {
		if len(states) == 0 || slices.Contains(states, string(s.State)) {
			shards = append(shards, describeShard(s, now, l.Stale(s, now)))
		}
	}
	slices.SortFunc(shards, func(a, b statusShard) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.After, b.After), cmp.Compare(a.Shard, b.Shard))
	})
	if format == config.OutputJSON {
		return writeJSON(w, statusDetail{V: statusVersion, Run: run, Shards: shards})
	}
	printRun(w, run, shards, format == config.OutputWide, l.Config().StaleAfter)
	return nil
}

// abandonedYet returns a running run as abandoned when its coordinator's lease has lapsed,
// recording it so (ledger.CheckAbandoned): status is where an operator sees a run whose
// coordinator died, and it is the one write status makes.
//
// A status whose NATS user may only read cannot record it: it then shows the run as it is,
// running with its coordinator gone, and says why at debug level.
func abandonedYet(ctx context.Context, l *ledger.Ledger, r proto.RunRecord, log *slog.Logger) proto.RunRecord {
	if r.State != proto.RunRunning {
		return r
	}
	rec, _, err := l.CheckAbandoned(ctx, r.RunID)
	if err != nil {
		if log != nil {
			log.Debug("not recording the run as abandoned", slog.String("run", r.RunID), slog.Any("err", err))
		}
		return r
	}
	return rec
}

// checkStates checks --state against the states of runs (the list) or of shards (one run).
func checkStates(states []string, shards bool) error {
	var valid []string
	if shards {
		valid = []string{string(proto.StatePending), string(proto.StateRunning), string(proto.StateDone), string(proto.StateFailed)}
	} else {
		for _, s := range proto.RunStates {
			valid = append(valid, string(s))
		}
	}
	var errs []error
	for _, s := range states {
		if !slices.Contains(valid, s) {
			what := "run"
			if shards {
				what = "shard"
			}
			errs = append(errs, fmt.Errorf("--state: %q is not a %s state (%s)", s, what, strings.Join(valid, ", ")))
		}
	}
	return errors.Join(errs...)
}

// statusVersion is the "v" of `status -o json`. The documents below are a contract
// (docs/operations.md): fields are added, never renamed or removed, without a new version.
const statusVersion = 1

// statusList is `status -o json` without RUN.
type statusList struct {
	V    int         `json:"v"`
	Runs []statusRun `json:"runs"`
}

// statusDetail is `status RUN -o json`.
type statusDetail struct {
	V      int           `json:"v"`
	Run    statusRun     `json:"run"`
	Shards []statusShard `json:"shards"`
}

// statusRun is one run as status shows it. Its shard counts and tag counters are summed from
// the run's shard records, in the list as in the detail, so the two always agree.
type statusRun struct {
	Run             string         `json:"run"`
	State           proto.RunState `json:"state"`
	DryRun          bool           `json:"dry_run"`
	Registry        string         `json:"registry"`
	Repositories    []string       `json:"repositories"`
	Cutoff          time.Time      `json:"cutoff"`
	StartedAt       time.Time      `json:"started_at"`
	FinishedAt      *time.Time     `json:"finished_at"` // null while running
	DurationSeconds float64        `json:"duration_seconds"`
	Reason          string         `json:"reason"`
	StopRequested   *statusStop    `json:"stop_requested"` // null unless tagsweep stop asked it to stop
	Coordinator     statusCoord    `json:"coordinator"`
	Shards          statusSums     `json:"shards"`
	Tags            proto.Counters `json:"tags"`
}

// statusStop is an operator's request to stop a run.
type statusStop struct {
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
}

// statusCoord says whether a run's coordinator is alive: it holds an unexpired lease on the
// run's repositories, which it renews while it runs.
type statusCoord struct {
	Alive        bool       `json:"alive"`
	Holder       string     `json:"holder"`        // host/pid of the coordinator that held the lease; "" when none is recorded
	LeaseExpires *time.Time `json:"lease_expires"` // null when no lease is recorded
}

// statusSums counts a run's shards by state; Stale counts the running ones that are stale
// (ledger.Stale: not written for --stale-after).
type statusSums struct {
	Total   int `json:"total"`
	Done    int `json:"done"`
	Failed  int `json:"failed"`
	Running int `json:"running"`
	Stale   int `json:"stale"`
	Pending int `json:"pending"`
}

// statusShard is one shard of `status RUN`.
type statusShard struct {
	Shard      string           `json:"shard"`
	State      proto.ShardState `json:"state"`
	Kind       proto.ShardKind  `json:"kind"`
	Repository string           `json:"repository"`
	After      string           `json:"after"`
	Through    string           `json:"through"`
	Cursor     string           `json:"cursor"`
	Owner      string           `json:"owner"`
	Attempt    int              `json:"attempt"`
	Heartbeat  *time.Time       `json:"heartbeat"` // null before the first claim
	Stale      bool             `json:"stale"`
	Counters   proto.Counters   `json:"tags"`
	LastError  string           `json:"last_error"`
	heartbeat  time.Duration    // age of Heartbeat, for the tables
}

// readRuns describes every run, newest first.
func readRuns(ctx context.Context, l *ledger.Ledger, log *slog.Logger, now time.Time) ([]statusRun, error) {
	recs, err := l.Runs(ctx)
	if err != nil {
		return nil, err
	}
	shards, err := l.AllShards(ctx)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b proto.RunRecord) int { return b.StartedAt.Compare(a.StartedAt) })
	out := make([]statusRun, 0, len(recs))
	for _, r := range recs {
		r = abandonedYet(ctx, l, r, log)
		run, err := describeRun(ctx, l, r, shards[r.RunID], now)
		if err != nil {
			return nil, err
		}
		out = append(out, run)
	}
	return out, nil
}

// describeRun builds a run's status from its record, its shards and its leases.
func describeRun(ctx context.Context, l *ledger.Ledger, r proto.RunRecord, shards []proto.ShardRecord, now time.Time) (statusRun, error) {
	run := statusRun{Run: r.RunID, State: r.State, DryRun: r.Policy.DryRun, Registry: r.Registry,
		Repositories: r.Repositories, Cutoff: r.Policy.Cutoff.UTC(), StartedAt: r.StartedAt.UTC(), Reason: r.Reason}
	if run.Repositories == nil {
		run.Repositories = []string{}
	}
	if r.Stop != nil {
		run.StopRequested = &statusStop{Reason: r.Stop.Reason, By: r.Stop.By, At: r.Stop.At.UTC()}
	}
	end := now
	if !r.FinishedAt.IsZero() {
		f := r.FinishedAt.UTC()
		run.FinishedAt, end = &f, f
	}
	run.DurationSeconds = max(0, end.Sub(r.StartedAt).Round(time.Second).Seconds())
	alive, lease, err := l.Coordinator(ctx, r)
	if err != nil {
		return statusRun{}, fmt.Errorf("run %s: reading its leases: %w", r.RunID, err)
	}
	run.Coordinator.Alive, run.Coordinator.Holder = alive, lease.Holder
	if !lease.Expires.IsZero() {
		e := lease.Expires.UTC()
		run.Coordinator.LeaseExpires = &e
	}
	sum := ledger.Summarize(shards)
	run.Tags = sum.Tags
	run.Shards = statusSums{Total: sum.Shards.Total, Done: sum.Shards.Done, Failed: sum.Shards.Failed, Running: sum.Running,
		Pending: sum.Pending}
	for _, s := range shards {
		if l.Stale(s, now) {
			run.Shards.Stale++
		}
	}
	return run, nil
}

// describeShard is a shard as status shows it; stale is ledger.Stale's verdict on it.
func describeShard(s proto.ShardRecord, now time.Time, stale bool) statusShard {
	out := statusShard{Shard: s.ShardID, State: s.State, Kind: cmp.Or(s.Kind, proto.KindPrune), Repository: s.Repository,
		After: s.Range.After, Through: s.Range.Through, Cursor: s.Cursor, Owner: s.Owner, Attempt: s.Attempt,
		Stale: stale, Counters: s.Counters, LastError: s.LastError}
	if !s.Heartbeat.IsZero() {
		h := s.Heartbeat.UTC()
		out.Heartbeat, out.heartbeat = &h, now.Sub(s.Heartbeat).Round(time.Second)
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// tableWidth is what `status RUN -o table` fits in; -o wide cuts nothing short.
const tableWidth = 120

func printRuns(w io.Writer, runs []statusRun, wide bool) {
	if len(runs) == 0 {
		fmt.Fprintln(w, "no runs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "RUN\tSTATE\tMODE\tSTARTED\tDURATION\tREPOSITORIES\tSHARDS\tSCANNED\tELIGIBLE\tDELETED\tCOORDINATOR\tREASON")
	} else {
		fmt.Fprintln(tw, "RUN\tSTATE\tMODE\tSTARTED\tDURATION\tREPOSITORIES\tSHARDS\tDELETED\tCOORDINATOR\tREASON")
	}
	for _, r := range runs {
		repos, reason := strings.Join(r.Repositories, ","), oneLine(r.Reason)
		if r.StopRequested != nil && r.State == proto.RunRunning {
			reason = "stopping: " + oneLine(r.StopRequested.Reason)
		}
		shards := fmt.Sprintf("%d/%d", r.Shards.Done, r.Shards.Total)
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.Run, r.State, mode(r.DryRun),
				r.StartedAt.Format(time.RFC3339), duration(r), repos, shards, r.Tags.Scanned, r.Tags.Eligible,
				r.Tags.Deleted, coordinatorState(r, true), reason)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Run, r.State, mode(r.DryRun),
			r.StartedAt.Format("2006-01-02 15:04"), duration(r), truncate(repos, 24), shards, r.Tags.Deleted,
			coordinatorState(r, false), truncate(reason, 36))
	}
	tw.Flush()
}

// coordinatorState describes a run's coordinator: alive or gone while the run is running, and who
// it is in the wide table.
func coordinatorState(r statusRun, wide bool) string {
	if r.State.Finished() && !r.Coordinator.Alive {
		return "-"
	}
	s := "gone"
	if r.Coordinator.Alive {
		s = "alive"
	}
	if wide && r.Coordinator.Holder != "" {
		s += " (" + r.Coordinator.Holder + ")"
	}
	return s
}

func printRun(w io.Writer, r statusRun, shards []statusShard, wide bool, staleAfter time.Duration) {
	line := func(format string, args ...any) {
		s := fmt.Sprintf(format, args...)
		if !wide {
			s = truncate(s, tableWidth)
		}
		fmt.Fprintln(w, s)
	}
	line("Run:          %s (%s, %s)", r.Run, r.State, mode(r.DryRun))
	line("Coordinator:  %s", coordinatorState(r, true))
	line("Registry:     %s %s", r.Registry, strings.Join(r.Repositories, ", "))
	line("Cutoff:       %s", r.Cutoff.Format(time.RFC3339))
	line("Started:      %s (%s)", r.StartedAt.Format(time.RFC3339), duration(r))
	if r.Reason != "" {
		line("Reason:       %s", oneLine(r.Reason))
	}
	if st := r.StopRequested; st != nil && r.State == proto.RunRunning {
		line("Stopping:     asked by %s at %s: %s", st.By, st.At.Format(time.RFC3339), oneLine(st.Reason))
	}
	s := r.Shards
	line("Shards:       %d: %d done, %d failed, %d running (%d stale), %d pending", s.Total, s.Done, s.Failed, s.Running, s.Stale, s.Pending)
	t := r.Tags
	line("Tags:         %d scanned, %d eligible, %d deleted, %d already gone, %d delete failed", t.Scanned, t.Eligible,
		t.Deleted, t.AlreadyGone, t.DeleteFailed)
	line("              %d kept, %d invalid", t.Kept, t.Invalid)
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "SHARD\tSTATE\tREPOSITORY\tAFTER\tTHROUGH\tCURSOR\tOWNER\tATTEMPT\tHEARTBEAT\tSCANNED\tELIGIBLE\tDELETED\tERROR")
	} else {
		fmt.Fprintln(tw, "SHARD\tSTATE\tTHROUGH\tCURSOR\tTRY\tHEARTBEAT\tSCANNED\tDELETED\tERROR")
	}
	for _, s := range shards {
		hb := "-"
		if s.Heartbeat != nil {
			hb = s.heartbeat.String()
			if s.Stale {
				hb += " stale"
			}
		}
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\t%d\t%d\t%s\n",
				s.Shard, s.State, s.Repository, dash(s.After), dash(s.Through), dash(s.Cursor), dash(s.Owner), s.Attempt,
				hb, s.Counters.Scanned, s.Counters.Eligible, s.Counters.Deleted, oneLine(s.LastError))
			continue
		}
		// At most 22+7+16+16+3+10+9+9 characters and 8 gaps of 2 before ERROR: ERROR gets the rest of 120.
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n",
			truncate(s.Shard, 22), s.State, truncate(dash(s.Through), 16), truncate(dash(s.Cursor), 16), min(s.Attempt, 999),
			truncate(hb, 10), truncate(strconv.FormatInt(s.Counters.Scanned, 10), 9),
			truncate(strconv.FormatInt(s.Counters.Deleted, 10), 9), truncate(oneLine(s.LastError), 12))
	}
	tw.Flush()
	if r.Shards.Stale > 0 {
		fmt.Fprintf(w, "\n%d running shards were not written for more than %s (stale): their worker may be gone.\n"+
			"JetStream redelivers a shard whose worker stopped heartbeating; one on its last delivery is failed\n"+
			"as abandoned, and resuming the run (--run-id %s) resumes it from its cursor.\n", r.Shards.Stale, staleAfter, r.Run)
	}
}

func duration(r statusRun) string {
	return (time.Duration(r.DurationSeconds) * time.Second).String()
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

// oneLine keeps a multi-line text (joined errors) on one table line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// truncate cuts s to at most n characters (runes), marking a cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
