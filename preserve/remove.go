package preserve

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// Deleter deletes one tag by name; an absent tag is an error wrapping registry.ErrNotFound,
// which counts as removed.
type Deleter interface {
	Delete(ctx context.Context, repo, tag string) error
}

// RemoveResult is what Remove did with one Removal.
type RemoveResult struct {
	Targeted int // tags to delete, the request included
	Removed  int // deleted or already gone
	Failed   int // deletes that failed
	// RequestKept: the request was not deleted because another delete failed; the next run
	// finishes the removal.
	RequestKept bool
	Err         error // the failed deletes, joined
	// Deletions are the deletes sent, in no particular order, for the audit trail.
	Deletions []Deletion
}

// Deletion is one delete sent and its outcome: Err nil (deleted), wrapping
// registry.ErrNotFound (already gone), or the failure.
type Deletion struct {
	Tag string
	Err error
}

// Remove deletes r's tags, at most concurrency at once, then, only when every one of them is
// gone (deleted or already absent), the request tag, so that a request outlives any tag it
// still has to remove. In a dry run it deletes nothing and only counts the targets.
func Remove(ctx context.Context, d Deleter, repo string, r Removal, concurrency int, dryRun bool) RemoveResult {
	res := RemoveResult{Targeted: len(r.Tags)}
	if r.Request != "" {
		res.Targeted++
	}
	if dryRun {
		return res
	}
	var errs []error
	res.Removed, res.Deletions, errs = deleteAll(ctx, d, repo, r.Tags, max(concurrency, 1))
	res.Failed = len(errs)
	if r.Request != "" {
		switch {
		case len(errs) > 0:
			res.RequestKept = true
		case ctx.Err() != nil:
			res.RequestKept = true
			errs = append(errs, context.Cause(ctx))
		default:
			err := d.Delete(ctx, repo, r.Request)
			res.Deletions = append(res.Deletions, Deletion{Tag: r.Request, Err: err})
			if err != nil && !errors.Is(err, registry.ErrNotFound) {
				res.Failed++
				errs = append(errs, fmt.Errorf("delete %s: %w", r.Request, err))
			} else {
				res.Removed++
			}
		}
	}
	res.Err = errors.Join(errs...)
	return res
}

// Counters converts r into run counters: outcomes only (Actions.Counters has the targets).
// orphan says whether r was an orphan removal rather than a removal request.
func (r RemoveResult) Counters(orphan bool) proto.PreserveCounters {
	if orphan {
		return proto.PreserveCounters{OrphansRemoved: int64(r.Removed)}
	}
	return proto.PreserveCounters{RemovalRemoved: int64(r.Removed), RemovalFailed: int64(r.Failed)}
}

// deleteAll deletes tags, at most n at once, and returns how many are gone, the deletes sent
// and the errors of the others. It starts no delete once ctx is done.
func deleteAll(ctx context.Context, d Deleter, repo string, tags []string, n int) (int, []Deletion, []error) {
	var (
		mu      sync.Mutex
		removed int
		sent    []Deletion
		errs    []error
		wg      sync.WaitGroup
		sem     = make(chan struct{}, n)
	)
	for _, tag := range tags {
		if ctx.Err() != nil {
			mu.Lock()
			errs = append(errs, fmt.Errorf("delete %s: %w", tag, context.Cause(ctx)))
			mu.Unlock()
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := d.Delete(ctx, repo, tag)
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, Deletion{Tag: tag, Err: err})
			if err != nil && !errors.Is(err, registry.ErrNotFound) {
				errs = append(errs, fmt.Errorf("delete %s: %w", tag, err))
				return
			}
			removed++
		})
	}
	wg.Wait()
	return removed, sent, errs
}
