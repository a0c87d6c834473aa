package registry

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"
)

// Defaults of RateControlConfig's zero values.
const (
	DefaultRateDecrease = 0.9
	DefaultRateIncrease = 0.025
	DefaultMinRate      = 1.0
	DefaultStartRate    = 100.0
	// A class's start-up pace doubles every startDoubling and ends after startLength: by
	// then it is DefaultStartRate × 1024, more than any client here sends.
	startDoubling = 100 * time.Millisecond
	startLength   = 10 * startDoubling
	// A class not paced by a 429 that sent nothing for startAgainAfter ramps up again: a
	// worker pod lives through many daily runs, and each run's first wave would otherwise
	// go out unpaced.
	startAgainAfter = 10 * time.Second
	rateWindow      = time.Second // the send rate is measured over this
	rateBuckets     = 10
	// floorShare: the rate never falls below this share of the best rate of answers that
	// were not 429 seen over a window. A registry limit caps that rate, so the floor sits
	// far below any limit; 429s that come whatever the rate (a registry that throttles at
	// random) would otherwise drive the rate down to MinRate.
	floorShare = 1.0 / 8
)

// RateControlConfig tunes a RateControl. Zero values mean the documented defaults.
type RateControlConfig struct {
	// Decrease multiplies the rate on a 429: the new rate is Decrease times the lower of the
	// rate allowed and the rate actually sent over the last second (default 0.9).
	Decrease float64
	// Increase is the additive recovery: every second without a 429 the rate grows by this
	// fraction of the rate at which the last 429 came, or of the current rate once above it
	// (default 0.025: after a decrease of 0.9 the rate is back at the level that drew the
	// 429 in 4 s; docs/performance.md has how it fares against a shared limit).
	Increase float64
	// MinRate is the floor of the rate, in requests per second (default 1).
	MinRate float64
	// StartRate is a class's pace when its first request is sent, in requests per second;
	// it doubles every 100 ms until the first 429 or for one second, after which the class
	// is unpaced until a 429 (default 100; negative: unpaced from the first request). A
	// class that has not seen a 429 and sent nothing for 10 s starts again from StartRate.
	// A client that sent every slot's requests at once would otherwise learn of a
	// registry's limit only after a whole wave of them had drawn 429s.
	StartRate float64
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// RateControl paces one registry host's requests with additive-increase,
// multiplicative-decrease (AIMD), so that under a server's rate limit a client settles just
// below it instead of hammering it and failing requests. A class of request starts at
// StartRate and doubles its pace every 100 ms; after a second without a 429 it is not paced
// at all until one comes, or until it has sent nothing for 10 s and ramps up again. A 429
// without Retry-After (Quay's nginx sends none) lowers the allowed rate multiplicatively,
// once per round: answers to requests let through before the last decrease reflect the old
// rate and do not lower it again. Every answer that is not a 429 raises the rate additively
// with the time since the last raise (10 s at most). The rate never falls below an eighth of
// the best rate of successful answers seen, so that 429s unrelated to the rate (random
// throttling) cannot stall the client. A Retry-After holds every request until it has
// passed, and lowers the rate too.
//
// It never repeats a request: retries stay at one layer (regclient's). What it adds there is
// a tiny Retry-After on a 429 that had none, so that regclient retries at once, paced by the
// controller, rather than escalating its own per-host exponential backoff (which spaces
// every request of the host further apart with each 429 and fails requests outright after
// RetryLimit of them).
//
// Each class of request (the OCI client uses "list" and "delete"; Wait and Sent use the
// default class "") has a rate of its own,
// because registries limit endpoints separately (Quay: tags/list 5 requests/s per IP,
// manifests 50): a 429 on lists must not slow deletes down. A Retry-After holds every
// class.
//
// One RateControl is shared by all the requests a process sends to one host. It is safe for
// concurrent use. A nil *RateControl paces nothing.
type RateControl struct {
	cfg RateControlConfig
	now func() time.Time

	mu         sync.Mutex
	pauseUntil time.Time
	classes    map[string]*aimd
}

// aimd is the state of one class of request. The controller's mutex guards it.
type aimd struct {
	gate         gate      // paces the class at start-up and once limited
	limited      bool      // a 429 was seen: the gate paces at rate
	started      time.Time // the start of the class's ramp: its first request, or the first after a pause
	lastAsked    time.Time // the last request that asked to go while not limited
	rate         float64
	ceiling      float64 // the rate that drew the last 429
	gen          uint64  // rate generation: one more with each decrease
	lastIncrease time.Time
	sent         window // requests sent
	answered     window // answers that were not 429
	bestAnswered float64
	decreases    int64
	tooMany      int64
}

// class returns the state of a class, creating it. Callers hold rc.mu.
func (rc *RateControl) class(name string) *aimd {
	a := rc.classes[name]
	if a == nil {
		a = &aimd{}
		rc.classes[name] = a
	}
	return a
}

// starting reports whether the class is in its start-up pace (no 429 yet, less than
// startLength since its first request or since the first after a pause of startAgainAfter)
// and sets the gate to that pace. Callers hold rc.mu.
func (a *aimd) starting(cfg RateControlConfig, now time.Time) bool {
	if cfg.StartRate < 0 {
		return false
	}
	if a.started.IsZero() || now.Sub(a.lastAsked) > startAgainAfter {
		a.started = now
	}
	a.lastAsked = now
	since := now.Sub(a.started)
	if since >= startLength {
		return false
	}
	a.gate.pace(now, cfg.StartRate*math.Exp2(float64(since)/float64(startDoubling)))
	return true
}

// NewRateControl returns a controller whose classes ramp up from cfg.StartRate and are not
// paced after a second without a 429.
func NewRateControl(cfg RateControlConfig) *RateControl {
	if cfg.Decrease <= 0 || cfg.Decrease >= 1 {
		cfg.Decrease = DefaultRateDecrease
	}
	cfg.Increase = cmp.Or(max(cfg.Increase, 0), DefaultRateIncrease)
	cfg.MinRate = cmp.Or(max(cfg.MinRate, 0), DefaultMinRate)
	if cfg.StartRate == 0 {
		cfg.StartRate = DefaultStartRate
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &RateControl{cfg: cfg, now: now, classes: make(map[string]*aimd)}
}

// RateStats is a snapshot of a controller or of one class of it.
type RateStats struct {
	// Limited reports whether requests are paced (a 429 was seen).
	Limited bool
	// Rate is the allowed requests/s of the paced classes.
	Rate float64
	// Decreases counts the times a rate was lowered; TooMany the 429 answers observed.
	Decreases int64
	TooMany   int64
}

// Stats returns the state of the whole controller: the sum over its classes.
func (rc *RateControl) Stats() RateStats {
	if rc == nil {
		return RateStats{}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var st RateStats
	for _, a := range rc.classes {
		st.add(a)
	}
	return st
}

// ClassStats returns the state of one class of request.
func (rc *RateControl) ClassStats(class string) RateStats {
	if rc == nil {
		return RateStats{}
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var st RateStats
	if a := rc.classes[class]; a != nil {
		st.add(a)
	}
	return st
}

func (st *RateStats) add(a *aimd) {
	if a.limited {
		st.Limited = true
		st.Rate += a.rate
	}
	st.Decreases += a.decreases
	st.TooMany += a.tooMany
}

// Ticket is a request's pass from Wait, handed back to Observe with the answer.
type Ticket struct {
	class string
	gen   uint64
}

// Wait is WaitClass for the default class "".
func (rc *RateControl) Wait(ctx context.Context) (Ticket, error) { return rc.WaitClass(ctx, "") }

// WaitClass blocks until a request of class may be sent: past any Retry-After pause and,
// once the class is limited, within its allowed rate. It returns early with ctx's cause.
//
// Waiting requests queue in arrival order and only the first of them holds a place in the
// schedule, so a lower rate applies at once to every request still waiting: none keeps a
// turn reserved at the rate before a 429. (A token bucket's reservations would: with 256
// deletes waiting, a worker went on sending at the old rate for seconds after each 429.)
func (rc *RateControl) WaitClass(ctx context.Context, class string) (Ticket, error) {
	if rc == nil {
		return Ticket{class: class}, nil
	}
	var w *waiter // our place in the class's queue, once we queue
	for {
		rc.mu.Lock()
		now := rc.now()
		a := rc.class(class)
		t := Ticket{class: class, gen: a.gen}
		var delay time.Duration
		switch pause := rc.pauseUntil.Sub(now); {
		case pause > 0:
			delay = pause
		case !a.limited && !a.starting(rc.cfg, now):
			if w != nil {
				a.gate.leave(w)
			}
			rc.mu.Unlock()
			return t, nil
		default:
			if w == nil {
				w = a.gate.join()
			}
			if delay = a.gate.take(w, now); delay <= 0 {
				rc.mu.Unlock()
				return t, nil
			}
		}
		var turn <-chan struct{} // nil: wait for the delay alone
		if w != nil && !a.gate.first(w) {
			turn = w.turn
		}
		rc.mu.Unlock()
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			if w != nil {
				rc.mu.Lock()
				a.gate.leave(w)
				rc.mu.Unlock()
			}
			return t, context.Cause(ctx)
		case <-timer.C:
		case <-turn: // we became the first in the queue
			timer.Stop()
		}
	}
}

// Sent is SentClass for the default class "".
func (rc *RateControl) Sent() { rc.SentClass("") }

// SentClass records that a request of class is being sent now, for the measure of the rate
// sent.
func (rc *RateControl) SentClass(class string) {
	if rc == nil {
		return
	}
	now := rc.now()
	rc.mu.Lock()
	rc.class(class).sent.add(now)
	rc.mu.Unlock()
}

// Observe takes the answer to a request let through with ticket t: its status and headers.
// For a 429 without a usable Retry-After it returns the value to give regclient as the
// Retry-After (seconds, fractional) and true.
func (rc *RateControl) Observe(t Ticket, status int, header http.Header) (retryAfter string, ok bool) {
	if rc == nil {
		return "", false
	}
	now := rc.now()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	a := rc.class(t.class)
	if status != http.StatusTooManyRequests {
		a.answered.add(now)
		a.bestAnswered = max(a.bestAnswered, a.answered.rate(now))
		a.increase(rc.cfg, now)
		return "", false
	}
	a.tooMany++
	after, hasAfter := parseRetryAfter(header.Get("Retry-After"), now)
	if hasAfter && now.Add(after).After(rc.pauseUntil) {
		rc.pauseUntil = now.Add(after)
	}
	if t.gen == a.gen {
		a.decrease(rc.cfg, now)
	}
	if hasAfter {
		return "", false
	}
	return minRetryAfter, true
}

// minRetryAfter is the Retry-After given to regclient: the smallest it reads as a delay
// (it parses the value with time.ParseDuration(v+"s") and needs it positive). The retry
// then waits for the controller in the transport.
const minRetryAfter = "0.001"

// decrease lowers the rate multiplicatively, from the lower of the allowed rate and the
// rate of answers that were not 429: what the registry granted is the measure of its limit,
// where the rate sent is not (after a burst of 429s it is many times the limit). Callers
// hold the controller's mutex.
func (a *aimd) decrease(cfg RateControlConfig, now time.Time) {
	base := a.answered.rate(now)
	if a.limited && (base == 0 || a.rate < base) {
		base = a.rate
	}
	if base == 0 { // nothing answered yet: the first requests drew the 429
		base = cfg.MinRate / cfg.Decrease
		if !a.limited && cfg.StartRate > 0 {
			// Sent at the start-up pace: half what went out is a start the increase
			// corrects within seconds, where MinRate would take minutes to climb from.
			base = max(base, a.sent.rate(now)/2)
		}
	}
	a.ceiling = base
	a.setRate(cfg, now, base*cfg.Decrease)
	a.lastIncrease = now
	a.gen++
	a.decreases++
}

// increase raises the rate additively. Callers hold the controller's mutex.
func (a *aimd) increase(cfg RateControlConfig, now time.Time) {
	if !a.limited {
		return
	}
	// A quiet stretch (between two runs of a long-lived worker) counts for no more than
	// startAgainAfter: nothing was learned in it, and the next run should start near the
	// rate the registry last granted, not at the bound below.
	dt := min(now.Sub(a.lastIncrease), startAgainAfter).Seconds()
	if dt <= 0 {
		return
	}
	a.lastIncrease = now
	// Linear up to the level that drew the last 429, compounding past it (the registry's
	// limit may have risen, or the first 429 came in a start-up burst that was no measure
	// of it); never more than a few times what is being sent.
	next := a.rate + cfg.Increase*max(a.ceiling, a.rate)*dt
	a.setRate(cfg, now, min(next, max(4*a.ceiling, 2*a.sent.rate(now))))
}

func (a *aimd) setRate(cfg RateControlConfig, now time.Time, r float64) {
	r = max(r, cfg.MinRate, floorShare*a.bestAnswered)
	a.rate, a.limited = r, true
	a.gate.pace(now, r)
}

// String describes the controller's state for logs.
func (rc *RateControl) String() string {
	s := rc.Stats()
	if !s.Limited {
		return "unpaced"
	}
	return fmt.Sprintf("%.1f requests/s after %d decreases", s.Rate, s.Decreases)
}
