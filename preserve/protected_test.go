package preserve

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/policy"
	"github.com/tagsweep/tagsweep/proto"
)

// familyTags are tags preservation protects, among them some built to look like prune tags
// to every pattern below.
func familyTags() []string {
	const v = "4.22.0-0.ci-2026-01-30-070825"
	return []string{
		PayloadTag(v), MarkerTag(v), RemovalTag(v), ComponentTag(v, "cli"),
		ComponentTag("v20000101000000", "x"), PayloadTag("v20000101000000_prune_x"),
		ComponentTag("v20000101000000_prune_x", "20000101000000_prune_y"),
		MarkerTag("v20000101000000_prune_x"), RemovalTag("v20000101000000_prune_x"),
		PayloadTag("v2000-01-01"), ComponentTag("v2000-01-01", "cli"),
	}
}

// TestNoPrunePatternDeletesAProtectedTag: whatever prune pattern, time layout and zone the
// configuration accepts (policy.New compiles it), and however late the cutoff, no tag
// preservation protects is ever eligible, component tags of preserved payloads included.
func TestNoPrunePatternDeletesAProtectedTag(t *testing.T) {
	patterns := []struct{ pattern, layout string }{
		{policy.DefaultPrunePattern, policy.DefaultTimeLayout},
		{`^(\d{14})`, policy.DefaultTimeLayout},
		{`^(\d{14}).*`, policy.DefaultTimeLayout},
		{`^(.*)`, policy.DefaultTimeLayout},
		{`^(.+)_prune_`, policy.DefaultTimeLayout},
		// Layouts that read a family tag's own prefix as literal text, so that the pattern
		// alone would take family tags ("__2" is a layout token, hence the v).
		{`^(rc_payload__v\d{14})`, "rc_payload__v20060102150405"},
		{`^(rc_payload__v\d{14})__component__`, "rc_payload__v20060102150405"},
		{`^(preserved__rc_payload__v\d{14})`, "preserved__rc_payload__v20060102150405"},
		{`^(rc_payload__v\d{4}-\d{2}-\d{2})`, "rc_payload__v2006-01-02"},
		{`^(rc_payload__v\d{4}-\d{2}-\d{2})__component__cli$`, "rc_payload__v2006-01-02"},
		{`^(remove__rc_payload__v\d{14})`, "remove__rc_payload__v20060102150405"},
		{`^(?i)(RC_PAYLOAD__v\d{14})`, "rc_payload__v20060102150405"},
	}
	far := time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)
	compiled, threatened := 0, 0
	for _, p := range patterns {
		for _, zone := range []string{"UTC", "Europe/Berlin"} {
			rules, err := policy.New(proto.Policy{PrunePattern: p.pattern, TimeLayout: p.layout, TimeZone: zone, Cutoff: far})
			if err != nil {
				continue // not a configuration tagsweep accepts
			}
			compiled++
			for _, tag := range familyTags() {
				if !Protected(tag) {
					t.Fatalf("test tag %q is not protected", tag)
				}
				if d := rules.Decide(tag); d.Verdict == policy.Delete {
					t.Errorf("pattern %q layout %q zone %s: Decide(%q) = %v", p.pattern, p.layout, zone, tag, d)
				}
				if wouldMatch(p.pattern, p.layout, zone, tag) {
					threatened++
				}
			}
		}
	}
	t.Logf("%d configurations, %d threatened pairs", compiled, threatened)
	// The test means something only if accepted patterns would, on their own, take family tags.
	if compiled < 8 || threatened < 10 {
		t.Fatalf("%d configurations compiled, %d (configuration, tag) pairs matched: the test lost its teeth",
			compiled, threatened)
	}
}

// wouldMatch reports whether pattern alone takes tag: it matches and group 1 parses as a time.
func wouldMatch(pattern, layout, zone, tag string) bool {
	m := regexp.MustCompile(pattern).FindStringSubmatch(tag)
	if m == nil {
		return false
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return false
	}
	_, err = time.ParseInLocation(layout, m[1], loc)
	return err == nil
}

// FuzzNoPrunePatternDeletesAProtectedTag: any accepted pattern, any family tag.
func FuzzNoPrunePatternDeletesAProtectedTag(f *testing.F) {
	f.Add(`^(rc_payload__v\d{14})`, "rc_payload__v20060102150405", "rc_payload__v20000101000000__component__x")
	f.Add(`^(\d{14})_prune_`, "20060102150405", "preserved__rc_payload__20000101000000_prune_x")
	f.Fuzz(func(t *testing.T, pattern, layout, tag string) {
		if !Protected(tag) {
			return
		}
		rules, err := policy.New(proto.Policy{PrunePattern: pattern, TimeLayout: layout, TimeZone: "UTC",
			Cutoff: time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return
		}
		if d := rules.Decide(tag); d.Verdict == policy.Delete {
			t.Fatalf("pattern %q layout %q: Decide(%q) = %v", pattern, layout, tag, d)
		}
	})
}

// TestComponentTagsAreProtected: every tag preservation writes is protected.
func TestComponentTagsAreProtected(t *testing.T) {
	for _, tag := range []string{ComponentTag("4.1", "cli"), MarkerTag("4.1"), ComponentTag("x", strings.Repeat("y", 50))} {
		if !Protected(tag) {
			t.Errorf("Protected(%q) = false", tag)
		}
	}
}
