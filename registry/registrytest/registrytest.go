// Package registrytest starts real registries in process for tests: the CNCF Distribution
// registry with in-memory storage, and a tiny registry that ignores tags/list?last= the way
// Quay before 3.12 does. Every server listens on 127.0.0.1 on a random port and is closed by
// t.Cleanup; hosts are returned as host:port, to be used with plain HTTP.
package registrytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory" // the "inmemory" storage driver
	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme/reg"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/mediatype"
	v1 "github.com/regclient/regclient/types/oci/v1"
	"github.com/regclient/regclient/types/ref"
	"github.com/sirupsen/logrus"
)

// DistributionConfig tunes StartDistributionWith. The zero value is StartDistribution's
// registry.
type DistributionConfig struct {
	// MaxTags is Distribution's tags.maxtags: a tags/list n above it is capped to it, with a
	// Link header. 0 means no cap.
	MaxTags int
	// DeleteDisabled turns deletes off: DELETE answers 405 UNSUPPORTED.
	DeleteDisabled bool
}

// StartDistribution starts a CNCF Distribution registry (v3, in-memory storage, deletes
// enabled, no cap on tags/list n) and returns its host:port.
func StartDistribution(t testing.TB) string {
	t.Helper()
	return StartDistributionWith(t, DistributionConfig{})
}

// silenceLogrus mutes Distribution, which logs through logrus's process-wide standard
// logger and offers no other way in.
var silenceLogrus = sync.OnceFunc(func() { logrus.SetOutput(io.Discard) })

// StartDistributionWith starts a CNCF Distribution registry configured by cfg and returns its
// host:port.
func StartDistributionWith(t testing.TB, cfg DistributionConfig) string {
	t.Helper()
	silenceLogrus()
	c := &configuration.Configuration{
		Storage: configuration.Storage{
			"inmemory": configuration.Parameters{},
			"delete":   configuration.Parameters{"enabled": !cfg.DeleteDisabled},
			"maintenance": configuration.Parameters{
				"uploadpurging": map[any]any{"enabled": false},
			},
		},
	}
	c.Log.AccessLog.Disabled = true
	c.Tags.MaxTags = cfg.MaxTags
	srv := httptest.NewServer(handlers.NewApp(context.WithoutCancel(t.Context()), c))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// tagWorkers is how many manifest PUTs CreateTags has in flight.
const tagWorkers = 16

// CreateTags pushes one small image to host/repo with regclient and PUTs its manifest under
// every tag, tagWorkers at a time. It returns the manifest's digest, which all the tags share.
func CreateTags(t testing.TB, host, repo string, tags ...string) string {
	t.Helper()
	ctx := t.Context()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = tagWorkers // the default of 2 makes most PUTs dial anew
	t.Cleanup(tr.CloseIdleConnections)
	rc := regclient.New(
		regclient.WithConfigHost(config.Host{
			Name: host, Hostname: host, TLS: config.TLSDisabled, ReqConcurrent: tagWorkers,
		}),
		regclient.WithRegOpts(reg.WithTransport(tr)),
	)
	r, err := ref.New(host + "/" + repo)
	if err != nil {
		t.Fatalf("registrytest: repository %s/%s: %v", host, repo, err)
	}
	m, err := pushImage(ctx, rc, r)
	if err != nil {
		t.Fatalf("registrytest: push image to %s: %v", r.CommonName(), err)
	}

	var (
		next = make(chan string)
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range tagWorkers {
		wg.Go(func() {
			for tag := range next {
				if err := rc.ManifestPut(ctx, r.SetTag(tag), m); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("tag %s: %w", tag, err))
					mu.Unlock()
				}
			}
		})
	}
	for _, tag := range tags {
		next <- tag
	}
	close(next)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("registrytest: create tags in %s: %v", r.CommonName(), err)
	}
	return m.GetDescriptor().Digest.String()
}

// pushImage pushes a one-layer OCI image (config and layer blobs) and returns its manifest,
// not yet pushed.
func pushImage(ctx context.Context, rc *regclient.RegClient, r ref.Ref) (manifest.Manifest, error) {
	layer := []byte("tagsweep test layer\n")
	conf, err := json.Marshal(v1.Image{
		Config: v1.ImageConfig{Labels: map[string]string{"org.opencontainers.image.title": "tagsweep-test"}},
		RootFS: v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer)}},
	})
	if err != nil {
		return nil, err
	}
	blobs := []descriptor.Descriptor{
		{MediaType: mediatype.OCI1ImageConfig, Digest: digest.FromBytes(conf), Size: int64(len(conf))},
		{MediaType: mediatype.OCI1Layer, Digest: digest.FromBytes(layer), Size: int64(len(layer))},
	}
	for i, b := range [][]byte{conf, layer} {
		if _, err := rc.BlobPut(ctx, r, blobs[i], bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("blob %s: %w", blobs[i].Digest, err)
		}
	}
	return manifest.New(manifest.WithOrig(v1.Manifest{
		Versioned: v1.ManifestSchemaVersion,
		MediaType: mediatype.OCI1Manifest,
		Config:    blobs[0],
		Layers:    blobs[1:],
	}))
}

// DefaultIgnoringLastTags are IgnoringLastRegistry's tags when it is given none.
var DefaultIgnoringLastTags = []string{
	"20260101000000_prune_a", "20260102000000_prune_b", "20260103000000_prune_c",
}

var tagsListRE = regexp.MustCompile(`^/v2/(.+)/tags/list$`)

// IgnoringLastRegistry starts a registry that answers GET /v2/<any repo>/tags/list with the
// first n of tags (sorted; DefaultIgnoringLastTags when none are given) whatever `last` says,
// with an opaque next-page Link when more remain, like Quay before 3.12. It returns its
// host:port.
func IgnoringLastRegistry(t testing.TB, tags ...string) string {
	t.Helper()
	if len(tags) == 0 {
		tags = DefaultIgnoringLastTags
	}
	tags = slices.Sorted(slices.Values(tags))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := tagsListRE.FindStringSubmatch(r.URL.Path)
		switch {
		case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
			w.WriteHeader(http.StatusOK)
			return
		case m == nil || r.Method != http.MethodGet:
			http.Error(w, `{"errors":[{"code":"UNSUPPORTED"}]}`, http.StatusNotFound)
			return
		}
		page := tags
		if n, err := strconv.Atoi(r.URL.Query().Get("n")); err == nil && n >= 0 && n < len(page) {
			page = page[:n]
			w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?n=%d&next_page=opaque-token>; rel="next"`, m[1], n))
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"name": m[1], "tags": page})
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
