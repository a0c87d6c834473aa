// Package invariant holds the one property every tagsweep test scenario checks at its end,
// whatever failed during it (a worker killed, stopped or frozen, NATS restarted, the registry
// failing):
//
//   - the deleted set is a subset of the eligible set, always, and no tag is deleted twice;
//   - when the run exited 0, deleted plus already gone equals the eligible set exactly;
//   - when the scenario recorded them, the shards' final ranges partition the listed range,
//     and no tag was counted by two shards nor left uncounted: however shards were split,
//     claimed, killed and resumed, each tag was listed by exactly one of them.
//
// It is written once here and used by every scenario: the in-process end-to-end and fault
// tests in test/, the multi-process suite in test/proc, and the worker's own tests.
package invariant

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

// State is what a scenario ended with.
type State struct {
	// Policy is the run's deletion rule, with the cutoff the run used.
	Policy proto.Policy
	// Initial are the repository's tags before the run.
	Initial []string
	// Deleted are the tags tagsweep deleted, in any order, each as often as it was deleted.
	Deleted []string
	// Gone are tags removed behind tagsweep's back during the run (tagsweep finds them
	// already gone). They may be eligible or not.
	Gone []string
	// Remaining are the repository's tags after the run; nil skips the check that the
	// registry's state agrees with Initial, Deleted and Gone.
	Remaining []string
	// ExitOK says the run reported success (exit 0).
	ExitOK bool

	// Through is the end of the key range the run lists, ("", Through] (the policy's cutoff
	// key for a run). It is needed by Ranges and Counted.
	Through string
	// Ranges, when not nil, are the final ranges of every prune shard of the run: they must
	// cover ("", Through] without gap or overlap.
	Ranges []proto.Range
	// Counted, when not nil, maps each shard to the tags its stored checkpoints counted as
	// listed (see worker.ListObserver), repeats included. No tag may be counted by two shards,
	// and every initial tag in ("", Through] must be counted by one, unless it was deleted
	// (by a worker that lost its shard before its checkpoint) or gone.
	Counted map[string][]string
}

// Eligible returns the tags of tags that p deletes, sorted, decided by the policy package
// alone (not by the engine under test).
func Eligible(t testing.TB, p proto.Policy, tags []string) []string {
	t.Helper()
	rules, err := policy.New(p)
	if err != nil {
		t.Fatalf("invariant: policy: %v", err)
	}
	var out []string
	for _, tag := range tags {
		if rules.Decide(tag).Verdict == policy.Delete {
			out = append(out, tag)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Check reports (with t.Errorf) every way s breaks the invariant, and returns whether it held.
// In a dry run (s.Policy.DryRun) the eligible set is empty: nothing may be deleted.
func Check(t testing.TB, s State) bool {
	t.Helper()
	eligible := Eligible(t, s.Policy, s.Initial)
	if s.Policy.DryRun {
		eligible = nil // a dry run may delete nothing
	}
	deleted := sorted(s.Deleted)
	gone := slices.Compact(sorted(s.Gone))
	problems := s.deletions(eligible, deleted, gone)
	deleted = slices.Compact(deleted)
	if s.Ranges != nil {
		if err := partition(s.Ranges, s.Through); err != "" {
			problems = append(problems, "shard ranges: "+err)
		}
	}
	if s.Counted != nil {
		problems = append(problems, s.counting(deleted, gone)...)
	}
	for _, p := range problems {
		t.Errorf("invariant: %s", p)
	}
	return len(problems) == 0
}

// deletions says how the deleted tags (sorted, repeats kept) break the rule against eligible
// and gone (both sorted): a tag deleted twice or not eligible, a registry that disagrees, an
// eligible tag left by a run that exited 0.
func (s State) deletions(eligible, deleted, gone []string) []string {
	var out []string
	if dups := duplicates(deleted); len(dups) > 0 {
		out = append(out, fmt.Sprintf("%d tags deleted more than once, first %q", len(dups), dups[:min(3, len(dups))]))
	}
	deleted = slices.Compact(deleted)
	if extra := minus(deleted, eligible); len(extra) > 0 {
		out = append(out, fmt.Sprintf("deleted %d tags that are not eligible (deleted ⊄ eligible), first %q", len(extra), extra[:min(3, len(extra))]))
	}
	if s.Remaining != nil {
		want := minus(minus(sorted(s.Initial), deleted), gone)
		if got := slices.Compact(sorted(s.Remaining)); !slices.Equal(got, want) {
			out = append(out, "remaining tags disagree with initial - deleted - gone: "+Diff(got, want))
		}
	}
	if s.ExitOK {
		if missing := minus(minus(eligible, deleted), gone); len(missing) > 0 {
			out = append(out, fmt.Sprintf("the run exited 0 but %d eligible tags were neither deleted nor already gone, first %q",
				len(missing), missing[:min(3, len(missing))]))
		}
	}
	return out
}

// counting says how s.Counted breaks the rule that each tag of the listed range was counted by
// exactly one shard; deleted and gone (sorted) are the tags a shard may have missed.
func (s State) counting(deleted, gone []string) []string {
	var out []string
	by := make(map[string]string) // tag -> the shard that counted it
	var twice []string
	for shard, tags := range s.Counted {
		for _, tag := range tags {
			if other, ok := by[tag]; ok && other != shard {
				twice = append(twice, fmt.Sprintf("%s (%s and %s)", tag, other, shard))
			}
			by[tag] = shard
		}
	}
	if len(twice) > 0 {
		slices.Sort(twice)
		out = append(out, fmt.Sprintf("%d tags counted by two shards, first %q", len(twice), twice[:min(3, len(twice))]))
	}
	var uncounted []string
	for _, tag := range sorted(s.Initial) {
		_, isDeleted := slices.BinarySearch(deleted, tag)
		_, isGone := slices.BinarySearch(gone, tag)
		if _, ok := by[tag]; !ok && tag <= s.Through && !isDeleted && !isGone {
			uncounted = append(uncounted, tag)
		}
	}
	if len(uncounted) > 0 {
		out = append(out, fmt.Sprintf("%d tags of the listed range counted by no shard (skipped), first %q", len(uncounted), uncounted[:min(3, len(uncounted))]))
	}
	return out
}

// partition says how ranges fail to cover ("", through] exactly once ("" when they do).
func partition(ranges []proto.Range, through string) string {
	rs := slices.Clone(ranges)
	slices.SortFunc(rs, func(a, b proto.Range) int { return strings.Compare(a.After, b.After) })
	cur := ""
	for i, r := range rs {
		switch {
		case r.After > cur:
			return fmt.Sprintf("(%q, %q] is covered by no shard", cur, r.After)
		case r.After < cur:
			return fmt.Sprintf("shard (%q, %q] overlaps the one before (%q)", r.After, r.Through, rs[i-1])
		case r.Through <= r.After:
			return fmt.Sprintf("shard (%q, %q] is empty", r.After, r.Through)
		}
		cur = r.Through
	}
	if cur != through {
		return fmt.Sprintf("the shards end at %q, not at %q", cur, through)
	}
	return ""
}

// Diff describes how got differs from want (both sorted), for failure messages.
func Diff(got, want []string) string {
	extra, missing := minus(got, want), minus(want, got)
	return fmt.Sprintf("%d extra (first %q), %d missing (first %q)", len(extra), extra[:min(3, len(extra))],
		len(missing), missing[:min(3, len(missing))])
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// minus returns the elements of a (sorted) not in b (sorted).
func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); !ok {
			out = append(out, x)
		}
	}
	return out
}

// duplicates returns the elements that occur more than once in s (sorted).
func duplicates(s []string) []string {
	var out []string
	for i := 1; i < len(s); i++ {
		if s[i] == s[i-1] && (len(out) == 0 || out[len(out)-1] != s[i]) {
			out = append(out, s[i])
		}
	}
	return out
}
