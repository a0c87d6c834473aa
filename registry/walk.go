package registry

import (
	"context"
	"fmt"
	"iter"

	"github.com/tagsweep/tagsweep/proto"
)

// maxEmptyNext is how many empty pages in a row that still send Link rel="next" a Walk asks
// again before it gives up with ErrIncompleteListing.
const maxEmptyNext = 2

// Walk lists a key range page by page and proves where it ends. It is the one place that
// decides when a listing is finished: the prune path, the preservation path and planning all
// walk their ranges with it.
//
// A range ends only when its end is proven by keyset: a page holds a tag beyond the range, or
// a call after the last tag seen returns no tag at all. Nothing else proves it. Link
// rel="next" alone does not (CNCF Distribution sends one on a full final page), and neither
// does a short page without Link (a registry may cap n and drop Link, or truncate a page):
// after a short page the Walk asks again after its last tag, which costs at most one call
// more per range than trusting the page would. An empty page that still sends Link is asked
// again, and fails with ErrIncompleteListing when it repeats.
//
// Each page is checked with CheckPage before it is used. A Walk is not safe for concurrent use.
type Walk struct {
	through   string
	unbounded bool
	last      string
	emptyNext int // empty pages with Link rel="next" in a row
	done      bool
}

// NewWalk starts a walk of r after resume: the tags t with max(r.After, resume) < t <=
// r.Through.
func NewWalk(r proto.Range, resume string) *Walk {
	return &Walk{through: r.Through, last: max(r.After, resume)}
}

// Last is the key the next page must be listed after (tags/list?last=Last()).
func (w *Walk) Last() string { return w.last }

// Done reports whether the range's end was proven.
func (w *Walk) Done() bool { return w.done }

// Narrow moves the range's end down to through (a shard split keeps the first half); a
// through at or after the current end changes nothing.
func (w *Walk) Narrow(through string) {
	if !w.unbounded && through < w.through {
		w.through = through
	}
}

// Page takes the page listed after Last() and returns its tags inside the range, in order,
// and whether the range's end is now proven. The next page, when not done, is to be listed
// after the new Last(). An error (the page breaks the keyset contract, or empty pages with
// Link rel="next" repeat) leaves the Walk where it was.
func (w *Walk) Page(p Page) (in []string, done bool, err error) {
	if w.done {
		return nil, true, nil
	}
	if err := CheckPage(w.last, p.Tags); err != nil {
		return nil, false, err
	}
	if len(p.Tags) == 0 {
		if !p.More {
			w.done = true
			return nil, true, nil
		}
		if w.emptyNext++; w.emptyNext >= maxEmptyNext {
			return nil, false, fmt.Errorf("%w: %d empty pages after %q, each with a next link", ErrIncompleteListing, w.emptyNext, w.last)
		}
		return nil, false, nil // ask again
	}
	w.emptyNext = 0
	in = p.Tags
	if !w.unbounded {
		for i, t := range p.Tags {
			if t > w.through {
				in, w.done = p.Tags[:i], true
				break
			}
		}
	}
	w.last = p.Tags[len(p.Tags)-1]
	return in, w.done, nil
}

// Next lists the next page with l and takes it (see Page).
func (w *Walk) Next(ctx context.Context, l Lister, repo string, n int) (in []string, done bool, err error) {
	if w.done {
		return nil, true, nil
	}
	p, err := l.List(ctx, repo, w.last, n)
	if err != nil {
		return nil, false, err
	}
	return w.Page(p)
}

// Pages walks the rest of the range with l, n tags a call: each value is the tags of one page
// inside the range, in order, until the range's end is proven (a page with none, which the
// Walk asks again after, is not a value). A failed call or a page that cannot be trusted is
// the last value, with its error. Breaking off leaves the Walk where it was.
func (w *Walk) Pages(ctx context.Context, l Lister, repo string, n int) iter.Seq2[[]string, error] {
	return func(yield func([]string, error) bool) {
		for !w.done {
			in, _, err := w.Next(ctx, l, repo, n)
			if err != nil {
				yield(nil, err)
				return
			}
			if len(in) > 0 && !yield(in, nil) {
				return
			}
		}
	}
}

// FirstAfter returns the first tag of repo after `after`, ok=false when the registry proves
// there is none (an empty page without Link rel="next"). It is a Walk of one n=1 page with no
// end: an empty page that sends Link is asked again, never taken for the end.
func FirstAfter(ctx context.Context, l Lister, repo, after string) (tag string, ok bool, err error) {
	w := &Walk{unbounded: true, last: after}
	for {
		in, done, err := w.Next(ctx, l, repo, 1)
		switch {
		case err != nil:
			return "", false, err
		case len(in) > 0:
			return in[0], true, nil
		case done:
			return "", false, nil
		}
	}
}
