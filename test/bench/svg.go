package main

import (
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// writeSVG draws a scenario's timelines into path: one row per side, each on its own time
// axis (the sides' durations differ a hundredfold), with the tags the side deleted so far (the
// list calls so far in a scenario that deletes nothing) and, for tagsweep, the shards in
// flight (claimed and not finished) on a second axis.
func writeSVG(path string, r scenarioResult) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	drawSVG(f, r)
	return f.Close()
}

const (
	svgWidth  = 760
	svgRowH   = 150
	svgLeft   = 70
	svgRight  = 60
	svgTop    = 40
	svgBottom = 30
)

func drawSVG(w io.Writer, r scenarioResult) {
	deletes := false
	for _, s := range r.Sides {
		deletes = deletes || s.Deleted > 0
	}
	what, value := "list calls so far", func(p sample) float64 { return float64(p.Lists) }
	if deletes {
		what, value = "tags deleted so far", func(p sample) float64 { return float64(p.Deleted) }
	}
	var sides []sideResult
	for _, s := range r.Sides {
		if len(s.Timeline) > 0 {
			sides = append(sides, s)
		}
	}
	h := svgTop + len(sides)*(svgRowH+svgBottom) + 10
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		svgWidth, h, svgWidth, h)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%d" y="16" font-size="13" font-weight="bold">%s: %d tags, latency %s</text>`+"\n",
		svgLeft, html.EscapeString(r.Scenario), r.Tags, html.EscapeString(r.Latency))
	fmt.Fprintf(w, `<text x="%d" y="31"><tspan fill="#1f77b4">— %s</tspan>  <tspan fill="#ff7f0e">— shards in flight (tagsweep)</tspan>; each row on its own time axis</text>`+"\n",
		svgLeft, what)
	for i, s := range sides {
		top := svgTop + i*(svgRowH+svgBottom)
		drawRow(w, s, top, value)
	}
	fmt.Fprintln(w, "</svg>")
}

func drawRow(w io.Writer, s sideResult, top int, value func(sample) float64) {
	x0, x1 := float64(svgLeft), float64(svgWidth-svgRight)
	y0, y1 := float64(top+svgRowH), float64(top+10)
	tmax := s.Timeline[len(s.Timeline)-1].T
	vmax, smax := 1.0, 1
	for _, p := range s.Timeline {
		vmax = max(vmax, value(p))
		smax = max(smax, p.Shards)
	}
	x := func(t float64) float64 { return x0 + (x1-x0)*t/max(tmax, 0.1) }
	yv := func(v float64) float64 { return y0 - (y0-y1)*v/vmax }
	ys := func(n int) float64 { return y0 - (y0-y1)*float64(n)/float64(smax) }
	fmt.Fprintf(w, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", x0, y1, x1-x0, y0-y1)
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" font-weight="bold">%s (%.1f s)</text>`+"\n", x0+6, y1+14, html.EscapeString(s.Side), s.WallSeconds)
	for _, frac := range []float64{0, 0.5, 1} {
		fmt.Fprintf(w, `<text x="%.0f" y="%.0f" text-anchor="middle" fill="#555">%.0f s</text>`+"\n", x(frac*tmax), y0+14, frac*tmax)
		fmt.Fprintf(w, `<text x="%.0f" y="%.0f" text-anchor="end" fill="#1f77b4">%s</text>`+"\n", x0-4, yv(frac*vmax)+4, short(frac*vmax))
	}
	var b strings.Builder
	for i, p := range s.Timeline {
		cmd := "L"
		if i == 0 {
			cmd = "M"
		}
		fmt.Fprintf(&b, "%s%.1f,%.1f ", cmd, x(p.T), yv(value(p)))
	}
	fmt.Fprintf(w, `<path d="%s" fill="none" stroke="#1f77b4" stroke-width="1.5"/>`+"\n", b.String())
	if smax > 1 || hasShards(s) {
		b.Reset()
		for i, p := range s.Timeline {
			if i == 0 {
				fmt.Fprintf(&b, "M%.1f,%.1f ", x(p.T), ys(p.Shards))
				continue
			}
			fmt.Fprintf(&b, "H%.1f V%.1f ", x(p.T), ys(p.Shards))
		}
		fmt.Fprintf(w, `<path d="%s" fill="none" stroke="#ff7f0e" stroke-width="1.2"/>`+"\n", b.String())
		for _, frac := range []float64{0, 0.5, 1} {
			n := int(frac * float64(smax))
			fmt.Fprintf(w, `<text x="%.0f" y="%.0f" fill="#ff7f0e">%d</text>`+"\n", x1+4, ys(n)+4, n)
		}
	}
}

func hasShards(s sideResult) bool {
	for _, p := range s.Timeline {
		if p.Shards > 0 {
			return true
		}
	}
	return false
}

// short renders n as 950, 12k or 1.2M.
func short(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", n/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.0fk", n/1e3)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}
