package status

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/store"
)

func TestChartSVG(t *testing.T) {
	to := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	from := to.Add(-24 * time.Hour)
	c := &Chart{Range: "24h", From: from, To: to, Step: 15 * time.Minute,
		Buckets: []store.Bucket{
			{Start: from, N: 90, OK: 90, MeanLatency: 20 * time.Millisecond, MaxLatency: 40 * time.Millisecond},
			{Start: from.Add(time.Hour), N: 90, OK: 10, MeanLatency: 300 * time.Millisecond, MaxLatency: 900 * time.Millisecond},
			{Start: from.Add(2 * time.Hour), N: 90, OK: 80, MeanLatency: 30 * time.Millisecond, MaxLatency: 60 * time.Millisecond},
		},
		Spans: []Span{{ID: "x", Start: from.Add(time.Hour), End: from.Add(90 * time.Minute), Label: outage.LabelAttack, Peak: outage.Down}},
	}
	svg := string(c.SVG())
	for _, want := range []string{"<svg", "#16a34a", "#dc2626", "#f59e0b", "<polyline", "900 ms", "attack_pattern", "</svg>"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
	if (*Chart)(nil).SVG() != "" {
		t.Errorf("nil chart drew something")
	}
	empty := &Chart{From: from, To: to, Step: time.Hour}
	if !strings.Contains(string(empty.SVG()), "no latency data yet") {
		t.Errorf("empty chart not labelled")
	}
}

func TestRenderOverviewStates(t *testing.T) {
	now := time.Now()
	inc := &outage.Incident{ID: "a-1", Target: "a", Start: now.Add(-time.Minute), Label: outage.LabelCleanCut, Peak: outage.Down,
		Evidence: []string{"3 of 3 vantage points down"}}
	tests := []struct {
		states []outage.State
		want   string
	}{
		{[]outage.State{outage.Up, outage.Up}, "All services operational"},
		{[]outage.State{outage.Up, outage.Degraded}, "1 of 2 services degraded"},
		{[]outage.State{outage.Down, outage.Unknown}, "1 of 2 services down"},
	}
	for _, tt := range tests {
		o := Overview{Title: "T", Generated: now, Range: "24h"}
		for i, s := range tt.states {
			tg := Target{Name: string(rune('a' + i)), State: s, Uptime: []Uptime{{Range: "24h", Ratio: 0.9995}}}
			if s == outage.Down {
				tg.Incident = inc
			}
			o.Targets = append(o.Targets, tg)
		}
		var buf bytes.Buffer
		if err := RenderOverview(&buf, o); err != nil {
			t.Fatal(err)
		}
		page := buf.String()
		if !strings.Contains(page, tt.want) || !strings.Contains(page, "99.950%") {
			t.Errorf("page for %v lacks %q", tt.states, tt.want)
		}
		if strings.Contains(page, "<script") {
			t.Errorf("page has a script")
		}
	}
}

func TestStripsSVG(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	s := &Strips{From: t0, To: t0.Add(time.Minute), Start: t0.Add(20 * time.Second), End: t0.Add(40 * time.Second),
		Rows: []Strip{
			{Vantage: "eu-1", Median: 10 * time.Millisecond, Probes: []ProbeMark{
				{At: t0.Add(10 * time.Second), OK: true, Latency: 10 * time.Millisecond},
				{At: t0.Add(25 * time.Second), Failure: "timeout"},
				{At: t0.Add(30 * time.Second), Failure: "refused"},
				{At: t0.Add(50 * time.Second), OK: true, Latency: 90 * time.Millisecond},
			}},
			{Vantage: "<us-1>", Probes: []ProbeMark{{At: t0.Add(5 * time.Second), OK: true}}},
		}}
	svg := string(s.SVG())
	for _, want := range []string{"eu-1", "&lt;us-1&gt;", "#9333ea", "#dc2626", "#f59e0b", "#16a34a", "00:00:25.000 timeout"} {
		if !strings.Contains(svg, want) {
			t.Errorf("strips lack %q", want)
		}
	}
	if (&Strips{}).SVG() != "" {
		t.Errorf("empty strips drew something")
	}
}
