package sim

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// readImageReferences pulls a payload over HTTP the way a pruner would (index → first
// platform manifest → layers) and returns the image-references pull specs by name.
func readImageReferences(t *testing.T, base, repo, ref string) map[string]string {
	t.Helper()
	fetch := func(path string) []byte {
		t.Helper()
		resp, b := get(t, http.MethodGet, base+"/v2/"+repo+path)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s = %d", path, resp.StatusCode)
		}
		return b
	}
	var m struct {
		MediaType string
		Manifests []struct{ Digest string }
		Layers    []struct{ Digest string }
	}
	if err := json.Unmarshal(fetch("/manifests/"+ref), &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType == MediaTypeOCIIndex {
		if len(m.Manifests) != 2 {
			t.Fatalf("index has %d manifests, want 2", len(m.Manifests))
		}
		return readImageReferences(t, base, repo, m.Manifests[0].Digest)
	}
	for _, l := range m.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(fetch("/blobs/" + l.Digest)))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if hdr.Name != proto.ImageReferencesPath {
				continue
			}
			var is struct {
				Kind, APIVersion string
				Spec             struct {
					Tags []struct {
						Name string
						From struct{ Kind, Name string }
					}
				}
			}
			if err := json.NewDecoder(tr).Decode(&is); err != nil {
				t.Fatal(err)
			}
			if is.Kind != "ImageStream" || is.APIVersion != "image.openshift.io/v1" {
				t.Errorf("image-references is %s %s", is.Kind, is.APIVersion)
			}
			out := map[string]string{}
			for _, tg := range is.Spec.Tags {
				if tg.From.Kind != "DockerImage" {
					t.Errorf("component %s from kind %q", tg.Name, tg.From.Kind)
				}
				out[tg.Name] = tg.From.Name
			}
			return out
		}
	}
	t.Fatalf("%s has no %s", ref, proto.ImageReferencesPath)
	return nil
}

func TestPushPayload(t *testing.T) {
	for _, multi := range []bool{false, true} {
		s := startSim(t, Config{})
		var comps []PayloadComponent
		want := map[string]string{}
		for _, c := range []struct{ name, repo string }{{"cli", "openshift/ci"}, {"etcd", "openshift/ci"}, {"tests", "openshift/ci-public"}} {
			d, err := s.PushImage(c.repo, c.name)
			if err != nil {
				t.Fatal(err)
			}
			comps = append(comps, PayloadComponent{Name: c.name, Repo: c.repo, Digest: d})
			want[c.name] = DefaultPullHost + "/" + c.repo + "@" + d
		}
		d, err := s.PushPayload("openshift/ci", "4.22.0-0.ci-2026-01-30-070825", comps, multi, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddTags("openshift/ci", d, PayloadTag("4.22.0-0.ci-2026-01-30-070825")); err != nil {
			t.Fatal(err)
		}
		got := readImageReferences(t, s.URL(), "openshift/ci", PayloadTag("4.22.0-0.ci-2026-01-30-070825"))
		if len(got) != len(want) {
			t.Errorf("multiArch %v: image-references %v, want %v", multi, got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("multiArch %v: component %s = %q, want %q", multi, k, got[k], v)
			}
		}
	}
}

func TestAddPayloads(t *testing.T) {
	end := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	r := New(Config{})
	f, err := r.AddPayloads("openshift/ci", PayloadConfig{Seed: 1, End: end})
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Cases) != 22 {
		t.Fatalf("%d cases, want 22", len(f.Cases))
	}
	perState := map[PayloadState]int{}
	for _, c := range f.Cases {
		perState[c.State]++
	}
	for _, st := range PayloadStates() {
		if perState[st] != 2 {
			t.Errorf("state %s has %d payloads, want 2", st, perState[st])
		}
	}
	for _, tag := range f.Initial {
		if !r.HasTag("openshift/ci", tag) {
			t.Errorf("initial tag %s missing", tag)
		}
	}
	for _, tag := range f.PruneTags {
		if !r.HasTag("openshift/ci", tag) || !strings.HasPrefix(tag, "20261021") {
			t.Errorf("prune tag %s missing or not dated End-30d", tag)
		}
	}

	// Before a run, Check reports exactly the work a run has to do.
	diffs := f.Check(r)
	for _, c := range f.Cases {
		marker, removal := "missing "+PayloadMarkerTag(c.Version), "unexpected "+PayloadRemovalTag(c.Version)
		switch c.State {
		case PayloadUnpreserved, PayloadPartiallyPreserved, PayloadMultiArch, PayloadForeignComponent:
			if !slices.Contains(diffs, marker) {
				t.Errorf("%s %s: Check does not report the missing marker", c.State, c.Version)
			}
		case PayloadPreserved:
			for _, d := range diffs {
				if strings.Contains(d, c.Version) {
					t.Errorf("preserved %s: Check reports %q", c.Version, d)
				}
			}
		case PayloadRemoval, PayloadRemovalUnpreserved, PayloadRemovalPartial, PayloadOrphanRequest:
			if !slices.Contains(diffs, removal) {
				t.Errorf("%s %s: Check does not report the removal request", c.State, c.Version)
			}
		}
		if c.State == PayloadForeignComponent {
			foreign := c.Components[0]
			if foreign.Repo != f.OtherRepo || foreign.Repo != "openshift/ci-public" {
				t.Errorf("foreign component lives in %s, want %s", foreign.Repo, f.OtherRepo)
			}
			if _, ok := c.Want[ComponentTag(c.Version, foreign.Name)]; ok {
				t.Errorf("Want tags the foreign component %s", foreign.Name)
			}
			if len(c.Want) != 2+len(c.Components)-1 {
				t.Errorf("foreign case wants %d tags, want payload, marker and %d components", len(c.Want), len(c.Components)-1)
			}
		}
	}

	// Applying Want by hand (what a correct run does) leaves no difference.
	for _, tag := range r.Tags("openshift/ci") {
		if _, keep := f.Want[tag]; proto.PayloadFamily(tag) && !keep {
			if code := deleteVia(r, tag); code != http.StatusAccepted {
				t.Fatalf("delete %s = %d", tag, code)
			}
		}
	}
	for tag, d := range f.Want {
		if err := r.AddTags("openshift/ci", d, tag); err != nil {
			t.Fatal(err)
		}
	}
	if diffs := f.Check(r); diffs != nil {
		t.Errorf("after applying Want, Check = %v", diffs)
	}
	// And a wrong digest is caught.
	var someComponent string
	for tag := range f.Want {
		if strings.Contains(tag, "__component__") {
			someComponent = tag
			break
		}
	}
	if err := r.AddTags("openshift/ci", "", someComponent); err != nil {
		t.Fatal(err)
	}
	if diffs := f.Check(r); len(diffs) != 1 || !strings.HasPrefix(diffs[0], someComponent+" points at") {
		t.Errorf("after retargeting %s, Check = %v", someComponent, diffs)
	}
}

func deleteVia(r *Registry, tag string) int {
	req, _ := http.NewRequest(http.MethodDelete, "/v2/openshift/ci/manifests/"+tag, nil)
	rec := &codeRecorder{header: http.Header{}}
	r.ServeHTTP(rec, req)
	return rec.code
}

type codeRecorder struct {
	header http.Header
	code   int
}

func (c *codeRecorder) Header() http.Header         { return c.header }
func (c *codeRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (c *codeRecorder) WriteHeader(code int)        { c.code = code }

func TestAddPayloadsDeterministic(t *testing.T) {
	cfg := PayloadConfig{Seed: 3, Count: 5, End: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}
	a, err := New(Config{}).AddPayloads("openshift/ci", cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{}).AddPayloads("openshift/ci", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Initial, b.Initial) || len(a.Want) != len(b.Want) {
		t.Fatal("same config, different families")
	}
	for tag, d := range a.Want {
		if b.Want[tag] != d {
			t.Errorf("%s: %s vs %s", tag, d, b.Want[tag])
		}
	}
}

func TestLoad(t *testing.T) {
	r := New(Config{})
	end := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	f, err := r.Load("openshift/ci", GenConfig{Seed: 1, Tags: 5000, End: end}, &PayloadConfig{Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r.Len("openshift/ci"), 5000+len(f.Initial)+len(f.PruneTags); got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	if !strings.Contains(f.Cases[0].Version, "ci-2026-11-19-210000") {
		t.Errorf("version %s is not dated from gen.End", f.Cases[0].Version)
	}
}
