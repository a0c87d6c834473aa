package keyspace

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/tagsweep/tagsweep/proto"
)

// Page lists one keyset page: at most n tags after `after` ("" = from the first tag), in
// byte order. more reports that the registry said (Link) more may follow.
type Page func(ctx context.Context, after string, n int) (tags []string, more bool, err error)

// PlanConfig tunes Plan. Zero values mean the documented defaults.
type PlanConfig struct {
	// Shards is how many shards the range is cut into at least, where the work allows: the
	// slots that will list it (default 1). A range holding fewer than Shards pages gets about
	// one shard per page.
	Shards int
	// PageSize is the n of each probe, and the unit of work: a range holding less than a page
	// is never cut further (default 100).
	PageSize int
	// Concurrency bounds the probes in flight (default 32: a round of probes for 32 slots
	// goes out at once, so planning takes a few round trips, not a few per round).
	Concurrency int
}

// Defaults of PlanConfig.
const (
	DefaultPageSize         = 100
	DefaultPlanConcurrency  = 32
	maxPlanRounds           = 12
	unknownWorkPerShardSlot = 16 // a range whose density cannot be read holds at most this many pages per slot
)

// node is one range of a plan in the making, with what its probe found.
type node struct {
	r      proto.Range
	probed bool
	tags   []string // the tags inside r the probe page listed, ascending
	full   bool     // the page was full of r's tags: more may follow
	est    float64  // estimated tags in r
	capped bool     // est is the most a range is assumed to hold: the density where the page ends says more
}

// Plan cuts r into contiguous ranges sized by the work in them, not by the calendar: at
// least cfg.Shards ranges that hold tags, where there are that many pages of tags, and no
// range holding less than a page beside another small one.
//
// It works in rounds of probes made in parallel. A probe lists one page at the start of a
// range (one call, whatever lies before the first tag: an empty stretch of years costs one
// probe). A page that ends inside the range tells its tags exactly; a full page tells how
// densely tags lie where it ends, in time when the keys start with timestamps, else by byte,
// and Plan estimates the rest of the range from that density. The ranges estimated to hold
// the most work are cut where the density says each piece holds a target share, and the
// pieces are probed in the next round, until every range holds about its share. Adjacent
// ranges whose estimates together stay within a share are then merged, so a namespace of
// short names (build numbers) gets a shard per page or so, never one per tag.
//
// The ranges cover r exactly, in order, without overlap, so every key in r, including tags
// pushed after the probes, lies in exactly one of them. When r holds no tag, Plan returns no
// ranges. A page that is not ascending or not after the key asked for (a registry that
// ignores `last`) is an error, never an endless loop. The estimates only choose where to cut:
// nothing about what is in a range is trusted beyond that.
func Plan(ctx context.Context, page Page, r proto.Range, cfg PlanConfig) ([]proto.Range, error) {
	if r.Through <= r.After {
		return nil, nil
	}
	cfg.Shards = max(cfg.Shards, 1)
	cfg.PageSize = cmp.Or(max(cfg.PageSize, 0), DefaultPageSize)
	cfg.Concurrency = cmp.Or(max(cfg.Concurrency, 0), DefaultPlanConcurrency)
	unknown := float64(cfg.PageSize * cfg.Shards * unknownWorkPerShardSlot)
	maxNodes := 8*cfg.Shards + 64
	nodes := []*node{{r: r}}
	var share float64
	for round := 1; ; round++ {
		if err := probeAll(ctx, page, nodes, cfg); err != nil {
			return nil, fmt.Errorf("plan: %w", err)
		}
		total := 0.0
		for _, n := range nodes {
			n.estimate(unknown)
			total += n.est
		}
		share = max(float64(cfg.PageSize), total/float64(cfg.Shards))
		if round == maxPlanRounds {
			break
		}
		// Each full node is cut into as many pieces as it holds shares; should that leave
		// fewer ranges holding tags than shards, the largest of the others are halved.
		ks := make([]int, len(nodes))
		planned := 0
		var whole []int
		for i, n := range nodes {
			if n.full {
				ks[i] = int(math.Round(n.est / share))
				if ks[i] <= 1 {
					whole = append(whole, i)
				}
			}
			if n.est > 0 {
				planned += max(ks[i], 1)
			}
		}
		slices.SortStableFunc(whole, func(a, b int) int { return cmp.Compare(nodes[b].est, nodes[a].est) })
		for _, i := range whole[:min(len(whole), max(cfg.Shards-planned, 0))] {
			ks[i] = 2
		}
		var next []*node
		cut := false
		for i, n := range nodes {
			room := maxNodes - (len(next) + len(nodes) - i) + 1 // pieces this node may become
			if k := min(ks[i], room, cfg.Shards); k > 1 {
				if pieces := n.cut(share, k); len(pieces) > 1 {
					next = append(next, pieces...)
					cut = true
					continue
				}
			}
			next = append(next, n)
		}
		nodes = next
		if !cut {
			break
		}
	}
	return merge(nodes, share), nil
}

// probeAll probes every node not yet probed, cfg.Concurrency at a time.
func probeAll(ctx context.Context, page Page, nodes []*node, cfg PlanConfig) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for _, n := range nodes {
		if n.probed {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := n.probe(ctx, page, cfg.PageSize); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// probe lists the page at the start of n's range.
func (n *node) probe(ctx context.Context, page Page, size int) error {
	tags, more, err := page(ctx, n.r.After, size)
	if err != nil {
		return fmt.Errorf("first tags after %q: %w", n.r.After, err)
	}
	prev := n.r.After
	for i, t := range tags {
		if t <= prev && (i > 0 || t == "" || prev != "") {
			return fmt.Errorf("asked for the tags after %q, got %q after %q: the registry does not honour keyset listing",
				n.r.After, t, prev)
		}
		prev = t
	}
	in := tags
	if i := slices.IndexFunc(tags, func(t string) bool { return t > n.r.Through }); i >= 0 {
		in = tags[:i]
	}
	n.tags, n.probed = slices.Clip(in), true
	n.full = len(in) > 0 && len(in) == len(tags) && (len(tags) >= size || more) && in[len(in)-1] < n.r.Through
	return nil
}

// estimate sets n.est: the tags its page listed, plus, when the page was full, the rest of the
// range at the density where the page ends (unknown when that density cannot be read).
func (n *node) estimate(unknown float64) {
	n.est = float64(len(n.tags))
	if !n.full {
		return
	}
	sc, dens, ok := density(n.tags, n.r.Through)
	if !ok {
		n.est, n.capped = max(n.est, unknown), true
		return
	}
	rest := dens * (sc.pos(n.r.Through) - sc.pos(n.tags[len(n.tags)-1]))
	n.est += max(rest, 0)
	if n.capped = n.est > unknown; n.capped {
		n.est = max(float64(len(n.tags)), unknown)
	}
}

// density returns a scale on which the tags of a page (ascending, the last one below through)
// can be told apart, and how many tags per unit of it the second half of the page holds.
// ok is false when no scale does.
func density(tags []string, through string) (scale, float64, bool) {
	if len(tags) < 2 {
		return scale{}, 0, false
	}
	a := (len(tags) - 1) / 2
	return densityOf(tags[0], tags[a:], through)
}

// Remaining estimates how many tags lie in (last, through] when n tags were listed from first
// to last, at the density they were listed at. ok is false when n is below 2 or no scale tells
// first and last apart. A worker asks it before it splits a shard for idle slots.
func Remaining(first, last string, n int, through string) (float64, bool) {
	if n < 2 || last >= through {
		return 0, n >= 2
	}
	sc, dens, ok := densityOf(first, []string{first, last}, through)
	if !ok {
		return 0, false
	}
	dens *= float64(n - 1) // densityOf counted one step from first to last
	return max(dens*(sc.pos(through)-sc.pos(last)), 0), true
}

// densityOf measures the density of the tags span (ascending; span[0] to its last, len-1 steps)
// in a range whose first tag is first and whose end is through: in time if the keys start with
// dates, else the digits or the bytes after the deepest prefix that still tells the span's ends
// apart with room to spare.
func densityOf(first string, span []string, through string) (scale, float64, bool) {
	a, last := span[0], span[len(span)-1]
	var scales []scale
	if datePrefix(first) && datePrefix(through) {
		scales = append(scales, scale{kind: timeScale})
	}
	outer, inner := commonPrefix(first, through), commonPrefix(a, last)
	run := inner // the digits the span's ends differ in start here: "job-00049" and "job-00099" read as 00049, 00099
	for run > outer && isDigit(last[run-1]) {
		run--
	}
	if dec := last[:max(run, inner-decimalDigits+2)]; numeric(span, len(dec)) {
		scales = append(scales, scale{kind: decimalScale, prefix: dec})
	}
	scales = append(scales, scale{kind: lexicalScale, prefix: last[:max(outer, inner-lexDigits+2)]})
	for _, sc := range scales {
		if w := sc.pos(last) - sc.pos(a); w > 0 && !math.IsInf(w, 0) {
			return sc, float64(len(span)-1) / w, true
		}
	}
	return scale{}, 0, false
}

// cut cuts a full node into at most most pieces. Where the page ends, pieces hold about
// share tags each by the density there; should those not reach the end of the range, half of
// them give way to pieces spread evenly over the rest of it, which the next round's probes
// sample (tags far from the page need not lie as densely). The first piece keeps the page, so
// it needs no probe. When the density cannot be read, the node is cut at the page's end and
// the rest spread evenly.
func (n *node) cut(share float64, most int) []*node {
	last := n.tags[len(n.tags)-1]
	through := n.r.Through
	var cuts []string
	if sc, dens, ok := density(n.tags, through); ok {
		pLast, pEnd := sc.pos(last), sc.pos(through)
		reached := false
		for i := 1; len(cuts) < most-1 && i <= 4*most; i++ {
			p := pLast + (float64(i)*share-float64(len(n.tags)))/dens
			if p >= pEnd {
				reached = true
				break
			}
			c := last
			if p > pLast {
				c = sc.key(p)
			}
			if c < last || c >= through || (len(cuts) > 0 && c <= cuts[len(cuts)-1]) {
				continue
			}
			cuts = append(cuts, c)
		}
		if !reached && n.capped && len(cuts) > 1 {
			cuts = cuts[:max(1, (most-1)/2)]
			cuts = append(cuts, evenCuts(proto.Range{After: cuts[len(cuts)-1], Through: through}, most-1-len(cuts))...)
		}
	}
	if len(cuts) == 0 {
		cuts = append([]string{last}, evenCuts(proto.Range{After: last, Through: through}, max(most-2, 1))...)
	}
	bounds := append(append([]string{n.r.After}, cuts...), through)
	pieces := make([]*node, 0, len(bounds)-1)
	for i := range len(bounds) - 1 {
		pieces = append(pieces, &node{r: proto.Range{After: bounds[i], Through: bounds[i+1]}})
	}
	first := pieces[0] // holds every tag of the page: cuts[0] >= last
	first.probed, first.tags = true, n.tags
	first.full = first.r.Through > last
	return pieces
}

// evenCuts returns up to k keys that cut r into pieces of equal width, in time when both its
// ends start with a date, else byte-wise; at least one (the midpoint, see Split) when r can be
// cut at all.
func evenCuts(r proto.Range, k int) []string {
	sc := scale{kind: lexicalScale, prefix: r.After[:commonPrefix(r.After, r.Through)]}
	if datePrefix(r.After) && datePrefix(r.Through) {
		sc = scale{kind: timeScale}
	}
	var cuts []string
	p0, p1 := sc.pos(r.After), sc.pos(r.Through)
	for j := 1; j <= k; j++ {
		c := sc.key(p0 + float64(j)*(p1-p0)/float64(k+1))
		if c > r.After && c < r.Through && (len(cuts) == 0 || c > cuts[len(cuts)-1]) {
			cuts = append(cuts, c)
		}
	}
	if len(cuts) == 0 {
		if m, ok := Split(r, ""); ok {
			cuts = append(cuts, m)
		}
	}
	return cuts
}

// merge joins adjacent ranges while their estimates together stay within share (an empty one
// always joins a neighbour), and returns the ranges, none if no range holds a tag.
func merge(nodes []*node, share float64) []proto.Range {
	var out []proto.Range
	var cur proto.Range
	var curEst, total float64
	for i, n := range nodes {
		total += n.est
		switch {
		case i == 0:
			cur, curEst = n.r, n.est
		case curEst == 0 || n.est == 0 || curEst+n.est <= share:
			cur.Through, curEst = n.r.Through, curEst+n.est
		default:
			out = append(out, cur)
			cur, curEst = n.r, n.est
		}
	}
	if total == 0 {
		return nil
	}
	return append(out, cur)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// numeric reports whether every tag, after its first n bytes, is a number: digits to its end,
// or at least as many digits as a decimal scale reads. Names that mix digits and letters (hex)
// are not, and a decimal reading would squeeze all their letters into its last digit.
func numeric(tags []string, n int) bool {
	for _, t := range tags {
		i := n
		for i < len(t) && isDigit(t[i]) {
			i++
		}
		if i == n || (i < len(t) && i-n < decimalDigits) {
			return false
		}
	}
	return true
}
