package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Config configures a simulated registry. The zero value is a fast Quay-like registry with
// no latency and no faults.
type Config struct {
	// PageCap is the most tags one tags/list page returns; larger n is clamped silently, as
	// Quay does. 0 means 100 (Quay's maximum).
	PageCap int
	// Latency is added to every request, honouring the request's context.
	Latency time.Duration
	// Logger receives a debug line per request. nil discards.
	Logger *slog.Logger
	// Now is the clock for push times, token expiry and the list cache; nil means time.Now.
	Now func() time.Time

	// Faults are injected from the start; SetFaults changes them while serving.
	Faults Faults
	// Auth, when set, makes every /v2 request need a bearer token from /v2/auth, as Quay
	// does. nil serves without authentication.
	Auth *Auth
	// APIToken, when set, is the OAuth bearer token every /api/v1 request must carry.
	APIToken string
	// TimeMachine is how long a deleted tag's row stays in API v1's history, restorable
	// (POST …/tag/<tag>/restore), and keeps its manifest from the garbage collector (GC):
	// Quay's namespace setting removed_tag_expiration_s. 0 means Quay's default, two weeks;
	// negative means none, as on a registry without a time machine.
	TimeMachine time.Duration
	// ListCacheTTL, when positive, caches tags/list pages by (repository, last, n) for that
	// long and does not invalidate them on deletes or pushes, like Quay's model cache
	// (120 s in production). 0 turns the cache off.
	ListCacheTTL time.Duration
}

func (c Config) pageCap() int {
	if c.PageCap <= 0 {
		return 100
	}
	return c.PageCap
}

// Registry is an in-memory registry serving the OCI distribution API (the parts tagsweep and
// regclient use) over HTTP. It is safe for concurrent use.
type Registry struct {
	cfg Config
	log *slog.Logger

	mu    sync.RWMutex     // guards repos (the map, not the repositories)
	repos map[string]*repo // by name

	content   sync.RWMutex         // guards manifests, blobs, uploads
	manifests map[string]*manifest // by digest, shared by every repository
	blobs     map[string][]byte    // by digest, shared by every repository
	uploads   map[string]*upload   // by upload ID
	uploadSeq atomic.Uint64

	defaultDigest string

	stats    stats
	inflight atomic.Int64
	faults   faultState
	tokens   tokenStore
	cache    listCache
}

type repo struct {
	mu        sync.RWMutex
	tags      index
	digests   []string         // manifest digests tags point at, by entry.man
	digestIdx map[string]int32 // inverse of digests
	known     map[string]bool  // manifest digests present in this repository
	deleted   []deletion       // tags removed, in order
	deletedOf map[string][]int // a tag's rows in deleted, in order: API v1 asks by tag
	lastEnd   map[int32]int64  // the newest row's end (unix ms) of each manifest, by entry.man
}

// addDeleted records e's row, removed at now (unix ms). Callers hold rp.mu.
func (rp *repo) addDeleted(e entry, now int64) {
	if rp.deletedOf == nil {
		rp.deletedOf, rp.lastEnd = map[string][]int{}, map[int32]int64{}
	}
	rp.deletedOf[e.name] = append(rp.deletedOf[e.name], len(rp.deleted))
	rp.deleted = append(rp.deleted, deletion{e, now})
	rp.lastEnd[e.man] = max(rp.lastEnd[e.man], now)
}

// deletion is a dead tag row: what API v1 shows with onlyActiveTags=false.
type deletion struct {
	entry
	end int64 // unix ms
}

type manifest struct {
	mediaType string
	body      []byte
}

type upload struct {
	repo string
	data []byte
}

// New returns a registry with no repositories.
func New(cfg Config) *Registry {
	r := &Registry{
		cfg:       cfg,
		log:       cfg.Logger,
		repos:     make(map[string]*repo),
		manifests: make(map[string]*manifest),
		blobs:     make(map[string][]byte),
		uploads:   make(map[string]*upload),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.stats.reset()
	r.SetFaults(cfg.Faults)
	// The default manifest: a valid, layerless OCI image that tags without a digest of
	// their own point at, so that tagged images can be pulled and copied.
	cfgBlob := []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`)
	cfgDigest := r.PutBlob(cfgBlob)
	body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[]}`,
		MediaTypeOCIManifest, MediaTypeOCIConfig, cfgDigest, len(cfgBlob))
	r.defaultDigest = r.storeManifest(MediaTypeOCIManifest, body)
	return r
}

// Media types the sim knows by name. It stores any media type it is given.
const (
	MediaTypeOCIManifest    = "application/vnd.oci.image.manifest.v1+json"
	MediaTypeOCIIndex       = "application/vnd.oci.image.index.v1+json"
	MediaTypeOCIConfig      = "application/vnd.oci.image.config.v1+json"
	MediaTypeOCILayerGzip   = "application/vnd.oci.image.layer.v1.tar+gzip"
	MediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// Errors returned by the test-access methods.
var (
	ErrUnknownRepo     = errors.New("unknown repository")
	ErrUnknownManifest = errors.New("unknown manifest")
	ErrInvalidName     = errors.New("invalid name")
)

// Digest returns the sha256 digest of b in OCI form.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// now reads the configured clock.
func (r *Registry) now() time.Time {
	if r.cfg.Now != nil {
		return r.cfg.Now()
	}
	return time.Now()
}

// DefaultDigest is the digest of the manifest that tags added without a digest point at.
func (r *Registry) DefaultDigest() string { return r.defaultDigest }

func (r *Registry) storeManifest(mediaType string, body []byte) string {
	d := Digest(body)
	r.content.Lock()
	if _, ok := r.manifests[d]; !ok {
		r.manifests[d] = &manifest{mediaType: mediaType, body: slices.Clone(body)}
	}
	r.content.Unlock()
	return d
}

func (r *Registry) getManifest(d string) (*manifest, bool) {
	r.content.RLock()
	defer r.content.RUnlock()
	m, ok := r.manifests[d]
	return m, ok
}

// PutBlob stores a blob, visible from every repository, and returns its digest.
func (r *Registry) PutBlob(data []byte) string {
	d := Digest(data)
	r.content.Lock()
	if _, ok := r.blobs[d]; !ok {
		r.blobs[d] = slices.Clone(data)
	}
	r.content.Unlock()
	return d
}

// repo returns the named repository, creating it if create is set.
func (r *Registry) repo(name string, create bool) *repo {
	r.mu.RLock()
	rp := r.repos[name]
	r.mu.RUnlock()
	if rp != nil || !create {
		return rp
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rp = r.repos[name]; rp == nil {
		rp = &repo{digestIdx: make(map[string]int32), known: make(map[string]bool)}
		r.repos[name] = rp
	}
	return rp
}

// CreateRepo creates an empty repository (a no-op if it exists).
func (r *Registry) CreateRepo(name string) error {
	if !proto.ValidRepository(name) {
		return fmt.Errorf("repository %q: %w", name, ErrInvalidName)
	}
	r.repo(name, true)
	return nil
}

// Repositories returns the repository names, sorted.
func (r *Registry) Repositories() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.repos))
	for n := range r.repos {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// PutManifest stores a manifest in repo (creating the repository) and returns its digest.
func (r *Registry) PutManifest(repoName, mediaType string, body []byte) (string, error) {
	if !proto.ValidRepository(repoName) {
		return "", fmt.Errorf("repository %q: %w", repoName, ErrInvalidName)
	}
	d := r.storeManifest(mediaType, body)
	rp := r.repo(repoName, true)
	rp.mu.Lock()
	rp.known[d] = true
	rp.mu.Unlock()
	return d, nil
}

// digestID returns the index of d in the repository's digest table, adding it. Callers hold
// rp.mu for writing.
func (rp *repo) digestID(d string) int32 {
	rp.known[d] = true
	if id, ok := rp.digestIdx[d]; ok {
		return id
	}
	id := int32(len(rp.digests))
	rp.digests = append(rp.digests, d)
	rp.digestIdx[d] = id
	return id
}

// AddTags points tags at the manifest digest in repo, creating the repository and moving
// tags that exist. An empty digest means DefaultDigest. The digest must be a manifest the
// registry holds. It is the bulk loader: a million tags take about a second.
func (r *Registry) AddTags(repoName, digest string, tags ...string) error {
	if !proto.ValidRepository(repoName) {
		return fmt.Errorf("repository %q: %w", repoName, ErrInvalidName)
	}
	if digest == "" {
		digest = r.defaultDigest
	}
	if _, ok := r.getManifest(digest); !ok {
		return fmt.Errorf("add tags to %s: %s: %w", repoName, digest, ErrUnknownManifest)
	}
	for _, t := range tags {
		if !proto.ValidTag(t) {
			return fmt.Errorf("add tags to %s: tag %q: %w", repoName, t, ErrInvalidName)
		}
	}
	rp := r.repo(repoName, true)
	start := r.now().UnixMilli()
	rp.mu.Lock()
	defer rp.mu.Unlock()
	id := rp.digestID(digest)
	if len(tags) < 64 {
		for _, t := range tags {
			rp.tags.put(entry{name: t, man: id, start: start})
		}
		return nil
	}
	add := make([]entry, len(tags))
	for i, t := range tags {
		add[i] = entry{name: t, man: id, start: start}
	}
	if !slices.IsSortedFunc(add, cmpEntry) {
		slices.SortFunc(add, cmpEntry)
	}
	add = slices.CompactFunc(add, func(a, b entry) bool { return a.name == b.name })
	rp.tags.mergeSorted(add)
	return nil
}

func cmpEntry(a, b entry) int { return strings.Compare(a.name, b.name) }

// Tags returns the current tags of repo, sorted; nil for an unknown repository.
func (r *Registry) Tags(repoName string) []string {
	rp := r.repo(repoName, false)
	if rp == nil {
		return nil
	}
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	return rp.tags.names()
}

// Len returns the number of tags in repo.
func (r *Registry) Len(repoName string) int {
	rp := r.repo(repoName, false)
	if rp == nil {
		return 0
	}
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	return rp.tags.Len()
}

// HasTag reports whether repo has tag.
func (r *Registry) HasTag(repoName, tag string) bool {
	_, ok := r.TagDigest(repoName, tag)
	return ok
}

// TagDigest returns the manifest digest tag points at.
func (r *Registry) TagDigest(repoName, tag string) (string, bool) {
	rp := r.repo(repoName, false)
	if rp == nil {
		return "", false
	}
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	e, ok := rp.tags.get(tag)
	if !ok {
		return "", false
	}
	return rp.digests[e.man], true
}

// DeletedTags returns the tags removed from repo, by any means (tag delete, digest delete),
// in the order they were removed. A tag deleted, re-added and deleted again appears twice.
func (r *Registry) DeletedTags(repoName string) []string {
	rp := r.repo(repoName, false)
	if rp == nil {
		return nil
	}
	rp.mu.RLock()
	defer rp.mu.RUnlock()
	out := make([]string, len(rp.deleted))
	for i, d := range rp.deleted {
		out[i] = d.name
	}
	return out
}

// deleteTag removes one tag at time now (unix ms). It reports false if the tag is absent.
func (rp *repo) deleteTag(tag string, now int64) bool {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	e, ok := rp.tags.remove(tag)
	if !ok {
		return false
	}
	rp.addDeleted(e, now)
	return true
}

// deleteDigest removes the manifest d from the repository and every tag pointing at it. It
// reports false if the repository does not hold d. O(total tags).
func (rp *repo) deleteDigest(d string, now int64) ([]entry, bool) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if !rp.known[d] {
		return nil, false
	}
	delete(rp.known, d)
	id, ok := rp.digestIdx[d]
	if !ok {
		return nil, true
	}
	removed := rp.tags.removeIf(func(e entry) bool { return e.man == id })
	for _, e := range removed {
		rp.addDeleted(e, now)
	}
	return removed, true
}

// putTag points tag at d, which must be a stored manifest, at time now (unix ms).
func (rp *repo) putTag(tag, d string, now int64) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	rp.tags.put(entry{name: tag, man: rp.digestID(d), start: now})
}
