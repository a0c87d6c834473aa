package registry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/tagsweep/tagsweep/registry/sim"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// sendAt records n requests spread evenly over d, advancing the clock by d, answering
// each with status unless status is 0, and returns the ticket of the last.
func sendAt(t *testing.T, rc *RateControl, clk *fakeClock, n int, d time.Duration, status int) Ticket {
	t.Helper()
	var last Ticket
	for range n {
		clk.add(d / time.Duration(n))
		tk, err := rc.Wait(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		rc.Sent()
		if status != 0 {
			rc.Observe(tk, status, http.Header{})
		}
		last = tk
	}
	return last
}

func TestRateControlAIMD(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	rc := NewRateControl(RateControlConfig{Now: clk.now, StartRate: -1})
	tooMany := func(tk Ticket) (string, bool) { return rc.Observe(tk, http.StatusTooManyRequests, http.Header{}) }

	// Unpaced until the first 429, however fast it sends: 50 requests in half a second
	// (the first after 10 ms), all answered 202, and 100 more that get no answer yet.
	sendAt(t, rc, clk, 50, 500*time.Millisecond, http.StatusAccepted)
	before := sendAt(t, rc, clk, 100, 10*time.Millisecond, 0)
	if st := rc.Stats(); st.Limited {
		t.Fatalf("stats %+v before any 429, want unpaced", st)
	}

	// The first 429 without Retry-After: 0.9 x the rate of answers that were not 429 (50
	// over the 500 ms since the first), not of the requests sent (150).
	granted := 50 / 0.5
	ra, ok := tooMany(before)
	st := rc.Stats()
	if !ok || ra != minRetryAfter || !st.Limited || !near(st.Rate, 0.9*granted) || st.Decreases != 1 {
		t.Fatalf("after a 429: retry-after %q %v, stats %+v; want %q and limited at %.1f", ra, ok, st, minRetryAfter, 0.9*granted)
	}
	// Another 429 to a request let through before that decrease reflects the old rate.
	tooMany(before)
	if got := rc.Stats(); got.Decreases != 1 || got.TooMany != 2 {
		t.Errorf("a stale 429 decreased again: %+v", got)
	}

	// Additive increase: DefaultRateIncrease of the ceiling per second without a 429.
	clk.add(2 * time.Second)
	rc.Observe(before, http.StatusOK, http.Header{})
	if got, want := rc.Stats().Rate, 0.9*granted+DefaultRateIncrease*granted*2; !near(got, want) {
		t.Errorf("rate after 2 s of successes = %.3f, want %.3f", got, want)
	}
	// ... a quiet hour (the pause between two runs) counts as 10 s: the next run starts near
	// the rate the registry granted.
	ten := 0.9*granted + DefaultRateIncrease*granted*12
	clk.add(time.Hour)
	rc.Observe(before, http.StatusOK, http.Header{})
	if got := rc.Stats().Rate; !near(got, ten) {
		t.Errorf("rate after a quiet hour = %.3f, want %.3f (10 s of increase)", got, ten)
	}
	// ... and bounded at four times the ceiling however long the increases go on.
	for range 200 {
		clk.add(time.Second)
		rc.Observe(before, http.StatusOK, http.Header{})
	}
	if got := rc.Stats().Rate; !near(got, 4*granted) {
		t.Errorf("rate after 200 s of successes = %.3f, want the bound %.1f", got, 4*granted)
	}

	// A 429 for a request let through after the last decrease lowers the rate again, from the
	// lower of the allowed rate and the rate answered: 20 answers in the last second (the
	// clock moved to a whole second first, so that all 20 fall into the window's buckets).
	clk.add(490 * time.Millisecond)
	sendAt(t, rc, clk, 20, 900*time.Millisecond, http.StatusAccepted)
	after := sendAt(t, rc, clk, 1, 0, 0)
	tooMany(after)
	if got := rc.Stats(); got.Decreases != 2 || !near(got.Rate, 18) {
		t.Errorf("second decrease: %+v, want rate 18", got)
	}
}

// TestRateControlFloor: a registry that answers nothing but 429 drives the rate down to
// MinRate and no lower.
func TestRateControlFloor(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	rc := NewRateControl(RateControlConfig{Now: clk.now, StartRate: -1})
	for range 50 {
		clk.add(time.Second)
		rc.Observe(sendAt(t, rc, clk, 1, time.Millisecond, 0), http.StatusTooManyRequests, http.Header{})
	}
	if got := rc.Stats(); !near(got.Rate, DefaultMinRate) || got.Decreases != 50 {
		t.Errorf("after 50 rounds of 429s: %+v, want the floor %v", got, DefaultMinRate)
	}
}

func TestRateControlRetryAfter(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	rc := NewRateControl(RateControlConfig{Now: clk.now, StartRate: -1})
	tk := sendAt(t, rc, clk, 50, time.Second, 0)
	h := http.Header{}
	h.Set("Retry-After", "30")
	if ra, ok := rc.Observe(tk, http.StatusTooManyRequests, h); ok || ra != "" {
		t.Errorf("with the registry's Retry-After, Observe gave %q %v; want none of its own", ra, ok)
	}
	// Every request now waits out the 30 s: a context that ends first ends the wait.
	ctx, cancel := context.WithCancelCause(context.Background())
	stop := errors.New("test over")
	cancel(stop)
	if _, err := rc.Wait(ctx); !errors.Is(err, stop) {
		t.Errorf("Wait during a Retry-After pause = %v, want the context's cause", err)
	}
	// Once it has passed, requests go again (paced: the 429 lowered the rate too).
	clk.add(31 * time.Second)
	if _, err := rc.Wait(context.Background()); err != nil {
		t.Errorf("Wait after the pause = %v", err)
	}
	if st := rc.Stats(); !st.Limited || st.Decreases != 1 {
		t.Errorf("stats %+v, want limited after one decrease", st)
	}
}

// limited answers 429 without Retry-After, as Quay's nginx does, above r requests/s.
type limited struct {
	next     http.Handler
	lim      *rate.Limiter
	rejected atomic.Int64
}

func (l *limited) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !l.lim.Allow() {
		l.rejected.Add(1)
		w.WriteHeader(http.StatusTooManyRequests)
		return
	}
	l.next.ServeHTTP(w, req)
}

// TestOCIUnderRateLimit deletes tags through the OCI client, from many goroutines, against
// a registry that answers 429 without Retry-After above its rate: every delete must succeed
// (regclient retries, paced by the controller), and the controller must have slowed down.
// Without the controller's Retry-After, regclient's shared backoff reaches its retry limit
// after a handful of 429s and fails deletes.
func TestOCIUnderRateLimit(t *testing.T) {
	reg := sim.New(sim.Config{})
	var tags []string
	for i := range 400 {
		tags = append(tags, fmt.Sprintf("20260101%06d_prune_t", i))
	}
	if err := reg.AddTags("openshift/ci", "", tags...); err != nil {
		t.Fatal(err)
	}
	lim := &limited{next: reg, lim: rate.NewLimiter(200, 10)}
	srv := httptest.NewServer(lim)
	t.Cleanup(srv.Close)
	rc := NewRateControl(RateControlConfig{})
	c, err := NewOCI(OCIConfig{Host: strings.TrimPrefix(srv.URL, "http://"), PlainHTTP: true, Concurrency: 32,
		RateControl: rc, DockerConfig: writeEmptyDockerConfig(t)})
	if err != nil {
		t.Fatal(err)
	}
	if c.RateControl() != rc {
		t.Fatal("client does not use the given controller")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	work := make(chan string)
	var failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for tag := range work {
				if err := c.Delete(ctx, "openshift/ci", tag); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	for _, tag := range tags {
		work <- tag
	}
	close(work)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d deletes failed, first: %v", n, first.Load())
	}
	if n := reg.Len("openshift/ci"); n != 0 {
		t.Errorf("%d tags left", n)
	}
	st := rc.Stats()
	if lim.rejected.Load() == 0 || !st.Limited || st.Decreases == 0 {
		t.Errorf("registry rejected %d requests, controller %+v: the limit was never felt", lim.rejected.Load(), st)
	}
	t.Logf("%d requests rejected, controller: %s", lim.rejected.Load(), rc)
}

// writeEmptyDockerConfig keeps the client away from the machine's own docker logins.
func writeEmptyDockerConfig(t *testing.T) string {
	t.Helper()
	path := t.TempDir() + "/config.json"
	if err := os.WriteFile(path, []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRateControlRandomThrottling: 429s that come whatever the rate (one answer in ten)
// must not drive the rate to the floor: it stays at least an eighth of the best rate of
// successful answers.
func TestRateControlRandomThrottling(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	rc := NewRateControl(RateControlConfig{Now: clk.now, StartRate: -1})
	// The test sends on the fake clock whatever the controller allows: a cancelled context
	// makes Wait return its ticket at once instead of sleeping for real.
	now, cancel := context.WithCancel(context.Background())
	cancel()
	best := 0.0
	for i := range 6000 { // a minute of 100 requests/s, answered as they are sent
		clk.add(10 * time.Millisecond)
		tk, _ := rc.Wait(now)
		rc.Sent()
		status := http.StatusAccepted
		if i%10 == 9 {
			status = http.StatusTooManyRequests
		}
		rc.Observe(tk, status, http.Header{})
		if i < 100 {
			best = 90 // 90 answers a second that were not 429
		}
	}
	st := rc.Stats()
	if !st.Limited || st.Decreases < 10 {
		t.Fatalf("stats %+v: want a controller that kept lowering the rate", st)
	}
	if st.Rate < best/8-1e-9 {
		t.Errorf("rate %.2f after a minute of random 429s, want at least %.2f", st.Rate, best/8)
	}
}

// TestRateControlClasses: registries limit endpoints separately, so a 429 on one class of
// request paces that class only; a Retry-After holds them all.
func TestRateControlClasses(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	rc := NewRateControl(RateControlConfig{Now: clk.now, StartRate: -1})
	for range 20 {
		clk.add(10 * time.Millisecond)
		rc.SentClass("list")
		rc.SentClass("delete")
	}
	tk, err := rc.WaitClass(context.Background(), "list")
	if err != nil {
		t.Fatal(err)
	}
	rc.Observe(tk, http.StatusTooManyRequests, http.Header{})
	if l, d := rc.ClassStats("list"), rc.ClassStats("delete"); !l.Limited || d.Limited || d.Decreases != 0 {
		t.Errorf("after a 429 on lists: list %+v, delete %+v; want only lists paced", l, d)
	}
	h := http.Header{}
	h.Set("Retry-After", "60")
	rc.Observe(tk, http.StatusTooManyRequests, h)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := rc.WaitClass(ctx, "delete"); err == nil {
		t.Error("a delete went through during a Retry-After pause drawn by a list")
	}
}

// TestGateLowerRateAppliesAtOnce: requests waiting in a class's queue hold no turn at the
// old rate. After a decrease the next request waits the new interval, however many were
// queued when it came; a token bucket's reservations would let the queue out at the old rate.
func TestGateLowerRateAppliesAtOnce(t *testing.T) {
	t0 := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	var a aimd
	cfg := RateControlConfig{Decrease: DefaultRateDecrease, Increase: DefaultRateIncrease, MinRate: DefaultMinRate}
	a.setRate(cfg, t0, 1000) // 1 ms apart, a burst of 20
	var ws []*waiter
	for range 100 {
		ws = append(ws, a.gate.join())
	}
	now := t0
	for i := range 20 { // the burst goes at once, in order
		if d := a.gate.take(ws[i], now); d > 0 {
			t.Fatalf("waiter %d of the burst told to wait %v", i, d)
		}
	}
	if d := a.gate.take(ws[21], now); d != time.Hour {
		t.Errorf("a waiter not first in the queue was scheduled (%v)", d)
	}
	if d := a.gate.take(ws[20], now); d <= 0 {
		t.Fatal("the 21st request went within the burst")
	}
	a.setRate(cfg, now, 10) // a 429: 100 ms apart from now on
	now = now.Add(20 * time.Millisecond)
	if d := a.gate.take(ws[20], now); d > 0 {
		t.Fatalf("the first waiter, due at the old rate, still waits %v", d)
	}
	if d := a.gate.take(ws[21], now); d < 90*time.Millisecond {
		t.Errorf("the next waiter may go in %v, want the new interval of 100 ms", d)
	}
	// A waiter that gives up while first hands its turn to the one behind it.
	select {
	case <-ws[22].turn:
		t.Fatal("third in the queue already has the turn")
	default:
	}
	a.gate.leave(ws[21])
	select {
	case <-ws[22].turn:
	default:
		t.Fatal("the turn was not handed on")
	}
	if !a.gate.first(ws[22]) || len(a.gate.queue) != 100-22 {
		t.Errorf("queue after leaving: first is ws[22] %v, length %d", a.gate.first(ws[22]), len(a.gate.queue))
	}
}

// TestRateControlSlowStart: a class starts at StartRate, doubles its pace every 100 ms and is
// unpaced after a second; a 429 in that time, with nothing answered yet, lowers the rate from
// half the rate sent, not to MinRate; after 10 s of quiet the ramp starts again.
func TestRateControlSlowStart(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)}
	rc := NewRateControl(RateControlConfig{Now: clk.now})
	// A cancelled context: Wait lets a request through if it may go now, else fails at once.
	now, cancel := context.WithCancel(context.Background())
	cancel()
	goNow := func(class string) int { // how many requests of class may go at this instant
		n := 0
		for ; n < 100000; n++ {
			if _, err := rc.WaitClass(now, class); err != nil {
				break
			}
			rc.SentClass(class)
		}
		return n
	}
	// 100/s: a burst of 20 ms worth, 2 requests.
	if n := goNow("delete"); n != 2 {
		t.Fatalf("%d requests went at the start, want 2 (100/s, 20 ms of burst)", n)
	}
	// 500 ms later: 100 × 2^5 = 3,200/s, 64 at once.
	clk.add(500 * time.Millisecond)
	if n := goNow("delete"); n != 64 {
		t.Errorf("%d requests went after 500 ms, want 64 (3,200/s)", n)
	}
	// Each class starts on its own clock.
	if n := goNow("list"); n != 2 {
		t.Errorf("the list class's first requests: %d went at once, want 2", n)
	}
	// The list class, 100 ms into its start at 200/s, has sent 6 requests over the window's
	// 100 ms minimum, 60/s: a 429 before any answer lowers it to 0.9 × 60/2.
	clk.add(100 * time.Millisecond)
	if n := goNow("list"); n != 4 {
		t.Fatalf("%d list requests went 100 ms in, want 4 (200/s)", n)
	}
	sent := float64(2+4) / 0.1
	rc.Observe(Ticket{class: "list"}, http.StatusTooManyRequests, http.Header{})
	if st := rc.ClassStats("list"); !st.Limited || !near(st.Rate, DefaultRateDecrease*sent/2) {
		t.Errorf("list after a 429 with nothing answered: %+v, want limited at %.1f", st, DefaultRateDecrease*sent/2)
	}

	// A second and a half in: the delete class is unpaced.
	clk.add(900 * time.Millisecond)
	if n := goNow("delete"); n != 100000 {
		t.Errorf("%d requests went a second in, want all (unpaced)", n)
	}
	if st := rc.ClassStats("delete"); st.Limited || st.Decreases != 0 {
		t.Errorf("delete stats %+v without a 429, want not limited", st)
	}

	// Quiet for 9 s, it is still unpaced; quiet for more than 10 s, it ramps up again (the
	// next run of a long-lived worker).
	clk.add(9 * time.Second)
	if n := goNow("delete"); n != 100000 {
		t.Errorf("%d requests went after 9 s of quiet, want all (unpaced)", n)
	}
	clk.add(11 * time.Second)
	if n := goNow("delete"); n != 2 {
		t.Errorf("%d requests went at once after 11 s of quiet, want 2 (the ramp again)", n)
	}
}
