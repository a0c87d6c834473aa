package coordinator

// This file: following the shard records until every one is terminal and the range is
// covered, rescuing stuck shards and filling gaps.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// tracked is a shard record as last seen, and when it last changed.
type tracked struct {
	rec     proto.ShardRecord
	changed time.Time
	pokedAt time.Time // last ledger.Rescue
}

// track follows the run's shard records until every one is terminal and the shards cover
// each planned repository without gaps, and returns them.
func (c *Coordinator) track(ctx context.Context, l *ledger.Ledger, run proto.RunRecord, through string, leaseLost <-chan error) ([]proto.ShardRecord, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The watch is started in the background: creating it can hang while a clustered stream
	// changes leader, and re-listing every PollInterval sees every change meanwhile.
	var updates <-chan proto.ShardRecord
	watching := make(chan (<-chan proto.ShardRecord), 1)
	go func() {
		u, err := l.Watch(wctx, run.RunID)
		if err != nil {
			if wctx.Err() == nil {
				c.log.Warn("watching shard records; relying on re-listing", slog.Any("err", err))
			}
			return
		}
		watching <- u
	}()
	var mu sync.Mutex // guards seen and live against the watch goroutine
	seen := make(map[string]*tracked)
	// live counts the shards in seen that are not terminal. Every checkpoint is an update, so
	// the loop below must not walk every shard per update (that is shards x pages).
	live := 0
	observe := func(rec proto.ShardRecord) {
		mu.Lock()
		defer mu.Unlock()
		t, ok := seen[rec.ShardID]
		if !ok {
			seen[rec.ShardID] = &tracked{rec: rec, changed: c.now()}
			if !rec.State.Terminal() {
				live++
			}
			return
		}
		if !proto.SameShard(rec, t.rec) {
			switch was, is := t.rec.State.Terminal(), rec.State.Terminal(); {
			case was && !is:
				live++
			case !was && is:
				live--
			}
			t.rec, t.changed = rec, c.now()
		}
	}
	snapshot := func() []proto.ShardRecord {
		mu.Lock()
		defer mu.Unlock()
		all := make([]proto.ShardRecord, 0, len(seen))
		for _, t := range seen {
			all = append(all, t.rec)
		}
		return all
	}
	tick := time.NewTicker(c.cfg.PollInterval)
	defer tick.Stop()
	relist := func() error {
		shards, err := l.Shards(ctx, run.RunID)
		if err != nil {
			return err
		}
		for _, s := range shards {
			observe(s)
		}
		return nil
	}
	// The first listing must succeed: with nothing seen, the run would look finished.
	for err := relist(); err != nil; err = relist() {
		c.log.Warn("listing shard records; trying again", slog.Any("err", err))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(c.cfg.PollInterval):
		}
	}
	lc := l.Config()
	// An operator's stop request (ledger.RequestStop) is seen on the run's record: then the
	// run ends once no shard is running any more (workers hand theirs back), or after an ack
	// wait for holders that never answer (dead, or cut off; a resume takes those shards over).
	var runUpdates <-chan proto.RunRecord
	runWatch := make(chan (<-chan proto.RunRecord), 1)
	go func() {
		if u, err := l.WatchRun(wctx, run.RunID); err == nil {
			runWatch <- u
		}
	}()
	var stopSeen time.Time
	sawRun := func(r proto.RunRecord) {
		if r.Stop != nil && stopSeen.IsZero() {
			stopSeen = c.now()
			c.log.Warn("stop requested; waiting for the workers to hand back their shards",
				slog.String("reason", r.Stop.Reason), slog.String("by", r.Stop.By))
		}
	}
	var observed time.Time // last Observer call
	for {
		if !stopSeen.IsZero() {
			mu.Lock()
			running, live := 0, live
			for _, t := range seen {
				if t.rec.State == proto.StateRunning {
					running++
				}
			}
			mu.Unlock()
			if live > 0 && (running == 0 || c.now().Sub(stopSeen) >= lc.AckWait) {
				if running > 0 {
					c.log.Warn("stopping with shards still held by workers that did not hand them back", slog.Int("running", running))
				}
				all := snapshot()
				sort.Slice(all, func(i, j int) bool { return all[i].ShardID < all[j].ShardID })
				return all, errStopRequested
			}
		}
		mu.Lock()
		finished := live == 0
		mu.Unlock()
		if c.cfg.Observer != nil && !finished && c.now().Sub(observed) >= c.cfg.ObserveEvery {
			c.observe(run, snapshot(), time.Time{})
			observed = c.now()
		}
		if finished {
			all := snapshot()
			gaps := coverageGaps(all, run.Repositories, through, rangeKind(run))
			if len(gaps) == 0 {
				sort.Slice(all, func(i, j int) bool { return all[i].ShardID < all[j].ShardID })
				return all, nil
			}
			// A failure that may pass (NATS losing a node) is tried again at the next tick.
			published := true
			for _, g := range gaps {
				c.log.Warn("range covered by no shard; publishing a shard for it", slog.String("repo", g.Repository),
					slog.String("after", g.Range.After), slog.String("through", g.Range.Through))
				if _, err := l.CreateShard(ctx, g); err != nil {
					if ctx.Err() != nil || !ledger.Transient(err) {
						return nil, err
					}
					c.log.Warn("publishing a shard for a gap; trying again", slog.Any("err", err))
					published = false
					break
				}
			}
			if published {
				err := relist()
				if err == nil {
					continue
				}
				if ctx.Err() != nil || !ledger.Transient(err) {
					return nil, err
				}
				c.log.Warn("re-listing shards; trying again", slog.Any("err", err))
			}
		}
		select {
		case updates = <-watching:
		case runUpdates = <-runWatch:
		case r, ok := <-runUpdates:
			if !ok {
				runUpdates = nil // the tick re-reads the run
				continue
			}
			sawRun(r)
		case rec, ok := <-updates:
			if !ok {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				c.log.Warn("shard watch ended; relying on re-listing")
				updates = nil
				continue
			}
			observe(rec)
		case err := <-leaseLost:
			return nil, fmt.Errorf("run %s: %w", run.RunID, err)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
			if err := relist(); err != nil {
				c.log.Warn("re-listing shards", slog.Any("err", err))
			}
			if r, _, err := l.Run(ctx, run.RunID); err == nil {
				sawRun(r)
			}
			c.poke(ctx, l, seen, &mu, lc)
			if c.cfg.Progress != nil {
				c.cfg.Progress(c.report(run, snapshot(), time.Time{}))
			}
			observed = time.Time{} // at least every PollInterval, even with no record changing
		}
	}
}

// poke has the ledger rescue every shard whose record sat unchanged for an ack wait
// (ledger.Rescue): a pending shard whose message was lost, or ran out of deliveries without a
// claim, is queued afresh, and a shard whose holder died on its message's last delivery is
// failed. Whether a delivery will still reach a shard is read from the shard queue, never
// guessed from the record's attempt count, so a shard whose message waits in a long queue is
// left to wait.
func (c *Coordinator) poke(ctx context.Context, l *ledger.Ledger, seen map[string]*tracked, mu *sync.Mutex, lc ledger.Config) {
	now := c.now()
	mu.Lock()
	var quiet []proto.ShardRecord
	for _, t := range seen {
		if t.rec.State.Terminal() || now.Sub(t.changed) < lc.AckWait || now.Sub(t.pokedAt) < lc.AckWait {
			continue
		}
		t.pokedAt = now
		quiet = append(quiet, t.rec)
	}
	mu.Unlock()
	for _, s := range quiet {
		got, err := l.Rescue(ctx, s.RunID, s.ShardID)
		switch {
		case err != nil:
			c.log.Warn("checking a quiet shard", slog.String("shard", s.ShardID), slog.Any("err", err))
		case got == ledger.RescueRequeued:
			c.log.Warn("no delivery would reach the shard; queued it afresh", slog.String("shard", s.ShardID),
				slog.String("state", string(s.State)), slog.Int("attempt", s.Attempt))
		case got == ledger.RescueFailed:
			c.log.Error("shard abandoned on its last delivery; failed it", slog.String("shard", s.ShardID))
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
