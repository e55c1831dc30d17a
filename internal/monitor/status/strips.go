package status

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

// Strips shows every probe of every vantage point around an incident, one
// row per vantage point: where and when it failed, and how.
type Strips struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
	// Rows are sorted by vantage point name.
	Rows []Strip `json:"vantages"`
	// Start and End mark the incident (End zero while open).
	Start time.Time `json:"start"`
	End   time.Time `json:"end,omitzero"`
}

// Strip is one vantage point's probes.
type Strip struct {
	Vantage string      `json:"vantage"`
	Probes  []ProbeMark `json:"probes"`
	// Median is the reference latency (successes before the incident);
	// answers slower than 3x it are drawn as slow.
	Median time.Duration `json:"median_latency_ns"`
}

// ProbeMark is one probe on a strip.
type ProbeMark struct {
	At      time.Time     `json:"at"`
	OK      bool          `json:"ok"`
	Failure probe.Failure `json:"failure,omitempty"`
	Latency time.Duration `json:"latency_ns"`
}

// failColor colours failure classes: refusals and other hard failures red,
// timeouts and resets purple (the attack-like ones).
func failColor(f probe.Failure) string {
	switch f {
	case probe.FailTimeout, probe.FailReset:
		return "#9333ea"
	}
	return "#dc2626"
}

const (
	stripH     = 16
	stripGap   = 6
	stripLeft  = 70
	stripWidth = chartW - stripLeft - 8
)

// SVG draws the strips: a tick per probe, green when it succeeded (amber when
// slower than 3x the row's median), red for hard failures, purple for
// timeouts and resets; the incident is shaded.
func (s *Strips) SVG() template.HTML {
	if s == nil || len(s.Rows) == 0 || !s.To.After(s.From) {
		return ""
	}
	span := float64(s.To.Sub(s.From))
	x := func(t time.Time) float64 {
		return stripLeft + max(0, min(1, float64(t.Sub(s.From))/span))*stripWidth
	}
	h := len(s.Rows)*(stripH+stripGap) + 16
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" width="100%%" role="img" aria-label="probes per vantage point" xmlns="http://www.w3.org/2000/svg">`, chartW, h)
	end := s.End
	if end.IsZero() {
		end = s.To
	}
	for i, row := range s.Rows {
		y := i * (stripH + stripGap)
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">%s</text>`, stripLeft-6, y+stripH-4, template.HTMLEscapeString(row.Vantage))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#f3f4f6"/>`, stripLeft, y, stripWidth, stripH)
		w := max(1.2, stripWidth/float64(max(1, len(row.Probes)))*0.7)
		for _, p := range row.Probes {
			color := "#16a34a"
			what := "ok " + fmtMS(p.Latency)
			switch {
			case !p.OK:
				color, what = failColor(p.Failure), string(p.Failure)
			case row.Median > 0 && p.Latency > 3*row.Median:
				color = "#f59e0b"
			}
			fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s %s</title></rect>`,
				x(p.At)-w/2, y, w, stripH, color, p.At.UTC().Format("15:04:05.000"), template.HTMLEscapeString(what))
		}
	}
	// The incident on top: a light band with edges.
	x0, x1 := x(s.Start), x(end)
	fmt.Fprintf(&b, `<rect x="%.1f" y="0" width="%.1f" height="%d" fill="#dc2626" fill-opacity="0.10"/>`, x0, max(1, x1-x0), h-14)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="0" x2="%.1f" y2="%d" stroke="#dc2626" stroke-width="1"/>`, x0, x0, h-14)
	if !s.End.IsZero() {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="0" x2="%.1f" y2="%d" stroke="#dc2626" stroke-width="1" stroke-dasharray="3 2"/>`, x1, x1, h-14)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis">%s</text>`, stripLeft, h-2, s.From.UTC().Format("15:04:05"))
	fmt.Fprintf(&b, `<text x="%d" y="%d" class="axis" text-anchor="end">%s UTC</text>`, chartW-8, h-2, s.To.UTC().Format("15:04:05"))
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) //nolint:gosec // numbers and escaped strings only
}
