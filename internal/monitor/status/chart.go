package status

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// Chart geometry, in SVG user units.
const (
	chartW    = 760
	availTop  = 4
	availH    = 18
	latTop    = 34
	latH      = 60
	axisY     = latTop + latH + 14
	chartH    = axisY + 4
	leftPad   = 52
	plotWidth = chartW - leftPad - 8
)

// SVG draws the chart: a strip of availability per bucket (green all probes
// ok, amber some failed, red most failed, grey no data), mean latency as a
// line with the maximum as a lighter line, and incidents as shaded bands.
// Only numbers and fixed strings are written, so the output is safe HTML.
func (c *Chart) SVG() template.HTML {
	if c == nil || !c.To.After(c.From) {
		return ""
	}
	span := float64(c.To.Sub(c.From))
	x := func(t time.Time) float64 {
		f := float64(t.Sub(c.From)) / span
		return leftPad + max(0, min(1, f))*plotWidth
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="availability and latency, %s" xmlns="http://www.w3.org/2000/svg">`, chartW, chartH, c.Range)
	// Incident bands behind everything.
	for _, s := range c.Spans {
		end := s.End
		if end.IsZero() {
			end = c.To
		}
		x0, x1 := x(s.Start), x(end)
		if x1-x0 < 2 {
			x1 = x0 + 2
		}
		color := "#f59e0b"
		if s.Peak == 3 {
			color = "#dc2626"
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="0" width="%.1f" height="%d" fill="%s" fill-opacity="0.15"><title>%s</title></rect>`,
			x0, x1-x0, axisY-10, color, template.HTMLEscapeString(string(s.Label)))
	}
	// Availability strip.
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#e5e7eb"/>`, leftPad, availTop, plotWidth, availH)
	bw := float64(c.Step) / span * plotWidth
	for _, bk := range c.Buckets {
		if bk.N == 0 {
			continue
		}
		ratio := float64(bk.OK) / float64(bk.N)
		color := "#16a34a"
		switch {
		case ratio < 0.5:
			color = "#dc2626"
		case ratio < 1:
			color = "#f59e0b"
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.2f" height="%d" fill="%s"><title>%s: %d/%d ok</title></rect>`,
			x(bk.Start), availTop, max(bw-0.3, 0.7), availH, color, bk.Start.UTC().Format("Jan 2 15:04"), bk.OK, bk.N)
	}
	// Latency lines.
	var top time.Duration
	for _, bk := range c.Buckets {
		top = max(top, bk.MaxLatency)
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#9ca3af" stroke-width="0.5"/>`, leftPad, latTop+latH, chartW-8, latTop+latH)
	if top > 0 {
		y := func(d time.Duration) float64 { return latTop + latH - float64(d)/float64(top)*latH }
		line := func(get func(i int) time.Duration, color string, width float64) {
			var pts []string
			for i, bk := range c.Buckets {
				if bk.OK == 0 {
					continue
				}
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(bk.Start)+bw/2, y(get(i))))
			}
			if len(pts) == 1 {
				pts = append(pts, pts[0])
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f"/>`, strings.Join(pts, " "), color, width)
		}
		line(func(i int) time.Duration { return c.Buckets[i].MaxLatency }, "#93c5fd", 1)
		line(func(i int) time.Duration { return c.Buckets[i].MeanLatency }, "#1d4ed8", 1.8)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">%s</text>`, leftPad-4, latTop+8, fmtMS(top))
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">0</text>`, leftPad-4, latTop+latH)
	} else {
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis">no latency data yet</text>`, leftPad+8, latTop+latH/2)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">avail.</text>`, leftPad-4, availTop+availH-5)
	layout := "Jan 2 15:04"
	if c.To.Sub(c.From) > 8*24*time.Hour {
		layout = "Jan 2"
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis">%s</text>`, leftPad, axisY, c.From.UTC().Format(layout))
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">%s UTC</text>`, chartW-8, axisY, c.To.UTC().Format(layout))
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // built from numbers and escaped strings only
}
