// Package preserve holds the rules of release-payload preservation, as the existing pruner
// applied them and with its mistakes fixed, in one place: which tags belong to a payload's
// family, what state each payload version is in, what a run must do about it (Plan), and how
// one payload is preserved or one family removed through small registry interfaces declared
// here.
//
// The family of a payload version v is four kinds of tags:
//
//	rc_payload__<v>                    the payload, pushed by the release controller
//	remove__rc_payload__<v>            a removal request, pushed by the release controller
//	rc_payload__<v>__component__<c>    a component tag, written by preservation
//	preserved__rc_payload__<v>         the marker, written by preservation once every
//	                                   component tag exists
//
// Each kind's tags form a contiguous key range (Ranges), so they are listed as shards of
// their own, apart from the prune shards; and no prune-rule deletion may touch any of them
// (Protected; policy.Decide refuses the same prefixes).
package preserve

import (
	"strings"

	"github.com/tagsweep/tagsweep/proto"
)

// rangeTerminator sorts after every byte a tag may hold ([A-Za-z0-9._-]).
const rangeTerminator = "~"

// Role is what a tag is in a payload's family.
type Role uint8

const (
	// RoleNone: not a family tag (or a family prefix with nothing after it).
	RoleNone Role = iota
	RolePayload
	RoleMarker
	RoleRemoval
	RoleComponent
)

func (r Role) String() string {
	switch r {
	case RolePayload:
		return "payload"
	case RoleMarker:
		return "marker"
	case RoleRemoval:
		return "removal-request"
	case RoleComponent:
		return "component"
	}
	return "none"
}

// Classify says what tag is, for which payload version and, for a component tag, which
// component. Component tags are recognised before payload tags: rc_payload__<v>__component__<c>
// also starts with the payload prefix, and the existing pruner's test in the other order took
// every component tag for a payload of version "<v>__component__<c>" (so it tried to preserve
// every component as a payload, and never deleted component tags on removal).
// The version is what lies before the last "__component__", as the existing pruner's greedy
// regular expression has it. A prefix with an empty version or component is RoleNone.
func Classify(tag string) (role Role, version, component string) {
	switch {
	case strings.HasPrefix(tag, proto.MarkerPrefix):
		if v := tag[len(proto.MarkerPrefix):]; v != "" {
			return RoleMarker, v, ""
		}
	case strings.HasPrefix(tag, proto.RemovalPrefix):
		if v := tag[len(proto.RemovalPrefix):]; v != "" {
			return RoleRemoval, v, ""
		}
	case strings.HasPrefix(tag, proto.PayloadPrefix):
		rest := tag[len(proto.PayloadPrefix):]
		if i := strings.LastIndex(rest, proto.ComponentInfix); i >= 0 {
			v, c := rest[:i], rest[i+len(proto.ComponentInfix):]
			if v != "" && c != "" {
				return RoleComponent, v, c
			}
			return RoleNone, "", ""
		}
		if rest != "" {
			return RolePayload, rest, ""
		}
	}
	return RoleNone, "", ""
}

// Protected reports whether tag belongs to the preservation family's key ranges, which only
// preservation may delete (proto.PayloadFamily, which policy.Decide refuses too).
func Protected(tag string) bool { return proto.PayloadFamily(tag) }

// PayloadTag, MarkerTag, RemovalTag and ComponentTag name the family's tags of version v.
func PayloadTag(v string) string      { return proto.PayloadPrefix + v }
func MarkerTag(v string) string       { return proto.MarkerPrefix + v }
func RemovalTag(v string) string      { return proto.RemovalPrefix + v }
func ComponentTag(v, c string) string { return proto.PayloadPrefix + v + proto.ComponentInfix + c }

// Ranges are the key ranges holding every family tag, in byte order: markers, then payloads
// with their component tags, then removal requests. Each holds exactly the tags that start
// with its prefix (After is the bare prefix, which is no family tag; Through is the prefix
// followed by a byte above every tag byte).
func Ranges() []proto.Range {
	prefixes := []string{proto.MarkerPrefix, proto.PayloadPrefix, proto.RemovalPrefix}
	out := make([]proto.Range, len(prefixes))
	for i, p := range prefixes {
		out[i] = proto.Range{After: p, Through: p + rangeTerminator}
	}
	return out
}

// Span is the key range from the first family range's start to the last one's end: the
// Range of a family shard's record. It also holds tags outside the family (between the
// prefixes); a family shard lists only Ranges.
func Span() proto.Range {
	rs := Ranges()
	return proto.Range{After: rs[0].After, Through: rs[len(rs)-1].Through}
}

// ComponentRange is the key range of version v's component tags: the Range of the shard
// that preserves v.
func ComponentRange(v string) proto.Range {
	p := proto.PayloadPrefix + v + proto.ComponentInfix
	return proto.Range{After: p, Through: p + rangeTerminator}
}

// VersionOf returns the version whose ComponentRange r is.
func VersionOf(r proto.Range) (string, bool) {
	rest, ok := strings.CutPrefix(r.After, proto.PayloadPrefix)
	v, ok2 := strings.CutSuffix(rest, proto.ComponentInfix)
	if !ok || !ok2 || v == "" || ComponentRange(v) != r {
		return "", false
	}
	return v, true
}
