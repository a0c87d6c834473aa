package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/tagsweep/tagsweep/config"
	"github.com/tagsweep/tagsweep/coordinator"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/telemetry"
)

func newLsCmd(a *app) *cobra.Command {
	return a.configured(&cobra.Command{
		Use:   "ls",
		Short: "Inventory repositories with the sharded parallel listing of a run, deleting nothing",
		Long: `ls lists every tag of the repositories with the same shards and workers as a run, and
deletes nothing: it reports the total tags, the prune tags per day, how many the TTL would
make eligible, the prune tags with an invalid timestamp, and the release-payload family tags.
Without --nats-url it runs in this process (embedded NATS JetStream and --workers workers);
with it, it plans and tracks the inventory on that NATS and the deployed workers list it.
Workers list an inventory's shards and never delete for it, whatever the run record says.
With --names it also prints every tag name, sorted, on stdout (the inventory goes to
stderr): the process lists the finished shards' ranges again itself, a few at once, in
order, so that it holds a few shards' names at a time, never the repository's.`,
		Example: `  tagsweep ls --registry quay.io --repository openshift/ci --docker-config ~/.docker/config.json
  tagsweep ls --demo --demo-tags 200000 -o json
  tagsweep ls --nats-url nats://nats:4222 --registry quay.io --repository openshift/ci --ttl-days 5
  tagsweep ls --registry quay.io --repository openshift/ci --names > tags.txt`,
		Args: cobra.NoArgs,
	}, config.CmdLs, func(ctx context.Context, w io.Writer, log *slog.Logger, cfg config.Config, _ []string) error {
		return runLs(ctx, w, a.stderr, log, cfg, a.live)
	})
}

// runLs takes the inventory of cfg's repositories: in this process (embedded NATS and
// cfg.Workers workers), or against the NATS at cfg.NATSURL and its workers. The inventory
// goes to w, or to errw with --names, which prints the tag names on w.
func runLs(ctx context.Context, w, errw io.Writer, log *slog.Logger, cfg config.Config, live *liveLine) error {
	out := w
	if cfg.Ls.Names {
		out = errw
	}
	// A worker of an inventory lists, one page per slot and one page ahead of it: its
	// registry client needs two requests in flight per slot, and deletes none.
	cfg.DeleteConc = cfg.Slots
	lead := func(ctx context.Context, cfg config.Config, js jetstream.JetStream, regs *registries) error {
		return inventory(ctx, w, out, log, cfg, js, regs, live)
	}
	if cfg.NATSURL == "" {
		return runLocal(ctx, out, log, cfg, live, lead)
	}
	js, closeAll, err := connectJetStream(cfg, "tagsweep-ls", log)
	if err != nil {
		return err
	}
	defer closeAll()
	return lead(ctx, cfg, js, newRegistries(telemetry.New()))
}

// inventory runs an inventory's coordinator and prints what it found on out (table or json),
// and with --names every tag name on names.
func inventory(ctx context.Context, names, out io.Writer, log *slog.Logger, cfg config.Config, js jetstream.JetStream,
	regs *registries, live *liveLine) error {
	ttl, err := cfg.TTLDuration()
	if err != nil {
		return withCode(exitError, &configError{err})
	}
	lister, err := registry.NewOCI(regs.config(cfg, cfg.Registry, cfg.PlainHTTP, namesConcurrency, log))
	if err != nil {
		return err
	}
	display := newProgress(live, log)
	defer display.Stop()
	co, err := coordinator.New(coordinator.Config{
		RunID:        cfg.RunID,
		Registry:     cfg.Registry,
		PlainHTTP:    cfg.PlainHTTP,
		Repositories: cfg.Repositories,
		Policy:       cfg.Policy(),
		TTL:          ttl,
		Observer:     display,
		Ledger:       ledgerConfig(cfg),
		Shards:       cfg.PlanShards(config.CmdLs),
		PageSize:     cfg.PageSize,
		Inventory:    true,
	}, js, lister, log)
	if err != nil {
		return err
	}
	rep, err := co.Run(ctx)
	display.Stop()
	switch {
	case err == nil, errors.Is(err, coordinator.ErrRunFailed):
	case ctx.Err() != nil:
		fmt.Fprintf(out, "Interrupted: inventory %s is still recorded as running; resume it with --run-id %s.\n", co.RunID(), co.RunID())
		return withCode(exitFailed, fmt.Errorf("inventory %s interrupted: %w", co.RunID(), err))
	default:
		return err
	}
	inv := newInventoryReport(rep, ttl)
	if cfg.Ls.Names && err == nil {
		if nerr := printNames(ctx, names, js, cfg, lister, co.RunID()); nerr != nil {
			return errors.Join(withCode(exitFailed, err), nerr)
		}
	}
	if cfg.Output == config.OutputJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if jerr := enc.Encode(inv); jerr != nil {
			return jerr
		}
	} else {
		printInventory(out, inv)
	}
	if cfg.Report != "" {
		if werr := writeReport(cfg.Report, inv); werr != nil {
			return errors.Join(withCode(exitFailed, err), werr)
		}
	}
	return withCode(exitFailed, err)
}

// inventoryReport is what `tagsweep ls` prints (-o json) and writes (--report).
type inventoryReport struct {
	RunID           string             `json:"run_id"`
	Repositories    []string           `json:"repositories"`
	TTL             string             `json:"ttl"`
	Cutoff          time.Time          `json:"cutoff"`
	DurationSeconds float64            `json:"duration_seconds"`
	Shards          proto.ShardTotals  `json:"shards"`
	Tags            int64              `json:"tags"`       // every tag listed
	PruneTags       int64              `json:"prune_tags"` // tags the prune pattern dates (Days sums them)
	Eligible        int64              `json:"eligible"`   // what a run with this TTL would delete
	Invalid         int64              `json:"invalid"`    // prune tags whose timestamp is not a real time
	FamilyTags      int64              `json:"payload_family_tags"`
	Families        proto.FamilyCounts `json:"payload_families"`
	Days            []proto.DayCount   `json:"prune_tags_per_day"`
	FailedShards    []string           `json:"failed_shards,omitempty"`
	Reason          string             `json:"reason,omitempty"`
}

func newInventoryReport(rep proto.Report, ttl time.Duration) inventoryReport {
	r := inventoryReport{
		RunID: rep.RunID, Repositories: rep.Repositories, TTL: ttl.String(), Cutoff: rep.Cutoff,
		DurationSeconds: rep.DurationSeconds, Shards: rep.Shards, Tags: rep.Tags.Scanned, Eligible: rep.Tags.Eligible,
		Invalid: rep.Tags.Invalid, FailedShards: rep.FailedShards, Reason: rep.Reason, Days: []proto.DayCount{},
	}
	if rep.Inventory != nil {
		r.Days = rep.Inventory.Days
		r.Families = rep.Inventory.Families
	}
	r.FamilyTags = r.Families.Total()
	for _, d := range r.Days {
		r.PruneTags += d.Tags
	}
	return r
}

// printInventory prints the inventory as a table, with a bar per day.
func printInventory(w io.Writer, r inventoryReport) {
	fmt.Fprintf(w, "Inventory: %s\n", r.RunID)
	fmt.Fprintf(w, "Repositories: %s\n", strings.Join(r.Repositories, ", "))
	fmt.Fprintf(w, "Duration: %s (%d shards)\n", time.Duration(r.DurationSeconds*float64(time.Second)).Round(time.Millisecond), r.Shards.Total)
	width := len(fmt.Sprint(r.Tags))
	row := func(n int64, what string) { fmt.Fprintf(w, "  %*d  %s\n", width, n, what) }
	row(r.Tags, "tags")
	row(r.PruneTags, "prune tags (dated by their name)")
	row(r.Eligible, fmt.Sprintf("eligible with a TTL of %s (dated before %s)", r.TTL, r.Cutoff.UTC().Format(time.RFC3339)))
	row(r.Invalid, "prune tags with an invalid timestamp")
	row(r.FamilyTags, fmt.Sprintf("release-payload family tags: %d payloads, %d markers, %d removal requests, %d components",
		r.Families.Payloads, r.Families.Markers, r.Families.RemovalRequests, r.Families.Components))
	row(r.Tags-r.PruneTags-r.Invalid-r.FamilyTags, "other tags")
	if len(r.Days) > 0 {
		fmt.Fprintln(w, "Prune tags per day:")
		most := slices.MaxFunc(r.Days, func(a, b proto.DayCount) int { return int(a.Tags - b.Tags) }).Tags
		for _, d := range r.Days {
			bar := strings.Repeat("#", int((d.Tags*40+most-1)/max(most, 1)))
			old := ""
			if d.Day < r.Cutoff.UTC().Format("2006-01-02") {
				old = " (before the cutoff)"
			}
			fmt.Fprintf(w, "  %s  %*d  %s%s\n", d.Day, width, d.Tags, bar, old)
		}
	}
	if len(r.FailedShards) > 0 {
		fmt.Fprintf(w, "Failed shards (their tags are not all counted): %s\n", strings.Join(r.FailedShards, ", "))
	}
	if r.Reason != "" {
		fmt.Fprintf(w, "Incomplete: %s\n", r.Reason)
	}
}

// namesConcurrency is how many shard ranges printNames lists at once.
const namesConcurrency = 8

// printNames prints every tag of an inventory's repositories, sorted, one per line. The
// inventory's shards partition each repository's namespace into disjoint ranges; they are
// listed again in key order, namesConcurrency at a time, each into memory, and printed in
// order as soon as every range before them is printed: the process holds a few shards' names,
// never a repository's.
func printNames(ctx context.Context, w io.Writer, js jetstream.JetStream, cfg config.Config, lister registry.Lister, runID string) error {
	l, err := ledger.Open(ctx, js, ledgerConfig(cfg))
	if err != nil {
		return err
	}
	shards, err := l.Shards(ctx, runID)
	if err != nil {
		return err
	}
	order := map[string]int{}
	for i, r := range cfg.Repositories {
		order[r] = i
	}
	slices.SortFunc(shards, func(a, b proto.ShardRecord) int {
		if d := order[a.Repository] - order[b.Repository]; d != 0 {
			return d
		}
		return strings.Compare(a.Range.After, b.Range.After)
	})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make([]chan listed, len(shards))
	for i := range results {
		results[i] = make(chan listed, 1)
	}
	sem := make(chan struct{}, namesConcurrency)
	go func() {
		for i, s := range shards {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				results[i] <- listRange(ctx, lister, s.Repository, s.Range, cfg.PageSize)
			}()
		}
	}()
	bw := bufio.NewWriter(w)
	for i, s := range shards {
		var got listed
		select {
		case got = <-results[i]:
		case <-ctx.Done():
			return ctx.Err()
		}
		<-sem // the next range may start: this one is in hand
		if got.err != nil {
			return fmt.Errorf("listing the names of %s in (%q, %q]: %w", s.Repository, s.Range.After, s.Range.Through, got.err)
		}
		prefix := ""
		if len(cfg.Repositories) > 1 {
			prefix = s.Repository + ":"
		}
		for _, t := range got.tags {
			bw.WriteString(prefix)
			bw.WriteString(t)
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

// listed is the tags of one range, or why they could not be listed.
type listed struct {
	tags []string
	err  error
}

// listRange lists every tag of repo in r, n a page, ending where a registry.Walk proves the
// range's end.
func listRange(ctx context.Context, l registry.Lister, repo string, r proto.Range, n int) listed {
	var out listed
	w := registry.NewWalk(r, "")
	for !w.Done() {
		in, _, err := w.Next(ctx, l, repo, n)
		if err != nil {
			out.err = err
			return out
		}
		out.tags = append(out.tags, in...)
	}
	return out
}
