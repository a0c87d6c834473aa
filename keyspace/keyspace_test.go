package keyspace

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

func TestBoundary(t *testing.T) {
	tests := []struct {
		k    string
		w    Width
		want string
		ok   bool
	}{
		{"20261101123000_prune_x", Day, "20261102", true},
		{"20261101", Day, "20261101", true},
		{"20261101", Hour, "2026110100", true},
		{"2026110100", Day, "20261102", true}, // "20261101" sorts below it
		{"1.0", Day, "10000000", true},
		{"abc", Day, "", false},
		{"99999999z", Day, "", false},
		{"99999999", Day, "99999999", true},
		{"999999990", Day, "", false},
		{"", Day, "00000000", true},
		{"2", Day, "20000000", true},
		{"202611", Day, "20261100", true},
		{"20261131x", Day, "20261132", true}, // boundaries are keys, not dates
		{"20261199x", Day, "20261200", true}, // carry
		{"20269999_", Day, "20270000", true},
		{"2026110a", Day, "20261110", true}, // 'a' > '9' at the last digit: carry
		{"2026110-", Day, "20261100", true}, // '-' < '0': zeros from there
		{"20261101123000_prune_x", Hour, "2026110113", true},
		{"2026110123", Hour, "2026110123", true},
		{"20261101235959_prune_x", Hour, "2026110124", true},
		{"rc_payload__4.22", Day, "", false},
		{"_x", Day, "", false},
		{"A", Day, "", false},
		{"x", 0, "", false},
	}
	for _, tt := range tests {
		got, ok := Boundary(tt.k, tt.w)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Boundary(%q, %d) = %q, %v; want %q, %v", tt.k, tt.w, got, ok, tt.want, tt.ok)
		}
	}
}

// bruteBoundary is Boundary by exhaustive search over w-digit strings (small w only).
func bruteBoundary(k string, w int) (string, bool) {
	limit := 1
	for range w {
		limit *= 10
	}
	for i := range limit {
		s := fmt.Sprintf("%0*d", w, i)
		if s >= k {
			return s, true
		}
	}
	return "", false
}

func TestBoundaryBrute(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alpha := "-./0123456789:AZ_az"
	for range 5000 {
		w := 1 + rng.IntN(3)
		b := make([]byte, rng.IntN(5))
		for i := range b {
			b[i] = alpha[rng.IntN(len(alpha))]
		}
		k := string(b)
		got, ok := Boundary(k, Width(w))
		want, wok := bruteBoundary(k, w)
		if got != want || ok != wok {
			t.Fatalf("Boundary(%q, %d) = %q, %v; brute force says %q, %v", k, w, got, ok, want, wok)
		}
	}
}

func TestParseWidth(t *testing.T) {
	for in, want := range map[string]Width{"day": Day, "hour": Hour} {
		if got, err := ParseWidth(in); got != want || err != nil {
			t.Errorf("ParseWidth(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got := want.String(); got != in {
			t.Errorf("%d.String() = %q, want %q", int(want), got, in)
		}
	}
	for _, in := range []string{"", "Day", "minute", "8"} {
		if got, err := ParseWidth(in); err == nil {
			t.Errorf("ParseWidth(%q) = %v, nil; want an error", in, got)
		}
	}
}

func rg(after, through string) proto.Range { return proto.Range{After: after, Through: through} }

// tagList is an in-memory, sorted tag namespace with a First over it that counts its calls.
type tagList struct {
	tags  []string
	calls int
}

func newTagList(tags ...string) *tagList {
	s := slices.DeleteFunc(slices.Clone(tags), func(t string) bool { return t == "" }) // "" is no tag
	sort.Strings(s)
	return &tagList{tags: slices.Compact(s)}
}

func (l *tagList) first(_ context.Context, after string) (string, bool, error) {
	l.calls++
	i := sort.SearchStrings(l.tags, after)
	if i < len(l.tags) && l.tags[i] == after {
		i++
	}
	if i == len(l.tags) {
		return "", false, nil
	}
	return l.tags[i], true, nil
}

// checkPlan checks the plan's invariants against the tag list.
func checkPlan(t *testing.T, l *tagList, through string, w Width, rs []proto.Range) {
	t.Helper()
	var below []string
	for _, tag := range l.tags {
		if tag <= through {
			below = append(below, tag)
		}
	}
	if len(below) == 0 {
		if len(rs) != 0 {
			t.Fatalf("Plan over no tags <= %q = %v, want no ranges", through, rs)
		}
		return
	}
	if len(rs) == 0 {
		t.Fatalf("Plan = no ranges, but %d tags are <= %q", len(below), through)
	}
	if rs[0].After != "" || rs[len(rs)-1].Through != through {
		t.Fatalf("Plan = %v: does not cover (\"\", %q]", rs, through)
	}
	for i, r := range rs {
		if !(r.After < r.Through) {
			t.Fatalf("range %d %v is empty or inverted", i, r)
		}
		if i > 0 && r.After != rs[i-1].Through {
			t.Fatalf("range %d %v does not start where range %d %v ends", i, r, i-1, rs[i-1])
		}
		if i < len(rs)-1 && (len(r.Through) != int(w) || strings.Trim(r.Through, "0123456789") != "") {
			t.Fatalf("range %d ends at %q, not a %d-digit key", i, r.Through, w)
		}
	}
	for _, tag := range below {
		n := 0
		for _, r := range rs {
			if r.Contains(tag) {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("tag %q lies in %d ranges of %v", tag, n, rs)
		}
	}
	for _, tag := range l.tags {
		if tag > through {
			for _, r := range rs {
				if r.Contains(tag) {
					t.Fatalf("tag %q after through %q lies in range %v", tag, through, r)
				}
			}
		}
	}
}

func TestPlan(t *testing.T) {
	const through = "20261117031500"
	tests := []struct {
		name      string
		tags      []string
		w         Width
		want      []proto.Range
		wantCalls int
	}{
		{name: "empty namespace", w: Day, wantCalls: 1},
		{name: "only tags after through", tags: []string{"20261117031500_prune_x", "latest", "rc_payload__x"},
			w: Day, wantCalls: 1},
		{name: "one tag", tags: []string{"20261101000000_prune_a"}, w: Day,
			want: []proto.Range{rg("", through)}, wantCalls: 2},
		{name: "three days", tags: []string{
			"20261101000000_prune_a", "20261101120000_prune_b", "20261103000000_prune_c", "20261110000000_prune_d",
			"latest",
		}, w: Day, want: []proto.Range{
			rg("", "20261102"), rg("20261102", "20261104"), rg("20261104", through),
		}, wantCalls: 4},
		{name: "stray 1999 tag", tags: []string{
			"19990101000000_prune_old", "20261101000000_prune_a", "20261102000000_prune_b",
		}, w: Day, want: []proto.Range{
			rg("", "19990102"), rg("19990102", "20261102"), rg("20261102", through),
		}, wantCalls: 4},
		{name: "tag equal to a boundary", tags: []string{"20261101", "20261101000000_prune_a"}, w: Day,
			want: []proto.Range{rg("", "20261101"), rg("20261101", through)}, wantCalls: 3},
		{name: "hours", tags: []string{"20261101000000_prune_a", "20261101010000_prune_b", "20261101015959_prune_c"},
			w: Hour, want: []proto.Range{rg("", "2026110101"), rg("2026110101", through)}, wantCalls: 3},
		{name: "boundary past through", tags: []string{"20261117000000_prune_a"}, w: Day,
			want: []proto.Range{rg("", through)}, wantCalls: 1},
		{name: "non-digit tags below digits are impossible but handled", tags: []string{"-x", "0", "2026"}, w: Day,
			want: []proto.Range{rg("", "00000000"), rg("00000000", through)}, wantCalls: 3},
		{name: "tag that sorts after every day key", tags: []string{"99999999z"}, w: Day,
			want: nil, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTagList(tt.tags...)
			got, err := Plan(context.Background(), l.first, through, tt.w)
			if err != nil {
				t.Fatalf("Plan: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Plan = %v, want %v", got, tt.want)
			}
			if l.calls != tt.wantCalls {
				t.Errorf("Plan made %d First calls, want %d", l.calls, tt.wantCalls)
			}
			checkPlan(t, l, through, tt.w, got)
		})
	}
}

func TestPlanStrayTagCostsFewProbes(t *testing.T) {
	tags := []string{"19990101000000_prune_old"}
	for d := 1; d <= 30; d++ {
		tags = append(tags, fmt.Sprintf("202611%02d000000_prune_a", d), fmt.Sprintf("202611%02d120000_prune_b", d))
	}
	l := newTagList(tags...)
	const through = "20261231000000"
	rs, err := Plan(context.Background(), l.first, through, Day)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, l, through, Day, rs)
	// One range for 1999, one per day of November, one probe past the end.
	if len(rs) != 31 || l.calls != 32 {
		t.Errorf("Plan = %d ranges with %d First calls, want 31 ranges, 32 calls", len(rs), l.calls)
	}
}

func TestPlanErrors(t *testing.T) {
	boom := errors.New("boom")
	failing := func(context.Context, string) (string, bool, error) { return "", false, boom }
	if _, err := Plan(context.Background(), failing, "2026", Day); !errors.Is(err, boom) {
		t.Errorf("Plan with a failing First = %v, want it to wrap %v", err, boom)
	}
	// A registry that ignores `last` answers with its first tag whatever it is asked.
	stuck := func(context.Context, string) (string, bool, error) { return "20261101000000_prune_a", true, nil }
	if _, err := Plan(context.Background(), stuck, "20261117", Day); err == nil ||
		!strings.Contains(err.Error(), "keyset") {
		t.Errorf("Plan with a First that does not advance = %v, want a keyset error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := newTagList("20261101000000_prune_a")
	if _, err := Plan(ctx, l.first, "20261117", Day); !errors.Is(err, context.Canceled) {
		t.Errorf("Plan with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := Plan(context.Background(), l.first, "20261117", 0); err == nil {
		t.Errorf("Plan with width 0 = nil error")
	}
}

// randomTags generates tags that look like a real repository: dated prune tags clustered in a
// few days, strays, floating tags and payload tags.
func randomTags(rng *rand.Rand, n int) []string {
	var tags []string
	for range n {
		switch rng.IntN(6) {
		case 0:
			tags = append(tags, fmt.Sprintf("%04d%02d%02d%02d%02d%02d_prune_x",
				1990+rng.IntN(40), 1+rng.IntN(12), 1+rng.IntN(31), rng.IntN(24), rng.IntN(60), rng.IntN(60)))
		case 1:
			tags = append(tags, fmt.Sprintf("floating_%d", rng.IntN(1000)))
		case 2:
			tags = append(tags, fmt.Sprintf("202611%02d", 1+rng.IntN(30))) // a tag equal to a boundary
		default:
			tags = append(tags, fmt.Sprintf("202611%02d%02d%02d%02d_prune_ns_%d",
				10+rng.IntN(8), rng.IntN(24), rng.IntN(60), rng.IntN(60), rng.IntN(100)))
		}
	}
	return tags
}

func TestPlanRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 300 {
		l := newTagList(randomTags(rng, rng.IntN(200))...)
		through := []string{"20261117031500", "20261114", "1", "zzzz", "20261112120000_prune_ns_5"}[i%5]
		w := []Width{Day, Hour}[i%2]
		rs, err := Plan(context.Background(), l.first, through, w)
		if err != nil {
			t.Fatalf("Plan: %v", err)
		}
		checkPlan(t, l, through, w, rs)
		if l.calls != len(rs)+1 && !(len(rs) > 0 && l.calls == len(rs)) {
			t.Fatalf("Plan made %d calls for %d ranges", l.calls, len(rs))
		}
	}
}

func FuzzPlan(f *testing.F) {
	f.Add("20261101000000_prune_a\n19990101000000_prune_b\nlatest", "20261117031500", false)
	f.Add("20261101\n20261102\n2026110\n", "20261102", true)
	f.Add("", "x", false)
	f.Fuzz(func(t *testing.T, tags, through string, hour bool) {
		l := newTagList(strings.Split(tags, "\n")...)
		w := Day
		if hour {
			w = Hour
		}
		rs, err := Plan(context.Background(), l.first, through, w)
		if err != nil {
			t.Fatalf("Plan: %v", err)
		}
		checkPlan(t, l, through, w, rs)
	})
}

func TestSplit(t *testing.T) {
	tests := []struct {
		r      proto.Range
		cursor string
		want   string
		ok     bool
	}{
		// Days apart: cut on a day.
		{rg("20261101", "20261111"), "", "20261106", true},
		{rg("20261101", "20261111"), "20261105120000_prune_x", "20261108", true},
		// Within a day: cut on an hour.
		{rg("20261101", "20261102"), "", "2026110112", true},
		{rg("20261101", "20261102"), "20261101180000_prune_x", "2026110121", true},
		// Years apart: cut on a year.
		{rg("19990102", "20261102"), "", "2012", true},
		// Within an hour and a minute.
		{rg("2026110112", "2026110113"), "", "202611011230", true},
		{rg("202611011230", "202611011231"), "", "20261101123030", true},
		// The same second: fall back to a byte-wise midpoint.
		{rg("20261101123030_prune_a", "20261101123030_prune_z"), "", "20261101123030_prune_mU", true},
		// No timestamp at the start: byte-wise.
		{rg("", "20261102"), "", ".V", true},
		{rg("a", "c"), "", "b", true},
		// Too narrow.
		{rg("a", "a-"), "", "", false},
		{rg("a", "a."), "", "a-", true},
		{rg("a", "a--"), "", "a-", true},
		{rg("zz", "zz-"), "", "", false},
		{rg("20261101", "20261102"), "20261102", "", false},
		{rg("20261101", "20261102"), "20261103", "", false},
		{rg("b", "a"), "", "", false},
	}
	for _, tt := range tests {
		got, ok := Split(tt.r, tt.cursor)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Split(%v, %q) = %q, %v; want %q, %v", tt.r, tt.cursor, got, ok, tt.want, tt.ok)
		}
		if ok {
			checkSplit(t, tt.r, tt.cursor, got)
		}
	}
}

// checkSplit checks that m cuts r into two non-empty halves, the first holding the cursor.
func checkSplit(t *testing.T, r proto.Range, cursor, m string) {
	t.Helper()
	lo := max(cursor, r.After)
	if !(lo < m && m < r.Through) {
		t.Fatalf("Split(%v, %q) = %q, not strictly inside (%q, %q)", r, cursor, m, lo, r.Through)
	}
	a, b := proto.Range{After: r.After, Through: m}, proto.Range{After: m, Through: r.Through}
	for _, k := range []string{r.After, lo, m, m + "\x00", r.Through, cursor} {
		if r.Contains(k) != (a.Contains(k) || b.Contains(k)) || (a.Contains(k) && b.Contains(k)) {
			t.Fatalf("Split(%v, %q) = %q: halves %v %v do not partition at key %q", r, cursor, m, a, b, k)
		}
	}
}

func TestSplitRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 5))
	for range 5000 {
		tags := randomTags(rng, 3)
		slices.Sort(tags)
		r := proto.Range{After: tags[0], Through: tags[2]}
		if rng.IntN(4) == 0 {
			r.After = ""
		}
		cursor := ""
		if rng.IntN(2) == 0 {
			cursor = tags[1]
		}
		m, ok := Split(r, cursor)
		if ok {
			checkSplit(t, r, cursor, m)
		} else if lo := max(cursor, r.After); lo < r.Through && r.Through != lo+"-" {
			t.Fatalf("Split(%v, %q) found no key, but the range is not narrow", r, cursor)
		}
	}
}

func FuzzSplit(f *testing.F) {
	f.Add("20261101", "20261111", "")
	f.Add("", "20261102", "")
	f.Add("20261101123030_prune_a", "20261101123030_prune_z", "20261101123030_prune_b")
	f.Add("a", "a-", "")
	f.Add("99999999999999", "9999999999999999", "")
	f.Fuzz(func(t *testing.T, after, through, cursor string) {
		r := proto.Range{After: after, Through: through}
		m, ok := Split(r, cursor)
		if ok {
			checkSplit(t, r, cursor, m)
		}
		// Over the tag alphabet the only range too narrow to split is (k, k+"-"].
		if inAlphabet(after) && inAlphabet(through) && inAlphabet(cursor) {
			lo := max(after, cursor)
			if want := lo < through && through != lo+"-"; ok != want {
				t.Errorf("Split(%v, %q) = %q, %v; want ok=%v", r, cursor, m, ok, want)
			}
		}
	})
}

func inAlphabet(s string) bool { return strings.Trim(s, alphabet) == "" }
