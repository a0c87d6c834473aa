package preserve

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		tag       string
		role      Role
		version   string
		component string
	}{
		{"rc_payload__4.22.0-0.ci-2026-01-30-070825", RolePayload, "4.22.0-0.ci-2026-01-30-070825", ""},
		// A component tag is a component, not a payload of version "<v>__component__<c>"
		// (the existing pruner read it so).
		{"rc_payload__4.22.0-0.ci-2026-01-30-070825__component__cli", RoleComponent, "4.22.0-0.ci-2026-01-30-070825", "cli"},
		{"preserved__rc_payload__4.22.0-0.ci-2026-01-30-070825", RoleMarker, "4.22.0-0.ci-2026-01-30-070825", ""},
		{"remove__rc_payload__4.22.0-0.ci-2026-01-30-070825", RoleRemoval, "4.22.0-0.ci-2026-01-30-070825", ""},
		// The existing pruner's regular expression is greedy: the last infix splits.
		{"rc_payload__a__component__b__component__c", RoleComponent, "a__component__b", "c"},
		{"rc_payload__", RoleNone, "", ""},
		{"preserved__rc_payload__", RoleNone, "", ""},
		{"remove__rc_payload__", RoleNone, "", ""},
		{"rc_payload____component__cli", RoleNone, "", ""},
		{"rc_payload__4.1__component__", RoleNone, "", ""},
		{"rc_payload_4.1", RoleNone, "", ""},
		{"20260101000000_prune_rc_payload__4.1", RoleNone, "", ""},
		{"latest", RoleNone, "", ""},
		// A removal request for a version that looks like a component tag is still a request.
		{"remove__rc_payload__4.1__component__cli", RoleRemoval, "4.1__component__cli", ""},
	}
	for _, tc := range tests {
		role, v, c := Classify(tc.tag)
		if role != tc.role || v != tc.version || c != tc.component {
			t.Errorf("Classify(%q) = %s, %q, %q; want %s, %q, %q", tc.tag, role, v, c, tc.role, tc.version, tc.component)
		}
		if role != RoleNone {
			var back string
			switch role {
			case RolePayload:
				back = PayloadTag(v)
			case RoleMarker:
				back = MarkerTag(v)
			case RoleRemoval:
				back = RemovalTag(v)
			case RoleComponent:
				back = ComponentTag(v, c)
			}
			if back != tc.tag {
				t.Errorf("Classify(%q) does not name the tag back: %q", tc.tag, back)
			}
		}
	}
}

// TestRangesHoldExactlyTheFamily: a tag lies in one of Ranges exactly when it starts with a
// family prefix, and the ranges do not overlap.
func TestRangesHoldExactlyTheFamily(t *testing.T) {
	rs := Ranges()
	for i := 1; i < len(rs); i++ {
		if rs[i-1].Through >= rs[i].After {
			t.Fatalf("ranges %v and %v overlap or are out of order", rs[i-1], rs[i])
		}
	}
	tags := []string{"rc_payload__", "rc_payload__4.1", "rc_payload__z", "rc_payload__4.1__component__cli",
		"rc_payload_", "rc_payload_z", "rc_payload__" + strings.Repeat("z", 116), "rc_payloae", "rc_payloa",
		"preserved__rc_payload__4.1", "preserved__rc_payload__", "preserved__rc_payload_z", "preserved__rc_payload__-",
		"remove__rc_payload__4.1", "remove__rc_payload__Z", "remove__rc_payload__zzz", "remove__rc_payload_",
		"removal", "remove__rc_payloaz", "20260101000000_prune_x", "latest", "zzzz", "A", "_x", "rc", "s"}
	for _, tag := range tags {
		in := 0
		for _, r := range rs {
			if r.Contains(tag) {
				in++
			}
		}
		// A bare prefix is no family tag; it may lie outside the ranges.
		bare := tag == proto.PayloadPrefix || tag == proto.MarkerPrefix || tag == proto.RemovalPrefix
		if want := Protected(tag) && !bare; (in == 1) != want || in > 1 {
			t.Errorf("%q lies in %d ranges; protected %v", tag, in, Protected(tag))
		}
	}
}

func TestCollectClassifiesComponentsBeforePayloads(t *testing.T) {
	// Component tags sort right after their payload tag; the order of listing must not matter.
	tags := []string{
		"rc_payload__4.1__component__cli",
		"rc_payload__4.1",
		"rc_payload__4.1__component__installer",
		"preserved__rc_payload__4.1",
		"latest",
		"rc_payload__4.1__component__cli", // listed twice (a re-listed page)
	}
	got := Collect(tags)
	want := []Family{{Version: "4.1", Payload: true, Marker: true, Components: []string{"cli", "installer"}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Collect() = %+v, want %+v", got, want)
	}
	slices.Reverse(tags)
	if got := Collect(tags); !reflect.DeepEqual(got, want) {
		t.Fatalf("Collect(reversed) = %+v, want %+v", got, want)
	}
}

func TestPlan(t *testing.T) {
	const v = "4.22.0-0.ci-2026-01-30-070825"
	comps := func(cs ...string) []string {
		out := make([]string, len(cs))
		for i, c := range cs {
			out[i] = ComponentTag(v, c)
		}
		return out
	}
	tests := []struct {
		name  string
		tags  []string
		state State
		want  Actions
	}{
		{
			name:  "preserved",
			tags:  append([]string{PayloadTag(v), MarkerTag(v)}, comps("cli", "tests")...),
			state: StatePreserved,
			want:  Actions{Preserved: 1},
		},
		{
			name:  "preserved without components",
			tags:  []string{PayloadTag(v), MarkerTag(v)},
			state: StatePreserved,
			want:  Actions{Preserved: 1},
		},
		{
			name:  "unpreserved",
			tags:  []string{PayloadTag(v)},
			state: StateUnpreserved,
			want:  Actions{Preserve: []Task{{Version: v, Payload: PayloadTag(v)}}},
		},
		{
			name:  "unpreserved after a partial attempt",
			tags:  append([]string{PayloadTag(v)}, comps("cli")...),
			state: StateUnpreserved,
			want:  Actions{Preserve: []Task{{Version: v, Payload: PayloadTag(v), Existing: []string{"cli"}}}},
		},
		{
			name:  "removal requested for a preserved payload",
			tags:  append([]string{PayloadTag(v), MarkerTag(v), RemovalTag(v)}, comps("cli", "tests")...),
			state: StateRemoval,
			want: Actions{Remove: []Removal{{Version: v,
				Tags:    append([]string{PayloadTag(v), MarkerTag(v)}, comps("cli", "tests")...),
				Request: RemovalTag(v)}}},
		},
		{
			name:  "removal requested for an unpreserved payload",
			tags:  []string{PayloadTag(v), RemovalTag(v)},
			state: StateRemoval,
			want:  Actions{Remove: []Removal{{Version: v, Tags: []string{PayloadTag(v)}, Request: RemovalTag(v)}}},
		},
		{
			// The existing pruner's leftover: payload gone, components left; it deleted
			// only the request and left the rest forever.
			name:  "removal request whose payload is gone",
			tags:  append([]string{MarkerTag(v), RemovalTag(v)}, comps("cli")...),
			state: StateRemoval,
			want: Actions{Remove: []Removal{{Version: v, Tags: append([]string{MarkerTag(v)}, comps("cli")...),
				Request: RemovalTag(v)}}},
		},
		{
			name:  "removal request alone",
			tags:  []string{RemovalTag(v)},
			state: StateRemoval,
			want:  Actions{Remove: []Removal{{Version: v, Request: RemovalTag(v)}}},
		},
		{
			name:  "orphan marker",
			tags:  []string{MarkerTag(v)},
			state: StateOrphan,
			want:  Actions{Orphans: []Removal{{Version: v, Tags: []string{MarkerTag(v)}}}},
		},
		{
			name:  "orphan components",
			tags:  comps("cli", "tests"),
			state: StateOrphan,
			want:  Actions{Orphans: []Removal{{Version: v, Tags: comps("cli", "tests")}}},
		},
		{
			name:  "orphan marker and components",
			tags:  append(comps("cli"), MarkerTag(v)),
			state: StateOrphan,
			want:  Actions{Orphans: []Removal{{Version: v, Tags: append([]string{MarkerTag(v)}, comps("cli")...)}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fams := Collect(tc.tags)
			if len(fams) != 1 {
				t.Fatalf("Collect() = %d families, want 1", len(fams))
			}
			if got := fams[0].State(); got != tc.state {
				t.Errorf("State() = %s, want %s", got, tc.state)
			}
			if got := Plan(fams); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Plan() = %+v\nwant %+v", got, tc.want)
			}
			// Every tag Plan deletes is a family tag of the version it was listed under.
			a := Plan(fams)
			for _, r := range slices.Concat(a.Remove, a.Orphans) {
				for _, tag := range append(slices.Clone(r.Tags), r.Request) {
					if tag == "" {
						continue
					}
					if _, gotV, _ := Classify(tag); gotV != v || !slices.Contains(tc.tags, tag) {
						t.Errorf("Plan deletes %q, which was not listed for %s", tag, v)
					}
				}
			}
		})
	}
}

func TestPlanCounters(t *testing.T) {
	tags := []string{
		PayloadTag("a"), MarkerTag("a"), ComponentTag("a", "x"), // preserved
		PayloadTag("b"),                         // unpreserved
		PayloadTag("c"), ComponentTag("c", "x"), // unpreserved
		PayloadTag("d"), MarkerTag("d"), ComponentTag("d", "x"), ComponentTag("d", "y"), RemovalTag("d"), // 5 targets
		RemovalTag("e"),                                                // 1 target
		MarkerTag("f"), ComponentTag("g", "x"), ComponentTag("g", "y"), // 3 orphans
	}
	got := Plan(Collect(tags)).Counters()
	want := proto.PreserveCounters{NeedingPreservation: 2, RemovalRequests: 2, RemovalTargeted: 6, Orphans: 3}
	if got != want {
		t.Errorf("Counters() = %+v, want %+v", got, want)
	}
}

func TestComponentRange(t *testing.T) {
	for _, v := range []string{"4.22.0-0.ci-2026-01-30-070825", "x", "4.1__component__y"} {
		r := ComponentRange(v)
		got, ok := VersionOf(r)
		if !ok || got != v {
			t.Errorf("VersionOf(ComponentRange(%q)) = %q, %v", v, got, ok)
		}
		if !r.Contains(ComponentTag(v, "cli")) || r.Contains(PayloadTag(v)) || r.Contains(MarkerTag(v)) {
			t.Errorf("ComponentRange(%q) = %v holds the wrong tags", v, r)
		}
		if !Span().Contains(ComponentTag(v, "cli")) {
			t.Errorf("Span() does not hold %q", ComponentTag(v, "cli"))
		}
	}
	for _, r := range []proto.Range{{}, {After: "rc_payload__", Through: "z"}, Span(), {After: "rc_payload____component__", Through: "rc_payload____component__~"}} {
		if v, ok := VersionOf(r); ok {
			t.Errorf("VersionOf(%v) = %q", r, v)
		}
	}
}
