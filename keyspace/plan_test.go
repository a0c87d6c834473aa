package keyspace

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// tagList is an in-memory, sorted tag namespace with a Page over it that counts its calls.
type tagList struct {
	tags  []string
	calls atomic.Int64
}

func newTagList(tags ...string) *tagList {
	s := slices.DeleteFunc(slices.Clone(tags), func(t string) bool { return t == "" }) // "" is no tag
	sort.Strings(s)
	return &tagList{tags: slices.Compact(s)}
}

func (l *tagList) page(_ context.Context, after string, n int) ([]string, bool, error) {
	l.calls.Add(1)
	i := sort.SearchStrings(l.tags, after)
	if i < len(l.tags) && l.tags[i] == after {
		i++
	}
	j := min(i+n, len(l.tags))
	return slices.Clone(l.tags[i:j]), j < len(l.tags), nil
}

// count returns how many tags lie in r.
func (l *tagList) count(r proto.Range) int {
	n := 0
	for _, t := range l.tags {
		if r.Contains(t) {
			n++
		}
	}
	return n
}

// checkPlan checks a plan of r against the tag list: the ranges cover r in order without gap
// or overlap, every one holds a tag, and the count is bounded by the work (any two adjacent
// ranges hold at least a page).
func checkPlan(t *testing.T, l *tagList, r proto.Range, pageSize int, rs []proto.Range) {
	t.Helper()
	n := l.count(r)
	if n == 0 || r.Through <= r.After {
		if len(rs) != 0 {
			t.Fatalf("Plan of %v holding no tags = %v, want no ranges", r, rs)
		}
		return
	}
	if len(rs) == 0 {
		t.Fatalf("Plan = no ranges, but %d tags lie in %v", n, r)
	}
	if rs[0].After != r.After || rs[len(rs)-1].Through != r.Through {
		t.Fatalf("Plan = %v: does not cover %v", rs, r)
	}
	counts := make([]int, len(rs))
	for i, x := range rs {
		if !(x.After < x.Through) {
			t.Fatalf("range %d %v is empty or inverted", i, x)
		}
		if i > 0 && x.After != rs[i-1].Through {
			t.Fatalf("range %d %v does not start where range %d %v ends", i, x, i-1, rs[i-1])
		}
		if counts[i] = l.count(x); counts[i] == 0 {
			t.Fatalf("range %d %v of %d holds no tag", i, x, len(rs))
		}
		if i > 0 && counts[i-1]+counts[i] < pageSize {
			t.Fatalf("ranges %d and %d (%v %v) hold %d tags together, less than a page of %d: not merged",
				i-1, i, rs[i-1], x, counts[i-1]+counts[i], pageSize)
		}
	}
	for _, tag := range l.tags {
		in := 0
		for _, x := range rs {
			if x.Contains(tag) {
				in++
			}
		}
		if want := map[bool]int{true: 1, false: 0}[r.Contains(tag)]; in != want {
			t.Fatalf("tag %q lies in %d ranges of the plan of %v, want %d", tag, in, r, want)
		}
	}
}

// plan runs Plan over l and checks it.
func plan(t *testing.T, l *tagList, r proto.Range, cfg PlanConfig) []proto.Range {
	t.Helper()
	rs, err := Plan(context.Background(), l.page, r, cfg)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	checkPlan(t, l, r, cmp.Or(max(cfg.PageSize, 0), DefaultPageSize), rs)
	return rs
}

// spread returns the largest and the mean count of tags per range.
func spread(l *tagList, rs []proto.Range) (largest int, mean float64) {
	total := 0
	for _, r := range rs {
		n := l.count(r)
		largest = max(largest, n)
		total += n
	}
	return largest, float64(total) / float64(len(rs))
}

// stamp formats a prune tag at t.
func stamp(t time.Time, suffix string) string {
	return t.UTC().Format("20060102150405") + "_prune_" + suffix
}

var day0 = time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)

// denseDay returns n prune tags spread evenly over one day.
func denseDay(n int) []string {
	var tags []string
	for i := range n {
		tags = append(tags, stamp(day0.Add(time.Duration(i)*24*time.Hour/time.Duration(n)), fmt.Sprint(i)))
	}
	return tags
}

func TestPlanSmall(t *testing.T) {
	const through = "20261117031500"
	all := rg("", through)
	tests := []struct {
		name      string
		tags      []string
		r         proto.Range
		cfg       PlanConfig
		want      []proto.Range
		wantN     int // instead of want: how many ranges
		wantCalls int64
	}{
		{name: "empty namespace", r: all, wantCalls: 1},
		{name: "only tags after through", tags: []string{"20261117031500_prune_x", "latest", "rc_payload__x"}, r: all, wantCalls: 1},
		{name: "one tag", tags: []string{"20261101000000_prune_a"}, r: all, want: []proto.Range{all}, wantCalls: 1},
		{name: "fewer tags than a page", tags: []string{"19990101000000_prune_a", "20261101000000_prune_a", "20261102000000_prune_b", "latest"},
			r: all, cfg: PlanConfig{Shards: 8}, want: []proto.Range{all}, wantCalls: 1},
		{name: "empty range", tags: []string{"a"}, r: rg("b", "a"), wantCalls: 0},
		{name: "resumed after a key", tags: []string{"20261101000000_prune_a", "20261102000000_prune_b"}, r: rg("20261101000000_prune_a", through),
			want: []proto.Range{rg("20261101000000_prune_a", through)}, wantCalls: 1},
		{name: "two pages for two slots", tags: []string{"a1", "a2", "b1", "b2"}, r: rg("", "z"), cfg: PlanConfig{Shards: 2, PageSize: 2},
			wantN: 2, wantCalls: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTagList(tt.tags...)
			got := plan(t, l, tt.r, tt.cfg)
			if tt.wantN > 0 && len(got) != tt.wantN || tt.wantN == 0 && !slices.Equal(got, tt.want) {
				t.Errorf("Plan = %v, want %v", got, tt.want)
			}
			if n := l.calls.Load(); n != tt.wantCalls {
				t.Errorf("Plan made %d page calls, want %d", n, tt.wantCalls)
			}
		})
	}
}

// The daily run's shape: one dense day eligible, and a stray tag from 1999 in front of it.
// Every slot gets a shard of about its share, for a few rounds of probes.
func TestPlanDenseDay(t *testing.T) {
	for _, stray := range []bool{false, true} {
		t.Run(fmt.Sprintf("stray=%v", stray), func(t *testing.T) {
			tags := denseDay(28000)
			if stray {
				tags = append(tags, "19990101000000_prune_old")
			}
			l := newTagList(tags...)
			const shards = 32
			rs := plan(t, l, rg("", "20261117031500"), PlanConfig{Shards: shards})
			largest, mean := spread(l, rs)
			if len(rs) < shards || float64(largest) > 2*mean {
				t.Errorf("Plan = %d ranges, largest %d tags, mean %.0f; want at least %d ranges, none above twice the mean",
					len(rs), largest, mean, shards)
			}
			if n := l.calls.Load(); n > 4*shards {
				t.Errorf("Plan made %d page calls for %d shards", n, len(rs))
			}
			t.Logf("%d ranges, largest %d, mean %.0f, %d calls", len(rs), largest, mean, l.calls.Load())
		})
	}
}

// Empty stretches cost about a probe each: a handful of stray tags over decades, each alone in
// its stretch, do not multiply the probes.
func TestPlanStrayTagsCostFewProbes(t *testing.T) {
	tags := denseDay(5000)
	for y := 1990; y < 2026; y += 5 {
		tags = append(tags, stamp(time.Date(y, 3, 1, 0, 0, 0, 0, time.UTC), "stray"))
	}
	l := newTagList(tags...)
	const shards = 16
	rs := plan(t, l, rg("", "20261117031500"), PlanConfig{Shards: shards})
	if len(rs) < shards || l.calls.Load() > 4*shards {
		t.Errorf("Plan = %d ranges for %d calls; want at least %d ranges for at most %d calls", len(rs), l.calls.Load(), shards, 4*shards)
	}
}

// Short numeric names (build numbers) sort among the digits of timestamps; they get a shard
// per page or so, never one per tag, for a few dozen probes.
func TestPlanNumericTags(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 7))
	seq := make([]string, 3000)
	random := make([]string, 3000)
	for i := range seq {
		seq[i] = fmt.Sprint(1234000 + i)
		random[i] = fmt.Sprint(1000000 + rng.IntN(1000000))
	}
	for name, tags := range map[string][]string{"consecutive": seq, "random": random} {
		t.Run(name, func(t *testing.T) {
			l := newTagList(tags...)
			rs := plan(t, l, rg("", "20261117031500"), PlanConfig{Shards: 32})
			if len(rs) > 50 || len(rs) < 10 || l.calls.Load() > 150 {
				t.Errorf("Plan = %d ranges for %d calls; want 10 to 50 ranges for at most 150 calls", len(rs), l.calls.Load())
			}
			t.Logf("%d ranges, %d calls", len(rs), l.calls.Load())
		})
	}
}

// Names without a timestamp are cut byte-wise; names that share one timestamp (a burst in
// one second) are told apart byte-wise too.
func TestPlanLexical(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 9))
	var hex, burst, versions []string
	for i := range 20000 {
		hex = append(hex, fmt.Sprintf("sha-%016x", rng.Uint64()))
		burst = append(burst, fmt.Sprintf("20261110120000_prune_job-%05d", i))
		versions = append(versions, fmt.Sprintf("v%d.%d.%d-build.%d", rng.IntN(5), rng.IntN(20), rng.IntN(50), i))
	}
	for name, tags := range map[string][]string{"hex": hex, "one second": burst, "versions": versions} {
		t.Run(name, func(t *testing.T) {
			l := newTagList(tags...)
			const shards = 32
			rs := plan(t, l, rg("", "~"), PlanConfig{Shards: shards})
			largest, mean := spread(l, rs)
			if len(rs) < shards || float64(largest) > 4*mean || l.calls.Load() > 6*shards {
				t.Errorf("Plan = %d ranges, largest %d, mean %.0f, %d calls; want at least %d ranges, none above 4x the mean, at most %d calls",
					len(rs), largest, mean, l.calls.Load(), shards, 6*shards)
			}
			t.Logf("%d ranges, largest %d, mean %.0f, %d calls", len(rs), largest, mean, l.calls.Load())
		})
	}
}

func TestPlanErrors(t *testing.T) {
	boom := errors.New("boom")
	failing := func(context.Context, string, int) ([]string, bool, error) { return nil, false, boom }
	if _, err := Plan(context.Background(), failing, rg("", "2026"), PlanConfig{}); !errors.Is(err, boom) {
		t.Errorf("Plan with a failing Page = %v, want it to wrap %v", err, boom)
	}
	// A registry that ignores `last` answers with its first tags whatever it is asked.
	stuck := func(context.Context, string, int) ([]string, bool, error) {
		return []string{"20261101000000_prune_a", "20261101000001_prune_a"}, true, nil
	}
	if _, err := Plan(context.Background(), stuck, rg("", "20261117"), PlanConfig{Shards: 4, PageSize: 2}); err == nil ||
		!strings.Contains(err.Error(), "keyset") {
		t.Errorf("Plan with a Page that does not advance = %v, want a keyset error", err)
	}
	descending := func(context.Context, string, int) ([]string, bool, error) { return []string{"b", "a"}, false, nil }
	if _, err := Plan(context.Background(), descending, rg("", "z"), PlanConfig{}); err == nil || !strings.Contains(err.Error(), "keyset") {
		t.Errorf("Plan with a descending page = %v, want a keyset error", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l := newTagList("20261101000000_prune_a")
	if _, err := Plan(ctx, func(ctx context.Context, after string, n int) ([]string, bool, error) {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		return l.page(ctx, after, n)
	}, rg("", "20261117"), PlanConfig{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Plan with a cancelled context = %v, want context.Canceled", err)
	}
}

// randomTags generates tags that look like a real repository: dated prune tags clustered in a
// few days, strays, floating tags, build numbers and payload tags.
func randomTags(rng *rand.Rand, n int) []string {
	var tags []string
	for range n {
		switch rng.IntN(7) {
		case 0:
			tags = append(tags, fmt.Sprintf("%04d%02d%02d%02d%02d%02d_prune_x",
				1990+rng.IntN(40), 1+rng.IntN(12), 1+rng.IntN(31), rng.IntN(24), rng.IntN(60), rng.IntN(60)))
		case 1:
			tags = append(tags, fmt.Sprintf("floating_%d", rng.IntN(1000)))
		case 2:
			tags = append(tags, fmt.Sprintf("202611%02d", 1+rng.IntN(30))) // a tag equal to a day key
		case 3:
			tags = append(tags, fmt.Sprint(rng.IntN(10000000)))
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
		l := newTagList(randomTags(rng, rng.IntN(2000))...)
		after := []string{"", "", "1", "20261112"}[i%4]
		through := []string{"20261117031500", "20261114", "1", "zzzz", "20261112120000_prune_ns_5", "~"}[i%6]
		plan(t, l, rg(after, through), PlanConfig{Shards: 1 + rng.IntN(40), PageSize: 1 + rng.IntN(120), Concurrency: 1 + rng.IntN(8)})
	}
}

func FuzzPlan(f *testing.F) {
	f.Add("20261101000000_prune_a\n19990101000000_prune_b\nlatest", "", "20261117031500", uint8(4), uint8(2))
	f.Add("20261101\n20261102\n2026110\n", "2026", "20261102", uint8(3), uint8(1))
	f.Add("1234567\n1234568\n1234569\n1234570\n12", "", "2", uint8(2), uint8(1))
	f.Add("a\nab\nabc\nb\nba\n~\x00", "", "~", uint8(40), uint8(1))
	f.Add("", "", "x", uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, tags, after, through string, shards, pageSize uint8) {
		l := newTagList(strings.Split(tags, "\n")...)
		plan(t, l, rg(after, through), PlanConfig{Shards: int(shards % 65), PageSize: int(pageSize%8) + 1})
	})
}

// The scales are monotone: a key that sorts after another is never at a lower position.
func TestScaleMonotone(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 17))
	keys := randomTags(rng, 400)
	keys = append(keys, "", "2026", "20261", "202613", "20261132x", "2026110a", "2026110-", "99999999999999", "0000", "~", "zz", "z~")
	slices.Sort(keys)
	for _, sc := range []scale{{kind: timeScale}, {}, {prefix: "2026"}, {prefix: "20261110"}, {kind: decimalScale},
		{kind: decimalScale, prefix: "2026"}, {kind: decimalScale, prefix: "1"}} {
		for i := 1; i < len(keys); i++ {
			if a, b := sc.pos(keys[i-1]), sc.pos(keys[i]); a > b || math.IsNaN(a) {
				t.Errorf("%+v: pos(%q) = %v > pos(%q) = %v", sc, keys[i-1], a, keys[i], b)
			}
		}
	}
}

func FuzzScale(f *testing.F) {
	f.Add("20261110120000_prune_a", "20261110120000_prune_b", "20261117")
	f.Add("2026110a", "20261132", "2027")
	f.Add("abc", "abd", "b")
	f.Fuzz(func(t *testing.T, a, b, hi string) {
		if a > b {
			a, b = b, a
		}
		n := commonPrefix(a, hi)
		// The lexical scale reads a byte outside the tag alphabet as the next one inside: it is
		// monotone over names (and "~", which ends every range of names) only.
		names := strings.Trim(a+b, alphabet+"~") == ""
		for _, sc := range []scale{{kind: timeScale}, {prefix: a[:n]}, {kind: decimalScale, prefix: a[:n]}, {prefix: a[:n/2]}} {
			if pa, pb := sc.pos(a), sc.pos(b); pa > pb && (names || sc.kind != lexicalScale) {
				t.Errorf("%+v: pos(%q) = %v > pos(%q) = %v", sc, a, pa, b, pb)
			}
			// key is the inverse of pos, up to the scale's precision and rounding up.
			if k := sc.key(sc.pos(a)); k != "" && sc.pos(k) < sc.pos(a)-1e-9 && (names || sc.kind != lexicalScale) {
				t.Errorf("%+v: key(pos(%q)) = %q sits below it", sc, a, k)
			}
		}
	})
}

func TestRemaining(t *testing.T) {
	day := denseDay(2400) // one tag every 36 s
	tests := []struct {
		first, last string
		n           int
		through     string
		want        float64 // within 10%
		ok          bool
	}{
		{day[0], day[599], 600, "20261111", 1800, true},     // a quarter of the day listed
		{day[0], day[599], 600, day[1199] + "~", 600, true}, // a shard ending half way
		{"1000000", "1000999", 1000, "1004000", 3000, true}, // build numbers
		{"a", "b", 1, "c", 0, false},
		{"x", "x", 5, "y", 0, false},
		{day[0], day[9], 10, day[9], 0, true}, // at the end
	}
	for _, tt := range tests {
		got, ok := Remaining(tt.first, tt.last, tt.n, tt.through)
		if ok != tt.ok || math.Abs(got-tt.want) > tt.want/10 {
			t.Errorf("Remaining(%q, %q, %d, %q) = %.0f, %v; want %.0f, %v", tt.first, tt.last, tt.n, tt.through, got, ok, tt.want, tt.ok)
		}
	}
}
