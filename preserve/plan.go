package preserve

import (
	"maps"
	"slices"

	"github.com/tagsweep/tagsweep/proto"
)

// Family is what a listing found of one payload version's tags.
type Family struct {
	Version    string
	Payload    bool     // rc_payload__<v> exists
	Marker     bool     // preserved__rc_payload__<v> exists
	Removal    bool     // remove__rc_payload__<v> exists
	Components []string // the <c> of every rc_payload__<v>__component__<c>, sorted
}

// State is where a family stands, which decides what Plan does with it.
type State uint8

const (
	// StatePreserved: payload and marker, no request. Nothing to do.
	StatePreserved State = iota
	// StateUnpreserved: payload without marker or request. It needs preservation.
	StateUnpreserved
	// StateRemoval: a removal request. Delete payload, marker and components, then the request.
	StateRemoval
	// StateOrphan: markers or components with neither payload nor request, left behind by
	// an earlier partial removal (the existing pruner, once the payload tag was gone, deleted
	// only the removal request and left the rest forever). They are deleted.
	StateOrphan
)

func (s State) String() string {
	switch s {
	case StatePreserved:
		return "preserved"
	case StateUnpreserved:
		return "unpreserved"
	case StateRemoval:
		return "removal-requested"
	case StateOrphan:
		return "orphan"
	}
	return "unknown"
}

// State classifies f. A removal request wins over everything: a payload being retired is never
// preserved.
func (f Family) State() State {
	switch {
	case f.Removal:
		return StateRemoval
	case f.Payload && f.Marker:
		return StatePreserved
	case f.Payload:
		return StateUnpreserved
	}
	return StateOrphan
}

// Tags are the family's tags that exist, the removal request last.
func (f Family) Tags() []string {
	var out []string
	if f.Payload {
		out = append(out, PayloadTag(f.Version))
	}
	if f.Marker {
		out = append(out, MarkerTag(f.Version))
	}
	for _, c := range f.Components {
		out = append(out, ComponentTag(f.Version, c))
	}
	if f.Removal {
		out = append(out, RemovalTag(f.Version))
	}
	return out
}

// Families collects listed tags into families. The zero value is ready to use; it is not safe
// for concurrent use.
type Families struct {
	m map[string]*Family
}

// Add records tag and returns its role; a tag outside the family (RoleNone) is ignored.
func (fs *Families) Add(tag string) Role {
	role, v, c := Classify(tag)
	if role == RoleNone {
		return RoleNone
	}
	if fs.m == nil {
		fs.m = make(map[string]*Family)
	}
	f := fs.m[v]
	if f == nil {
		f = &Family{Version: v}
		fs.m[v] = f
	}
	switch role {
	case RolePayload:
		f.Payload = true
	case RoleMarker:
		f.Marker = true
	case RoleRemoval:
		f.Removal = true
	case RoleComponent:
		f.Components = append(f.Components, c)
	}
	return role
}

// Len is the number of versions seen.
func (fs *Families) Len() int { return len(fs.m) }

// List returns the families by version, each with its components sorted and unique.
func (fs *Families) List() []Family {
	out := make([]Family, 0, len(fs.m))
	for _, v := range slices.Sorted(maps.Keys(fs.m)) {
		f := *fs.m[v]
		f.Components = slices.Compact(slices.Sorted(slices.Values(f.Components)))
		out = append(out, f)
	}
	return out
}

// Collect classifies tags into families (a convenience over Families).
func Collect(tags []string) []Family {
	var fs Families
	for _, t := range tags {
		fs.Add(t)
	}
	return fs.List()
}

// Task is one payload to preserve.
type Task struct {
	Version string `json:"version"`
	Payload string `json:"payload"` // the payload tag, rc_payload__<version>
	// Existing are component names whose tags the listing found: an earlier attempt wrote
	// them. Preservation checks them before writing them again.
	Existing []string `json:"existing,omitempty"`
}

// Removal is a set of family tags to delete: the tags first, then, once every one of them is
// gone, the request (empty for orphans, which have none).
type Removal struct {
	Version string
	Tags    []string
	Request string
}

// Actions is what a run does about the families it listed.
type Actions struct {
	Preserve []Task    // payloads needing preservation
	Remove   []Removal // removal requests
	Orphans  []Removal // orphaned markers and components (Request is always empty)
	// Preserved is how many families are already preserved (nothing to do).
	Preserved int
}

// Plan decides, for each family, what a run does (see State). It is pure.
func Plan(families []Family) Actions {
	var a Actions
	for _, f := range families {
		switch f.State() {
		case StatePreserved:
			a.Preserved++
		case StateUnpreserved:
			a.Preserve = append(a.Preserve, Task{Version: f.Version, Payload: PayloadTag(f.Version),
				Existing: slices.Clone(f.Components)})
		case StateRemoval:
			g := f
			g.Removal = false
			a.Remove = append(a.Remove, Removal{Version: f.Version, Tags: g.Tags(), Request: RemovalTag(f.Version)})
		case StateOrphan:
			a.Orphans = append(a.Orphans, Removal{Version: f.Version, Tags: f.Tags()})
		}
	}
	return a
}

// Counters are the counts a plan fixes before anything is done, the same in a dry run: the
// payloads needing preservation, the removal requests and the tags they target (requests
// included), and the orphans. Executing the plan adds the outcomes (Result.Counters and
// RemoveResult.Counters).
func (a Actions) Counters() proto.PreserveCounters {
	c := proto.PreserveCounters{NeedingPreservation: int64(len(a.Preserve)), RemovalRequests: int64(len(a.Remove))}
	for _, r := range a.Remove {
		c.RemovalTargeted += int64(len(r.Tags)) + 1
	}
	for _, o := range a.Orphans {
		c.Orphans += int64(len(o.Tags))
	}
	return c
}
