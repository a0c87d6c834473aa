package worker

import (
	"context"
	"log/slog"
	"sync"

	"github.com/tagsweep/tagsweep/internal/pause"
	"github.com/tagsweep/tagsweep/ledger"
	"github.com/tagsweep/tagsweep/proto"
)

// runStops tells the shards in hand when an operator stops their run (ledger.RequestStop):
// a worker watches the run records, and the shards of a stopped run end their page,
// checkpoint and are handed back for the run's resume.
type runStops struct {
	mu sync.Mutex
	m  map[string]chan struct{} // closed once the run is seen stopped
}

// signal returns a channel closed once runID is seen stopped.
func (s *runStops) signal(runID string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]chan struct{})
	}
	ch, ok := s.m[runID]
	if !ok {
		ch = make(chan struct{})
		s.m[runID] = ch
	}
	return ch
}

// stopped reports whether runID was seen stopped.
func (s *runStops) stopped(runID string) bool {
	select {
	case <-s.signal(runID):
		return true
	default:
		return false
	}
}

// shardContext returns a context for a shard of runID that ends with ctx or when the run is
// seen stopped. cancel frees it.
func (s *runStops) shardContext(ctx context.Context, runID string) (_ context.Context, cancel context.CancelFunc) {
	ctx, cancel = context.WithCancel(ctx)
	go func() {
		select {
		case <-s.signal(runID):
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// saw records a run as last written: stopped (signal closed), or resumed (a fresh signal).
func (s *runStops) saw(run proto.RunRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.m[run.RunID]
	closed := false
	if ok {
		select {
		case <-ch:
			closed = true
		default:
		}
	}
	switch stop := ledger.HandBack(run); {
	case stop && !closed:
		if !ok {
			if s.m == nil {
				s.m = make(map[string]chan struct{})
			}
			ch = make(chan struct{})
			s.m[run.RunID] = ch
		}
		close(ch)
	case !stop && closed:
		delete(s.m, run.RunID) // resumed
	}
}

// watch follows the run records until ctx ends, watching again after a break.
func (s *runStops) watch(ctx context.Context, l *ledger.Ledger, log *slog.Logger) {
	delay := openRetryMin
	for ctx.Err() == nil {
		runs, err := l.WatchRuns(ctx)
		if err == nil {
			delay = openRetryMin
			for r := range runs {
				s.saw(r)
			}
		} else {
			log.Warn("watching run records for stops; trying again", slog.Any("err", err), slog.Duration("in", delay))
		}
		_ = pause.For(ctx, delay)
		delay = min(2*delay, openRetryMax)
	}
}
