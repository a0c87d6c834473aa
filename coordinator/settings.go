package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

// ErrSettingsDiffer: a command re-attaching to a recorded run was given settings other than
// the run's. A resumed run is the same run: its policy comes from its record, and a command
// that disagrees with the record is refused, never merged with it.
var ErrSettingsDiffer = errors.New("settings differ from the recorded run's")

// Given says which settings of a Config its command was given explicitly (by a flag, the
// environment or a file), as opposed to left at their defaults. Re-attaching to a recorded
// run, the coordinator refuses every given setting that differs from the record
// (ErrSettingsDiffer, naming each); the settings not given are the record's. The zero Given
// compares nothing but the repositories, which Config.Repositories gives when set.
type Given struct {
	Registry     bool // Config.Registry
	DryRun       bool // Config.Policy.DryRun
	TTL          bool // Config.TTL, or Config.Policy.Cutoff when set
	PrunePattern bool // Config.Policy.PrunePattern
	KeepPatterns bool // Config.Policy.KeepPatterns
	TimeZone     bool // Config.Policy.TimeZone
	MaxDeletes   bool // Config.Policy.MaxDeletes
	Preserve     bool // Config.PreservePayloads
	Aliases      bool // Config.RepositoryAliases
}

// Lookup reads the run runID names, without changing anything; ok is false when no such
// run is recorded.
func Lookup(ctx context.Context, js jetstream.JetStream, lc ledger.Config, runID string) (run proto.RunRecord, ok bool, err error) {
	l, err := ledger.Bind(ctx, js, lc)
	if errors.Is(err, ledger.ErrNoLedger) {
		return run, false, nil
	}
	if err != nil {
		return run, false, err
	}
	run, _, err = l.Run(ctx, runID)
	if errors.Is(err, ledger.ErrNotFound) {
		return run, false, nil
	}
	return run, err == nil, err
}

// Differences lists, one line each, every setting cfg was given (cfg.Given) that differs from
// the recorded run's, and the repositories when cfg names others.
func Differences(cfg Config, run proto.RunRecord) []string {
	p, g, pres := run.Policy, cfg.Given, run.Preservation
	cutoffDiffers, givenCutoff, recordedCutoff := cutoffDifference(cfg, run)
	settings := []struct {
		given, differs     bool
		what               string
		inConfig, inRecord string
	}{
		{len(cfg.Repositories) > 0, !sameSet(cfg.Repositories, run.Repositories), "repositories",
			fmt.Sprint(cfg.Repositories), fmt.Sprint(run.Repositories)},
		{g.Registry, cfg.Registry != run.Registry, "registry", cfg.Registry, run.Registry},
		{g.DryRun, cfg.Policy.DryRun != p.DryRun, "mode", Mode(cfg.Policy.DryRun), Mode(p.DryRun)},
		{g.TTL, cutoffDiffers, "cutoff", givenCutoff, recordedCutoff},
		{g.PrunePattern, cfg.Policy.PrunePattern != p.PrunePattern, "prune pattern",
			fmt.Sprintf("%q", cfg.Policy.PrunePattern), fmt.Sprintf("%q", p.PrunePattern)},
		{g.KeepPatterns, !sameSet(cfg.Policy.KeepPatterns, p.KeepPatterns), "keep patterns",
			fmt.Sprintf("%q", cfg.Policy.KeepPatterns), fmt.Sprintf("%q", p.KeepPatterns)},
		{g.TimeZone, cfg.Policy.TimeZone != p.TimeZone, "time zone", cfg.Policy.TimeZone, p.TimeZone},
		{g.MaxDeletes, cfg.Policy.MaxDeletes != p.MaxDeletes, "delete cap", capString(cfg.Policy.MaxDeletes), capString(p.MaxDeletes)},
		{g.Preserve, cfg.PreservePayloads != pres.Enabled, "release payload preservation",
			onOff(cfg.PreservePayloads), onOff(pres.Enabled)},
		{g.Aliases, !sameSet(cfg.RepositoryAliases, pres.Aliases), "repository aliases",
			fmt.Sprintf("%q", cfg.RepositoryAliases), fmt.Sprintf("%q", pres.Aliases)},
	}
	var out []string
	for _, s := range settings {
		if s.given && s.differs {
			out = append(out, fmt.Sprintf("%s: given %s, recorded %s", s.what, s.inConfig, s.inRecord))
		}
	}
	return out
}

// cutoffDifference compares the cutoff cfg gives (its Policy.Cutoff, else its TTL before the
// run's start) with the run's, and describes both.
func cutoffDifference(cfg Config, run proto.RunRecord) (differs bool, given, recorded string) {
	recorded = fmt.Sprintf("cutoff %s (TTL %s)", stamp(run.Policy.Cutoff), run.StartedAt.Sub(run.Policy.Cutoff))
	cutoff := cfg.Policy.Cutoff
	given = "cutoff " + stamp(cutoff)
	if cutoff.IsZero() {
		cutoff = policy.Cutoff(run.StartedAt, cfg.TTL)
		given = fmt.Sprintf("TTL %s (cutoff %s from the run's start)", cfg.TTL, stamp(cutoff))
	}
	return !cutoff.Equal(run.Policy.Cutoff), given, recorded
}

// Describe says, in a few lines, what the recorded run deletes: its mode, registry,
// repositories and policy, for the banner of a resumed run.
func Describe(run proto.RunRecord) string {
	p, pres := run.Policy, run.Preservation
	var b strings.Builder
	fmt.Fprintf(&b, "%s: registry %s, repositories %s\n", Mode(p.DryRun), run.Registry, strings.Join(run.Repositories, ", "))
	fmt.Fprintf(&b, "cutoff %s (TTL %s before the run's start %s), prune pattern %q, keep patterns %q, time zone %s\n",
		stamp(p.Cutoff), run.StartedAt.Sub(p.Cutoff), stamp(run.StartedAt), p.PrunePattern, p.KeepPatterns, p.TimeZone)
	fmt.Fprintf(&b, "delete cap %s, release payload preservation %s", capString(p.MaxDeletes), onOff(pres.Enabled))
	if len(pres.Aliases) > 0 {
		fmt.Fprintf(&b, " (repository aliases %q)", pres.Aliases)
	}
	return b.String()
}

// Mode names a run's mode as its banner shows it: DRY RUN or DELETING.
func Mode(dryRun bool) string {
	if dryRun {
		return "DRY RUN"
	}
	return "DELETING"
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func capString(n int64) string {
	if n <= 0 {
		return "none"
	}
	return fmt.Sprint(n)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// checkGiven refuses, with every difference named, a re-attachment whose given settings
// differ from the recorded run's.
func (c *Coordinator) checkGiven(run proto.RunRecord) error {
	if d := Differences(c.cfg, run); len(d) > 0 {
		return fmt.Errorf("run %s: %w:\n  %s", run.RunID, ErrSettingsDiffer, strings.Join(d, "\n  "))
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}
