package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tagsweep/tagsweep/proto"
)

// Restorer puts deleted tags back on any OCI registry, over regclient with the same
// authentication, retries, rate control and redaction as OCI: it reads a tag's digest, and
// writes a manifest's very bytes, read by digest, under a tag. Every request it sends passes a
// guard that lets through only manifest and blob reads, manifest writes to a tag (never to a
// digest), and what authentication needs: it can never delete anything.
type Restorer struct {
	p *Payload
}

// NewRestorer returns a Restorer for cfg.Host.
func NewRestorer(cfg OCIConfig) (*Restorer, error) {
	p, err := newPayload(PayloadConfig{OCIConfig: cfg}, "restore registry", proto.ValidTag)
	if err != nil {
		return nil, err
	}
	return &Restorer{p: p}, nil
}

// Digest returns the manifest digest tag points at now (HEAD, or GET when the registry sends
// no Docker-Content-Digest). An absent tag is an error wrapping ErrNotFound.
func (r *Restorer) Digest(ctx context.Context, repo, tag string) (string, error) {
	return r.p.Digest(ctx, repo, tag)
}

// Put writes the manifest at digest in repo under tag: one GET of the manifest by digest, one
// PUT of the same bytes under the tag, so the tag's digest is digest. A manifest the
// repository no longer holds is an error wrapping ErrManifestGone.
func (r *Restorer) Put(ctx context.Context, repo, tag, digest string) error {
	what := fmt.Sprintf("put %s:%s back at %s", repo, tag, digest)
	if !proto.ValidTag(tag) {
		return fmt.Errorf("%s: not a valid tag name", what)
	}
	if !proto.ValidDigest(digest) {
		return fmt.Errorf("%s: not a sha256 digest", what)
	}
	ref, err := r.p.ref(repo)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.p.callTimeout)
	defer cancel()
	m, err := r.p.rc.ManifestGet(ctx, ref.SetDigest(digest))
	if err != nil {
		err = r.p.edgeError(what+": get manifest", err)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%s: %w", what, ErrManifestGone)
		}
		return err
	}
	if got := m.GetDescriptor().Digest.String(); got != digest {
		return fmt.Errorf("%s: the registry returned manifest %s", what, got)
	}
	if err := r.p.rc.ManifestPut(ctx, ref.SetTag(tag), m); err != nil {
		return r.p.edgeError(what, err)
	}
	return nil
}

// Digest returns the manifest digest tag points at, from one HEAD /v2/<repo>/manifests/<tag>
// (the registry's Docker-Content-Digest), paced and guarded like Delete: the guard lets
// through that one request. An absent tag is an error wrapping ErrNotFound.
func (o *OCI) Digest(ctx context.Context, repo, tag string) (string, error) {
	what := fmt.Sprintf("digest of %s:%s", repo, tag)
	if !proto.ValidTag(tag) {
		return "", fmt.Errorf("%s: not a valid tag name", what)
	}
	r, err := o.repoRef(repo)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	c := &call{method: http.MethodHead, path: "/v2/" + repo + "/manifests/" + tag}
	callCtx, cancel, err := o.start(ctx, c)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	defer cancel()
	m, err := o.rc.ManifestHead(callCtx, r.SetTag(tag))
	if err != nil {
		return "", o.edgeError(ctx, callCtx, c, what, err)
	}
	d := m.GetDescriptor().Digest.String()
	if !proto.ValidDigest(d) {
		return "", fmt.Errorf("%s: the registry named no sha256 digest (%q)", what, d)
	}
	return d, nil
}

// TagRow is one row of a tag's history in Quay's API v1: the tag pointed at Digest from Start
// until End (zero: no end, the tag is alive; in the future: it expires then). A deleted tag's
// row stays, with End the deletion time, for the namespace's time machine window.
type TagRow struct {
	Digest string
	Start  time.Time
	End    time.Time
}

// Alive reports whether the row is the tag's live one at now.
func (r TagRow) Alive(now time.Time) bool { return r.End.IsZero() || r.End.After(now) }

// maxHistoryPages bounds the pages of one tag's history read (100 rows each).
const maxHistoryPages = 10

// History returns the rows of tag's history that Quay still keeps, alive and deleted, from
// GET /api/v1/repository/<repo>/tag/?specificTag=<tag>&onlyActiveTags=false, newest first. A
// tag with no row left (never pushed, or deleted longer ago than the time machine window) has
// no rows and no error.
func (q *Quay) History(ctx context.Context, repo, tag string) ([]TagRow, error) {
	what := fmt.Sprintf("history of %s:%s through quay api v1", repo, tag)
	if !proto.ValidRepository(repo) || !proto.ValidTag(tag) {
		return nil, fmt.Errorf("%s: invalid repository or tag name", what)
	}
	var rows []TagRow
	for page := 1; page <= maxHistoryPages; page++ {
		v := url.Values{"specificTag": {tag}, "onlyActiveTags": {"false"}, "limit": {"100"}, "page": {strconv.Itoa(page)}}
		body, err := q.do(ctx, what, http.MethodGet, "/api/v1/repository/"+repo+"/tag/?"+v.Encode(), nil)
		if err != nil {
			return nil, err
		}
		var list struct {
			Tags []struct {
				Name           string `json:"name"`
				ManifestDigest string `json:"manifest_digest"`
				StartTS        int64  `json:"start_ts"`
				EndTS          int64  `json:"end_ts"`
			} `json:"tags"`
			HasAdditional bool `json:"has_additional"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return nil, fmt.Errorf("%s: decode answer: %w", what, err)
		}
		for _, t := range list.Tags {
			if t.Name != tag || !proto.ValidDigest(t.ManifestDigest) {
				continue
			}
			row := TagRow{Digest: t.ManifestDigest}
			if t.StartTS > 0 {
				row.Start = time.Unix(t.StartTS, 0).UTC()
			}
			if t.EndTS > 0 {
				row.End = time.Unix(t.EndTS, 0).UTC()
			}
			rows = append(rows, row)
		}
		if !list.HasAdditional {
			return rows, nil
		}
	}
	return nil, fmt.Errorf("%s: more than %d pages of history", what, maxHistoryPages)
}

// Restore puts a deleted tag back at digest with POST
// /api/v1/repository/<repo>/tag/<tag>/restore {"manifest_digest": digest}, Quay's time
// machine restore. A manifest Quay no longer holds (the window passed) is an error wrapping
// ErrManifestGone.
func (q *Quay) Restore(ctx context.Context, repo, tag, digest string) error {
	what := fmt.Sprintf("restore %s:%s at %s through quay api v1", repo, tag, digest)
	err := q.sendDigest(ctx, what, http.MethodPost, repo, tag, "/restore", digest)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%w: %w", err, ErrManifestGone)
	}
	return err
}
