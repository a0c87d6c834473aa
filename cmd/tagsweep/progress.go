package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tagsweep/tagsweep/coordinator"
)

// Progress display. `run` and `coordinator` show a run's progress (shards done of all, tags
// scanned and deleted, tags/s, ETA) from the coordinator's Observer: on a terminal as one
// status line redrawn at the bottom of stderr, below the log lines (liveLine); otherwise as
// a structured "progress" log line every progressLogEvery. No dependency is needed for one
// line redrawn with a carriage return and an erase-line escape.

// progressLogEvery is how often a run's progress is logged when stderr is not a terminal: a
// line every 30 s is 1,440 lines over a 12-hour run, enough to follow a run in a pod's log
// without drowning it.
const progressLogEvery = 30 * time.Second

// rateWindow is the span over which tags/s is measured.
const rateWindow = 10 * time.Second

// progress turns a run's statuses into a live status line or periodic log lines. It
// implements coordinator.Observer.
type progress struct {
	live     *liveLine // nil: log lines
	log      *slog.Logger
	logEvery time.Duration
	now      func() time.Time

	mu      sync.Mutex
	rate    rateMeter
	logged  time.Time // last progress log line
	stopped bool
}

// newProgress returns a progress display on live, or as log lines on log when live is nil.
func newProgress(live *liveLine, log *slog.Logger) *progress {
	return &progress{live: live, log: log, logEvery: progressLogEvery, now: time.Now, rate: rateMeter{window: rateWindow}}
}

// RunStatus implements coordinator.Observer.
func (p *progress) RunStatus(s coordinator.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	now := p.now()
	v := viewOf(s, p.rate.add(now, s.Report.Tags.Scanned), now)
	if s.Final {
		// The summary follows on stdout: take the line away rather than leave it half-drawn.
		p.stopLocked()
		return
	}
	if p.live != nil {
		p.live.Set(renderBar(v, p.live.Width()))
		return
	}
	if !p.logged.IsZero() && now.Sub(p.logged) < p.logEvery {
		return
	}
	p.logged = now
	p.log.Info("progress", append([]any{slog.String("run", s.Report.RunID)}, v.attrs()...)...)
}

// Stop removes the status line (if any) and ignores later statuses. Call it before printing
// to the terminal after a run.
func (p *progress) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopLocked()
}

func (p *progress) stopLocked() {
	p.stopped = true
	if p.live != nil {
		p.live.Clear()
	}
}

// progressView is what the display shows of a run.
type progressView struct {
	Shards, Done, Failed int
	Scanned, Deleted     int64
	Eligible             int64
	DryRun               bool
	Rate                 float64       // tags scanned per second, recently; <0 = not known yet
	ETA                  time.Duration // <0 = not known yet
}

// viewOf is the view of a status at now, with the recent tags/s rate.
func viewOf(s coordinator.Status, rate float64, now time.Time) progressView {
	r := s.Report
	v := progressView{
		Shards: r.Shards.Total, Done: r.Shards.Done, Failed: r.Shards.Failed,
		Scanned: r.Tags.Scanned, Deleted: r.Tags.Deleted, Eligible: r.Tags.Eligible,
		DryRun: r.DryRun, Rate: rate, ETA: -1,
	}
	// The ETA is the pace of the prune shards finished since the first was claimed, over
	// the prune shards left. The release-payload shards are left out: they finish in an
	// instant at the start and would make the first ETA far too short. Shards differ in
	// size (tags cluster in time), so it is rough; it is shown once a prune shard has
	// finished.
	p := s.Prune
	if finished, elapsed := p.Done+p.Failed, now.Sub(s.PruneStarted); finished > 0 && !s.PruneStarted.IsZero() && elapsed > 0 {
		left := p.Total - finished
		v.ETA = time.Duration(float64(elapsed) / float64(finished) * float64(left)).Round(time.Second)
	}
	return v
}

// attrs are the view as log attributes: exact numbers, rate and ETA when known.
func (v progressView) attrs() []any {
	attrs := []any{
		slog.Int("shards_done", v.Done), slog.Int("shards_failed", v.Failed), slog.Int("shards", v.Shards),
		slog.Int64("scanned", v.Scanned), slog.Int64("eligible", v.Eligible), slog.Int64("deleted", v.Deleted),
	}
	if v.Rate >= 0 {
		attrs = append(attrs, slog.Int64("tags_per_second", int64(v.Rate+0.5)))
	}
	if v.ETA >= 0 {
		attrs = append(attrs, slog.String("eta", formatETA(v.ETA)))
	}
	return attrs
}

// renderBar renders v as one status line of at most width columns (runes):
//
//	[=====>      ]  12/25 shards  15.5k scanned  3.0k deleted  2.3k tags/s  ETA 1m20s
//
// A dry run shows what would be deleted. The bar shrinks to fit the text, and goes when
// there is no room for it; the text is cut last. The line never reaches past width, which
// would wrap and defeat the redraw.
func renderBar(v progressView, width int) string {
	shards := fmt.Sprintf("%d/%d shards", v.Done+v.Failed, v.Shards)
	if v.Failed > 0 {
		shards += fmt.Sprintf(" (%d failed)", v.Failed)
	}
	fields := []string{shards, humanCount(v.Scanned) + " scanned"}
	if v.DryRun {
		fields = append(fields, humanCount(v.Eligible)+" to delete (dry run)")
	} else {
		fields = append(fields, humanCount(v.Deleted)+" deleted")
	}
	rate, eta := "- tags/s", "ETA -"
	if v.Rate >= 0 {
		rate = humanCount(int64(v.Rate+0.5)) + " tags/s"
	}
	if v.ETA >= 0 {
		eta = "ETA " + formatETA(v.ETA)
	}
	text := strings.Join(append(fields, rate, eta), "  ")

	const minBar = 10                      // inner width below which the bar is left out
	inner := width - len([]rune(text)) - 4 // "[", "]" and two spaces
	if inner < minBar {
		return cutRunes(text, width)
	}
	inner = min(inner, 40)
	filled := 0
	if v.Shards > 0 {
		filled = inner * (v.Done + v.Failed) / v.Shards
	}
	bar := strings.Repeat("=", filled)
	if filled < inner {
		if filled > 0 {
			bar = bar[:filled-1] + ">"
		}
		bar += strings.Repeat(" ", inner-filled)
	}
	return "[" + bar + "]  " + text
}

// cutRunes returns s cut to at most n runes.
func cutRunes(s string, n int) string {
	r := []rune(s)
	if n <= 0 {
		return ""
	}
	if len(r) <= n {
		return s
	}
	return string(r[:n])
}

// humanCount renders n in at most five characters: 999, 15.5k, 250k, 1.2M, 3.4G.
func humanCount(n int64) string {
	f := float64(n)
	for _, u := range []struct {
		div  float64
		unit string
	}{{1e9, "G"}, {1e6, "M"}, {1e3, "k"}} {
		if f >= u.div {
			x := f / u.div
			if x >= 99.95 {
				return fmt.Sprintf("%.0f%s", x, u.unit)
			}
			return fmt.Sprintf("%.1f%s", x, u.unit)
		}
	}
	return fmt.Sprint(n)
}

// formatETA renders d to the second below an hour (45s, 3m20s) and to the minute above it
// (2h05m).
func formatETA(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// rateMeter measures a counter's rate of growth over a sliding window.
type rateMeter struct {
	window  time.Duration
	samples []rateSample // oldest first
}

type rateSample struct {
	at time.Time
	n  int64
}

// add records the counter's value n at t and returns its rate per second over the window
// (from the oldest sample still in it), or -1 while there is no earlier sample.
func (m *rateMeter) add(t time.Time, n int64) float64 {
	m.samples = append(m.samples, rateSample{t, n})
	// Keep one sample at or before the window's start, so the rate spans the whole window.
	i := 0
	for i+1 < len(m.samples) && t.Sub(m.samples[i+1].at) >= m.window {
		i++
	}
	m.samples = m.samples[i:]
	first := m.samples[0]
	dt := t.Sub(first.at).Seconds()
	if len(m.samples) < 2 || dt <= 0 {
		return -1
	}
	return max(0, float64(n-first.n)/dt)
}

// liveLine keeps one status line at the bottom of a terminal. Everything written through it
// (log lines) appears above the status line, which is redrawn after each write. With no
// status line set, writes pass straight through.
type liveLine struct {
	w     io.Writer
	width func() int

	mu   sync.Mutex
	line string // the status line shown; "" = none
}

// newLiveLine returns a liveLine on the terminal w; width reports its width in columns.
func newLiveLine(w io.Writer, width func() int) *liveLine {
	return &liveLine{w: w, width: width}
}

// eraseLine returns the cursor to the start of the line and erases the line.
const eraseLine = "\r\x1b[K"

func (l *liveLine) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line == "" {
		return l.w.Write(p)
	}
	if _, err := io.WriteString(l.w, eraseLine); err != nil {
		return 0, err
	}
	n, err := l.w.Write(p)
	if err == nil && len(p) > 0 && p[len(p)-1] == '\n' {
		_, err = io.WriteString(l.w, l.line)
	}
	return n, err
}

// Set shows line as the status line, replacing the previous one.
func (l *liveLine) Set(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = io.WriteString(l.w, eraseLine+line)
	l.line = line
}

// Clear takes the status line away.
func (l *liveLine) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.line != "" {
		_, _ = io.WriteString(l.w, eraseLine)
		l.line = ""
	}
}

// Width is the terminal's width in columns; the status line keeps one column free, as a
// terminal may wrap a line that fills its last column.
func (l *liveLine) Width() int { return l.width() - 1 }

// levelFloor passes on only records at or above min: in `run` on a terminal, the workers'
// per-shard info lines would scroll the progress line away, so they show at --log-level
// debug only (warnings and errors always show).
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h levelFloor) WithAttrs(attrs []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(attrs), h.min}
}

func (h levelFloor) WithGroup(name string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(name), h.min}
}
