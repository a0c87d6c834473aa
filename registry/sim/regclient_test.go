package sim

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme"
	"github.com/regclient/regclient/scheme/reg"
	"github.com/regclient/regclient/types/descriptor"
	regmanifest "github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/ref"
)

// TestRegclientPushCopyListDelete checks that a real client can push an image, copy it to
// another tag and repository, list with last= and delete tags against the sim.
func TestRegclientPushCopyListDelete(t *testing.T) {
	s := startSim(t, Config{PageCap: 3})
	rc := regclient.New(
		regclient.WithConfigHost(config.Host{Name: s.Addr(), TLS: config.TLSDisabled}),
		regclient.WithRegOpts(reg.WithDelay(10*time.Millisecond, 50*time.Millisecond)),
	)
	ctx := t.Context()
	parse := func(s string) ref.Ref {
		t.Helper()
		r, err := ref.New(s)
		if err != nil {
			t.Fatalf("ref.New(%q): %v", s, err)
		}
		return r
	}
	src := parse(s.Addr() + "/ns/app:v1")

	layer := bytes.Repeat([]byte("layer"), 1000)
	cfgBlob := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	for _, b := range [][]byte{layer, cfgBlob} {
		d := descriptor.Descriptor{MediaType: "application/octet-stream", Digest: digestOf(t, b), Size: int64(len(b))}
		if _, err := rc.BlobPut(ctx, src, d, bytes.NewReader(b)); err != nil {
			t.Fatalf("BlobPut: %v", err)
		}
	}
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":%q,"digest":%q,"size":%d}]}`,
		MediaTypeOCIManifest, MediaTypeOCIConfig, Digest(cfgBlob), len(cfgBlob), MediaTypeOCILayerGzip, Digest(layer), len(layer))
	m, err := regmanifest.New(regmanifest.WithRaw(body))
	if err != nil {
		t.Fatalf("manifest.New: %v", err)
	}
	if err := rc.ManifestPut(ctx, src, m); err != nil {
		t.Fatalf("ManifestPut: %v", err)
	}
	if got, _ := s.TagDigest("ns/app", "v1"); got != Digest(body) {
		t.Fatalf("v1 points at %s, want %s", got, Digest(body))
	}

	for _, dst := range []string{"/ns/app:v2", "/other/app:copy"} {
		if err := rc.ImageCopy(ctx, src, parse(s.Addr()+dst)); err != nil {
			t.Fatalf("ImageCopy to %s: %v", dst, err)
		}
	}
	if got, _ := s.TagDigest("ns/app", "v2"); got != Digest(body) {
		t.Errorf("v2 points at %s, want %s", got, Digest(body))
	}
	if got, _ := s.TagDigest("other/app", "copy"); got != Digest(body) {
		t.Errorf("other/app:copy points at %s, want %s", got, Digest(body))
	}
	if err := s.AddTags("ns/app", Digest(body), "v3", "v4", "v5"); err != nil {
		t.Fatal(err)
	}

	tl, err := rc.TagList(ctx, parse(s.Addr()+"/ns/app"), scheme.WithTagLast("v1"))
	if err != nil {
		t.Fatalf("TagList: %v", err)
	}
	tags, err := tl.GetTags()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"v2", "v3", "v4", "v5"}; !slices.Equal(tags, want) {
		t.Errorf("TagList(last=v1) = %v, want %v (following Link over pages of 3)", tags, want)
	}

	if err := rc.TagDelete(ctx, parse(s.Addr()+"/ns/app:v2")); err != nil {
		t.Fatalf("TagDelete: %v", err)
	}
	if got, want := s.Tags("ns/app"), []string{"v1", "v3", "v4", "v5"}; !slices.Equal(got, want) {
		t.Errorf("Tags() = %v, want %v", got, want)
	}
	if st := s.Stats(); st.DigestDeletes != 0 || st.TagDeletes != 1 {
		t.Errorf("TagDeletes, DigestDeletes = %d, %d, want 1, 0", st.TagDeletes, st.DigestDeletes)
	}
}

func digestOf(t *testing.T, b []byte) digest.Digest {
	t.Helper()
	d, err := digest.Parse(Digest(b))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
