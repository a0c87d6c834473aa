package invariant

import (
	"fmt"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

// recorder is a testing.TB that records failures instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestCheck(t *testing.T) {
	p := policy.Defaults()
	p.Cutoff = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old1, old2, old3 := "20261001000000_prune_a", "20261002000000_prune_b", "20261003000000_prune_c"
	young, other := "20261102000000_prune_d", "latest"
	const cut = "20261101000000" // the cutoff key
	initial := []string{old1, old2, old3, young, other}
	tests := []struct {
		name string
		s    State
		dry  bool
		want bool
	}{
		{name: "exact", want: true, s: State{Deleted: []string{old3, old1, old2}, Remaining: []string{young, other}, ExitOK: true}},
		{name: "exact with one already gone", want: true,
			s: State{Deleted: []string{old1, old3}, Gone: []string{old2}, Remaining: []string{young, other}, ExitOK: true}},
		{name: "a kept tag gone behind our back", want: true,
			s: State{Deleted: []string{old1, old2, old3}, Gone: []string{other}, Remaining: []string{young}, ExitOK: true}},
		{name: "partial but failed run", want: true, s: State{Deleted: []string{old1}, Remaining: []string{old2, old3, young, other}}},
		{name: "partial run that exited 0", s: State{Deleted: []string{old1}, ExitOK: true}},
		{name: "deleted a young tag", s: State{Deleted: []string{old1, young}}},
		{name: "deleted a non-prune tag", s: State{Deleted: []string{other}}},
		{name: "deleted twice", s: State{Deleted: []string{old1, old1}}},
		{name: "registry disagrees", s: State{Deleted: []string{old1}, Remaining: []string{old3, young, other}}},
		{name: "dry run", want: true, dry: true, s: State{Remaining: initial, ExitOK: true}},
		{name: "dry run that deleted", dry: true, s: State{Deleted: []string{old1}, ExitOK: true}},
		// Listing: ranges that partition ("", cut], each tag counted by one shard.
		{name: "shards partition and count once", want: true, s: State{Deleted: []string{old1, old2, old3}, ExitOK: true,
			Through: cut, Ranges: []proto.Range{{After: "20261002", Through: cut}, {Through: "20261002"}},
			Counted: map[string][]string{"a": {old1, old1}, "b": {old2, old3}}}},
		{name: "a tag deleted by a worker fenced before its checkpoint", want: true, s: State{Deleted: []string{old1, old2, old3},
			ExitOK: true, Through: cut, Counted: map[string][]string{"b": {old2, old3}}}},
		{name: "gap between shards", s: State{Deleted: []string{old1, old2, old3}, ExitOK: true,
			Through: cut, Ranges: []proto.Range{{After: "20261003", Through: cut}, {Through: "20261002"}}}},
		{name: "overlapping shards", s: State{Deleted: []string{old1, old2, old3}, ExitOK: true,
			Through: cut, Ranges: []proto.Range{{After: "20261001", Through: cut}, {Through: "20261002"}}}},
		{name: "shards short of the end", s: State{Deleted: []string{old1, old2, old3}, ExitOK: true,
			Through: cut, Ranges: []proto.Range{{Through: "20261002"}, {After: "20261002", Through: "20261031"}}}},
		{name: "a tag counted by two shards", s: State{Deleted: []string{old1, old2, old3}, ExitOK: true,
			Through: cut, Counted: map[string][]string{"a": {old1, old2}, "b": {old2, old3}}}},
		{name: "a kept tag counted by no shard", s: State{Deleted: []string{old1, old2, old3}, ExitOK: true,
			Through: "zzz", Counted: map[string][]string{"a": {old1, old2, old3, young}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.Policy, tc.s.Initial = p, initial
			tc.s.Policy.DryRun = tc.dry
			r := &recorder{TB: t}
			if got := Check(r, tc.s); got != tc.want || (len(r.errors) == 0) != tc.want {
				t.Errorf("Check = %v with errors %q, want %v", got, r.errors, tc.want)
			}
		})
	}
}
