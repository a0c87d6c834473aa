package registry

import (
	"math"
	"slices"
	"time"
)

// The two measures RateControl paces with: a gate per class of request that spaces the
// requests at the allowed rate, and windows that count what was sent and answered.

// gate spaces a class's requests 1/rate apart, letting a burst through after a quiet
// spell (GCRA: a request may go once the theoretical arrival time tat, less the burst's
// tolerance, has come). Waiters queue in order; only the first is scheduled. The
// controller's mutex guards it.
type gate struct {
	interval  time.Duration // 1/rate
	tolerance time.Duration // (burst-1) * interval
	tat       time.Time
	queue     []*waiter
}

// waiter is a request in a gate's queue. turn is closed when it becomes the first.
type waiter struct{ turn chan struct{} }

func (g *gate) join() *waiter {
	w := &waiter{turn: make(chan struct{})}
	g.queue = append(g.queue, w)
	if len(g.queue) == 1 {
		close(w.turn)
	}
	return w
}

func (g *gate) first(w *waiter) bool { return len(g.queue) > 0 && g.queue[0] == w }

// take lets w through if it is first in the queue and the schedule allows a request now,
// removing it from the queue; otherwise it returns how long to wait before asking again.
func (g *gate) take(w *waiter, now time.Time) time.Duration {
	if !g.first(w) {
		return time.Hour // woken through turn when it is first
	}
	tat := g.tat
	if tat.Before(now) {
		tat = now
	}
	if d := tat.Sub(now) - g.tolerance; d > 0 {
		return d
	}
	g.tat = tat.Add(g.interval)
	g.leave(w)
	return 0
}

// leave removes w from the queue (it was let through or gave up) and hands the first place
// on.
func (g *gate) leave(w *waiter) {
	i := slices.Index(g.queue, w)
	if i < 0 {
		return
	}
	g.queue = slices.Delete(g.queue, i, i+1)
	if i == 0 && len(g.queue) > 0 {
		close(g.queue[0].turn)
	}
}

// pace sets the gate's rate, with a burst of 20 ms worth of requests (at least one):
// enough to absorb scheduling jitter, too little to overrun a server's bucket.
func (g *gate) pace(now time.Time, r float64) {
	burst := max(1, int(math.Ceil(r/50)))
	g.interval = time.Duration(float64(time.Second) / r)
	g.tolerance = time.Duration(burst-1) * g.interval
	if g.tat.IsZero() {
		g.tat = now
	}
}

// window counts events over the last rateWindow in rateBuckets slots.
type window struct {
	n     [rateBuckets]int64
	slot  [rateBuckets]int64 // the slot number each bucket counts
	first time.Time          // the first event counted
}

func slotOf(t time.Time) int64 { return t.UnixNano() / int64(rateWindow/rateBuckets) }

func (w *window) add(t time.Time) {
	if w.first.IsZero() {
		w.first = t
	}
	s := slotOf(t)
	i := s % rateBuckets
	if w.slot[i] != s {
		w.slot[i], w.n[i] = s, 0
	}
	w.n[i]++
}

// rate is the events per second over the last rateWindow, or over the time since the first
// event when that is shorter (but at least a bucket): the first 429s come well within a
// second of the first requests, and counting them over a whole second would take a
// fraction of the rate for all of it.
func (w *window) rate(t time.Time) float64 {
	s := slotOf(t)
	var n int64
	for i := range rateBuckets {
		if s-w.slot[i] < rateBuckets {
			n += w.n[i]
		}
	}
	span := min(max(t.Sub(w.first), rateWindow/rateBuckets), rateWindow)
	return float64(n) / span.Seconds()
}
