package preserve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// fakeRegistry is one repository in memory: tags to digests, and the image-references of
// each payload digest. It implements Reader, Tagger and Deleter.
type fakeRegistry struct {
	mu       sync.Mutex
	repo     string
	tags     map[string]string   // tag -> digest
	refs     map[string][][]byte // payload digest -> image-references per platform
	failTag  map[string]bool     // Tag of these fails
	failDel  map[string]bool     // Delete of these fails
	writes   []string            // tags written, in order
	deletes  []string            // tags deleted, in order
	readErr  error
	digested []string // tags whose digest was read
}

func newFake(repo string) *fakeRegistry {
	return &fakeRegistry{repo: repo, tags: map[string]string{}, refs: map[string][][]byte{},
		failTag: map[string]bool{}, failDel: map[string]bool{}}
}

func (f *fakeRegistry) check(repo string) error {
	if repo != f.repo {
		return fmt.Errorf("repository %s: %w", repo, registry.ErrNotFound)
	}
	return nil
}

func (f *fakeRegistry) ImageReferences(_ context.Context, repo, ref string) ([][]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(repo); err != nil {
		return nil, err
	}
	if f.readErr != nil {
		return nil, f.readErr
	}
	docs, ok := f.refs[ref]
	if !ok {
		return nil, fmt.Errorf("image %s: %w", ref, registry.ErrNotFound)
	}
	return docs, nil
}

func (f *fakeRegistry) Digest(_ context.Context, repo, tag string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(repo); err != nil {
		return "", err
	}
	f.digested = append(f.digested, tag)
	d, ok := f.tags[tag]
	if !ok {
		return "", fmt.Errorf("tag %s: %w", tag, registry.ErrNotFound)
	}
	return d, nil
}

func (f *fakeRegistry) Tag(_ context.Context, repo, tag, digest string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(repo); err != nil {
		return err
	}
	if f.failTag[tag] {
		return fmt.Errorf("tag %s: http 500", tag)
	}
	if !slices.Contains(slices.Collect(maps.Values(f.tags)), digest) {
		return fmt.Errorf("manifest %s: %w", digest, registry.ErrNotFound)
	}
	f.tags[tag] = digest
	f.writes = append(f.writes, tag)
	return nil
}

func (f *fakeRegistry) Delete(_ context.Context, repo, tag string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(repo); err != nil {
		return err
	}
	if f.failDel[tag] {
		return fmt.Errorf("delete %s: http 500", tag)
	}
	if _, ok := f.tags[tag]; !ok {
		return fmt.Errorf("tag %s: %w", tag, registry.ErrNotFound)
	}
	delete(f.tags, tag)
	f.deletes = append(f.deletes, tag)
	return nil
}

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// imageStreamDoc renders an image-references document naming each component's image.
func imageStreamDoc(t *testing.T, images map[string]string) []byte {
	t.Helper()
	type from struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	}
	type tag struct {
		Name string `json:"name"`
		From from   `json:"from"`
	}
	var tags []tag
	for _, n := range slices.Sorted(maps.Keys(images)) {
		tags = append(tags, tag{Name: n, From: from{Kind: "DockerImage", Name: images[n]}})
	}
	b, err := json.Marshal(map[string]any{
		"kind": "ImageStream", "apiVersion": "image.openshift.io/v1",
		"metadata": map[string]any{"name": "payload"},
		"spec":     map[string]any{"tags": tags},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	testRepo = "openshift/ci"
	version  = "4.22.0-0.ci-2026-01-30-070825"
)

// componentImageTag is the tag under which seed stores a component image.
func componentImageTag(d string) string {
	return "20260101000000_prune_" + strings.TrimPrefix(d, "sha256:")
}

// seed creates a payload whose platforms reference the given images, and the component
// manifests they point at, and returns the payload's digest.
func (f *fakeRegistry) seed(t *testing.T, platforms ...map[string]string) string {
	t.Helper()
	pd := digestOf("payload " + version)
	f.tags[PayloadTag(version)] = pd
	for _, images := range platforms {
		f.refs[pd] = append(f.refs[pd], imageStreamDoc(t, images))
		for _, img := range images {
			if _, d := SplitImage(img); proto.ValidDigest(d) {
				f.tags[componentImageTag(d)] = d // the component manifest exists
			}
		}
	}
	return pd
}

func TestPreserve(t *testing.T) {
	cli, installer, tests := digestOf("cli"), digestOf("installer"), digestOf("tests")
	arm := digestOf("cli-arm64")
	aliases := []Alias{{Name: "quay-proxy.ci.openshift.org/openshift/ci", Repository: testRepo}}
	type want struct {
		err        string            // substring of the error; "" for success
		tags       map[string]string // component name -> digest of the tags that must exist after
		notTagged  []string          // component names whose tags must not exist
		res        Result            // Digest is filled in
		noMarker   bool
		writesZero bool // nothing at all written
		permanent  bool // the error wraps ErrPayload
	}
	tests_ := []struct {
		name      string
		platforms []map[string]string
		task      func(*fakeRegistry) Task
		prep      func(*fakeRegistry)
		dryRun    bool
		want      want
	}{
		{
			name: "single arch, own name and alias",
			platforms: []map[string]string{{
				"cli":       "quay.io/openshift/ci@" + cli,
				"installer": "quay-proxy.ci.openshift.org/openshift/ci@" + installer,
				"tests":     "QUAY.io/openshift/ci:some-tag@" + tests,
			}},
			want: want{tags: map[string]string{"cli": cli, "installer": installer, "tests": tests},
				res: Result{Components: 3, Tagged: 3, Marked: true}},
		},
		{
			// Not a prefix match: ci-public and ci-other are other repositories (the existing
			// pruner matched image references by prefix, and took them for openshift/ci).
			name: "components in other repositories",
			platforms: []map[string]string{{
				"cli":       "quay.io/openshift/ci@" + cli,
				"installer": "quay.io/openshift/ci-public@" + installer,
				"tests":     "quay-proxy.ci.openshift.org/openshift/ci-other@" + tests,
				"etcd":      "quay.io/openshift-release-dev/ocp-v4.0-art-dev@" + digestOf("etcd"),
			}},
			want: want{tags: map[string]string{"cli": cli}, notTagged: []string{"installer", "tests", "etcd"},
				res: Result{Components: 1, Tagged: 1, Elsewhere: 3, Marked: true}},
		},
		{
			name: "component by tag only is skipped",
			platforms: []map[string]string{{
				"cli":   "quay.io/openshift/ci@" + cli,
				"tests": "quay.io/openshift/ci:tests-latest",
			}},
			want: want{tags: map[string]string{"cli": cli}, notTagged: []string{"tests"},
				res: Result{Components: 1, Tagged: 1, ByTag: 1, Marked: true}},
		},
		{
			name: "multi-arch: the union of every platform",
			platforms: []map[string]string{
				{"cli": "quay.io/openshift/ci@" + cli, "installer": "quay.io/openshift/ci@" + installer},
				{"cli": "quay.io/openshift/ci@" + cli, "cli-arm64": "quay.io/openshift/ci@" + arm},
			},
			want: want{tags: map[string]string{"cli": cli, "installer": installer, "cli-arm64": arm},
				res: Result{Components: 3, Tagged: 3, Marked: true}},
		},
		{
			name: "multi-arch: one name, two images",
			platforms: []map[string]string{
				{"cli": "quay.io/openshift/ci@" + cli},
				{"cli": "quay.io/openshift/ci@" + arm},
			},
			want: want{err: "different images on different platforms", noMarker: true, writesZero: true, permanent: true},
		},
		{
			name:      "a component tag fails: no marker",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci@" + cli, "tests": "quay.io/openshift/ci@" + tests}},
			prep:      func(f *fakeRegistry) { f.failTag[ComponentTag(version, "tests")] = true },
			want: want{err: "1 of 2 component tags not written, so no marker", tags: map[string]string{"cli": cli},
				res: Result{Components: 2, Tagged: 1}, noMarker: true},
		},
		{
			name:      "a component manifest is missing: no marker",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci@" + cli}},
			prep:      func(f *fakeRegistry) { delete(f.tags, componentImageTag(cli)) },
			want:      want{err: "not found", res: Result{Components: 1}, noMarker: true, writesZero: true},
		},
		{
			name:      "the marker write fails",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci@" + cli}},
			prep:      func(f *fakeRegistry) { f.failTag[MarkerTag(version)] = true },
			want: want{err: "write marker", tags: map[string]string{"cli": cli},
				res: Result{Components: 1, Tagged: 1}, noMarker: true},
		},
		{
			name:      "nothing in this repository: refused",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci-public@" + cli}},
			want:      want{err: "none of its 1 components", res: Result{Elsewhere: 1}, noMarker: true, writesZero: true, permanent: true},
		},
		{
			name:      "empty image-references",
			platforms: []map[string]string{{}},
			want:      want{err: "lists no component images", noMarker: true, writesZero: true, permanent: true},
		},
		{
			name:      "unreadable payload",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci@" + cli}},
			prep:      func(f *fakeRegistry) { f.readErr = errors.New("blob unknown") },
			want:      want{err: "blob unknown", noMarker: true, writesZero: true},
		},
		{
			name:      "payload tag gone since listing",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci@" + cli}},
			prep:      func(f *fakeRegistry) { delete(f.tags, PayloadTag(version)) },
			want:      want{err: "not found", noMarker: true, writesZero: true},
		},
		{
			name:      "a bad digest",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci@sha256:XYZ"}},
			want:      want{err: "is not a sha256 digest", noMarker: true, writesZero: true, permanent: true},
		},
		{
			name:      "a component name that makes no tag",
			platforms: []map[string]string{{"cli/../x": "quay.io/openshift/ci@" + cli}},
			want:      want{err: "is not a valid tag name", noMarker: true, writesZero: true, permanent: true},
		},
		{
			name:      "dry run writes nothing",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci@" + cli, "tests": "quay.io/openshift/ci@" + tests}},
			dryRun:    true,
			want: want{notTagged: []string{"cli", "tests"}, noMarker: true, writesZero: true,
				res: Result{Components: 2, Tagged: 2, Marked: true}},
		},
		{
			name:      "resumed: listed components are checked, right ones left alone, wrong ones moved",
			platforms: []map[string]string{{"cli": "quay.io/openshift/ci@" + cli, "tests": "quay.io/openshift/ci@" + tests, "installer": "quay.io/openshift/ci@" + installer}},
			prep: func(f *fakeRegistry) {
				f.tags[ComponentTag(version, "cli")] = cli
				f.tags[ComponentTag(version, "tests")] = installer // wrong digest
			},
			task: func(f *fakeRegistry) Task {
				return Task{Version: version, Payload: PayloadTag(version), Existing: []string{"cli", "tests"}}
			},
			want: want{tags: map[string]string{"cli": cli, "tests": tests, "installer": installer},
				res: Result{Components: 3, Tagged: 2, Present: 1, Marked: true}},
		},
	}
	for _, tc := range tests_ {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(testRepo)
			pd := f.seed(t, tc.platforms...)
			if tc.prep != nil {
				tc.prep(f)
			}
			task := Task{Version: version, Payload: PayloadTag(version)}
			if tc.task != nil {
				task = tc.task(f)
			}
			p, err := New(Config{Registry: "quay.io", Aliases: aliases}, f, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := maps.Clone(f.tags)
			res, err := p.Preserve(t.Context(), testRepo, task, tc.dryRun)
			switch {
			case tc.want.err == "" && err != nil:
				t.Fatalf("Preserve() error = %v", err)
			case tc.want.err != "" && (err == nil || !strings.Contains(err.Error(), tc.want.err)):
				t.Fatalf("Preserve() error = %v, want one containing %q", err, tc.want.err)
			case tc.want.err != "" && errors.Is(err, ErrPayload) != tc.want.permanent:
				t.Errorf("Preserve() error %v: wraps ErrPayload %v, want %v", err, errors.Is(err, ErrPayload), tc.want.permanent)
			}
			wantRes := tc.want.res
			if _, ok := before[PayloadTag(version)]; ok {
				wantRes.Digest = pd
			}
			if res != wantRes {
				t.Errorf("Preserve() = %+v, want %+v", res, wantRes)
			}
			for c, d := range tc.want.tags {
				if got := f.tags[ComponentTag(version, c)]; got != d {
					t.Errorf("component tag %s -> %q, want %q", c, got, d)
				}
			}
			for _, c := range tc.want.notTagged {
				if _, ok := f.tags[ComponentTag(version, c)]; ok {
					t.Errorf("component tag %s exists", c)
				}
			}
			marker, marked := f.tags[MarkerTag(version)]
			switch {
			case tc.want.noMarker && marked:
				t.Errorf("marker written")
			case !tc.want.noMarker && marker != pd:
				t.Errorf("marker -> %q, want the payload's digest %q", marker, pd)
			}
			if tc.want.writesZero && len(f.writes) > 0 {
				t.Errorf("wrote %v", f.writes)
			}
			if !tc.want.noMarker && f.writes[len(f.writes)-1] != MarkerTag(version) {
				t.Errorf("the marker was not the last write: %v", f.writes)
			}
			for _, w := range f.writes {
				if !Protected(w) {
					t.Errorf("wrote the unprotected tag %q", w)
				}
			}
			c := res.Counters(err)
			if (c.Preserved == 1) != (err == nil) || c.Preserved+c.PreserveFailed != 1 || c.ComponentsTagged != int64(res.Tagged) {
				t.Errorf("Counters() = %+v for error %v", c, err)
			}
		})
	}
}

// TestPreserveIdempotentAndRetried: a failed preservation leaves no marker; the next attempt,
// planned again from a fresh listing, finishes it; a third run finds it preserved.
func TestPreserveIdempotentAndRetried(t *testing.T) {
	f := newFake(testRepo)
	images := map[string]string{}
	for i := range 20 {
		images[fmt.Sprintf("c%02d", i)] = "quay.io/openshift/ci@" + digestOf(fmt.Sprint("c", i))
	}
	pd := f.seed(t, images)
	f.failTag[ComponentTag(version, "c07")] = true
	p, err := New(Config{Registry: "quay.io", Concurrency: 3}, f, f, nil)
	if err != nil {
		t.Fatal(err)
	}
	listing := func() []string { return slices.Sorted(maps.Keys(f.tags)) }

	a := Plan(Collect(listing()))
	if len(a.Preserve) != 1 {
		t.Fatalf("first plan = %+v, want one task", a)
	}
	if _, err := p.Preserve(t.Context(), testRepo, a.Preserve[0], false); err == nil {
		t.Fatal("Preserve() succeeded with a failing component")
	}
	if _, ok := f.tags[MarkerTag(version)]; ok {
		t.Fatal("marker written although a component failed")
	}

	delete(f.failTag, ComponentTag(version, "c07"))
	a = Plan(Collect(listing()))
	if len(a.Preserve) != 1 || len(a.Preserve[0].Existing) != 19 {
		t.Fatalf("second plan = %+v, want one task with 19 existing components", a)
	}
	f.writes = nil
	res, err := p.Preserve(t.Context(), testRepo, a.Preserve[0], false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tagged != 1 || res.Present != 19 || len(f.writes) != 2 {
		t.Errorf("second attempt = %+v, writes %v; want 1 tagged, 19 present, 2 writes", res, f.writes)
	}
	if f.tags[MarkerTag(version)] != pd {
		t.Fatal("no marker after the second attempt")
	}
	if a = Plan(Collect(listing())); len(a.Preserve) != 0 || a.Preserved != 1 {
		t.Fatalf("third plan = %+v, want it preserved", a)
	}
}

func TestRemove(t *testing.T) {
	const v = version
	comps := []string{ComponentTag(v, "a"), ComponentTag(v, "b"), ComponentTag(v, "c")}
	full := append([]string{PayloadTag(v), MarkerTag(v)}, comps...)
	tests := []struct {
		name     string
		present  []string // tags that exist
		removal  Removal
		failDel  []string
		dryRun   bool
		want     RemoveResult // Err compared by presence
		wantErr  bool
		remain   []string
		orphan   bool
		counters proto.PreserveCounters
	}{
		{
			name:     "request: everything, then the request",
			present:  append(slices.Clone(full), RemovalTag(v)),
			removal:  Removal{Version: v, Tags: full, Request: RemovalTag(v)},
			want:     RemoveResult{Targeted: 6, Removed: 6},
			counters: proto.PreserveCounters{RemovalRemoved: 6},
		},
		{
			name:     "already gone counts as removed",
			present:  []string{RemovalTag(v), MarkerTag(v)},
			removal:  Removal{Version: v, Tags: full, Request: RemovalTag(v)},
			want:     RemoveResult{Targeted: 6, Removed: 6},
			counters: proto.PreserveCounters{RemovalRemoved: 6},
		},
		{
			name:     "a failed delete keeps the request for the next run",
			present:  append(slices.Clone(full), RemovalTag(v)),
			removal:  Removal{Version: v, Tags: full, Request: RemovalTag(v)},
			failDel:  []string{ComponentTag(v, "b")},
			want:     RemoveResult{Targeted: 6, Removed: 4, Failed: 1, RequestKept: true},
			wantErr:  true,
			remain:   []string{ComponentTag(v, "b"), RemovalTag(v)},
			counters: proto.PreserveCounters{RemovalRemoved: 4, RemovalFailed: 1},
		},
		{
			name:     "the request delete fails",
			present:  append(slices.Clone(full), RemovalTag(v)),
			removal:  Removal{Version: v, Tags: full, Request: RemovalTag(v)},
			failDel:  []string{RemovalTag(v)},
			want:     RemoveResult{Targeted: 6, Removed: 5, Failed: 1},
			wantErr:  true,
			remain:   []string{RemovalTag(v)},
			counters: proto.PreserveCounters{RemovalRemoved: 5, RemovalFailed: 1},
		},
		{
			name:     "request alone",
			present:  []string{RemovalTag(v)},
			removal:  Removal{Version: v, Request: RemovalTag(v)},
			want:     RemoveResult{Targeted: 1, Removed: 1},
			counters: proto.PreserveCounters{RemovalRemoved: 1},
		},
		{
			name:     "orphans",
			present:  append([]string{MarkerTag(v)}, comps...),
			removal:  Removal{Version: v, Tags: append([]string{MarkerTag(v)}, comps...)},
			want:     RemoveResult{Targeted: 4, Removed: 4},
			orphan:   true,
			counters: proto.PreserveCounters{OrphansRemoved: 4},
		},
		{
			name:    "dry run deletes nothing",
			present: append(slices.Clone(full), RemovalTag(v)),
			removal: Removal{Version: v, Tags: full, Request: RemovalTag(v)},
			dryRun:  true,
			want:    RemoveResult{Targeted: 6},
			remain:  append(slices.Clone(full), RemovalTag(v)),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(testRepo)
			for _, tag := range tc.present {
				f.tags[tag] = digestOf(tag)
			}
			f.tags["keep-me"] = digestOf("x")
			for _, tag := range tc.failDel {
				f.failDel[tag] = true
			}
			got := Remove(t.Context(), f, testRepo, tc.removal, 2, tc.dryRun)
			if (got.Err != nil) != tc.wantErr {
				t.Errorf("Remove() error = %v, want error %v", got.Err, tc.wantErr)
			}
			wantSent := len(tc.removal.Tags)
			if tc.removal.Request != "" && !got.RequestKept {
				wantSent++
			}
			if tc.dryRun {
				wantSent = 0
			}
			if len(got.Deletions) != wantSent {
				t.Errorf("%d deletions reported, want %d", len(got.Deletions), wantSent)
			}
			for _, d := range got.Deletions {
				if (d.Err == nil) != slices.Contains(f.deletes, d.Tag) {
					t.Errorf("deletion %+v disagrees with the registry", d)
				}
			}
			got.Err, got.Deletions = nil, nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Remove() = %+v, want %+v", got, tc.want)
			}
			remain := slices.DeleteFunc(slices.Sorted(maps.Keys(f.tags)), func(s string) bool { return s == "keep-me" })
			if want := slices.Sorted(slices.Values(tc.remain)); !slices.Equal(remain, want) {
				t.Errorf("remaining tags = %v, want %v", remain, want)
			}
			if i := slices.Index(f.deletes, tc.removal.Request); tc.removal.Request != "" && i >= 0 && i != len(f.deletes)-1 {
				t.Errorf("the request was not deleted last: %v", f.deletes)
			}
			if c := got.Counters(tc.orphan); c != tc.counters {
				t.Errorf("Counters() = %+v, want %+v", c, tc.counters)
			}
		})
	}
}

func TestParseAlias(t *testing.T) {
	tests := []struct {
		in   string
		want Alias
		err  bool
	}{
		{"quay-proxy.ci.openshift.org/openshift/ci", Alias{"quay-proxy.ci.openshift.org/openshift/ci", "openshift/ci"}, false},
		{"Proxy.Example:8443/ci=openshift/ci", Alias{"proxy.example:8443/ci", "openshift/ci"}, false},
		{"quay-proxy.ci.openshift.org/openshift/ci:latest", Alias{"quay-proxy.ci.openshift.org/openshift/ci", "openshift/ci"}, false},
		{"quay-proxy.ci.openshift.org", Alias{}, true},
		{"host/path@sha256:" + strings.Repeat("0", 64), Alias{}, true},
		{"host/path=", Alias{}, true},
		{"", Alias{}, true},
	}
	for _, tc := range tests {
		got, err := ParseAlias(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseAlias(%q) = %+v, %v; want %+v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseImageReferences(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []Reference
		err  string
	}{
		{
			name: "real shape",
			doc: `{"kind":"ImageStream","apiVersion":"image.openshift.io/v1","metadata":{"name":"4.22","creationTimestamp":null},
				"spec":{"lookupPolicy":{"local":false},"tags":[
				{"name":"cli","annotations":{"io.openshift.build.commit.id":"abc"},"from":{"kind":"DockerImage","name":"quay-proxy.ci.openshift.org/openshift/ci@sha256:aa"},"generation":null,"importPolicy":{},"referencePolicy":{"type":"Source"}},
				{"name":"istag","from":{"kind":"ImageStreamTag","name":"x:y"}},
				{"name":"nofrom"},
				{"name":"kindless","from":{"name":"quay.io/openshift/ci@sha256:bb"}}]},"status":{"dockerImageRepository":""}}`,
			want: []Reference{{"cli", "quay-proxy.ci.openshift.org/openshift/ci@sha256:aa"}, {"kindless", "quay.io/openshift/ci@sha256:bb"}},
		},
		{name: "not an image stream", doc: `{"kind":"ConfigMap"}`, err: "want ImageStream"},
		{name: "not json", doc: `kind: ImageStream`, err: "parse"},
		{name: "duplicate", doc: `{"kind":"ImageStream","spec":{"tags":[{"name":"a"},{"name":"a"}]}}`, err: "twice"},
		{name: "nameless", doc: `{"kind":"ImageStream","spec":{"tags":[{"from":{"name":"x"}}]}}`, err: "no name"},
		{name: "empty", doc: `{"kind":"ImageStream","spec":{}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseImageReferences([]byte(tc.doc))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Fatalf("ParseImageReferences() = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestSplitImage(t *testing.T) {
	tests := []struct{ in, name, digest string }{
		{"quay.io/openshift/ci@sha256:ab", "quay.io/openshift/ci", "sha256:ab"},
		{"quay.io/openshift/ci:tag@sha256:ab", "quay.io/openshift/ci", "sha256:ab"},
		{"quay.io/openshift/ci:tag", "quay.io/openshift/ci", ""},
		{"Quay.IO:443/openshift/ci:tag", "quay.io:443/openshift/ci", ""},
		{"localhost:5000/ci", "localhost:5000/ci", ""},
		{"ubuntu:22.04", "ubuntu", ""},
	}
	for _, tc := range tests {
		if n, d := SplitImage(tc.in); n != tc.name || d != tc.digest {
			t.Errorf("SplitImage(%q) = %q, %q; want %q, %q", tc.in, n, d, tc.name, tc.digest)
		}
	}
}
