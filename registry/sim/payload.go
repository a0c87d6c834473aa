package sim

import (
	"archive/tar"
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// DefaultPullHost is the registry host payloads name their components with in QCI.
const DefaultPullHost = "quay-proxy.ci.openshift.org"

// PayloadComponent is one entry of a payload's image-references: the imagestream tag name
// and the image, which lives in Repo at Digest.
type PayloadComponent struct {
	Name   string
	Repo   string
	Digest string
}

// PushImage stores a small single-layer OCI image in repo whose content is unique to label
// and returns its manifest digest. It creates no tag.
func (r *Registry) PushImage(repo, label string) (string, error) {
	layer, err := gzipTar(map[string][]byte{"label": []byte(label)})
	if err != nil {
		return "", err
	}
	return r.pushImage(repo, "amd64", label, layer)
}

// pushImage stores config, layer and manifest for one platform image.
func (r *Registry) pushImage(repo, arch, label string, layer []byte) (string, error) {
	cfg := fmt.Appendf(nil, `{"architecture":%q,"os":"linux","config":{"Labels":{"io.tagsweep.sim":%q}},"rootfs":{"type":"layers","diff_ids":[]}}`, arch, label)
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
		MediaTypeOCIManifest, MediaTypeOCIConfig, r.PutBlob(cfg), len(cfg), MediaTypeOCILayerGzip, r.PutBlob(layer), len(layer))
	d, err := r.PutManifest(repo, MediaTypeOCIManifest, body)
	if err != nil {
		return "", fmt.Errorf("push image %s to %s: %w", label, repo, err)
	}
	return d, nil
}

// PushPayload stores a release payload image for version in repo and returns its digest:
// an image whose layer holds release-manifests/image-references, an ImageStream naming each
// component as <pullHost>/<component repo>@<digest> ("" pullHost means DefaultPullHost).
// multiArch makes it an OCI index of an amd64 and an arm64 image that carry the same
// component list. It creates no tag.
func (r *Registry) PushPayload(repo, version string, components []PayloadComponent, multiArch bool, pullHost string) (string, error) {
	if pullHost == "" {
		pullHost = DefaultPullHost
	}
	type from struct {
		Kind string `json:"kind"`
		Name string `json:"name"`
	}
	type isTag struct {
		Name string `json:"name"`
		From from   `json:"from"`
	}
	var is struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Tags []isTag `json:"tags"`
		} `json:"spec"`
	}
	is.Kind, is.APIVersion, is.Metadata.Name = "ImageStream", "image.openshift.io/v1", version
	is.Spec.Tags = []isTag{}
	for _, c := range components {
		is.Spec.Tags = append(is.Spec.Tags, isTag{Name: c.Name, From: from{Kind: "DockerImage", Name: pullHost + "/" + c.Repo + "@" + c.Digest}})
	}
	refs, err := json.Marshal(is)
	if err != nil {
		return "", fmt.Errorf("encode image-references of %s: %w", version, err)
	}
	layer, err := gzipTar(map[string][]byte{
		proto.ImageReferencesPath:            refs,
		"release-manifests/release-metadata": fmt.Appendf(nil, `{"kind":"cincinnati-metadata-v0","version":%q}`, version),
	})
	if err != nil {
		return "", err
	}
	if !multiArch {
		return r.pushImage(repo, "amd64", "payload "+version, layer)
	}
	var idx strings.Builder
	fmt.Fprintf(&idx, `{"schemaVersion":2,"mediaType":%q,"manifests":[`, MediaTypeOCIIndex)
	for i, arch := range []string{"amd64", "arm64"} {
		d, err := r.pushImage(repo, arch, "payload "+version, layer)
		if err != nil {
			return "", err
		}
		m, _ := r.getManifest(d)
		if i > 0 {
			idx.WriteString(",")
		}
		fmt.Fprintf(&idx, `{"mediaType":%q,"digest":%q,"size":%d,"platform":{"architecture":%q,"os":"linux"}}`, MediaTypeOCIManifest, d, len(m.body), arch)
	}
	idx.WriteString("]}")
	return r.PutManifest(repo, MediaTypeOCIIndex, []byte(idx.String()))
}

// gzipTar builds a deterministic gzip'd tar of files (sorted, fixed times and modes).
func gzipTar(files map[string][]byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		hdr := &tar.Header{Name: n, Mode: 0o644, Size: int64(len(files[n])), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", n, err)
		}
		if _, err := tw.Write(files[n]); err != nil {
			return nil, fmt.Errorf("tar %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("close gzip: %w", err)
	}
	return buf.Bytes(), nil
}

// PayloadState is the situation a generated payload family is in before a run.
type PayloadState string

// Payload states. "Local" components live in the pruned repository; only they get
// component tags. A correct run preserves every payload that has no removal request and
// removes every family tag of a payload that has one, or that is gone.
const (
	// PayloadUnpreserved: the payload tag only. Want: payload, a component tag per local
	// component, then the marker.
	PayloadUnpreserved PayloadState = "unpreserved"
	// PayloadPartiallyPreserved: payload and some component tags, no marker (an earlier run
	// stopped half-way). Want: as unpreserved.
	PayloadPartiallyPreserved PayloadState = "partially_preserved"
	// PayloadPreserved: payload, every component tag, marker. Want: unchanged.
	PayloadPreserved PayloadState = "preserved"
	// PayloadMultiArch: an unpreserved OCI index payload. Want: as unpreserved.
	PayloadMultiArch PayloadState = "multi_arch"
	// PayloadForeignComponent: unpreserved, one component lives in another repository
	// whose name has the pruned repository's as a prefix (…/ci-public). Want: component
	// tags for local components only, and the marker.
	PayloadForeignComponent PayloadState = "foreign_component"
	// PayloadRemoval: request, payload, marker, component tags. Want: all gone.
	PayloadRemoval PayloadState = "removal"
	// PayloadRemovalUnpreserved: request and payload, never preserved. Want: all gone, and
	// no component tag or marker written on the way.
	PayloadRemovalUnpreserved PayloadState = "removal_unpreserved"
	// PayloadRemovalPartial: request, marker and one component tag; the payload tag went in
	// an earlier, partial removal. Want: all gone.
	PayloadRemovalPartial PayloadState = "removal_partial"
	// PayloadOrphanRequest: only the request is left. Want: gone.
	PayloadOrphanRequest PayloadState = "orphan_request"
	// PayloadOrphanMarker: marker and component tags without payload or request. Want: gone.
	PayloadOrphanMarker PayloadState = "orphan_marker"
	// PayloadOrphanComponents: component tags only. Want: gone.
	PayloadOrphanComponents PayloadState = "orphan_components"
)

// PayloadStates lists every state in the order AddPayloads cycles through them.
func PayloadStates() []PayloadState {
	return []PayloadState{PayloadUnpreserved, PayloadPartiallyPreserved, PayloadPreserved, PayloadMultiArch,
		PayloadForeignComponent, PayloadRemoval, PayloadRemovalUnpreserved, PayloadRemovalPartial,
		PayloadOrphanRequest, PayloadOrphanMarker, PayloadOrphanComponents}
}

// Family tag names.
func PayloadTag(version string) string        { return proto.PayloadPrefix + version }
func PayloadMarkerTag(version string) string  { return proto.MarkerPrefix + version }
func PayloadRemovalTag(version string) string { return proto.RemovalPrefix + version }
func ComponentTag(version, name string) string {
	return proto.PayloadPrefix + version + proto.ComponentInfix + name
}

// PayloadConfig shapes AddPayloads. Zero values mean the documented defaults.
type PayloadConfig struct {
	Seed uint64
	// Count is the number of payloads; 0 means 22 (every state twice). States cycle in
	// PayloadStates order.
	Count int
	// Components is the number of components per payload; 0 means 4.
	Components int
	// OtherRepo holds foreign components; "" means <repo>-public.
	OtherRepo string
	// PullHost names component images in image-references; "" means DefaultPullHost.
	PullHost string
	// End dates versions and the component images' prune tags; zero means now.
	End time.Time
}

// PayloadCase is one generated payload and what a correct run leaves of its family.
type PayloadCase struct {
	Version    string
	State      PayloadState
	MultiArch  bool
	Digest     string             // the payload image (or index)
	Components []PayloadComponent // its image-references, in order
	Initial    []string           // family tags before a run, sorted
	Want       map[string]string  // family tags after a correct run, to the digest they point at
}

// PayloadFamily is what AddPayloads created.
type PayloadFamily struct {
	Repo      string
	OtherRepo string
	Cases     []PayloadCase
	// Initial is every family tag created, sorted.
	Initial []string
	// Want maps every family tag that must exist after a correct run to its digest; any
	// other family tag must be gone.
	Want map[string]string
	// PruneTags are old _prune_ tags on the local component images (dated End minus 30
	// days), as QCI has: preservation exists so that deleting them does not lose images a
	// payload needs. Whether they go depends on the run's cutoff, so Want leaves them out.
	PruneTags []string
}

// Check compares the family tags in the registry with Want and returns one line per
// difference, sorted; nil means the run left exactly the wanted family.
func (f *PayloadFamily) Check(r *Registry) []string {
	var diffs []string
	have := map[string]bool{}
	for _, t := range r.Tags(f.Repo) {
		if !proto.PayloadFamily(t) {
			continue
		}
		have[t] = true
		want, ok := f.Want[t]
		if !ok {
			diffs = append(diffs, "unexpected "+t)
			continue
		}
		if got, _ := r.TagDigest(f.Repo, t); got != want {
			diffs = append(diffs, fmt.Sprintf("%s points at %s, want %s", t, got, want))
		}
	}
	for t := range f.Want {
		if !have[t] {
			diffs = append(diffs, "missing "+t)
		}
	}
	slices.Sort(diffs)
	return diffs
}

// AddPayloads creates release payloads in repo in every PayloadState, with their component
// images (some in OtherRepo) and tags, and returns what was created and the end state a
// correct preservation and removal pass must leave.
func (r *Registry) AddPayloads(repo string, cfg PayloadConfig) (*PayloadFamily, error) {
	b := newPayloadBuilder(r, repo, cfg)
	states := PayloadStates()
	for i := range b.cfg.Count {
		c, err := b.addCase(i, states[i%len(states)])
		if err != nil {
			return nil, err
		}
		b.f.Initial = append(b.f.Initial, c.Initial...)
		maps.Copy(b.f.Want, c.Want)
		b.f.Cases = append(b.f.Cases, c)
	}
	// The tags go on last, once every image of the family is pushed.
	for _, t := range b.tagged {
		if err := r.AddTags(repo, t.digest, t.tag); err != nil {
			return nil, err
		}
	}
	slices.Sort(b.f.Initial)
	return b.f, nil
}

// payloadBuilder creates the family of one AddPayloads call.
type payloadBuilder struct {
	r          *Registry
	repo       string
	cfg        PayloadConfig // defaults applied
	end        time.Time
	rng        *rand.Rand
	pruneStamp string // the date of the component images' prune tags
	f          *PayloadFamily
	tagged     []struct{ tag, digest string } // tags to create in repo
}

func newPayloadBuilder(r *Registry, repo string, cfg PayloadConfig) *payloadBuilder {
	cfg.Count = cmp.Or(cfg.Count, 22)
	cfg.Components = cmp.Or(cfg.Components, 4)
	cfg.OtherRepo = cmp.Or(cfg.OtherRepo, repo+"-public")
	end := cfg.End.UTC()
	if cfg.End.IsZero() {
		end = time.Now().UTC()
	}
	return &payloadBuilder{
		r: r, repo: repo, cfg: cfg, end: end,
		rng:        rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x2545f4914f6cdd1d)),
		pruneStamp: end.AddDate(0, 0, -30).Format("20060102150405"),
		f:          &PayloadFamily{Repo: repo, OtherRepo: cfg.OtherRepo, Want: map[string]string{}},
	}
}

func (b *payloadBuilder) tag(t, d string) {
	b.tagged = append(b.tagged, struct{ tag, digest string }{t, d})
}

// addCase pushes the i-th payload, in state st, with its component images, and returns its
// case; its family tags are queued.
func (b *payloadBuilder) addCase(i int, st PayloadState) (PayloadCase, error) {
	when := b.end.Add(-time.Duration(i+1) * 3 * time.Hour)
	v := fmt.Sprintf("4.%d.0-0.ci-%s", 18+b.rng.IntN(5), when.Format("2006-01-02-150405"))
	c := PayloadCase{Version: v, State: st, MultiArch: st == PayloadMultiArch, Want: map[string]string{}}
	local, err := b.pushComponents(&c)
	if err != nil {
		return c, err
	}
	if c.Digest, err = b.r.PushPayload(b.repo, v, c.Components, c.MultiArch, b.cfg.PullHost); err != nil {
		return c, err
	}
	for t, d := range initialTags(st, v, c.Digest, local, b.r.DefaultDigest()) {
		c.Initial = append(c.Initial, t)
		b.tag(t, d)
	}
	slices.Sort(c.Initial)
	switch st {
	case PayloadUnpreserved, PayloadPartiallyPreserved, PayloadPreserved, PayloadMultiArch, PayloadForeignComponent:
		// Preservation completes these: the payload, its marker and every local component.
		c.Want[PayloadTag(v)] = c.Digest
		c.Want[PayloadMarkerTag(v)] = c.Digest
		for _, comp := range local {
			c.Want[ComponentTag(v, comp.Name)] = comp.Digest
		}
	}
	return c, nil
}

// pushComponents pushes c's component images, in repo but for the first of a
// PayloadForeignComponent case, and returns those in repo. Each local image gets an old
// prune tag (queued); a foreign one is tagged in OtherRepo at once.
func (b *payloadBuilder) pushComponents(c *PayloadCase) ([]PayloadComponent, error) {
	names := slices.Clone(genComponents)
	b.rng.Shuffle(len(names), func(x, y int) { names[x], names[y] = names[y], names[x] })
	v := c.Version
	var local []PayloadComponent
	for k := range min(b.cfg.Components, len(names)) {
		comp := PayloadComponent{Name: names[k], Repo: b.repo}
		if c.State == PayloadForeignComponent && k == 0 {
			comp.Repo = b.cfg.OtherRepo
		}
		d, err := b.r.PushImage(comp.Repo, v+" "+comp.Name)
		if err != nil {
			return nil, err
		}
		comp.Digest = d
		c.Components = append(c.Components, comp)
		if comp.Repo != b.repo {
			if err := b.r.AddTags(comp.Repo, d, comp.Name+"-"+strings.ReplaceAll(v, "_", "-")); err != nil {
				return nil, err
			}
			continue
		}
		local = append(local, comp)
		pt := b.pruneStamp + "_prune_ci_" + strings.ReplaceAll(comp.Name, "_", "-") + "_" + strings.ReplaceAll(v, "_", "-")
		b.tag(pt, d)
		b.f.PruneTags = append(b.f.PruneTags, pt)
	}
	return local, nil
}

// initialTags is the family a payload of version v at digest d starts with in state st, tag
// to digest: which of its payload, marker and removal tags exist, and how many of its local
// components' tags. An orphan removal request points at orphan.
func initialTags(st PayloadState, v, d string, local []PayloadComponent, orphan string) map[string]string {
	payload, marker, removal := PayloadTag(v), PayloadMarkerTag(v), PayloadRemovalTag(v)
	initial := map[string]string{}
	compTags := func(n int) {
		for _, comp := range local[:max(0, min(n, len(local)))] {
			initial[ComponentTag(v, comp.Name)] = comp.Digest
		}
	}
	switch st {
	case PayloadUnpreserved, PayloadMultiArch, PayloadForeignComponent:
		initial[payload] = d
	case PayloadPartiallyPreserved:
		initial[payload] = d
		compTags(len(local) / 2)
	case PayloadPreserved:
		initial[payload] = d
		compTags(len(local))
		initial[marker] = d
	case PayloadRemoval:
		initial[removal] = d
		initial[payload] = d
		compTags(len(local))
		initial[marker] = d
	case PayloadRemovalUnpreserved:
		initial[removal] = d
		initial[payload] = d
	case PayloadRemovalPartial:
		initial[removal] = d
		initial[marker] = d
		compTags(1)
	case PayloadOrphanRequest:
		initial[removal] = orphan
	case PayloadOrphanMarker:
		initial[marker] = d
		compTags(len(local))
	case PayloadOrphanComponents:
		compTags(len(local) - 1)
	}
	return initial
}

// Load fills repo with Generate(gen) and, when payloads is not nil, a payload family
// dated like the namespace (payloads.End defaults to gen.End).
func (r *Registry) Load(repo string, gen GenConfig, payloads *PayloadConfig) (*PayloadFamily, error) {
	if err := r.AddTags(repo, "", Generate(gen)...); err != nil {
		return nil, err
	}
	if payloads == nil {
		return nil, nil
	}
	pc := *payloads
	if pc.End.IsZero() {
		pc.End = gen.End
	}
	return r.AddPayloads(repo, pc)
}
