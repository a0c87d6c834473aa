package keyspace

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

func rg(after, through string) proto.Range { return proto.Range{After: after, Through: through} }

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
