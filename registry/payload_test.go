package registry_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/mediatype"
	v1 "github.com/regclient/regclient/types/oci/v1"
	"github.com/regclient/regclient/types/ref"

	"github.com/tagsweep/tagsweep/preserve"
	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
	"github.com/tagsweep/tagsweep/registry/registrytest"
	"github.com/tagsweep/tagsweep/registry/sim"
)

func startSim(t *testing.T, cfg sim.Config) *sim.Server {
	t.Helper()
	s, err := sim.Start(t.Context(), "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newPayload(t *testing.T, host string, cfg registry.PayloadConfig) *registry.Payload {
	t.Helper()
	cfg.Host, cfg.PlainHTTP = host, true
	if cfg.DockerConfig == "" {
		cfg.DockerConfig = writeDockerConfig(t, `{}`)
	}
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = time.Millisecond
	}
	p, err := registry.NewPayload(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// components parses image-references documents into "name=image" lines, sorted.
func components(t *testing.T, docs [][]byte) []string {
	t.Helper()
	var out []string
	for _, d := range docs {
		refs, err := preserve.ParseImageReferences(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			out = append(out, r.Name+"="+r.Image)
		}
	}
	slices.Sort(out)
	return out
}

// TestImageReferencesSim reads every generated payload of the sim, single- and multi-arch, by
// tag and by digest, and finds exactly the components it was built with.
func TestImageReferencesSim(t *testing.T) {
	s := startSim(t, sim.Config{})
	fam, err := s.AddPayloads("openshift/ci", sim.PayloadConfig{Seed: 3, Count: 11})
	if err != nil {
		t.Fatal(err)
	}
	p := newPayload(t, s.Addr(), registry.PayloadConfig{})
	multi := 0
	for _, c := range fam.Cases {
		t.Run(string(c.State), func(t *testing.T) {
			docs, err := p.ImageReferences(t.Context(), "openshift/ci", c.Digest)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, comp := range c.Components {
				want = append(want, comp.Name+"="+sim.DefaultPullHost+"/"+comp.Repo+"@"+comp.Digest)
			}
			slices.Sort(want)
			platforms := 1
			if c.MultiArch {
				platforms = 2
				multi++
			}
			if len(docs) != platforms {
				t.Errorf("%d documents, want one per platform (%d)", len(docs), platforms)
			}
			got := slices.Compact(components(t, docs))
			if !slices.Equal(got, want) {
				t.Errorf("components = %v\nwant %v", got, want)
			}
			if !slices.Contains(c.Initial, sim.PayloadTag(c.Version)) {
				return
			}
			byTag, err := p.ImageReferences(t.Context(), "openshift/ci", sim.PayloadTag(c.Version))
			if err != nil || !slices.Equal(slices.Compact(components(t, byTag)), want) {
				t.Errorf("by tag: %v, %v", components(t, byTag), err)
			}
		})
	}
	if multi == 0 {
		t.Error("no multi-arch payload was read")
	}
	if st := s.Stats(); st.DigestDeletes+st.TagDeletes != 0 || st.Requests[sim.KindManifestPut] != 0 {
		t.Errorf("reading payloads wrote or deleted: %+v", st)
	}
}

// layerOf builds a gzip'd tar of files; a nil content writes a whiteout of that name.
func layerOf(t *testing.T, files ...[2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// putImage stores an image of the given layers (bottom first) in the sim and returns its digest.
func putImage(t *testing.T, s *sim.Server, repo string, layers ...[]byte) string {
	t.Helper()
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	var ls []string
	for _, l := range layers {
		ls = append(ls, fmt.Sprintf(`{"mediaType":%q,"digest":%q,"size":%d}`, sim.MediaTypeOCILayerGzip, s.PutBlob(l), len(l)))
	}
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[%s]}`,
		sim.MediaTypeOCIManifest, sim.MediaTypeOCIConfig, s.PutBlob(cfg), len(cfg), strings.Join(ls, ","))
	d, err := s.PutManifest(repo, sim.MediaTypeOCIManifest, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func isDoc(name string) string {
	return fmt.Sprintf(`{"kind":"ImageStream","spec":{"tags":[{"name":%q,"from":{"kind":"DockerImage","name":"quay.io/openshift/ci@sha256:%s"}}]}}`,
		name, strings.Repeat("a", 64))
}

// TestImageReferencesLayers: the top layer wins, a whiteout hides the file, other files and
// layers are passed over, and the top layer is the only one read when it holds the file.
func TestImageReferencesLayers(t *testing.T) {
	const file = proto.ImageReferencesPath
	tests := []struct {
		name   string
		layers [][]byte
		want   string // component name read, "" for ErrNoImageReferences
	}{
		{"top layer wins", [][]byte{layerOf(t, [2]string{file, isDoc("old")}), layerOf(t, [2]string{file, isDoc("new")})}, "new"},
		{"found below", [][]byte{layerOf(t, [2]string{file, isDoc("low")}), layerOf(t, [2]string{"etc/passwd", "x"})}, "low"},
		{"./ prefix", [][]byte{layerOf(t, [2]string{"./" + file, isDoc("dot")})}, "dot"},
		{"whiteout", [][]byte{layerOf(t, [2]string{file, isDoc("old")}), layerOf(t, [2]string{"release-manifests/.wh.image-references", ""})}, ""},
		{"opaque dir", [][]byte{layerOf(t, [2]string{file, isDoc("old")}), layerOf(t, [2]string{"release-manifests/.wh..wh..opq", ""})}, ""},
		{"absent", [][]byte{layerOf(t, [2]string{"release-manifests/other", "x"})}, ""},
		{"no layers", nil, ""},
	}
	s := startSim(t, sim.Config{})
	p := newPayload(t, s.Addr(), registry.PayloadConfig{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := putImage(t, s, "openshift/ci", tc.layers...)
			s.ResetStats()
			docs, err := p.ImageReferences(t.Context(), "openshift/ci", d)
			if tc.want == "" {
				if !errors.Is(err, registry.ErrNoImageReferences) {
					t.Fatalf("ImageReferences() = %d docs, %v; want ErrNoImageReferences", len(docs), err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := components(t, docs); len(got) != 1 || !strings.HasPrefix(got[0], tc.want+"=") {
				t.Errorf("read %v, want component %q", got, tc.want)
			}
			if tc.name == "top layer wins" {
				if n := s.Stats().Requests[sim.KindBlob]; n != 1 {
					t.Errorf("%d blob reads, want only the top layer's", n)
				}
			}
		})
	}
}

// TestPayloadTagAndDigest: component tags are written by copying the manifest, so they point
// at the very digest; only family tags may be written; nothing is ever deleted.
func TestPayloadTagAndDigest(t *testing.T) {
	s := startSim(t, sim.Config{})
	const repo = "openshift/ci"
	img, err := s.PushImage(repo, "component")
	if err != nil {
		t.Fatal(err)
	}
	fam, err := s.AddPayloads(repo, sim.PayloadConfig{Seed: 1, Count: 4})
	if err != nil {
		t.Fatal(err)
	}
	index := fam.Cases[3] // multi-arch: an OCI index
	if !index.MultiArch {
		t.Fatalf("case 3 is %s, want multi_arch", index.State)
	}
	p := newPayload(t, s.Addr(), registry.PayloadConfig{})
	ctx := t.Context()
	for _, tc := range []struct{ tag, digest string }{
		{"rc_payload__4.1__component__cli", img},
		{"preserved__rc_payload__4.1", index.Digest},
		{"rc_payload__4.1__component__cli", index.Digest}, // moved
	} {
		if err := p.Tag(ctx, repo, tc.tag, tc.digest); err != nil {
			t.Fatalf("Tag(%s, %s) = %v", tc.tag, tc.digest, err)
		}
		if got, _ := s.TagDigest(repo, tc.tag); got != tc.digest {
			t.Errorf("%s -> %s, want %s", tc.tag, got, tc.digest)
		}
		got, err := p.Digest(ctx, repo, tc.tag)
		if err != nil || got != tc.digest {
			t.Errorf("Digest(%s) = %s, %v; want %s", tc.tag, got, err, tc.digest)
		}
	}
	before := s.Stats()
	for _, tag := range []string{"latest", "rc_payload__4.1", "remove__rc_payload__4.1", "20200101000000_prune_x",
		"preserved__rc_payload__", "rc_payload____component__"} {
		if err := p.Tag(ctx, repo, tag, img); err == nil {
			t.Errorf("Tag(%s) was allowed", tag)
		}
	}
	if err := p.Tag(ctx, repo, "rc_payload__4.1__component__x", "sha256:"+strings.Repeat("0", 64)); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Tag(unknown digest) = %v, want ErrNotFound", err)
	}
	if _, err := p.Digest(ctx, repo, "no-such-tag"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("Digest(no-such-tag) = %v, want ErrNotFound", err)
	}
	after := s.Stats()
	if n := after.Requests[sim.KindManifestPut] - before.Requests[sim.KindManifestPut]; n != 0 {
		t.Errorf("%d manifest writes for refused tags", n)
	}
	if after.TagDeletes+after.DigestDeletes != 0 {
		t.Errorf("the payload client deleted: %+v", after)
	}
}

// TestPayloadAuth: with Quay-style token authentication the client reads and tags with the
// docker config's login, and a wrong password is ErrUnauthorized; the credentials never show
// in errors or logs.
func TestPayloadAuth(t *testing.T) {
	const user, pass = "openshift+pruner", "robot-Secret-Pass-77aa19d3e2"
	s := startSim(t, sim.Config{Auth: &sim.Auth{Users: map[string]string{user: pass}}})
	fam, err := s.AddPayloads("openshift/ci", sim.PayloadConfig{Seed: 2, Count: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := fam.Cases[0]
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	dc := writeDockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, s.Addr(), auth))
	var logs logBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p := newPayload(t, s.Addr(), registry.PayloadConfig{OCIConfig: registry.OCIConfig{DockerConfig: dc, Logger: logger}})
	if _, err := p.ImageReferences(t.Context(), "openshift/ci", sim.PayloadTag(c.Version)); err != nil {
		t.Fatal(err)
	}
	if err := p.Tag(t.Context(), "openshift/ci", preserve.ComponentTag(c.Version, "x"), c.Components[0].Digest); err != nil {
		t.Fatal(err)
	}
	if s.Stats().TokensIssued == 0 {
		t.Error("no token was issued: the test did not authenticate")
	}

	bad := writeDockerConfig(t, fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, s.Addr(),
		base64.StdEncoding.EncodeToString([]byte(user+":wrong-"+pass))))
	q := newPayload(t, s.Addr(), registry.PayloadConfig{OCIConfig: registry.OCIConfig{DockerConfig: bad, RetryLimit: 1, Logger: logger}})
	_, err = q.ImageReferences(t.Context(), "openshift/ci", c.Digest)
	if !errors.Is(err, registry.ErrUnauthorized) {
		t.Errorf("with a wrong password: %v, want ErrUnauthorized", err)
	}
	err2 := q.Tag(t.Context(), "openshift/ci", preserve.ComponentTag(c.Version, "y"), c.Components[0].Digest)
	if !errors.Is(err2, registry.ErrUnauthorized) {
		t.Errorf("Tag with a wrong password: %v, want ErrUnauthorized", err2)
	}
	for _, secret := range []string{pass, auth, "wrong-" + pass} {
		assertNoSecret(t, secret, logs.String(), err, err2)
	}
}

// TestPayloadDistribution runs against the CNCF Distribution registry: a payload image pushed
// with regclient is read, and a component tag written by copying the manifest keeps its digest.
func TestPayloadDistribution(t *testing.T) {
	host := registrytest.StartDistribution(t)
	const repo = "openshift/ci"
	compDigest := registrytest.CreateTags(t, host, repo, "20200101000000_prune_ci_cli")
	doc := fmt.Sprintf(`{"kind":"ImageStream","apiVersion":"image.openshift.io/v1","spec":{"tags":[
		{"name":"cli","from":{"kind":"DockerImage","name":"quay-proxy.ci.openshift.org/openshift/ci@%s"}}]}}`, compDigest)
	payloadDigest := pushDistributionImage(t, host, repo, "rc_payload__4.1",
		layerOf(t, [2]string{"usr/bin/cvo", "binary"}),
		layerOf(t, [2]string{"release-manifests/release-metadata", "{}"}, [2]string{proto.ImageReferencesPath, doc}))

	p := newPayload(t, host, registry.PayloadConfig{})
	pres, err := preserve.New(preserve.Config{Registry: "quay.io",
		Aliases: []preserve.Alias{{Name: "quay-proxy.ci.openshift.org/openshift/ci", Repository: repo}}}, p, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pres.Preserve(t.Context(), repo, preserve.Task{Version: "4.1", Payload: "rc_payload__4.1"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if res.Tagged != 1 || !res.Marked || res.Digest != payloadDigest {
		t.Errorf("Preserve() = %+v", res)
	}
	for tag, want := range map[string]string{"rc_payload__4.1__component__cli": compDigest, "preserved__rc_payload__4.1": payloadDigest} {
		if got, err := p.Digest(t.Context(), repo, tag); err != nil || got != want {
			t.Errorf("Digest(%s) = %s, %v; want %s", tag, got, err, want)
		}
	}
}

// pushDistributionImage pushes an OCI image of layers (bottom first) under tag and returns
// its digest.
func pushDistributionImage(t *testing.T, host, repo, tag string, layers ...[]byte) string {
	t.Helper()
	ctx := t.Context()
	rc := regclient.New(regclient.WithConfigHost(config.Host{Name: host, Hostname: host, TLS: config.TLSDisabled}))
	r, err := ref.New(host + "/" + repo + ":" + tag)
	if err != nil {
		t.Fatal(err)
	}
	conf := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	put := func(mt string, b []byte) descriptor.Descriptor {
		d := descriptor.Descriptor{MediaType: mt, Digest: digest.FromBytes(b), Size: int64(len(b))}
		if _, err := rc.BlobPut(ctx, r, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	m := v1.Manifest{Versioned: v1.ManifestSchemaVersion, MediaType: mediatype.OCI1Manifest, Config: put(mediatype.OCI1ImageConfig, conf)}
	for _, l := range layers {
		m.Layers = append(m.Layers, put(mediatype.OCI1LayerGzip, l))
	}
	mm, err := manifest.New(manifest.WithOrig(m))
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.ManifestPut(ctx, r, mm); err != nil {
		t.Fatal(err)
	}
	return mm.GetDescriptor().Digest.String()
}
