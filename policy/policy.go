// Package policy decides which tags a run deletes. It is pure: no I/O, no clocks, no globals.
// The coordinator fixes a run's proto.Policy (including the cutoff) once; every worker compiles
// it with New and asks Decide about each listed tag, so all workers decide alike.
//
// A tag is deleted only when all of these hold:
//   - no keep pattern matches it (keep wins over everything, including an invalid timestamp);
//   - it is not a release-payload-family tag (rc_payload__, preserved__rc_payload__,
//     remove__rc_payload__ prefixes), whatever the prune pattern says;
//   - it is a well-formed OCI tag name and matches the prune pattern;
//   - the pattern's group 1 parses with the time layout in the time zone to a real time that
//     formats back to the very same text (so lenient parsing, impossible dates and wall-clock
//     times skipped by a daylight-saving change are Invalid, never eligible);
//   - that time is strictly before the cutoff, truncated to the layout's precision.
package policy

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Verdict is what Decide says about a tag. The zero value is Keep.
type Verdict uint8

const (
	// Keep: the tag stays.
	Keep Verdict = iota
	// Delete: the tag is eligible for deletion.
	Delete
	// Invalid: the tag matches the prune pattern but its timestamp is not a real time. It stays,
	// and is counted so that operators see it.
	Invalid
)

func (v Verdict) String() string {
	switch v {
	case Keep:
		return "keep"
	case Delete:
		return "delete"
	case Invalid:
		return "invalid"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Reason says why Decide reached its verdict. The vocabulary is fixed (it is a metrics label).
type Reason string

const (
	ReasonEligible           Reason = "eligible"            // Delete
	ReasonKeepPattern        Reason = "keep-pattern"        // Keep: a keep pattern matched
	ReasonPreservationFamily Reason = "preservation-family" // Keep: rc_payload__ family tag
	ReasonNoPrunePattern     Reason = "no-prune-pattern"    // Keep: not a prune tag
	ReasonNotOldEnough       Reason = "not-old-enough"      // Keep: dated at or after the cutoff
	ReasonInvalidTimestamp   Reason = "invalid-timestamp"   // Invalid
)

// Reasons lists the whole vocabulary, for pre-registering metric label values.
func Reasons() []Reason {
	return []Reason{ReasonEligible, ReasonKeepPattern, ReasonPreservationFamily,
		ReasonNoPrunePattern, ReasonNotOldEnough, ReasonInvalidTimestamp}
}

// Decision is the outcome of Decide. Time is the tag's timestamp when Decide got as far as
// parsing it (Delete and not-old-enough), else the zero time.
type Decision struct {
	Verdict Verdict
	Reason  Reason
	Time    time.Time
}

// Default policy values: the ci-tools prune tag `YYYYMMDDHHMMSS_prune_...`, read in UTC.
const (
	DefaultPrunePattern = `^(\d{14})_prune_`
	DefaultTimeLayout   = "20060102150405"
	DefaultTimeZone     = "UTC"
)

// Defaults returns the default policy with a zero Cutoff: the caller sets Cutoff (see Cutoff).
func Defaults() proto.Policy {
	return proto.Policy{
		PrunePattern: DefaultPrunePattern,
		TimeLayout:   DefaultTimeLayout,
		TimeZone:     DefaultTimeZone,
	}
}

// Rules is a compiled policy. It is immutable and safe for concurrent use.
type Rules struct {
	policy    proto.Policy
	prune     *regexp.Regexp
	keep      []*regexp.Regexp
	loc       *time.Location
	layout    string
	cutoff    time.Time // policy cutoff truncated to the layout's precision
	cutoffKey string    // cutoff formatted with layout in loc
	fast      bool      // default pattern and layout: match without the regexp engine
	fastUTC   bool      // fast and loc is UTC
}

// New compiles p. The error names every bad field (errors.Join).
func New(p proto.Policy) (*Rules, error) {
	r := &Rules{policy: p, layout: p.TimeLayout}
	p.KeepPatterns = append([]string(nil), p.KeepPatterns...)
	r.policy = p
	var errs []error

	if err := checkPrunePattern(p.PrunePattern); err != nil {
		errs = append(errs, err)
	} else {
		r.prune = regexp.MustCompile(p.PrunePattern)
	}
	for i, k := range p.KeepPatterns {
		re, err := regexp.Compile(k)
		switch {
		case k == "":
			errs = append(errs, fmt.Errorf("keep pattern %d is empty (it would keep every tag; remove it)", i))
		case err != nil:
			errs = append(errs, fmt.Errorf("keep pattern %d %q: %w", i, k, err))
		default:
			r.keep = append(r.keep, re)
		}
	}
	loc, err := time.LoadLocation(p.TimeZone)
	switch {
	case p.TimeZone == "":
		errs = append(errs, errors.New("time zone is empty (use \"UTC\")"))
	case p.TimeZone == "Local":
		errs = append(errs, errors.New("time zone \"Local\" depends on each machine; name an IANA zone"))
	case err != nil:
		errs = append(errs, fmt.Errorf("time zone %q: %w", p.TimeZone, err))
	default:
		r.loc = loc
	}
	if p.TimeLayout == "" {
		errs = append(errs, errors.New("time layout is empty"))
	}
	if p.Cutoff.IsZero() {
		errs = append(errs, errors.New("cutoff is not set"))
	}
	if p.MaxDeletes < 0 {
		errs = append(errs, fmt.Errorf("max deletes %d is negative (0 means no cap)", p.MaxDeletes))
	}
	if r.loc != nil && p.TimeLayout != "" && !p.Cutoff.IsZero() {
		if err := r.compileCutoff(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("policy: %w", errors.Join(errs...))
	}
	r.fast = p.PrunePattern == DefaultPrunePattern && p.TimeLayout == DefaultTimeLayout
	r.fastUTC = r.fast && r.loc == time.UTC
	return r, nil
}

// checkPrunePattern compiles the prune pattern and checks that its group 1 is a capturing group
// anchored at the start of the tag: key-range sharding lists tags by their byte-order prefix,
// which only tracks a tag's date when the timestamp is the tag's prefix.
func checkPrunePattern(pat string) error {
	if pat == "" {
		return errors.New("prune pattern is empty")
	}
	re, err := regexp.Compile(pat)
	if err != nil {
		return fmt.Errorf("prune pattern %q: %w", pat, err)
	}
	if re.NumSubexp() < 1 {
		return fmt.Errorf("prune pattern %q has no capturing group 1 for the timestamp", pat)
	}
	tree, err := syntax.Parse(pat, syntax.Perl)
	if err != nil {
		return fmt.Errorf("prune pattern %q: %w", pat, err)
	}
	if !anchoredGroup1(tree) {
		return fmt.Errorf("prune pattern %q must start with ^( : its group 1 (the timestamp) must be "+
			"the tag's prefix, because key-range sharding finds old tags by their byte-order prefix", pat)
	}
	return nil
}

// anchoredGroup1 reports whether re is a concatenation that begins with ^ (begin of text)
// immediately followed by capture group 1.
func anchoredGroup1(re *syntax.Regexp) bool {
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 {
		return false
	}
	return re.Sub[0].Op == syntax.OpBeginText && re.Sub[1].Op == syntax.OpCapture && re.Sub[1].Cap == 1
}

// compileCutoff fixes the effective cutoff and its key, and checks the layout: the cutoff must
// survive format-then-parse (to the layout's precision), and formatted times must sort like the
// times themselves. That holds for layouts of fixed-width, most-significant-first numeric
// fields (2006 01 02 15 04 05, with constant separators), which is what the key-range planner
// relies on: every eligible tag sorts, byte-wise, below CutoffKey.
func (r *Rules) compileCutoff() error {
	layout, loc := r.policy.TimeLayout, r.loc
	key := r.policy.Cutoff.In(loc).Format(layout)
	back, err := time.ParseInLocation(layout, key, loc)
	if err != nil {
		return fmt.Errorf("time layout %q: cannot parse back the cutoff it formats (%q): %w", layout, key, err)
	}
	if got := back.In(loc).Format(layout); got != key {
		return fmt.Errorf("time layout %q: cutoff %q formats back as %q", layout, key, got)
	}
	if d := r.policy.Cutoff.Sub(back); d < 0 || d >= 32*24*time.Hour {
		return fmt.Errorf("time layout %q: cutoff %s reads back as %s: the layout must hold at least "+
			"year, month and day", layout, r.policy.Cutoff.Format(time.RFC3339), back.Format(time.RFC3339))
	}
	if err := checkSortsLikeTime(layout, loc, r.policy.Cutoff); err != nil {
		return err
	}
	// Truncating the cutoff to the layout's precision keeps "time before cutoff" and
	// "timestamp text below CutoffKey" the same statement; it can only keep more tags.
	r.cutoff, r.cutoffKey = back, key
	return nil
}

// checkSortsLikeTime formats a spread of times around the cutoff and checks that the texts are
// all the same length and sort as the times do.
func checkSortsLikeTime(layout string, loc *time.Location, cutoff time.Time) error {
	steps := []time.Duration{0, time.Second, time.Minute, time.Hour, 24 * time.Hour,
		31 * 24 * time.Hour, 365 * 24 * time.Hour, 10 * 365 * 24 * time.Hour}
	var times []time.Time
	base := cutoff.In(loc)
	for _, s := range steps {
		times = append(times, base.Add(-s), base.Add(s))
	}
	// Fixed dates that exercise every digit position (single-digit months, days, hours, ...).
	for _, y := range []int{1999, 2000, 2009, 2010, 2026} {
		for _, m := range []time.Month{1, 2, 9, 10, 12} {
			for _, d := range []int{1, 9, 10, 28} {
				times = append(times, time.Date(y, m, d, d%24, d*2, d, 0, loc))
			}
		}
	}
	width := len(base.Format(layout))
	for _, a := range times {
		if fa := a.Format(layout); len(fa) != width {
			return fmt.Errorf("time layout %q is not fixed-width (%q vs %q): key-range sharding needs "+
				"fixed-width, most-significant-first timestamps", layout, fa, base.Format(layout))
		}
	}
	// Monotone on the sorted times is enough: text order is transitive.
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(times); i++ {
		fa, fb := times[i-1].Format(layout), times[i].Format(layout)
		if fa > fb {
			return fmt.Errorf("time layout %q does not sort like time (%q is earlier than %q): key-range "+
				"sharding needs fixed-width, most-significant-first timestamps", layout, fa, fb)
		}
	}
	return nil
}

// Policy returns the policy r was compiled from.
func (r *Rules) Policy() proto.Policy {
	p := r.policy
	p.KeepPatterns = append([]string(nil), p.KeepPatterns...)
	return p
}

// Cutoff returns the effective cutoff: the policy's, truncated to the layout's precision.
// A tag is eligible only when its timestamp is strictly before it.
func (r *Rules) Cutoff() time.Time { return r.cutoff }

// CutoffKey is the cutoff formatted with the layout in the time zone ("20261117031500"). Every
// tag Decide deletes sorts strictly below it in byte order, so a planner may restrict listing to
// keys <= CutoffKey.
func (r *Rules) CutoffKey() string { return r.cutoffKey }

// Decide is the one place deletion eligibility is decided.
func (r *Rules) Decide(tag string) Decision {
	for _, k := range r.keep {
		if k.MatchString(tag) {
			return Decision{Verdict: Keep, Reason: ReasonKeepPattern}
		}
	}
	if proto.PayloadFamily(tag) {
		return Decision{Verdict: Keep, Reason: ReasonPreservationFamily}
	}
	if !proto.ValidTag(tag) {
		return Decision{Verdict: Keep, Reason: ReasonNoPrunePattern}
	}
	var ts string
	if r.fast {
		if !defaultMatch(tag) {
			return Decision{Verdict: Keep, Reason: ReasonNoPrunePattern}
		}
		ts = tag[:14]
	} else {
		m := r.prune.FindStringSubmatchIndex(tag)
		if m == nil {
			return Decision{Verdict: Keep, Reason: ReasonNoPrunePattern}
		}
		if m[2] < 0 {
			return Decision{Verdict: Invalid, Reason: ReasonInvalidTimestamp}
		}
		ts = tag[m[2]:m[3]]
	}
	t, ok := r.parse(ts)
	if !ok {
		return Decision{Verdict: Invalid, Reason: ReasonInvalidTimestamp}
	}
	if !t.Before(r.cutoff) {
		return Decision{Verdict: Keep, Reason: ReasonNotOldEnough, Time: t}
	}
	return Decision{Verdict: Delete, Reason: ReasonEligible, Time: t}
}

// parse reads a timestamp and checks that it formats back to the same text.
func (r *Rules) parse(ts string) (time.Time, bool) {
	if r.fastUTC {
		return parseDigits14(ts)
	}
	t, err := time.ParseInLocation(r.layout, ts, r.loc)
	if err != nil {
		return time.Time{}, false
	}
	var buf [64]byte
	if string(t.In(r.loc).AppendFormat(buf[:0], r.layout)) != ts {
		return time.Time{}, false
	}
	return t, true
}

// defaultMatch is DefaultPrunePattern without the regexp engine.
func defaultMatch(tag string) bool {
	if len(tag) < 14+len("_prune_") {
		return false
	}
	for i := range 14 {
		if tag[i] < '0' || tag[i] > '9' {
			return false
		}
	}
	return tag[14:14+len("_prune_")] == "_prune_"
}

// parseDigits14 reads 14 ASCII digits as YYYYMMDDHHMMSS in UTC, rejecting any field out of range
// (month 13, day 32, Feb 30, hour 24, second 60).
func parseDigits14(ts string) (time.Time, bool) {
	if len(ts) != 14 {
		return time.Time{}, false
	}
	n := func(i, j int) int {
		v := 0
		for _, c := range []byte(ts[i:j]) {
			v = v*10 + int(c-'0')
		}
		return v
	}
	y, mo, d, h, mi, s := n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14)
	if mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, s, 0, time.UTC)
	if t.Day() != d { // day past the end of its month: time.Date normalised it
		return time.Time{}, false
	}
	return t, true
}

// ParseTTL parses a time-to-live: a Go duration ("36h", "90m") optionally preceded by whole
// days ("5d", "2d12h"). Empty, negative and overflowing values are errors.
func ParseTTL(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("ttl is empty")
	}
	var days int64
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		if i == 0 {
			return 0, fmt.Errorf("ttl %q: no number before d", s)
		}
		for _, c := range []byte(s[:i]) {
			if c < '0' || c > '9' {
				return 0, fmt.Errorf("ttl %q: days must be a whole non-negative number", s)
			}
			days = days*10 + int64(c-'0')
			if days > maxDays {
				return 0, fmt.Errorf("ttl %q is too long", s)
			}
		}
		rest = s[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		if d, err = time.ParseDuration(rest); err != nil {
			return 0, fmt.Errorf("ttl %q: %w", s, err)
		}
		if d < 0 || rest[0] == '-' || (rest[0] == '+' && days > 0) {
			return 0, fmt.Errorf("ttl %q is negative or malformed", s)
		}
	}
	total := time.Duration(days) * 24 * time.Hour
	if d > maxTTL-total {
		return 0, fmt.Errorf("ttl %q is too long", s)
	}
	return total + d, nil
}

const (
	maxTTL  = time.Duration(1<<63 - 1)
	maxDays = int64(maxTTL / (24 * time.Hour))
)

// DaysTTL converts the existing pruner's --ttl-days to a TTL: -1 ("all prunable tags") is 0, so
// the cutoff is the run start; other negative values are errors.
func DaysTTL(days int) (time.Duration, error) {
	switch {
	case days == -1:
		return 0, nil
	case days < -1:
		return 0, fmt.Errorf("ttl days %d: only -1 (all prunable tags) may be negative", days)
	case int64(days) > maxDays:
		return 0, fmt.Errorf("ttl days %d is too long", days)
	}
	return time.Duration(days) * 24 * time.Hour, nil
}

// Cutoff is the run's cutoff: start minus ttl, in UTC (monotonic reading dropped).
func Cutoff(start time.Time, ttl time.Duration) time.Time { return start.Add(-ttl).UTC() }
