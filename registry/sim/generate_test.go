package sim

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

var (
	pruneRE    = regexp.MustCompile(`^(\d{14})_prune_[a-z0-9.-]+_[a-z0-9.-]+_[a-z0-9.-]+$`)
	floatingRE = regexp.MustCompile(`^[a-z-]+_[a-z0-9.-]+_[a-z0-9-]+$`)
	sigRE      = regexp.MustCompile(`^sha256-[0-9a-f]{64}\.sig$`)
)

var genEnd = time.Date(2026, 11, 20, 15, 30, 0, 0, time.UTC)

func TestGenerateDeterministic(t *testing.T) {
	cfg := GenConfig{Seed: 42, Tags: 20000, End: genEnd, Odd: true, BurstSize: 50}
	a, b := Generate(cfg), Generate(cfg)
	if !slices.Equal(a, b) {
		t.Fatal("same config, different tags")
	}
	cfg.Seed = 43
	if c := Generate(cfg); slices.Equal(a, c) {
		t.Fatal("different seeds, same tags")
	}
}

func TestGenerateShape(t *testing.T) {
	tests := []struct {
		name string
		cfg  GenConfig
	}{
		{"defaults", GenConfig{Seed: 1, End: genEnd}},
		{"odd and burst", GenConfig{Seed: 2, Tags: 30000, Days: 10, End: genEnd, Odd: true, BurstSize: 300}},
		{"dense day forces name collisions", GenConfig{Seed: 5, Tags: 100000, Days: 1, End: genEnd}},
		{"tiny", GenConfig{Seed: 3, Tags: 50, Floating: -1, Signatures: -1, End: genEnd}},
		{"extras exceed total", GenConfig{Seed: 4, Tags: 5, Floating: 10, Signatures: 2, End: genEnd}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tags := Generate(tc.cfg)
			want := tc.cfg.Tags
			if want == 0 {
				want = 10000
			}
			want = max(want, max(tc.cfg.Floating, 0)+max(tc.cfg.Signatures, 0))
			if len(tags) != want {
				t.Errorf("len = %d, want %d", len(tags), want)
			}
			if !slices.IsSorted(tags) || len(slices.Compact(slices.Clone(tags))) != len(tags) {
				t.Error("tags are not sorted and unique")
			}
			days := tc.cfg.Days
			if days == 0 {
				days = 30
			}
			first := genEnd.Truncate(24*time.Hour).AddDate(0, 0, -(days - 1))
			odd := OddTags(genEnd)
			var prune, floating, sigs int
			for _, tag := range tags {
				if !proto.ValidTag(tag) {
					t.Fatalf("%q is not a valid tag", tag)
				}
				if tc.cfg.Odd && slices.Contains(odd, tag) {
					continue
				}
				switch m := pruneRE.FindStringSubmatch(tag); {
				case m != nil:
					ts, err := time.Parse("20060102150405", m[1])
					if err != nil {
						t.Fatalf("%q: %v", tag, err)
					}
					if ts.Before(first) || ts.After(genEnd) {
						t.Fatalf("%q is outside [%s, %s]", tag, first, genEnd)
					}
					prune++
				case sigRE.MatchString(tag):
					sigs++
				case floatingRE.MatchString(tag):
					floating++
				default:
					t.Fatalf("%q belongs to no family", tag)
				}
			}
			wantFloating, wantSigs := tc.cfg.Floating, tc.cfg.Signatures
			if wantFloating == 0 {
				wantFloating = 300
			}
			if wantSigs == 0 {
				wantSigs = 20
			}
			if floating != max(wantFloating, 0) || sigs != max(wantSigs, 0) {
				t.Errorf("floating, signatures = %d, %d, want %d, %d", floating, sigs, wantFloating, wantSigs)
			}
			if tc.cfg.Odd {
				for _, o := range odd {
					if _, found := slices.BinarySearch(tags, o); !found {
						t.Errorf("odd tag %q missing", o)
					}
				}
			}
			if tc.cfg.BurstSize > 0 {
				stamps := map[string]int{}
				for _, tag := range tags {
					if pruneRE.MatchString(tag) {
						stamps[tag[:14]]++
					}
				}
				busiest := 0
				for _, n := range stamps {
					busiest = max(busiest, n)
				}
				if busiest < tc.cfg.BurstSize {
					t.Errorf("busiest second has %d tags, want a burst of %d", busiest, tc.cfg.BurstSize)
				}
			}
		})
	}
}

// perDay counts prune tags by YYYYMMDD.
func perDay(tags []string) map[string]int {
	out := map[string]int{}
	for _, tag := range tags {
		if pruneRE.MatchString(tag) {
			out[tag[:8]]++
		}
	}
	return out
}

func TestGenerateDensity(t *testing.T) {
	tags := Generate(GenConfig{Seed: 7, Tags: 100000, Days: 30, End: genEnd})
	days := perDay(tags)
	lo, hi := len(tags), 0
	for d, n := range days {
		if d == genEnd.Format("20060102") {
			continue // End's day is partial
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	if len(days) != 30 {
		t.Errorf("prune tags on %d days, want 30", len(days))
	}
	if float64(hi) < 2.5*float64(lo) {
		t.Errorf("daily density %d..%d is too even; want some days 3-5x others", lo, hi)
	}

	skewed := perDay(Generate(GenConfig{Seed: 7, Tags: 100000, Days: 30, End: genEnd, SkewDay: 3, SkewFactor: 20}))
	day := genEnd.AddDate(0, 0, -3).Format("20060102")
	for d, n := range skewed {
		if d != day && n*4 > skewed[day] {
			t.Errorf("day %s has %d tags, skewed day %s only %d", d, n, day, skewed[day])
		}
	}
}

func TestGenerateEligibleFraction(t *testing.T) {
	cutoff := genEnd.Add(-7*24*time.Hour + 1500*time.Millisecond)
	for _, f := range []float64{0.1, 0.5, 0.9, 1} {
		tags := Generate(GenConfig{Seed: 9, Tags: 10000, Floating: -1, Signatures: -1, End: genEnd, EligibleFraction: f, Cutoff: cutoff})
		before := 0
		for _, tag := range tags {
			ts, err := time.Parse("20060102150405", tag[:14])
			if err != nil {
				t.Fatal(err)
			}
			if ts.Before(cutoff) {
				before++
			}
		}
		if want := int(f*10000 + 0.5); before != want {
			t.Errorf("fraction %v: %d tags before cutoff, want %d", f, before, want)
		}
	}
}

func TestOddTags(t *testing.T) {
	odd := OddTags(genEnd)
	if !strings.HasPrefix(odd[0], "20271120") {
		t.Errorf("future tag %q is not a year after End", odd[0])
	}
	for _, o := range odd {
		if !proto.ValidTag(o) {
			t.Errorf("%q is not a valid tag", o)
		}
	}
}

func BenchmarkGenerateMillion(b *testing.B) {
	for b.Loop() {
		Generate(GenConfig{Seed: 1, Tags: 1_000_000, End: genEnd})
	}
}
