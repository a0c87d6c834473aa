package worker

// This file: the walk of a prune or list shard through its key range, page by page, with the
// next page listed ahead and a checkpoint after every page.

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tagsweep/tagsweep/proto"
	"github.com/tagsweep/tagsweep/registry"
)

// prune works through the claimed shard from its resume point to the end of its range. A
// list shard (an inventory run) goes through the same listing and only counts each page
// (inventory), deleting nothing.
// It returns nil at the end of the range, ctx's error on a graceful stop (every finished page
// checkpointed), a failure (retryable: a list or delete to try again on a later delivery;
// permanent: the registry refuses deletes, or the delete cap, errCapReached), or a ledger
// error (ErrFenced: the shard is lost). Deletes in flight when ctx ends run on until grace
// ends; ledger writes use hard (see stopContexts).
func (d *delivery) prune(ctx, grace, hard context.Context) error {
	rec := d.claim.Record()
	sw := &shardWalk{d: d, s: &session{w: d.w, run: d.run, e: d.entry}, repo: rec.Repository,
		walk: registry.NewWalk(rec.Range, rec.Resume()), cursor: rec.Resume(), budgetStart: time.Now()}
	defer sw.stop()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := sw.splitIfDue(ctx, hard); err != nil {
			return err
		}
		in, end, err := sw.next(ctx)
		if err != nil {
			return err
		}
		if end {
			if err := d.checkListed(ctx, sw.s.entry().client, len(in)); err != nil {
				return err
			}
		} else {
			sw.prefetch(ctx)
		}
		if len(in) > 0 {
			if err := sw.finish(ctx, grace, hard, in); err != nil {
				return err
			}
		}
		if end {
			return nil
		}
	}
}

// shardWalk is where a delivery of a prune or list shard is in its range: the keyset walk,
// the page listed ahead, the checkpoint, and what a split decides on.
type shardWalk struct {
	d    *delivery
	s    *session
	repo string // read once: the prefetch lists while the claim's record changes
	walk *registry.Walk
	// ahead is the outstanding prefetch, if any. The next page is listed while this page's
	// deletes run (keyset listing after the page's last tag is not affected by deleting tags
	// up to it), so that a page costs the longer of a list and its deletes rather than both.
	ahead  chan prefetched
	cursor string // the last tag checkpointed

	budgetStart time.Time // when the shard's time budget (SplitAfter) started
	// What this claim listed since it started or last split, for the estimate of what is
	// left before a split for idle slots.
	first  string
	listed int
}

// prefetched is a page listed ahead, after last.
type prefetched struct {
	last string
	page registry.Page
	err  error
}

// list lists the page after last, under the worker's rate bound.
func (sw *shardWalk) list(ctx context.Context, last string) (registry.Page, error) {
	if err := sw.d.w.wait(ctx); err != nil {
		return registry.Page{}, err
	}
	var page registry.Page
	err := sw.s.do(ctx, func(c registry.Client) (err error) {
		page, err = c.List(ctx, sw.repo, last, sw.d.w.cfg.PageSize)
		return err
	})
	return page, err
}

// prefetch starts listing the page after the walk's last tag.
func (sw *shardWalk) prefetch(ctx context.Context) {
	ch, last := make(chan prefetched, 1), sw.walk.Last()
	sw.ahead = ch
	go func() {
		p, err := sw.list(ctx, last)
		ch <- prefetched{last: last, page: p, err: err}
	}()
}

// stop waits for the outstanding prefetch: never leave a List running behind.
func (sw *shardWalk) stop() {
	if sw.ahead != nil {
		<-sw.ahead
	}
}

// next returns the tags of the next page inside the range, in order, and whether the range's
// end is proven. A page that cannot be listed or trusted is a retryable failure.
func (sw *shardWalk) next(ctx context.Context) (in []string, end bool, err error) {
	page, err := sw.take(ctx)
	if err == nil {
		sw.walk.Narrow(sw.d.claim.Record().Range.Through) // a split may have moved it
		in, end, err = sw.walk.Page(page)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		return nil, false, retryable(err)
	}
	if len(in) > 0 && sw.first == "" {
		sw.first = in[0]
	}
	sw.listed += len(in)
	return in, end, nil
}

// take returns the page after the walk's last tag: the one listed ahead, or one listed now.
func (sw *shardWalk) take(ctx context.Context) (registry.Page, error) {
	if sw.ahead == nil {
		return sw.list(ctx, sw.walk.Last())
	}
	p := <-sw.ahead
	sw.ahead = nil
	if p.last != sw.walk.Last() { // cannot happen: the prefetch starts where the walk goes on
		return sw.list(ctx, sw.walk.Last())
	}
	return p.page, p.err
}

// finish works one page's tags (all inside the range, ascending): it decides and deletes
// them (page), or counts them for a list shard (inventory), and checkpoints the finished
// part. Its error is page's, or the checkpoint's.
func (sw *shardWalk) finish(ctx, grace, hard context.Context, in []string) error {
	d := sw.d
	var n int
	var delta proto.Counters
	var inv *proto.Inventory
	var err error
	if d.claim.Record().Kind == proto.KindList {
		n = len(in)
		delta, inv = d.w.inventory(d.claim, d.entry.rules, in)
	} else {
		n, delta, err = d.page(ctx, grace, hard, sw.s, in)
	}
	if n > 0 || delta != (proto.Counters{}) {
		if cerr := sw.checkpoint(hard, in[:n], delta, inv); cerr != nil {
			return cerr
		}
	}
	return err
}

// checkpoint records the page's finished tags (done) and their counters in the shard record.
func (sw *shardWalk) checkpoint(hard context.Context, done []string, delta proto.Counters, inv *proto.Inventory) error {
	d := sw.d
	rec := d.claim.Record()
	last := sw.cursor
	if len(done) > 0 {
		last = done[len(done)-1]
	}
	d.w.freeze.wait(rec.ShardID)
	checkpoint := func(c context.Context) error { return d.claim.CheckpointInventory(c, last, delta, inv) }
	if _, err := d.store(hard, checkpoint); err != nil {
		return err
	}
	if o, ok := d.w.cfg.Observer.(ListObserver); ok && len(done) > 0 {
		o.Checkpointed(rec.RunID, rec.ShardID, done)
	}
	_ = d.msg.InProgress()
	sw.cursor = last
	return nil
}

// splitIfDue splits the shard when its time budget (SplitAfter) is spent, or when slots are
// idle and enough of the shard is left to hand them.
func (sw *shardWalk) splitIfDue(ctx, hard context.Context) error {
	w := sw.d.w
	switch {
	case w.cfg.SplitAfter > 0 && time.Since(sw.budgetStart) >= w.cfg.SplitAfter:
		if err := sw.d.split(hard, sw.cursor); err != nil {
			return err
		}
		sw.budgetStart = time.Now()
	case sw.listed > 0 && w.worthSplitting(sw.first, sw.cursor, sw.listed, sw.d.claim.Record().Range.Through) && w.slotsIdle(ctx, sw.d.l):
		// Every page so far was full and more follow: split now for the idle slots.
		if err := sw.d.split(hard, sw.cursor); err != nil {
			return err
		}
		w.usedIdle()
		sw.first, sw.listed = "", 0
	}
	return nil
}

// checkListed fails a shard whose listing, proven complete, found no tag at all in a range
// where planning saw one (proto.ShardRecord.Seen) that still exists, asked directly: the
// registry left tags out of its pages. pending is how many tags of the last page are still to
// be counted. A tag gone since planning (deleted by an earlier delivery whose checkpoint was
// lost, or by someone else) leaves the range truly empty.
func (d *delivery) checkListed(ctx context.Context, client registry.Client, pending int) error {
	rec := d.claim.Record()
	if rec.Seen == "" || !rec.Range.Contains(rec.Seen) || rec.Counters.Scanned > 0 || pending > 0 {
		return nil
	}
	incomplete := fmt.Errorf("%w: listing %s found no tag in (%q, %q], where planning saw %q",
		registry.ErrIncompleteListing, rec.Repository, rec.Range.After, rec.Range.Through, rec.Seen)
	checker, ok := client.(registry.Checker)
	if !ok {
		return retryable(fmt.Errorf("%w, and this registry client cannot check that it is gone", incomplete))
	}
	exists, err := checker.Exists(ctx, rec.Repository, rec.Seen)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err() // stopping: the shard is handed back, not retried
	case err != nil:
		return retryable(fmt.Errorf("%w; checking that it is gone: %w", incomplete, err))
	case exists:
		return retryable(fmt.Errorf("%w, and it still exists", incomplete))
	}
	d.log.Info("the tag planning saw in the shard is gone; the shard is empty", slog.String("tag", rec.Seen))
	return nil
}
