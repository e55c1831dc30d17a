package accesslog

import (
	"fmt"
	"time"

	"github.com/levee-dev/levee/internal/detect"
	"github.com/levee-dev/levee/internal/incident"
	"github.com/levee-dev/levee/internal/telemetry"
)

// AnalyzerConfig configures an Analyzer. The zero value is valid.
type AnalyzerConfig struct {
	// Site keeps only entries of this site (JSON logs carry it); "" keeps
	// all. It also names the site in incidents (default "log").
	Site      string
	Telemetry telemetry.Config
	Detect    detect.Config
	Tracker   incident.TrackerConfig
	// MaxGap: when the log jumps forward by more than this (the server was
	// idle or the log has a hole), the gap is skipped without showing the
	// detector empty seconds. Default 5m.
	MaxGap time.Duration
}

// Analyzer replays access log entries through the same telemetry, detector
// and incident tracker as the live shield, using the log's timestamps as the
// clock. Entries must come roughly in time order (several files: oldest
// first); a line older than the current second is counted in the current
// second. Not safe for concurrent use. Memory is bounded by the telemetry
// and tracker configuration, not by the log size.
type Analyzer struct {
	cfg       AnalyzerConfig
	rec       *telemetry.Recorder
	det       *detect.Detector
	tr        *incident.Tracker
	ev        telemetry.Event
	started   bool
	cur       int64 // unix second of the open bucket
	stats     Stats
	incidents []*incident.Incident
}

// Stats describes what an Analyzer saw.
type Stats struct {
	Entries    int64     `json:"entries"`
	Filtered   int64     `json:"filtered"`     // entries of other sites
	OutOfOrder int64     `json:"out_of_order"` // entries older than the current second
	Gaps       int64     `json:"gaps"`         // jumps longer than MaxGap that were skipped
	First      time.Time `json:"first,omitzero"`
	Last       time.Time `json:"last,omitzero"`
}

// AnalyzerDeps are optional dependencies.
type AnalyzerDeps struct {
	Geo incident.Geo // nil: no ASN/owner/country for sources
}

// NewAnalyzer returns an Analyzer.
func NewAnalyzer(cfg AnalyzerConfig, deps AnalyzerDeps) (*Analyzer, error) {
	if cfg.MaxGap == 0 {
		cfg.MaxGap = 5 * time.Minute
	}
	if cfg.MaxGap < 2*time.Second {
		return nil, fmt.Errorf("accesslog: max gap %v: want at least 2s", cfg.MaxGap)
	}
	site := cfg.Site
	if site == "" {
		site = "log"
	}
	cfg.Telemetry.Site, cfg.Detect.Site, cfg.Tracker.Site = site, site, site
	rec, err := telemetry.New(cfg.Telemetry, telemetry.Deps{})
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	det, err := detect.New(cfg.Detect, detect.Deps{})
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	tr, err := incident.NewTracker(cfg.Tracker, incident.TrackerDeps{Geo: deps.Geo})
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	return &Analyzer{cfg: cfg, rec: rec, det: det, tr: tr}, nil
}

// Feed adds one entry.
func (a *Analyzer) Feed(e *Entry) {
	if a.cfg.Site != "" && len(e.Site) > 0 && string(e.Site) != a.cfg.Site {
		a.stats.Filtered++
		return
	}
	s := e.Time.Unix()
	if !a.started {
		a.started = true
		a.cur = s
		a.rec.Tick(time.Unix(s, 0))
		a.stats.First = e.Time
	}
	switch {
	case s > a.cur && time.Duration(s-a.cur)*time.Second > a.cfg.MaxGap:
		a.tick(a.cur + 1)
		a.rec.Tick(time.Unix(s, 0)) // the idle stretch is dropped
		a.cur = s
		a.stats.Gaps++
	case s > a.cur:
		for k := a.cur + 1; k <= s; k++ {
			a.tick(k)
		}
		a.cur = s
	case s < a.cur:
		a.stats.OutOfOrder++
	}
	if e.Time.After(a.stats.Last) {
		a.stats.Last = e.Time
	}
	a.stats.Entries++
	e.Event(&a.ev)
	a.rec.Record(&a.ev)
}

func (a *Analyzer) tick(k int64) {
	now := time.Unix(k, 0)
	sec := a.rec.Tick(now)
	evs := a.det.Observe(now, &sec)
	if inc := a.tr.Observe(now, &sec, evs, a.det); inc != nil && !inc.InProgress() {
		a.incidents = append(a.incidents, inc)
	}
}

// Incidents returns the attacks that ended so far.
func (a *Analyzer) Incidents() []*incident.Incident { return a.incidents }

// Finish closes the last second and returns all incidents, including one
// still in progress at the end of the log (End zero), and the statistics.
func (a *Analyzer) Finish() ([]*incident.Incident, Stats) {
	if a.started {
		a.tick(a.cur + 1)
		a.cur++
	}
	out := a.incidents
	if inc := a.tr.Current(); inc != nil {
		out = append(out, inc)
	}
	return out, a.stats
}
