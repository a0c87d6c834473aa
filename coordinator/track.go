package coordinator

// This file: following the shard records until every one is terminal and the range is
// covered, rescuing stuck shards and filling gaps.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tagsweep/tagsweep/internal/pause"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// tracker follows a run's shard records until every one is terminal and the shards cover
// the planned range. Everything it holds is used by the goroutine of follow alone.
type tracker struct {
	c       *Coordinator
	l       *ledger.Ledger
	run     proto.RunRecord
	through string // the end of the planned range

	seen map[string]*tracked
	// live counts the shards in seen that are not terminal. Every checkpoint is an update, so
	// an update must not walk every shard (that is shards x pages).
	live int
	// stopSeen is when an operator's stop request (ledger.RequestStop) was first seen on the
	// run's record; zero = none.
	stopSeen time.Time
	observed time.Time // the last Observer call
}

// tracked is a shard record as last seen, and when it last changed.
type tracked struct {
	rec       proto.ShardRecord
	changed   time.Time
	rescuedAt time.Time // last ledger.Rescue
}

func newTracker(c *Coordinator, l *ledger.Ledger, run proto.RunRecord, through string) *tracker {
	return &tracker{c: c, l: l, run: run, through: through, seen: make(map[string]*tracked)}
}

// follow watches the shard records and the run's record until the run's shards are all
// terminal and cover the planned range, and returns the shard records in ID order. An
// operator's stop request ends it with errStopRequested once no shard is running any more
// (workers hand theirs back), or after an ack wait for holders that never answer (dead, or
// cut off; a resume takes those shards over). A lease sent on leaseLost ends it too.
func (t *tracker) follow(ctx context.Context, leaseLost <-chan error) ([]proto.ShardRecord, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runID := t.run.RunID
	shardWatch := watchLater(wctx, func(ctx context.Context) (<-chan proto.ShardRecord, error) { return t.l.Watch(ctx, runID) },
		func(err error) { t.c.log.Warn("watching shard records; relying on re-listing", slog.Any("err", err)) })
	runWatch := watchLater(wctx, func(ctx context.Context) (<-chan proto.RunRecord, error) { return t.l.WatchRun(ctx, runID) }, nil)
	if err := t.firstListing(ctx); err != nil {
		return nil, err
	}
	tick := time.NewTicker(t.c.cfg.PollInterval)
	defer tick.Stop()
	var shardUpdates <-chan proto.ShardRecord
	var runUpdates <-chan proto.RunRecord
	for {
		if t.stopDue() {
			return t.records(), errStopRequested
		}
		if t.live == 0 {
			covered, again, err := t.fillGaps(ctx)
			switch {
			case err != nil:
				return nil, err
			case covered:
				return t.records(), nil
			case again:
				continue
			}
		} else {
			t.tellObserver()
		}
		select {
		case shardUpdates = <-shardWatch:
		case runUpdates = <-runWatch:
		case r, ok := <-runUpdates:
			if !ok {
				runUpdates = nil // the tick re-reads the run
				continue
			}
			t.sawRun(r)
		case rec, ok := <-shardUpdates:
			if !ok {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				t.c.log.Warn("shard watch ended; relying on re-listing")
				shardUpdates = nil
				continue
			}
			t.saw(rec)
		case err := <-leaseLost:
			return nil, fmt.Errorf("run %s: %w", runID, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			t.poll(ctx)
		}
	}
}

// watchLater starts a watch in the background and hands it over once it exists: creating a
// watch can hang while a clustered stream changes leader, and the tracker's re-listing every
// PollInterval sees every change meanwhile. failed, if set, is told why a watch could not
// be started.
func watchLater[T any](ctx context.Context, start func(context.Context) (<-chan T, error), failed func(error)) <-chan (<-chan T) {
	ready := make(chan (<-chan T), 1)
	go func() {
		u, err := start(ctx)
		if err != nil {
			if ctx.Err() == nil && failed != nil {
				failed(err)
			}
			return
		}
		ready <- u
	}()
	return ready
}

// firstListing lists the shard records until a listing succeeds: with nothing seen, the run
// would look finished.
func (t *tracker) firstListing(ctx context.Context) error {
	for err := t.relist(ctx); err != nil; err = t.relist(ctx) {
		t.c.log.Warn("listing shard records; trying again", slog.Any("err", err))
		if err := pause.For(ctx, t.c.cfg.PollInterval); err != nil {
			return err
		}
	}
	return nil
}

// poll is what the tracker does every PollInterval, whether records change or not: it lists
// them again (a watch can miss a change), reads the run's record for a stop request, rescues
// the shards that sat unchanged, and tells the Observer.
func (t *tracker) poll(ctx context.Context) {
	if err := t.relist(ctx); err != nil {
		t.c.log.Warn("re-listing shards", slog.Any("err", err))
	}
	if r, _, err := t.l.Run(ctx, t.run.RunID); err == nil {
		t.sawRun(r)
	}
	t.rescueQuiet(ctx)
	t.observed = time.Time{} // at least every PollInterval, even with no record changing
}

// relist reads every shard record of the run.
func (t *tracker) relist(ctx context.Context) error {
	shards, err := t.l.Shards(ctx, t.run.RunID)
	if err != nil {
		return err
	}
	for _, s := range shards {
		t.saw(s)
	}
	return nil
}

// saw takes in a shard record as read or watched.
func (t *tracker) saw(rec proto.ShardRecord) {
	now := t.c.now()
	s, ok := t.seen[rec.ShardID]
	if !ok {
		t.seen[rec.ShardID] = &tracked{rec: rec, changed: now}
		if !rec.State.Terminal() {
			t.live++
		}
		return
	}
	if proto.SameShard(rec, s.rec) {
		return
	}
	switch was, is := s.rec.State.Terminal(), rec.State.Terminal(); {
	case was && !is:
		t.live++
	case !was && is:
		t.live--
	}
	s.rec, s.changed = rec, now
}

// sawRun takes in the run's record: it notes an operator's stop request.
func (t *tracker) sawRun(r proto.RunRecord) {
	if r.Stop != nil && t.stopSeen.IsZero() {
		t.stopSeen = t.c.now()
		t.c.log.Warn("stop requested; waiting for the workers to hand back their shards",
			slog.String("reason", r.Stop.Reason), slog.String("by", r.Stop.By))
	}
}

// stopDue reports whether a stop request ends the run now: shards are left, and none is
// running any more or the holders had an ack wait to hand theirs back.
func (t *tracker) stopDue() bool {
	if t.stopSeen.IsZero() || t.live == 0 {
		return false
	}
	running := 0
	for _, s := range t.seen {
		if s.rec.State == proto.StateRunning {
			running++
		}
	}
	if running > 0 && t.c.now().Sub(t.stopSeen) < t.l.Config().AckWait {
		return false
	}
	if running > 0 {
		t.c.log.Warn("stopping with shards still held by workers that did not hand them back", slog.Int("running", running))
	}
	return true
}

// records returns the shard records as last seen, in ID order.
func (t *tracker) records() []proto.ShardRecord {
	all := make([]proto.ShardRecord, 0, len(t.seen))
	for _, s := range t.seen {
		all = append(all, s.rec)
	}
	slices.SortFunc(all, func(a, b proto.ShardRecord) int { return strings.Compare(a.ShardID, b.ShardID) })
	return all
}

// tellObserver sends the run's status to the Observer, at most once per ObserveEvery.
func (t *tracker) tellObserver() {
	if t.c.cfg.Observer == nil || t.c.now().Sub(t.observed) < t.c.cfg.ObserveEvery {
		return
	}
	t.c.tellObserver(t.run, t.records(), time.Time{})
	t.observed = t.c.now()
}

// fillGaps, once every shard seen is terminal, checks that the shards cover the planned
// range, and publishes a shard for each stretch they leave out (a split whose new shard was
// never recorded). covered: nothing is left out, the run's shards are done. again: gaps
// were published and the records listed again, to be looked at at once. A failure that may
// pass (NATS losing a node) is neither: it is tried again at the next tick.
func (t *tracker) fillGaps(ctx context.Context) (covered, again bool, err error) {
	gaps := coverageGaps(t.records(), t.run.Repositories, t.through, rangeKind(t.run))
	if len(gaps) == 0 {
		return true, false, nil
	}
	for _, g := range gaps {
		t.c.log.Warn("range covered by no shard; publishing a shard for it", slog.String("repo", g.Repository),
			slog.String("after", g.Range.After), slog.String("through", g.Range.Through))
		if _, err := t.l.CreateShard(ctx, g); err != nil {
			if ctx.Err() != nil || !ledger.Transient(err) {
				return false, false, err
			}
			t.c.log.Warn("publishing a shard for a gap; trying again", slog.Any("err", err))
			return false, false, nil
		}
	}
	if err := t.relist(ctx); err != nil {
		if ctx.Err() != nil || !ledger.Transient(err) {
			return false, false, err
		}
		t.c.log.Warn("re-listing shards; trying again", slog.Any("err", err))
		return false, false, nil
	}
	return false, true, nil
}

// rescueQuiet has the ledger rescue every shard whose record sat unchanged for an ack wait
// (ledger.Rescue): a pending shard whose message was lost, or ran out of deliveries without a
// claim, is queued afresh, and a shard whose holder died on its message's last delivery is
// failed. Whether a delivery will still reach a shard is read from the shard queue, never
// guessed from the record's attempt count, so a shard whose message waits in a long queue is
// left to wait.
func (t *tracker) rescueQuiet(ctx context.Context) {
	now, ackWait := t.c.now(), t.l.Config().AckWait
	for _, s := range t.seen {
		if s.rec.State.Terminal() || now.Sub(s.changed) < ackWait || now.Sub(s.rescuedAt) < ackWait {
			continue
		}
		s.rescuedAt = now
		got, err := t.l.Rescue(ctx, s.rec.RunID, s.rec.ShardID)
		switch {
		case err != nil:
			t.c.log.Warn("checking a quiet shard", slog.String("shard", s.rec.ShardID), slog.Any("err", err))
		case got == ledger.RescueRequeued:
			t.c.log.Warn("no delivery would reach the shard; queued it afresh", slog.String("shard", s.rec.ShardID),
				slog.String("state", string(s.rec.State)), slog.Int("attempt", s.rec.Attempt))
		case got == ledger.RescueFailed:
			t.c.log.Error("shard abandoned on its last delivery; failed it", slog.String("shard", s.rec.ShardID))
		}
	}
}

// coverageGaps returns shards for every stretch of ("", through] not covered by a shard of a
// repository that has shards (a split whose new shard was never recorded). Overlaps are only
// logged by the caller's counts: they cost double work, never a wrong deletion.
func coverageGaps(all []proto.ShardRecord, repos []string, through string, kind proto.ShardKind) []proto.ShardRecord {
	var gaps []proto.ShardRecord
	for i, repo := range repos {
		var rs []proto.Range
		var runID string
		for _, s := range all {
			if s.Repository == repo && isPrune(s) {
				rs, runID = append(rs, s.Range), s.RunID
			}
		}
		if len(rs) == 0 {
			continue
		}
		sort.Slice(rs, func(a, b int) bool { return rs[a].After < rs[b].After })
		cur := ""
		add := func(r proto.Range) {
			sum := sha256.Sum256([]byte(r.After + "\x00" + r.Through))
			gaps = append(gaps, proto.ShardRecord{RunID: runID, ShardID: fmt.Sprintf("%d-gap-%s", i, hex.EncodeToString(sum[:6])),
				Kind: kind, Repository: repo, Range: r})
		}
		for _, r := range rs {
			if r.After > cur {
				add(proto.Range{After: cur, Through: r.After})
			}
			cur = max(cur, r.Through)
		}
		if cur < through {
			add(proto.Range{After: cur, Through: through})
		}
	}
	return gaps
}
