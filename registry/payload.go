package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/regclient/regclient"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/errs"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/mediatype"
	"github.com/regclient/regclient/types/ref"

	"github.com/tagsweep/tagsweep/proto"
)

// Defaults of PayloadConfig's zero values.
const (
	DefaultPayloadReadTimeout = 10 * time.Minute
	DefaultPayloadMaxFile     = 16 << 20
	// maxPlatforms bounds the platform images of one payload index that are read.
	maxPlatforms = 16
)

// PayloadConfig configures a Payload client: the registry, credentials, retries and timeouts
// of OCIConfig (Concurrency included), plus how long reading one payload may take.
type PayloadConfig struct {
	OCIConfig
	// ReadTimeout bounds one ImageReferences call, every layer read included. Default 10m.
	ReadTimeout time.Duration
	// MaxFile bounds the size of the image-references file read into memory. Default 16 MiB.
	MaxFile int64
}

// Payload is what release-payload preservation needs from an OCI registry, over regclient
// with the same authentication, retries and redaction as OCI: the digest of a tag, tagging a
// manifest that exists (by copying it by digest), and reading a payload image's
// image-references. Every request it sends passes a guard that lets through only manifest and
// blob reads, manifest writes to preservation-family tags, and what authentication needs:
// it can never delete anything, and never write any other tag.
type Payload struct {
	// writable says which tags Tag may write (the guard refuses any other manifest PUT).
	writable    func(tag string) bool
	rc          *regclient.RegClient
	name        string
	callTimeout time.Duration
	readTimeout time.Duration
	maxFile     int64
	redact      *redactor
	edge        *credentialEdge
}

// NewPayload returns a Payload client for cfg.Host.
func NewPayload(cfg PayloadConfig) (*Payload, error) {
	return newPayload(cfg, "payload registry", writableTag)
}

// newPayload returns a Payload client that may write the tags writable accepts (always
// valid tag names, never digests); what names the client in errors.
func newPayload(cfg PayloadConfig, what string, writable func(string) bool) (*Payload, error) {
	if cfg.ReadTimeout < 0 || cfg.MaxFile < 0 {
		return nil, fmt.Errorf("%s: read timeout and max file size must not be negative", what)
	}
	h, err := prepareHost(cfg.OCIConfig, what)
	if err != nil {
		return nil, err
	}
	o := h.cfg
	// No http.Client.Timeout: it would bound reading a whole layer. The transport bounds the
	// wait for an answer's headers, the call's context the body.
	g := &payloadGuard{base: h.edge, host: h.entry.Hostname, control: o.RateControl, writable: writable}
	return &Payload{
		writable:    writable,
		rc:          h.regClient(&http.Client{Transport: g}),
		name:        h.entry.Name,
		callTimeout: o.CallTimeout,
		readTimeout: cmp.Or(cfg.ReadTimeout, DefaultPayloadReadTimeout),
		maxFile:     cmp.Or(cfg.MaxFile, DefaultPayloadMaxFile),
		redact:      h.redact,
		edge:        h.edge,
	}, nil
}

// Digest returns the manifest digest tag points at (HEAD, or GET when the registry sends no
// Docker-Content-Digest). An absent tag is an error wrapping ErrNotFound.
func (p *Payload) Digest(ctx context.Context, repo, tag string) (string, error) {
	what := fmt.Sprintf("digest of %s:%s", repo, tag)
	if !proto.ValidTag(tag) {
		return "", fmt.Errorf("%s: not a valid tag name", what)
	}
	r, err := p.ref(repo)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.callTimeout)
	defer cancel()
	m, err := p.rc.ManifestHead(ctx, r.SetTag(tag), regclient.WithManifestRequireDigest())
	if err != nil {
		return "", p.edgeError(what, err)
	}
	d := m.GetDescriptor().Digest.String()
	if !proto.ValidDigest(d) {
		return "", fmt.Errorf("%s: the registry named no sha256 digest (%q)", what, d)
	}
	return d, nil
}

// Tag creates tag, or moves it, to the manifest at digest in repo, by reading that manifest
// and writing its very bytes under the tag, so the tag's digest is digest. Only tags of the
// release-payload preservation family (component tags and markers) may be written. A digest
// the repository does not hold is an error wrapping ErrNotFound.
func (p *Payload) Tag(ctx context.Context, repo, tag, digest string) error {
	what := fmt.Sprintf("tag %s:%s at %s", repo, tag, digest)
	if !proto.ValidTag(tag) || !p.writable(tag) {
		return fmt.Errorf("%s: refused: only %s…__component__… and %s… tags are written", what,
			proto.PayloadPrefix, proto.MarkerPrefix)
	}
	if !proto.ValidDigest(digest) {
		return fmt.Errorf("%s: not a sha256 digest", what)
	}
	r, err := p.ref(repo)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.callTimeout)
	defer cancel()
	m, err := p.rc.ManifestGet(ctx, r.SetDigest(digest))
	if err != nil {
		return p.edgeError(what, err)
	}
	if got := m.GetDescriptor().Digest.String(); got != digest {
		return fmt.Errorf("%s: the registry returned manifest %s", what, got)
	}
	if err := p.rc.ManifestPut(ctx, r.SetTag(tag), m); err != nil {
		return p.edgeError(what, err)
	}
	return nil
}

// ImageReferences reads proto.ImageReferencesPath from the image ref (a tag or a digest) in repo:
// from the image itself, or from every platform image of an index (attestation manifests
// skipped), returning one document per image that holds the file. Layers are streamed from
// the top one down (a later layer wins), and reading stops at the file or at a whiteout of it.
// No image holding the file is an error wrapping ErrNoImageReferences.
func (p *Payload) ImageReferences(ctx context.Context, repo, refStr string) ([][]byte, error) {
	what := fmt.Sprintf("read %s of %s:%s", proto.ImageReferencesPath, repo, refStr)
	r, err := p.ref(repo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case proto.ValidDigest(refStr):
		r = r.SetDigest(refStr)
	case proto.ValidTag(refStr):
		r = r.SetTag(refStr)
	default:
		return nil, fmt.Errorf("%s: not a tag or sha256 digest", what)
	}
	ctx, cancel := context.WithTimeout(ctx, p.readTimeout)
	defer cancel()
	top, err := p.rc.ManifestGet(ctx, r)
	if err != nil {
		return nil, p.edgeError(what, err)
	}
	images := []manifest.Manifest{top}
	if top.IsList() {
		images = nil
		idx, ok := top.(manifest.Indexer)
		if !ok {
			return nil, fmt.Errorf("%s: index of type %s lists no manifests", what, manifest.GetMediaType(top))
		}
		list, err := idx.GetManifestList()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		seen := map[string]bool{}
		for _, d := range list {
			if !platformImage(d) || seen[d.Digest.String()] {
				continue
			}
			seen[d.Digest.String()] = true
			if len(seen) > maxPlatforms {
				return nil, fmt.Errorf("%s: index lists more than %d platform images", what, maxPlatforms)
			}
			m, err := p.rc.ManifestGet(ctx, r.SetDigest(d.Digest.String()))
			if err != nil {
				return nil, p.edgeError(fmt.Sprintf("%s: platform image %s", what, d.Digest), err)
			}
			if m.IsList() {
				return nil, fmt.Errorf("%s: nested index %s", what, d.Digest)
			}
			images = append(images, m)
		}
	}
	var docs [][]byte
	for _, m := range images {
		doc, err := p.readFile(ctx, r, m)
		switch {
		case errors.Is(err, ErrNoImageReferences):
			continue
		case err != nil:
			return nil, fmt.Errorf("%s: image %s: %w", what, m.GetDescriptor().Digest, err)
		}
		docs = append(docs, doc)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("%s: %w", what, ErrNoImageReferences)
	}
	return docs, nil
}

// readFile streams m's layers from the top one down until one holds or deletes the file.
func (p *Payload) readFile(ctx context.Context, r ref.Ref, m manifest.Manifest) ([]byte, error) {
	img, ok := m.(manifest.Imager)
	if !ok {
		return nil, fmt.Errorf("manifest of type %s is not an image", manifest.GetMediaType(m))
	}
	layers, err := img.GetLayers()
	if err != nil {
		return nil, err
	}
	for i := len(layers) - 1; i >= 0; i-- {
		d := layers[i]
		switch d.MediaType {
		case mediatype.Docker2ForeignLayer, mediatype.OCI1ForeignLayer, mediatype.OCI1ForeignLayerGzip, mediatype.OCI1ForeignLayerZstd:
			continue // not in this registry
		}
		doc, err := p.readLayer(ctx, r, d)
		switch {
		case err == nil:
			return doc, nil
		case errors.Is(err, errs.ErrFileDeleted):
			return nil, ErrNoImageReferences
		case errors.Is(err, errs.ErrFileNotFound):
			continue
		default:
			return nil, fmt.Errorf("layer %s: %w", d.Digest, err)
		}
	}
	return nil, ErrNoImageReferences
}

func (p *Payload) readLayer(ctx context.Context, r ref.Ref, d descriptor.Descriptor) ([]byte, error) {
	b, err := p.rc.BlobGet(ctx, r, d)
	if err != nil {
		return nil, p.edgeError("get blob", err)
	}
	defer b.Close()
	tr, err := b.ToTarReader()
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	hdr, rd, err := tr.ReadFile(proto.ImageReferencesPath)
	if err != nil {
		if errors.Is(err, errs.ErrFileDeleted) || errors.Is(err, errs.ErrFileNotFound) {
			return nil, err
		}
		return nil, errors.New(p.redact.apply(err.Error()))
	}
	if hdr.Size > p.maxFile {
		return nil, fmt.Errorf("%s is %d bytes, more than %d", proto.ImageReferencesPath, hdr.Size, p.maxFile)
	}
	doc, err := io.ReadAll(io.LimitReader(rd, p.maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %s", proto.ImageReferencesPath, p.redact.apply(err.Error()))
	}
	return doc, nil
}

// platformImage reports whether an index entry is an image of a platform, not an attestation
// or other artifact (BuildKit marks attestations with platform unknown/unknown and an
// annotation).
func platformImage(d descriptor.Descriptor) bool {
	switch d.MediaType {
	case mediatype.OCI1Manifest, mediatype.Docker2Manifest, mediatype.OCI1ManifestList, mediatype.Docker2ManifestList:
	default:
		return false
	}
	if d.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return false
	}
	return d.Platform == nil || d.Platform.OS != "unknown"
}

func (p *Payload) ref(repo string) (ref.Ref, error) {
	if !proto.ValidRepository(repo) {
		return ref.Ref{}, fmt.Errorf("%q is not a valid repository name", repo)
	}
	r := ref.Ref{Scheme: "reg", Registry: p.name, Repository: repo}
	r.Reference = r.CommonName()
	return r, nil
}

// edgeError translates a regclient error once into the sentinels callers branch on, keeping
// its words redacted and bounded but not the error value itself (it may quote credentials).
func (p *Payload) edgeError(what string, err error) error {
	detail := boundDetail(p.redact.apply(err.Error()))
	status := regclientStatus(err)
	refused := p.edge.refusal()
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %s: %w", what, detail, context.DeadlineExceeded)
	case refused != nil && status == http.StatusUnauthorized:
		return authRefusedError(what, refused)
	}
	if sentinel := statusSentinel(distributionAPI, "", status); sentinel != nil {
		return fmt.Errorf("%s: %s: %w", what, detail, sentinel)
	}
	return fmt.Errorf("%s: %s", what, detail)
}

// regclientStatus is the status regclient's error stands for, 0 when it names none: regclient
// keeps the status in its error text alone, and folds 403 into 401.
func regclientStatus(err error) int {
	switch {
	case errors.Is(err, errs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, errs.ErrHTTPUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, errs.ErrHTTPRateLimit):
		return http.StatusTooManyRequests
	}
	return 0
}

// writableTag reports whether tag is a component tag (rc_payload__<v>__component__<c>) or a
// marker (preserved__rc_payload__<v>), with non-empty <v> and <c>.
func writableTag(tag string) bool {
	if v, ok := strings.CutPrefix(tag, proto.MarkerPrefix); ok {
		return v != ""
	}
	rest, ok := strings.CutPrefix(tag, proto.PayloadPrefix)
	i := strings.LastIndex(rest, proto.ComponentInfix)
	return ok && i > 0 && i+len(proto.ComponentInfix) < len(rest)
}

// manifestPath and blobPath are the reads a payload client sends; manifest writes must also
// name a writable tag. They are the regexps ^/v2/(.+)/manifests/([^/]+)$ and
// ^/v2/.+/blobs/sha256:[a-f0-9]{64}$ written out, as registryAPIPath is.

// manifestPath splits /v2/<name>/manifests/<ref>: name without a newline, ref without '/'.
func manifestPath(p string) (name, ref string, ok bool) {
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found {
		return "", "", false
	}
	i := strings.LastIndex(rest, "/manifests/")
	if i < 1 {
		return "", "", false
	}
	name, ref = rest[:i], rest[i+len("/manifests/"):]
	if ref == "" || strings.Contains(ref, "/") || strings.Contains(name, "\n") {
		return "", "", false
	}
	return name, ref, true
}

// blobPath reports whether p is /v2/<name>/blobs/sha256:<64 lower-case hex digits>.
func blobPath(p string) bool {
	const digest = len("/blobs/sha256:") + 64
	rest, found := strings.CutPrefix(p, "/v2/")
	if !found || len(rest) <= digest {
		return false
	}
	name, d := rest[:len(rest)-digest], rest[len(rest)-digest:]
	hex, found := strings.CutPrefix(d, "/blobs/sha256:")
	if !found || strings.Contains(name, "\n") {
		return false
	}
	for i := range len(hex) {
		if c := hex[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// payloadGuard is the transport under a Payload client's regclient: manifest and blob reads
// and authentication pass; a manifest PUT passes only to a writable tag; every other request
// to the registry API, and every DELETE, PATCH or other write anywhere, is refused. Requests
// to the registry API are paced by the host's RateControl (shared with the OCI client of the
// same host when the configuration gives both the same one).
type payloadGuard struct {
	base     http.RoundTripper
	host     string
	control  *RateControl
	writable func(tag string) bool
}

func (g *payloadGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	api := registryAPIPath(req.URL.Path) && req.URL.Host == g.host
	ok := false
	switch req.Method {
	case http.MethodGet, http.MethodHead:
		// Reads anywhere: manifests and blobs here, token realms and blob storage redirects
		// elsewhere; the rest of this registry's API is refused.
		_, _, manifest := manifestPath(req.URL.Path)
		ok = !api || manifest || blobPath(req.URL.Path)
	case http.MethodPost:
		ok = !api // token requests
	case http.MethodPut:
		_, ref, manifest := manifestPath(req.URL.Path)
		ok = req.URL.Host == g.host && manifest && proto.ValidTag(ref) && g.writable(ref)
	}
	if !ok {
		closeBody(req)
		return nil, fmt.Errorf("%w: %s %s", errRefused, req.Method, req.URL.Path)
	}
	if !api {
		return g.base.RoundTrip(req)
	}
	ticket, err := g.control.Wait(req.Context())
	if err != nil {
		closeBody(req)
		return nil, err
	}
	g.control.Sent()
	resp, err := g.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if after, ok := g.control.Observe(ticket, resp.StatusCode, resp.Header); ok {
		// A 429 without Retry-After: regclient, the one retry layer, retries when the
		// controller's lowered rate allows, rather than escalating its own backoff.
		resp.Header.Set("Retry-After", after)
	}
	return resp, nil
}
