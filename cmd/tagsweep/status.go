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
	"time"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// runStatus prints the runs, or one run's shards, from the ledger, as cfg.Output says (table,
// wide or json), keeping only those in the states of --state when given. It creates and
// updates no stream, consumer or bucket, so it cannot change a deployment's JetStream settings;
// the one record it may write marks a running run whose coordinator's lease lapsed abandoned.
func runStatus(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, runID string) error {
	if runID != "" && !proto.ValidToken(runID) {
		return withCode(exitError, fmt.Errorf("run %q: not a run ID", runID))
	}
	states := cfg.Status.StateList()
	if err := checkStates(states, runID != ""); err != nil {
		return withCode(exitError, &configError{err})
	}
	js, closeAll, err := connectJetStream(cfg, "tagsweep-status", log)
	if err != nil {
		return err
	}
	defer closeAll()
	q := statusQuery{log: log, states: states, format: cmp.Or(cfg.Output, config.OutputTable)}
	lc := ledgerConfig(cfg)
	lc.StaleAfter = cfg.Status.StaleAfter
	q.l, err = ledger.Bind(ctx, js, lc)
	q.now = time.Now()
	switch {
	case errors.Is(err, ledger.ErrNoLedger):
		return q.noRuns(w, runID, redactNATSURL(cfg.NATSURL))
	case err != nil:
		return err
	case runID == "":
		return q.listRuns(ctx, w)
	}
	return q.showRun(ctx, w, runID)
}

// statusQuery is what status reads from the ledger l, and how it shows it.
type statusQuery struct {
	l      *ledger.Ledger
	log    *slog.Logger
	states []string // --state: only runs, or shards, in these states; none = all
	format string   // table, wide or json
	now    time.Time
}

// noRuns shows that the NATS at where holds no ledger: no runs, or, asked for run runID, an error.
func (q statusQuery) noRuns(w io.Writer, runID, where string) error {
	if runID != "" {
		return fmt.Errorf("run %s: not found (no tagsweep runs at %s)", runID, where)
	}
	if q.format == config.OutputJSON {
		return writeJSON(w, statusList{V: statusVersion, Runs: []statusRun{}})
	}
	fmt.Fprintf(w, "no tagsweep runs at %s (bucket %s does not exist yet)\n", where, proto.BucketState)
	return nil
}

// listRuns shows every run in the states asked for, newest first.
func (q statusQuery) listRuns(ctx context.Context, w io.Writer) error {
	runs, err := readRuns(ctx, q.l, q.log, q.now)
	if err != nil {
		return err
	}
	runs = slices.DeleteFunc(runs, func(r statusRun) bool {
		return len(q.states) > 0 && !slices.Contains(q.states, string(r.State))
	})
	if q.format == config.OutputJSON {
		return writeJSON(w, statusList{V: statusVersion, Runs: runs})
	}
	printRuns(w, runs, q.format == config.OutputWide)
	return nil
}

// showRun shows run runID and its shards in the states asked for, by repository and key range.
func (q statusQuery) showRun(ctx context.Context, w io.Writer, runID string) error {
	rec, _, err := q.l.Run(ctx, runID)
	if errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("run %s: not found", runID)
	}
	if err != nil {
		return err
	}
	rec = abandonedYet(ctx, q.l, rec, q.log)
	records, err := q.l.Shards(ctx, runID)
	if err != nil {
		return err
	}
	run, err := describeRun(ctx, q.l, rec, records, q.now)
	if err != nil {
		return err
	}
	shards := make([]statusShard, 0, len(records))
	for _, s := range records {
		if len(q.states) == 0 || slices.Contains(q.states, string(s.State)) {
			shards = append(shards, describeShard(s, q.now, q.l.Stale(s, q.now)))
		}
	}
	slices.SortFunc(shards, func(a, b statusShard) int {
		return cmp.Or(cmp.Compare(a.Repository, b.Repository), cmp.Compare(a.After, b.After), cmp.Compare(a.Shard, b.Shard))
	})
	if q.format == config.OutputJSON {
		return writeJSON(w, statusDetail{V: statusVersion, Run: run, Shards: shards})
	}
	printRun(w, run, shards, q.format == config.OutputWide, q.l.Config().StaleAfter)
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
