package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// cutoff used by most tests: 2026-11-17 03:15:00 UTC, key "20261117031500".
var testCutoff = time.Date(2026, 11, 17, 3, 15, 0, 0, time.UTC)

func mustNew(t testing.TB, p proto.Policy) *Rules {
	t.Helper()
	r, err := New(p)
	if err != nil {
		t.Fatalf("New(%+v): %v", p, err)
	}
	return r
}

func policyWith(mod func(*proto.Policy)) proto.Policy {
	p := Defaults()
	p.Cutoff = testCutoff
	if mod != nil {
		mod(&p)
	}
	return p
}

func TestDecide(t *testing.T) {
	keep := func(p *proto.Policy) { p.KeepPatterns = []string{`_keep_`, `^20200101`} }
	tests := []struct {
		name   string
		mod    func(*proto.Policy)
		tag    string
		want   Verdict
		reason Reason
	}{
		{"old prune tag", nil, "20240603235401_prune_ci_a_latest", Delete, ReasonEligible},
		{"exactly at cutoff", nil, "20261117031500_prune_x", Keep, ReasonNotOldEnough},
		{"one second before cutoff", nil, "20261117031459_prune_x", Delete, ReasonEligible},
		{"one second after cutoff", nil, "20261117031501_prune_x", Keep, ReasonNotOldEnough},
		{"future dated", nil, "20991231235959_prune_x", Keep, ReasonNotOldEnough},
		{"month 13", nil, "20241301000000_prune_x", Invalid, ReasonInvalidTimestamp},
		{"month 00", nil, "20240001000000_prune_x", Invalid, ReasonInvalidTimestamp},
		{"day 32", nil, "20240132000000_prune_x", Invalid, ReasonInvalidTimestamp},
		{"day 00", nil, "20240100000000_prune_x", Invalid, ReasonInvalidTimestamp},
		{"Feb 30", nil, "20240230000000_prune_x", Invalid, ReasonInvalidTimestamp},
		{"Feb 29 non-leap", nil, "20230229000000_prune_x", Invalid, ReasonInvalidTimestamp},
		{"Feb 29 leap", nil, "20240229000000_prune_x", Delete, ReasonEligible},
		{"hour 24", nil, "20240101240000_prune_x", Invalid, ReasonInvalidTimestamp},
		{"minute 60", nil, "20240101006000_prune_x", Invalid, ReasonInvalidTimestamp},
		{"second 60", nil, "20240101000060_prune_x", Invalid, ReasonInvalidTimestamp},
		{"year 0000", nil, "00000101000000_prune_x", Delete, ReasonEligible},
		{"14 digits without _prune_", nil, "20240101000000_x", Keep, ReasonNoPrunePattern},
		{"14 digits only", nil, "20240101000000", Keep, ReasonNoPrunePattern},
		{"13 digits", nil, "2024010100000_prune_x", Keep, ReasonNoPrunePattern},
		{"15 digits", nil, "202401010000000_prune_x", Keep, ReasonNoPrunePattern},
		{"upper-case _PRUNE_", nil, "20240101000000_PRUNE_x", Keep, ReasonNoPrunePattern},
		{"prefix before timestamp", nil, "x20240101000000_prune_x", Keep, ReasonNoPrunePattern},
		{"_prune_ with empty rest", nil, "20240101000000_prune_", Delete, ReasonEligible},
		{"unicode digits", nil, "２０２４０１０１０００００００_prune_x", Keep, ReasonNoPrunePattern},
		{"unicode after prefix (not a valid tag)", nil, "20240101000000_prune_é", Keep, ReasonNoPrunePattern},
		{"too long for a tag", nil, "20240101000000_prune_" + strings.Repeat("a", 108), Keep, ReasonNoPrunePattern},
		{"longest valid tag", nil, "20240101000000_prune_" + strings.Repeat("a", 107), Delete, ReasonEligible},
		{"empty", nil, "", Keep, ReasonNoPrunePattern},
		{"plain tag", nil, "latest", Keep, ReasonNoPrunePattern},
		{"keep pattern beats eligibility", keep, "20240101000000_prune_ns_keep_x", Keep, ReasonKeepPattern},
		{"keep pattern beats invalid", keep, "20200101250000_prune_x", Keep, ReasonKeepPattern},
		{"keep pattern not matching", keep, "20240101000000_prune_ns_x", Delete, ReasonEligible},
		{"rc_payload", nil, "rc_payload__4.22.0-0.ci-2026-01-30-070825", Keep, ReasonPreservationFamily},
		{"rc_payload component", nil, "rc_payload__4.22.0__component__cli", Keep, ReasonPreservationFamily},
		{"preserved marker", nil, "preserved__rc_payload__4.22.0", Keep, ReasonPreservationFamily},
		{"removal request", nil, "remove__rc_payload__4.22.0", Keep, ReasonPreservationFamily},
		{"family never eligible even when the pattern matches", func(p *proto.Policy) {
			p.PrunePattern = `^(.{0,8})`
			p.TimeLayout = "20060102"
		}, "rc_payload__20240101", Keep, ReasonPreservationFamily},
		{"user pattern: the same tag shape outside the family", func(p *proto.Policy) {
			p.PrunePattern = `^(\d{8})_`
			p.TimeLayout = "20060102"
		}, "20240101_rc_payload__x", Delete, ReasonEligible},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustNew(t, policyWith(tt.mod))
			got := r.Decide(tt.tag)
			if got.Verdict != tt.want || got.Reason != tt.reason {
				t.Errorf("Decide(%q) = %v/%s, want %v/%s", tt.tag, got.Verdict, got.Reason, tt.want, tt.reason)
			}
			if (got.Verdict == Delete || got.Reason == ReasonNotOldEnough) == got.Time.IsZero() {
				t.Errorf("Decide(%q).Time = %v for %s", tt.tag, got.Time, got.Reason)
			}
			if got.Verdict == Delete && !(tt.tag < r.CutoffKey()) {
				t.Errorf("Decide(%q) = Delete but the tag does not sort below CutoffKey %q", tt.tag, r.CutoffKey())
			}
		})
	}
}

func TestDecideTime(t *testing.T) {
	r := mustNew(t, policyWith(nil))
	got := r.Decide("20240603235401_prune_ci_a_latest").Time
	if want := time.Date(2024, 6, 3, 23, 54, 1, 0, time.UTC); !got.Equal(want) {
		t.Errorf("Decide().Time = %v, want %v", got, want)
	}
}

// TestTimeZone: timestamps read in a non-UTC zone shift which tags are old enough. The cutoff
// 03:15:00 UTC is 12:15:00 in Tokyo (UTC+9, no DST) and 22:15:00 the day before in New York
// (UTC-5 in November).
func TestTimeZone(t *testing.T) {
	tests := []struct {
		zone, key string
		tag       string
		want      Verdict
	}{
		{"UTC", "20261117031500", "20261117121459_prune_x", Keep},
		{"Asia/Tokyo", "20261117121500", "20261117121459_prune_x", Delete},
		{"Asia/Tokyo", "20261117121500", "20261117121500_prune_x", Keep},
		{"America/New_York", "20261116221500", "20261116221459_prune_x", Delete},
		{"America/New_York", "20261116221500", "20261117031459_prune_x", Keep},
		// 2026-03-08 02:30 does not exist in New York (clocks jump 02:00 -> 03:00).
		{"America/New_York", "20261116221500", "20260308023000_prune_x", Invalid},
		// 2026-11-01 01:30 happens twice in New York; either reading is long before the cutoff.
		{"America/New_York", "20261116221500", "20261101013000_prune_x", Delete},
	}
	for _, tt := range tests {
		t.Run(tt.zone+"/"+tt.tag, func(t *testing.T) {
			r := mustNew(t, policyWith(func(p *proto.Policy) { p.TimeZone = tt.zone }))
			if got := r.CutoffKey(); got != tt.key {
				t.Errorf("CutoffKey() = %q, want %q", got, tt.key)
			}
			if got := r.Decide(tt.tag).Verdict; got != tt.want {
				t.Errorf("Decide(%q) = %v, want %v", tt.tag, got, tt.want)
			}
		})
	}
}

func TestCutoffKey(t *testing.T) {
	tests := []struct {
		cutoff time.Time
		layout string
		want   string
	}{
		{testCutoff, DefaultTimeLayout, "20261117031500"},
		// Sub-second cutoffs are truncated to the layout's precision.
		{testCutoff.Add(999 * time.Millisecond), DefaultTimeLayout, "20261117031500"},
		{testCutoff.Add(-time.Nanosecond), DefaultTimeLayout, "20261117031459"},
		{testCutoff, "20060102", "20261117"},
		{testCutoff, "2006-01-02T15:04:05", "2026-11-17T03:15:00"},
	}
	for _, tt := range tests {
		r := mustNew(t, policyWith(func(p *proto.Policy) {
			p.Cutoff = tt.cutoff
			p.TimeLayout = tt.layout
			if tt.layout == "2006-01-02T15:04:05" {
				p.PrunePattern = `^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)_prune_`
			}
		}))
		if got := r.CutoffKey(); got != tt.want {
			t.Errorf("CutoffKey() with cutoff %v layout %q = %q, want %q", tt.cutoff, tt.layout, got, tt.want)
		}
		if got := r.Cutoff(); got.After(tt.cutoff) {
			t.Errorf("Cutoff() = %v is after the policy cutoff %v", got, tt.cutoff)
		}
	}
	// A sub-second cutoff must not make a tag in its own second eligible: it would sort above
	// the key.
	r := mustNew(t, policyWith(func(p *proto.Policy) { p.Cutoff = testCutoff.Add(500 * time.Millisecond) }))
	if got := r.Decide("20261117031500_prune_x").Verdict; got != Keep {
		t.Errorf("Decide(tag in the cutoff's second) = %v, want keep", got)
	}
}

// TestTTLDaysMinusOne: the existing pruner's --ttl-days -1 ("all prunable tags") is TTL 0, so
// the cutoff is the run start.
func TestTTLDaysMinusOne(t *testing.T) {
	start := time.Date(2026, 11, 17, 3, 15, 0, 0, time.UTC)
	ttl, err := DaysTTL(-1)
	if err != nil || ttl != 0 {
		t.Fatalf("DaysTTL(-1) = %v, %v; want 0, nil", ttl, err)
	}
	c := Cutoff(start, ttl)
	if !c.Equal(start) {
		t.Fatalf("Cutoff(start, 0) = %v, want %v", c, start)
	}
	r := mustNew(t, policyWith(func(p *proto.Policy) { p.Cutoff = c }))
	for tag, want := range map[string]Verdict{
		"20261117031459_prune_x": Delete,
		"20261117031500_prune_x": Keep,
	} {
		if got := r.Decide(tag).Verdict; got != want {
			t.Errorf("Decide(%q) = %v, want %v", tag, got, want)
		}
	}
}

func TestDaysTTL(t *testing.T) {
	tests := []struct {
		days    int
		want    time.Duration
		wantErr bool
	}{
		{-1, 0, false}, {0, 0, false}, {5, 5 * 24 * time.Hour, false}, {60, 60 * 24 * time.Hour, false},
		{-2, 0, true}, {1 << 40, 0, true},
	}
	for _, tt := range tests {
		got, err := DaysTTL(tt.days)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("DaysTTL(%d) = %v, %v; want %v, err %v", tt.days, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCutoff(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no zoneinfo: %v", err)
	}
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, ny) // 15:00 UTC
	got := Cutoff(start, 5*24*time.Hour)
	if want := time.Date(2026, 11, 17, 15, 0, 0, 0, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("Cutoff = %v, want %v in UTC", got, want)
	}
	now := time.Now() // carries a monotonic reading, which must not leak into the cutoff
	if c := Cutoff(now, time.Hour); c != c.Round(0) {
		t.Errorf("Cutoff kept the monotonic clock reading: %v", c)
	}
}

func TestParseTTL(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"36h", 36 * time.Hour, false},
		{"90m", 90 * time.Minute, false},
		{"5d", 5 * 24 * time.Hour, false},
		{"2d12h", 60 * time.Hour, false},
		{"0d", 0, false},
		{"0", 0, false},
		{"1d30m15s", 24*time.Hour + 30*time.Minute + 15*time.Second, false},
		{"", 0, true},
		{"-1h", 0, true},
		{"-5d", 0, true},
		{"2d-1h", 0, true},
		{"d", 0, true},
		{"1.5d", 0, true},
		{"5", 0, true},
		{"5dd", 0, true},
		{"1d1", 0, true},
		{"abc", 0, true},
		{"106752d", 0, true},    // beyond time.Duration
		{"106751d24h", 0, true}, // overflows only when added
		{"99999999999999999999d", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseTTL(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseTTL(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*proto.Policy)
		want []string // every substring must appear in the error
	}{
		{"no group", func(p *proto.Policy) { p.PrunePattern = `^\d{14}_prune_` }, []string{"no capturing group 1"}},
		{"non-capturing group", func(p *proto.Policy) { p.PrunePattern = `^(?:\d{14})_prune_` }, []string{"no capturing group 1"}},
		{"not anchored", func(p *proto.Policy) { p.PrunePattern = `(\d{14})_prune_` }, []string{"must start with ^(", "prefix"}},
		{"group 1 not first", func(p *proto.Policy) { p.PrunePattern = `^x(\d{14})_prune_` }, []string{"must start with ^("}},
		{"alternation", func(p *proto.Policy) { p.PrunePattern = `^(\d{14})_prune_|(\d{14})` }, []string{"must start with ^("}},
		{"multi-line anchor", func(p *proto.Policy) { p.PrunePattern = `(?m)^(\d{14})_prune_` }, []string{"must start with ^("}},
		{"optional group 1", func(p *proto.Policy) { p.PrunePattern = `^(\d{14})?_prune_` }, []string{"must start with ^("}},
		{"bad regexp", func(p *proto.Policy) { p.PrunePattern = `^(\d{14}` }, []string{"prune pattern"}},
		{"empty pattern", func(p *proto.Policy) { p.PrunePattern = "" }, []string{"prune pattern is empty"}},
		{"bad keep", func(p *proto.Policy) { p.KeepPatterns = []string{"ok", "(["} }, []string{"keep pattern 1"}},
		{"empty keep", func(p *proto.Policy) { p.KeepPatterns = []string{""} }, []string{"keep pattern 0 is empty"}},
		{"bad zone", func(p *proto.Policy) { p.TimeZone = "Mars/Olympus" }, []string{"time zone \"Mars/Olympus\""}},
		{"empty zone", func(p *proto.Policy) { p.TimeZone = "" }, []string{"time zone is empty"}},
		{"local zone", func(p *proto.Policy) { p.TimeZone = "Local" }, []string{"Local"}},
		{"empty layout", func(p *proto.Policy) { p.TimeLayout = "" }, []string{"time layout is empty"}},
		{"layout without year", func(p *proto.Policy) { p.TimeLayout = "0102150405" }, []string{"year, month and day"}},
		{"day-first layout", func(p *proto.Policy) { p.TimeLayout = "02012006150405" }, []string{"does not sort like time"}},
		{"month names", func(p *proto.Policy) { p.TimeLayout = "2006Jan02150405" }, []string{"does not sort like time"}},
		{"two-digit year", func(p *proto.Policy) { p.TimeLayout = "060102150405" }, []string{"does not sort like time"}},
		{"unpadded layout", func(p *proto.Policy) { p.TimeLayout = "2006-1-2" }, []string{"not fixed-width"}},
		{"no cutoff", func(p *proto.Policy) { p.Cutoff = time.Time{} }, []string{"cutoff is not set"}},
		{"negative max", func(p *proto.Policy) { p.MaxDeletes = -1 }, []string{"max deletes -1"}},
		{"every problem at once", func(p *proto.Policy) {
			p.PrunePattern = `(\d{14})`
			p.KeepPatterns = []string{"(["}
			p.TimeZone = "Nowhere"
			p.Cutoff = time.Time{}
		}, []string{"must start with ^(", "keep pattern 0", "time zone \"Nowhere\"", "cutoff is not set"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := New(policyWith(tt.mod))
			if err == nil {
				t.Fatalf("New() = %v, nil; want an error", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("New() error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	for _, mod := range []func(*proto.Policy){
		nil,
		func(p *proto.Policy) { p.PrunePattern = `^(?P<ts>\d{14})_prune_` },
		func(p *proto.Policy) { p.PrunePattern = `^(\d{8})_`; p.TimeLayout = "20060102" },
		func(p *proto.Policy) { p.TimeZone = "Europe/Berlin" },
		func(p *proto.Policy) { p.TimeLayout = "20060102150405.000"; p.PrunePattern = `^(\d{14}\.\d{3})_` },
	} {
		p := policyWith(mod)
		if _, err := New(p); err != nil {
			t.Errorf("New(%+v): %v", p, err)
		}
	}
}

func TestPolicyIsCopied(t *testing.T) {
	p := policyWith(func(p *proto.Policy) { p.KeepPatterns = []string{"_keep_"} })
	r := mustNew(t, p)
	p.KeepPatterns[0] = "changed"
	if got := r.Policy().KeepPatterns[0]; got != "_keep_" {
		t.Errorf("Policy().KeepPatterns[0] = %q after the caller changed its slice", got)
	}
}

func TestVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Keep: "keep", Delete: "delete", Invalid: "invalid", 9: "verdict(9)"} {
		if got := v.String(); got != want {
			t.Errorf("Verdict(%d).String() = %q, want %q", v, got, want)
		}
	}
}

// TestFastPathMatchesRegexp: the default pattern is matched without the regexp engine; it must
// decide exactly as the regexp does.
func TestFastPathMatchesRegexp(t *testing.T) {
	fast := mustNew(t, policyWith(nil))
	slow := mustNew(t, policyWith(func(p *proto.Policy) { p.PrunePattern = `^(\d{14})_prune_()` }))
	if !fast.fast || slow.fast {
		t.Fatalf("fast path selection: default %v, other %v", fast.fast, slow.fast)
	}
	for _, tag := range fastPathSeeds {
		if a, b := fast.Decide(tag), slow.Decide(tag); a != b {
			t.Errorf("Decide(%q): fast path %+v, regexp %+v", tag, a, b)
		}
	}
}

var fastPathSeeds = []string{
	"20240603235401_prune_ci_a_latest", "20261117031500_prune_x", "20261117031459_prune_x",
	"20241301000000_prune_x", "20240230000000_prune_x", "20240101240000_prune_x",
	"2024010100000_prune_x", "202401010000000_prune_x", "20240101000000_PRUNE_x", "20240101000000_prune",
	"rc_payload__4.22", "latest", "", "00000101000000_prune_", "99991231235959_prune_z",
}

func FuzzDecide(f *testing.F) {
	for _, s := range fastPathSeeds {
		f.Add(s, "")
	}
	f.Add("20240101000000_prune_keep", "keep")
	f.Add("preserved__rc_payload__20240101000000_prune_", "")
	rules := mustNew(f, policyWith(nil))
	slow := mustNew(f, policyWith(func(p *proto.Policy) { p.PrunePattern = `^(\d{14})_prune_()` }))
	ny := mustNew(f, policyWith(func(p *proto.Policy) { p.TimeZone = "America/New_York" }))
	f.Fuzz(func(t *testing.T, tag, keep string) {
		for _, r := range []*Rules{rules, slow, ny} {
			checkDecision(t, r, tag)
		}
		if a, b := rules.Decide(tag), slow.Decide(tag); a != b {
			t.Errorf("Decide(%q): fast path %+v, regexp %+v", tag, a, b)
		}
		p := policyWith(func(p *proto.Policy) { p.KeepPatterns = []string{keep} })
		r, err := New(p)
		if err != nil {
			return
		}
		checkDecision(t, r, tag)
	})
}

// checkDecision checks the safety property of one decision independently of Decide's code.
func checkDecision(t *testing.T, r *Rules, tag string) {
	t.Helper()
	d := r.Decide(tag)
	if d.Verdict != Delete {
		if d.Reason == ReasonEligible {
			t.Errorf("Decide(%q) = %v with reason eligible", tag, d.Verdict)
		}
		return
	}
	p := r.Policy()
	m := r.prune.FindStringSubmatch(tag)
	if m == nil {
		t.Fatalf("Decide(%q) = Delete but the prune pattern does not match", tag)
	}
	ts, err := time.ParseInLocation(p.TimeLayout, m[1], r.loc)
	if err != nil || ts.In(r.loc).Format(p.TimeLayout) != m[1] {
		t.Fatalf("Decide(%q) = Delete but its timestamp %q is not valid (%v)", tag, m[1], err)
	}
	if !ts.Before(p.Cutoff) {
		t.Errorf("Decide(%q) = Delete but %v is not before the cutoff %v", tag, ts, p.Cutoff)
	}
	for _, k := range r.keep {
		if k.MatchString(tag) {
			t.Errorf("Decide(%q) = Delete but keep pattern %q matches", tag, k)
		}
	}
	if proto.PayloadFamily(tag) {
		t.Errorf("Decide(%q) = Delete but it is a preservation-family tag", tag)
	}
	if !(tag < r.CutoffKey()) {
		t.Errorf("Decide(%q) = Delete but it does not sort below CutoffKey %q", tag, r.CutoffKey())
	}
}

var sink Decision

func BenchmarkDecide(b *testing.B) {
	tags := map[string]string{
		"eligible": "20240603235401_prune_ci_a_latest",
		"not-old":  "20991231235959_prune_ci_a_latest",
		"invalid":  "20241301000000_prune_ci_a_latest",
		"no-prune": "ci_a_latest",
		"family":   "rc_payload__4.22.0-0.ci-2026-01-30-070825",
	}
	policies := map[string]proto.Policy{
		"default":       policyWith(nil),
		"regexp":        policyWith(func(p *proto.Policy) { p.PrunePattern = `^(\d{14})_prune_()` }),
		"default-zoned": policyWith(func(p *proto.Policy) { p.TimeZone = "Europe/Berlin" }),
		"keep":          policyWith(func(p *proto.Policy) { p.KeepPatterns = []string{`_keep_`, `^release-`} }),
	}
	for pname, p := range policies {
		r := mustNew(b, p)
		for tname, tag := range tags {
			b.Run(pname+"/"+tname, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					sink = r.Decide(tag)
				}
			})
		}
	}
}
