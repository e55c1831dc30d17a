// Package status renders the monitor's public status page: server-side HTML
// with inline CSS and inline SVG charts, no JavaScript and no external
// assets. The view types double as the JSON API's response bodies.
package status

import (
	"embed"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/store"
)

//go:embed *.tmpl
var files embed.FS

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"ago":      ago,
	"dur":      dur,
	"ms":       func(d time.Duration) string { return fmtMS(d) },
	"ts":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"pct":      func(f float64) string { return fmt.Sprintf("%.3f%%", f*100) },
	"label":    func(l outage.Label) string { return strings.ReplaceAll(string(l), "_", " ") },
	"lower":    strings.ToLower,
	"nonzero":  func(t time.Time) bool { return !t.IsZero() },
	"sub":      func(a, b time.Time) time.Duration { return a.Sub(b) },
	"fmtvalue": func(v any) string { return fmt.Sprint(v) },
	"summaryState": func(o Overview) []string {
		text, state := o.Summary()
		return []string{text, state}
	},
}).ParseFS(files, "*.tmpl"))

// Range is a chart period with its bucket size.
type Range struct {
	Name string        `json:"name"`
	Span time.Duration `json:"span_ns"`
	Step time.Duration `json:"step_ns"`
}

// Ranges are the periods offered by the page and the API.
var Ranges = []Range{
	{"24h", 24 * time.Hour, 15 * time.Minute},
	{"7d", 7 * 24 * time.Hour, 2 * time.Hour},
	{"90d", 90 * 24 * time.Hour, 24 * time.Hour},
}

// RangeByName returns the named range, or the first one.
func RangeByName(name string) Range {
	for _, r := range Ranges {
		if r.Name == name {
			return r
		}
	}
	return Ranges[0]
}

// Uptime is the share of a period not spent in an outage (an incident
// whose peak state was down), over the part of the period with data.
type Uptime struct {
	Range string  `json:"range"`
	Ratio float64 `json:"ratio"`
	// Covered is how much of the range had data.
	Covered time.Duration `json:"covered_ns"`
}

// Span is an incident drawn on a chart.
type Span struct {
	ID    string       `json:"id"`
	Start time.Time    `json:"start"`
	End   time.Time    `json:"end"`
	Label outage.Label `json:"label"`
	Peak  outage.State `json:"peak"`
}

// Chart is availability and latency over a range.
type Chart struct {
	Range   string         `json:"range"`
	From    time.Time      `json:"from"`
	To      time.Time      `json:"to"`
	Step    time.Duration  `json:"step_ns"`
	Buckets []store.Bucket `json:"buckets"`
	Spans   []Span         `json:"incidents"`
}

// Target is one target's card.
type Target struct {
	Name     string                 `json:"name"`
	Kind     string                 `json:"kind"`
	Probe    string                 `json:"probe"`
	Interval time.Duration          `json:"interval_ns"`
	State    outage.State           `json:"state"`
	Since    time.Time              `json:"since,omitzero"`
	Vantages []outage.VantageStatus `json:"vantages"`
	Incident *outage.Incident       `json:"incident,omitempty"`
	Uptime   []Uptime               `json:"uptime"`
	Chart    *Chart                 `json:"chart,omitempty"`
}

// IncidentRow is an incident in a history list.
type IncidentRow struct {
	outage.Incident
	// Rank is e.g. "longest of 4 incidents in the last 90 days".
	Rank string `json:"rank"`
}

// Overview is the front page.
type Overview struct {
	Title     string        `json:"title"`
	Generated time.Time     `json:"generated"`
	Range     string        `json:"range"`
	Ranges    []Range       `json:"-"`
	Targets   []Target      `json:"targets"`
	Incidents []IncidentRow `json:"incidents"`
}

// Summary is the headline for the page.
func (o Overview) Summary() (text, state string) {
	down, deg := 0, 0
	for _, t := range o.Targets {
		switch t.State {
		case outage.Down:
			down++
		case outage.Degraded:
			deg++
		}
	}
	switch {
	case down > 0:
		return fmt.Sprintf("%d of %d services down", down, len(o.Targets)), "down"
	case deg > 0:
		return fmt.Sprintf("%d of %d services degraded", deg, len(o.Targets)), "degraded"
	}
	return "All services operational", "up"
}

// IncidentPage is one incident in detail.
type IncidentPage struct {
	Title    string          `json:"-"`
	Incident outage.Incident `json:"incident"`
	Rank     string          `json:"rank"`
	// DetectionDelay is Detected-Start.
	DetectionDelay time.Duration `json:"detection_delay_ns"`
	Chart          *Chart        `json:"chart,omitempty"`
	// Probes shows every probe per vantage point around the incident.
	Probes *Strips `json:"probes,omitempty"`
	// ShieldLinked is true when a shield admin API is configured.
	ShieldLinked bool `json:"shield_linked"`
	// Shield lists the shield's incidents for the same time (inside view).
	Shield    []map[string]any `json:"shield_incidents,omitempty"`
	ShieldErr string           `json:"shield_error,omitempty"`
	Now       time.Time        `json:"-"`
}

// RenderOverview writes the front page.
func RenderOverview(w io.Writer, o Overview) error {
	if o.Ranges == nil {
		o.Ranges = Ranges
	}
	return tmpl.ExecuteTemplate(w, "overview.tmpl", o)
}

// RenderIncident writes an incident page.
func RenderIncident(w io.Writer, p IncidentPage) error {
	return tmpl.ExecuteTemplate(w, "incident.tmpl", p)
}

func fmtMS(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func dur(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm %ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours()/24), int(d.Hours())%24)
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return dur(now.Sub(t)) + " ago"
}
