package sim

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// GenConfig shapes a generated tag namespace like quay.io/openshift/ci's. Zero values mean the
// documented defaults; the same GenConfig always yields the same tags.
type GenConfig struct {
	// Seed seeds the PCG generator.
	Seed uint64
	// Tags is the total number of tags; 0 means 10,000. Prune tags fill what the other
	// families (floating, signatures, odd) leave; the total exceeds Tags only when those
	// alone do.
	Tags int
	// Days is how many UTC calendar days, ending with End's day, prune tags are spread over;
	// 0 means 30. Daily density is uneven: about a third of the days are 3-5x denser.
	Days int
	// End is the newest prune-tag time (inclusive); zero means now. It is used in UTC.
	End time.Time
	// Floating is the number of floating tags <ns>_<name>_<tag>; 0 means 300, <0 none.
	Floating int
	// Signatures is the number of cosign-style sha256-<hex>.sig tags; 0 means 20, <0 none.
	Signatures int
	// SkewDay and SkewFactor make one day SkewFactor times denser than it would be. SkewDay
	// counts back from End's day (0 = End's day). SkewFactor <= 1 means no skew.
	SkewDay    int
	SkewFactor float64
	// EligibleFraction, when in (0, 1], makes exactly that fraction (rounded) of the prune
	// tags dated before Cutoff, the rest at or after it. Ignored when the window has no
	// room on one side of Cutoff. 0 leaves the split to the daily densities.
	EligibleFraction float64
	// Cutoff is the split point for EligibleFraction; zero means End minus 5 days.
	Cutoff time.Time
	// BurstSize adds one burst of that many prune tags sharing one timestamp (branch-cut
	// events push hundreds of images in the same second). Part of the Tags total.
	BurstSize int
	// Odd adds the tags OddTags(End) returns (part of the Tags total).
	Odd bool
}

// OddTags are the awkward names Generate adds with GenConfig.Odd: a prune tag dated a year
// after end, one from 1999, an impossible date, 14 digits without "_prune_", and upper-case
// variants. Only the first two are real, parseable prune tags.
func OddTags(end time.Time) []string {
	end = end.UTC()
	future := end.AddDate(1, 0, 0).Format("20060102150405")
	return []string{
		future + "_prune_ci_future_latest",
		"19990101000000_prune_ci_stray_latest",
		"20261341256199_prune_ci_impossible_date",
		"20260101000000_build_nightly_latest",
		"20260101000000_PRUNE_ci_upper_latest",
		"20260101000000_Prune_ci_mixed_latest",
		"UPPER_CASE_TAG",
	}
}

var (
	genComponents = []string{"src", "bin", "rpms", "test-bin", "root", "machine-os-content",
		"cli", "tests", "installer", "base", "must-gather", "hyperkube", "etcd", "console"}
	genNamespaces = []string{"ocp", "origin", "openshift", "ci", "art", "ocp-private"}
	genNames      = []string{"4.18", "4.19", "4.20", "4.21", "4.22", "scos-4.22", "builder", "release"}
)

const base36 = "0123456789abcdefghijklmnopqrstuvwxyz"

// Generate returns a deterministic tag namespace, sorted in byte order, without duplicates.
// 1M tags take well under a second.
func Generate(cfg GenConfig) []string {
	g := newGen(cfg)
	extra := make([]string, 0, 512)
	extra = append(extra, g.floating()...)
	extra = append(extra, g.signatures()...)
	if cfg.Odd {
		extra = append(extra, OddTags(g.end)...)
	}
	prune := max(g.total-len(extra), 0)
	burst := min(max(cfg.BurstSize, 0), prune)
	extra = g.burst(extra, burst)
	slices.Sort(extra)
	extra = slices.Compact(extra)
	// Prune tags come out sorted (segment by segment, in time order), so a merge with the
	// other families finishes the job.
	out := make([]string, 0, prune+len(extra))
	out = mergeUnique(out, g.prune(nil, prune-burst), extra)
	// Families can collide in theory (a random ci-op name equal to a burst name); top up
	// with fresh prune tags until the count is reached.
	for want := prune - burst + len(extra); len(out) < want; {
		more := g.prune(nil, want-len(out))
		out = mergeUnique(make([]string, 0, want), out, more)
	}
	return out
}

// mergeUnique appends the merge of sorted, duplicate-free a and b to dst, dropping names
// present in both.
func mergeUnique(dst, a, b []string) []string {
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			dst, a = append(dst, a[0]), a[1:]
		case a[0] > b[0]:
			dst, b = append(dst, b[0]), b[1:]
		default:
			dst, a, b = append(dst, a[0]), a[1:], b[1:]
		}
	}
	return append(append(dst, a...), b...)
}

type gen struct {
	rng   *rand.Rand
	cfg   GenConfig
	end   time.Time
	total int
	segs  []segment
	buf   []byte
	// fraction is the share of prune tags dated before the cutoff; 0 = by weight alone.
	fraction float64
}

// segment is a span of one day on one side of the cutoff, with its share of prune tags.
type segment struct {
	date   []byte // YYYYMMDD
	from   int64  // first second of day (0..86399) in the span
	length int64  // seconds in the span
	weight float64
	before bool // before the cutoff
}

func newGen(cfg GenConfig) *gen {
	g := &gen{rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), cfg: cfg, total: cmp.Or(cfg.Tags, 10000)}
	g.end = cfg.End.UTC()
	if cfg.End.IsZero() {
		g.end = time.Now().UTC()
	}
	g.end = g.end.Truncate(time.Second)
	days := cfg.Days
	if days <= 0 {
		days = 30
	}
	cutoff := cfg.Cutoff.UTC()
	if cfg.Cutoff.IsZero() {
		cutoff = g.end.Add(-5 * 24 * time.Hour)
	}
	if c := cutoff.Truncate(time.Second); !c.Equal(cutoff) {
		cutoff = c.Add(time.Second) // tags are whole seconds: the first one not before cutoff
	}
	lastDay := g.end.Truncate(24 * time.Hour)
	for back := days - 1; back >= 0; back-- {
		g.addDay(lastDay.AddDate(0, 0, -back), g.dayWeight(back), cutoff, back == 0)
	}
	g.fraction = g.eligibleFraction()
	return g
}

// dayWeight is the prune-tag density of the day back days before End's: about a third of
// the days are 3-5x denser, and the skewed day SkewFactor times more.
func (g *gen) dayWeight(back int) float64 {
	w := 1.0
	if g.rng.Float64() < 0.3 {
		w = 3 + 2*g.rng.Float64()
	}
	if g.cfg.SkewFactor > 1 && back == g.cfg.SkewDay {
		w *= g.cfg.SkewFactor
	}
	return w
}

// addDay adds the segments of day, of weight w: the part before cutoff and the part at or
// after it, each when not empty. The last day, End's, ends at End.
func (g *gen) addDay(day time.Time, w float64, cutoff time.Time, last bool) {
	from, to := day, day.Add(24*time.Hour)
	if last {
		to = g.end.Add(time.Second) // End is inclusive
	}
	date := []byte(day.Format("20060102"))
	add := func(a, b time.Time, before bool) {
		if !b.After(a) {
			return
		}
		g.segs = append(g.segs, segment{
			date: date, from: int64(a.Sub(day) / time.Second), length: int64(b.Sub(a) / time.Second),
			weight: w * float64(b.Sub(a)) / float64(24*time.Hour), before: before,
		})
	}
	mid := cutoff
	if mid.Before(from) {
		mid = from
	}
	if mid.After(to) {
		mid = to
	}
	add(from, mid, true)
	add(mid, to, false)
}

// eligibleFraction is the share of prune tags dated before the cutoff: EligibleFraction
// when it is in (0, 1] and the window has room on the sides it needs, else 0 (by weight).
func (g *gen) eligibleFraction() float64 {
	f := g.cfg.EligibleFraction
	if f <= 0 || f > 1 {
		return 0
	}
	var pre, post float64
	for _, s := range g.segs {
		if s.before {
			pre += s.weight
		} else {
			post += s.weight
		}
	}
	if pre > 0 && (post > 0 || f == 1) {
		return f
	}
	return 0
}

// counts splits n over the segments by weight (largest remainder), exactly. With an
// eligible fraction, the split between before and after the cutoff is exact too.
func (g *gen) counts(n int) []int {
	out := make([]int, len(g.segs))
	if g.fraction == 0 {
		allocate(out, g.segs, n, func(segment) bool { return true })
		return out
	}
	pre := int(math.Round(g.fraction * float64(n)))
	allocate(out, g.segs, pre, func(s segment) bool { return s.before })
	allocate(out, g.segs, n-pre, func(s segment) bool { return !s.before })
	return out
}

// allocate adds to out[i] the share of n that segment i gets by weight among the segments
// in picks.
func allocate(out []int, segs []segment, n int, in func(segment) bool) {
	var sum float64
	for _, s := range segs {
		if in(s) {
			sum += s.weight
		}
	}
	if sum == 0 || n == 0 {
		return
	}
	type rem struct {
		i int
		r float64
	}
	var rems []rem
	left := n
	for i, s := range segs {
		if !in(s) {
			continue
		}
		exact := float64(n) * s.weight / sum
		k := int(math.Floor(exact))
		out[i] += k
		left -= k
		rems = append(rems, rem{i, exact - float64(k)})
	}
	slices.SortStableFunc(rems, func(a, b rem) int {
		switch {
		case a.r > b.r:
			return -1
		case a.r < b.r:
			return 1
		}
		return 0
	})
	for k := 0; left > 0; k = (k + 1) % len(rems) {
		out[rems[k].i]++
		left--
	}
}

// stamp appends YYYYMMDDHHMMSS for second sec of the segment's day.
func stamp(b []byte, date []byte, sec int64) []byte {
	b = append(b, date...)
	h, m, s := sec/3600, sec/60%60, sec%60
	return append(b, byte('0'+h/10), byte('0'+h%10), byte('0'+m/10), byte('0'+m%10), byte('0'+s/10), byte('0'+s%10))
}

// suffix appends the <ns>_<name>_<tag> part of a QCI tag: mostly per-job ci-op namespaces,
// some release namespaces.
func (g *gen) suffix(b []byte) []byte {
	if g.rng.IntN(10) < 7 {
		b = append(b, "ci-op-"...)
		for range 8 {
			b = append(b, base36[g.rng.IntN(36)])
		}
		b = append(b, "_pipeline_"...)
	} else {
		b = append(b, genNamespaces[g.rng.IntN(len(genNamespaces))]...)
		b = append(b, '_')
		b = append(b, genNames[g.rng.IntN(len(genNames))]...)
		b = append(b, '_')
	}
	return append(b, genComponents[g.rng.IntN(len(genComponents))]...)
}

// prune appends n prune tags spread over the segments, sorted and unique. Each segment's
// seconds are drawn and sorted as integers first (much cheaper than sorting strings); only
// tags sharing a second need a string sort. A collision (same second, same name) is replaced
// within its segment, so the per-segment counts, and with them the eligible fraction, stay
// exact.
func (g *gen) prune(out []string, n int) []string {
	var secs []int64
	for i, c := range g.counts(n) {
		s := g.segs[i]
		start := len(out)
		secs = secs[:0]
		for range c {
			secs = append(secs, s.from+g.rng.Int64N(s.length))
		}
		slices.Sort(secs)
		for j := 0; j < len(secs); {
			k := j + 1
			for k < len(secs) && secs[k] == secs[j] {
				k++
			}
			run := len(out)
			for ; j < k; j++ {
				out = append(out, g.pruneTag(s.date, secs[j]))
			}
			if len(out)-run > 1 {
				slices.Sort(out[run:])
			}
		}
		// Drop duplicates; in the rare case there were some, draw replacements until the
		// segment is full again.
		for out = out[:start+len(slices.Compact(out[start:]))]; len(out)-start < c; {
			for range c - (len(out) - start) {
				out = append(out, g.pruneTag(s.date, s.from+g.rng.Int64N(s.length)))
			}
			slices.Sort(out[start:])
			out = out[:start+len(slices.Compact(out[start:]))]
		}
	}
	return out
}

func (g *gen) pruneTag(date []byte, sec int64) string {
	b := stamp(g.buf[:0], date, sec)
	b = append(b, "_prune_"...)
	g.buf = g.suffix(b)
	return string(g.buf)
}

// burst appends n prune tags sharing one timestamp in a segment picked by weight.
func (g *gen) burst(out []string, n int) []string {
	if n == 0 {
		return out
	}
	counts := g.counts(1)
	i := slices.Index(counts, 1)
	if i < 0 {
		return out
	}
	s := g.segs[i]
	ts := stamp(nil, s.date, s.from+g.rng.Int64N(s.length))
	for k := range n {
		b := append(g.buf[:0], ts...)
		b = append(b, "_prune_ci-op-burst"...)
		b = strconv.AppendInt(b, int64(k), 36)
		b = append(b, "_pipeline_"...)
		g.buf = append(b, genComponents[k%len(genComponents)]...)
		out = append(out, string(g.buf))
	}
	return out
}

func (g *gen) floating() []string {
	n := g.cfg.Floating
	if n == 0 {
		n = 300
	}
	if n < 0 {
		return nil
	}
	combos := len(genNamespaces) * len(genNames) * len(genComponents)
	perm := g.rng.Perm(combos)
	out := make([]string, 0, n)
	for i := range n {
		var b []byte
		if i < combos {
			c := perm[i]
			b = append(b, genNamespaces[c%len(genNamespaces)]...)
			c /= len(genNamespaces)
			b = append(b, '_')
			b = append(b, genNames[c%len(genNames)]...)
			c /= len(genNames)
			b = append(b, '_')
			b = append(b, genComponents[c]...)
		} else {
			b = g.suffix(b)
		}
		out = append(out, string(b))
	}
	return out
}

func (g *gen) signatures() []string {
	n := g.cfg.Signatures
	if n == 0 {
		n = 20
	}
	out := make([]string, 0, max(n, 0))
	for range n {
		b := []byte("sha256-")
		for range 64 {
			b = append(b, base36[g.rng.IntN(16)])
		}
		out = append(out, string(append(b, ".sig"...)))
	}
	return out
}
