package preserve

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// Reader reads a payload image's image-references.
type Reader interface {
	// ImageReferences returns the proto.ImageReferencesPath file of the image ref (a tag or a
	// digest) in repo: one document for an image, one per platform image for an index.
	ImageReferences(ctx context.Context, repo, ref string) ([][]byte, error)
}

// Tagger reads and writes tags.
type Tagger interface {
	// Digest returns the manifest digest tag points at; an absent tag is an error wrapping
	// registry.ErrNotFound.
	Digest(ctx context.Context, repo, tag string) (string, error)
	// Tag creates tag, or moves it, to the manifest digest, which must exist in repo.
	Tag(ctx context.Context, repo, tag, digest string) error
}

// ErrPayload: the payload cannot be preserved as it is (its image-references is missing or
// malformed, names no component of the repository, or names one that cannot be a tag).
// Trying again in the same run will not help; the next run tries again.
var ErrPayload = errors.New("payload cannot be preserved as it is")

// DefaultConcurrency is how many component tags one payload's preservation writes at once.
const DefaultConcurrency = 4

// Config configures a Preserver. Zero values mean the documented defaults.
type Config struct {
	// Registry is the host[:port] of the preserved repositories as image references name it,
	// for example "quay.io". Required.
	Registry string
	// Aliases are other names under which image references name a repository, for example
	// quay-proxy.ci.openshift.org/openshift/ci for quay.io/openshift/ci (see ParseAlias).
	Aliases []Alias
	// Concurrency bounds the component tag reads and writes in flight per payload.
	// Default DefaultConcurrency.
	Concurrency int
}

// Preserver preserves payloads: it tags every component a payload references in the payload's
// own repository, then writes the marker.
type Preserver struct {
	cfg    Config
	reader Reader
	tagger Tagger
	log    *slog.Logger
}

// New returns a Preserver reading payloads with r and writing tags with t. log may be nil.
func New(cfg Config, r Reader, t Tagger, log *slog.Logger) (*Preserver, error) {
	if cfg.Registry == "" || strings.ContainsAny(cfg.Registry, "/ ") {
		return nil, fmt.Errorf("preserve: registry %q must be host[:port]", cfg.Registry)
	}
	if r == nil || t == nil {
		return nil, errors.New("preserve: a reader and a tagger are required")
	}
	if cfg.Concurrency < 0 {
		return nil, fmt.Errorf("preserve: concurrency %d is negative", cfg.Concurrency)
	}
	cfg.Concurrency = cmp.Or(cfg.Concurrency, DefaultConcurrency)
	cfg.Aliases = slices.Clone(cfg.Aliases)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Preserver{cfg: cfg, reader: r, tagger: t, log: log}, nil
}

// Result is what the preservation of one payload did.
type Result struct {
	Digest     string // the payload's manifest digest, where the marker points
	Components int    // components in the payload's repository
	Tagged     int    // component tags written (dry run: that would have been)
	Present    int    // component tags already at the right digest, left alone
	Elsewhere  int    // components in other repositories, skipped
	ByTag      int    // components of this repository referenced by tag only, skipped
	Marked     bool   // the marker was written (dry run: would have been)
}

// Counters converts r and the error Preserve returned with it into run counters.
func (r Result) Counters(err error) proto.PreserveCounters {
	c := proto.PreserveCounters{ComponentsTagged: int64(r.Tagged)}
	if err != nil || !r.Marked {
		c.PreserveFailed = 1
	} else {
		c.Preserved = 1
	}
	return c
}

// Preserve preserves the payload of t in repo. It reads the payload's digest and, from the
// image at that digest (every platform image of an index), its image-references; then it tags
// each component of this repository (an exact repository match, or an alias) as
// rc_payload__<v>__component__<name> at the component's digest; and only when every one of
// those tags exists it writes the marker preserved__rc_payload__<v> at the payload's digest.
// It is idempotent: a payload whose preservation fails has no marker, and the next run does it
// again. In a dry run it reads everything and writes nothing.
//
// A payload none of whose components is in repo is refused: that is far more likely a missing
// alias than a real payload, and marking it preserved would leave its components unprotected.
func (p *Preserver) Preserve(ctx context.Context, repo string, t Task, dryRun bool) (Result, error) {
	var res Result
	what := fmt.Sprintf("preserve release payload %s in %s", t.Version, repo)
	if t.Payload != PayloadTag(t.Version) {
		return res, fmt.Errorf("%s: task names payload tag %q: %w", what, t.Payload, ErrPayload)
	}
	if !proto.ValidTag(MarkerTag(t.Version)) {
		return res, fmt.Errorf("%s: marker tag %q is not a valid tag: %w", what, MarkerTag(t.Version), ErrPayload)
	}
	refs, err := p.references(ctx, repo, t, &res)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	tags, err := p.componentTags(repo, t, refs, &res)
	if err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	if err := p.tagComponents(ctx, repo, t, tags, dryRun, &res); err != nil {
		return res, fmt.Errorf("%s: %w", what, err)
	}
	if !dryRun {
		if err := p.tagger.Tag(ctx, repo, MarkerTag(t.Version), res.Digest); err != nil {
			return res, fmt.Errorf("%s: write marker: %w", what, err)
		}
	}
	res.Marked = true
	return res, nil
}

// references reads the digest of t's payload into res and returns the components its
// image-references list (merged over every platform image of an index).
func (p *Preserver) references(ctx context.Context, repo string, t Task, res *Result) ([]Reference, error) {
	d, err := p.tagger.Digest(ctx, repo, t.Payload)
	if err != nil {
		return nil, fmt.Errorf("digest of %s: %w", t.Payload, err)
	}
	res.Digest = d
	docs, err := p.reader.ImageReferences(ctx, repo, d)
	if err != nil {
		return nil, err
	}
	refs, err := union(docs)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPayload, err)
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s lists no component images: %w", proto.ImageReferencesPath, ErrPayload)
	}
	return refs, nil
}

// tagAt is a component tag to write: tag at digest.
type tagAt struct{ tag, digest string }

// componentTags returns the component tags of t's payload in repo: one for each reference to
// an image of repo (or an alias) by digest. The others are counted in res, as skipped.
func (p *Preserver) componentTags(repo string, t Task, refs []Reference, res *Result) ([]tagAt, error) {
	m := newMatcher(p.cfg.Registry, repo, p.cfg.Aliases)
	var tags []tagAt
	for _, r := range refs {
		digest, ok := m.match(r.Image)
		switch {
		case !ok:
			res.Elsewhere++
			continue
		case digest == "":
			res.ByTag++
			p.log.Debug("component referenced by tag, not digest: skipped", slog.String("repo", repo),
				slog.String("tag", t.Payload), slog.String("component", r.Name))
			continue
		case !proto.ValidDigest(digest):
			return nil, fmt.Errorf("component %s: %q is not a sha256 digest: %w", r.Name, digest, ErrPayload)
		}
		tag := ComponentTag(t.Version, r.Name)
		if !proto.ValidTag(tag) {
			return nil, fmt.Errorf("component %s: %q is not a valid tag name: %w", r.Name, tag, ErrPayload)
		}
		if role, v, c := Classify(tag); role != RoleComponent || v != t.Version || c != r.Name {
			return nil, fmt.Errorf("component tag %q would not read back as component %q of %q: %w", tag, r.Name,
				t.Version, ErrPayload)
		}
		tags = append(tags, tagAt{tag: tag, digest: digest})
	}
	res.Components = len(tags)
	if len(tags) == 0 {
		return nil, fmt.Errorf("none of its %d components is in %s/%s or an alias of it (%d by tag only): %w",
			len(refs), p.cfg.Registry, repo, res.ByTag, ErrPayload)
	}
	return tags, nil
}

// tagComponents makes sure every one of tags exists, cfg.Concurrency at a time, counting in
// res those it wrote and those already in place. It returns an error unless all of them are.
func (p *Preserver) tagComponents(ctx context.Context, repo string, t Task, tags []tagAt, dryRun bool, res *Result) error {
	existing := make(map[string]bool, len(t.Existing))
	for _, c := range t.Existing {
		existing[ComponentTag(t.Version, c)] = true
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		sem  = make(chan struct{}, p.cfg.Concurrency)
	)
	for _, c := range tags {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			present, err := p.component(ctx, repo, c.tag, c.digest, existing[c.tag], dryRun)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err)
			case present:
				res.Present++
			default:
				res.Tagged++
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		errs = append(errs, context.Cause(ctx))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d component tags not written, so no marker: %w",
			len(tags)-res.Tagged-res.Present, len(tags), errors.Join(errs...))
	}
	return nil
}

// component makes sure tag points at digest. A tag the listing found is read first and left
// alone when it already points there.
func (p *Preserver) component(ctx context.Context, repo, tag, digest string, listed, dryRun bool) (present bool, err error) {
	if listed {
		got, err := p.tagger.Digest(ctx, repo, tag)
		switch {
		case err == nil && got == digest:
			return true, nil
		case err != nil && !errors.Is(err, registry.ErrNotFound):
			return false, fmt.Errorf("component tag %s: %w", tag, err)
		}
	}
	if dryRun {
		return false, nil
	}
	if err := p.tagger.Tag(ctx, repo, tag, digest); err != nil {
		return false, fmt.Errorf("component tag %s: %w", tag, err)
	}
	return false, nil
}

// union parses every platform's image-references and merges them by component name. A name
// with different images on different platforms is an error: one tag cannot hold both.
func union(docs [][]byte) ([]Reference, error) {
	if len(docs) == 0 {
		return nil, fmt.Errorf("no %s found", proto.ImageReferencesPath)
	}
	byName := make(map[string]string)
	var out []Reference
	for i, doc := range docs {
		refs, err := ParseImageReferences(doc)
		if err != nil {
			return nil, fmt.Errorf("platform image %d: %w", i, err)
		}
		for _, r := range refs {
			prev, ok := byName[r.Name]
			switch {
			case !ok:
				byName[r.Name] = r.Image
				out = append(out, r)
			case prev != r.Image:
				return nil, fmt.Errorf("%s: %q and %q: %w", r.Name, prev, r.Image, errConflict)
			}
		}
	}
	return out, nil
}
