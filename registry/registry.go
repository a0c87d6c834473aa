// Package registry is how tagsweep talks to container registries: one small interface the
// worker and coordinator depend on, the sentinels callers branch on, the keyset probe and the
// page checks that every implementation shares. Implementations: OCI (any registry speaking
// the distribution API, through regclient) and, for tests and demos, registry/sim over HTTP.
package registry

import (
	"context"
	"fmt"
	"time"
)

// Page is one tags/list answer.
type Page struct {
	// Tags are the tags after the requested key, in byte order.
	Tags []string
	// More is true when the registry said (Link rel="next") that more tags may follow.
	More bool
	// Date is the registry's clock as its Date header gave it (to the second), zero when
	// the answer had none. The coordinator checks its own clock against it.
	Date time.Time
}

// Lister lists one keyset page: at most n tags greater than last ("" = from the first tag).
type Lister interface {
	List(ctx context.Context, repo, last string, n int) (Page, error)
}

// Deleter deletes one tag by name (never by digest). A tag that is already gone returns an
// error wrapping ErrNotFound, which callers count as success.
type Deleter interface {
	Delete(ctx context.Context, repo, tag string) error
}

// Checker tells whether a tag exists by asking for it directly (a manifest HEAD), not from a
// listing: the check a deletion that rests on a tag's absence makes just before it deletes.
type Checker interface {
	Exists(ctx context.Context, repo, tag string) (bool, error)
}

// Client is what a worker needs from a registry.
type Client interface {
	Lister
	Deleter
}

// CheckPage verifies a page against the keyset contract: strictly ascending and every tag
// after last. A registry that breaks it would make a worker loop or skip, so the caller fails
// loudly instead.
func CheckPage(last string, tags []string) error {
	prev := last
	for i, t := range tags {
		if t <= prev && (i > 0 || last != "") {
			return fmt.Errorf("%w: tag %q at position %d does not sort after %q", ErrBadPage, t, i, prev)
		}
		prev = t
	}
	return nil
}

// ProbeKeyset checks that repo's registry honours `last`: it takes a tag from the first page
// and asks for the tags after it. A registry that restarts from the first tag (Quay < 3.12
// treats `last` as an encrypted page token and silently ignores a tag name) is refused with
// ErrKeysetUnsupported. An empty repository passes: there is nothing to page through.
func ProbeKeyset(ctx context.Context, l Lister, repo string) error {
	first, err := l.List(ctx, repo, "", 2)
	if err != nil {
		return fmt.Errorf("probe keyset listing of %s: %w", repo, err)
	}
	if len(first.Tags) == 0 {
		return nil
	}
	pivot := first.Tags[0]
	next, err := l.List(ctx, repo, pivot, 2)
	if err != nil {
		return fmt.Errorf("probe keyset listing of %s after %q: %w", repo, pivot, err)
	}
	for _, t := range next.Tags {
		if t <= pivot {
			return fmt.Errorf("%s: asked for tags after %q, got %q: %w", repo, pivot, t, ErrKeysetUnsupported)
		}
	}
	return nil
}
