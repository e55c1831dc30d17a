// Package incident turns the detector's attacks into incident records: what
// happened, when, how big, from where, what was done about it, second by
// second. It also exports them (JSON, sources CSV, an aggregated CIDR
// blocklist, an abuse summary per network), stores them (Store: in memory
// or SQLite) and announces them (webhooks, generic JSON or Slack).
//
// A Tracker per site is fed the same telemetry seconds and detector events
// as the detector produced; it returns an incident snapshot whenever one
// should be persisted.
package incident

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"time"

	"github.com/levee-dev/levee/internal/detect"
	"github.com/levee-dev/levee/internal/telemetry"
)

// Count is one value of an incident's top list.
type Count struct {
	Value    string       `json:"value"`
	Requests uint64       `json:"requests"`
	Share    float64      `json:"share"`             // of the incident's requests
	Prefix   netip.Prefix `json:"prefix,omitzero"`   // sources and prefixes
	ASN      uint32       `json:"asn,omitempty"`     // sources: from GeoIP
	Org      string       `json:"org,omitempty"`     // sources: AS owner
	Country  string       `json:"country,omitempty"` // sources: from GeoIP
	// Expected is, for sources the baseline remembers, how many requests
	// it expected from this address over the incident (0 for others);
	// Attack marks sources well above it and above a typical source (see
	// README).
	Expected float64 `json:"expected,omitempty"`
	Attack   bool    `json:"attack,omitempty"`
	key      uint64
}

// Point is one entry of an incident's timeline. Counts are totals over the
// point's Seconds (1 until the timeline is downsampled).
type Point struct {
	T            time.Time   `json:"t"`
	Seconds      int         `json:"seconds"`
	Requests     uint64      `json:"requests"`
	Passed       uint64      `json:"passed"`
	Mitigated    uint64      `json:"mitigated"`
	Conns        uint64      `json:"conns"`
	Sources      uint64      `json:"sources"` // max of the seconds' distinct sources
	NewSources   uint64      `json:"new_sources"`
	OriginErrors uint64      `json:"origin_errors"`
	LatencyMS    float64     `json:"latency_ms"` // mean origin latency
	Mode         detect.Mode `json:"mode"`
}

// Note is one detector event in the incident's log.
type Note struct {
	At   time.Time `json:"at"`
	Type string    `json:"type"`
	Text string    `json:"text"`
}

// Incident is the record of one attack on one site. It is a plain value
// (marshals to JSON as stored and exported). The zero value is empty.
type Incident struct {
	ID               string              `json:"id"`
	Site             string              `json:"site"`
	Start            time.Time           `json:"start"`
	End              time.Time           `json:"end,omitzero"` // zero while in progress
	Declared         time.Time           `json:"declared"`
	DurationSeconds  float64             `json:"duration_seconds"`
	Kinds            []string            `json:"kinds"`
	MaxMode          detect.Mode         `json:"max_mode"`
	PeakRequests     float64             `json:"peak_requests_per_second"`
	PeakConns        float64             `json:"peak_connections_per_second"`
	PeakSources      uint64              `json:"peak_distinct_sources"`
	Requests         uint64              `json:"requests"`
	Passed           uint64              `json:"passed"`
	Mitigated        uint64              `json:"mitigated"`
	LeakRatio        float64             `json:"leak_ratio"` // passed / requests: share that reached the origin
	BaselineRequests float64             `json:"baseline_requests_per_second"`
	Sources          []Count             `json:"sources"`
	Prefixes         []Count             `json:"prefixes"`
	ASNs             []Count             `json:"asns"`
	Countries        []Count             `json:"countries"`
	UserAgents       []Count             `json:"user_agents"`
	Paths            []Count             `json:"paths"`
	Queries          []Count             `json:"queries,omitempty"`
	HeaderOrders     []Count             `json:"header_orders,omitempty"`
	Fingerprints     []Count             `json:"fingerprints,omitempty"`
	Rules            []detect.Mitigation `json:"rules"`
	Timeline         []Point             `json:"timeline"`
	TimelineStep     int                 `json:"timeline_step_seconds"`
	Notes            []Note              `json:"notes"`
}

// InProgress reports whether the incident has not ended.
func (i *Incident) InProgress() bool { return i.End.IsZero() }

// Summary is the short form used by listings.
type Summary struct {
	ID           string      `json:"id"`
	Site         string      `json:"site"`
	Start        time.Time   `json:"start"`
	End          time.Time   `json:"end,omitzero"`
	Duration     float64     `json:"duration_seconds"`
	Kinds        []string    `json:"kinds"`
	MaxMode      detect.Mode `json:"max_mode"`
	PeakRequests float64     `json:"peak_requests_per_second"`
	PeakSources  uint64      `json:"peak_distinct_sources"`
	Requests     uint64      `json:"requests"`
	Mitigated    uint64      `json:"mitigated"`
	Rules        int         `json:"rules"`
}

// Summary returns the incident's summary.
func (i *Incident) Summary() Summary {
	return Summary{ID: i.ID, Site: i.Site, Start: i.Start, End: i.End, Duration: i.DurationSeconds, Kinds: i.Kinds,
		MaxMode: i.MaxMode, PeakRequests: i.PeakRequests, PeakSources: i.PeakSources, Requests: i.Requests,
		Mitigated: i.Mitigated, Rules: len(i.Rules)}
}

// Geo looks up source networks; *telemetry.GeoIP implements it.
type Geo interface {
	Lookup(netip.Addr) telemetry.Geo
}

// TrackerConfig configures a Tracker. The zero value is valid.
type TrackerConfig struct {
	// Site names the site. Default "default".
	Site string
	// MaxTimeline is the most timeline points kept; past it the timeline is
	// downsampled by merging neighbours (resolution doubles). Default 3600.
	MaxTimeline int
	// MaxValues is the most values kept per top list (sources: 8x). Default 1000.
	MaxValues int
	// SaveEvery is how often Observe returns an in-progress snapshot to
	// persist. Default 10s.
	SaveEvery time.Duration
	// MinAttackRequests is the least requests a source must have sent during
	// the incident to count as an attack source. Default 5.
	MinAttackRequests uint64
}

func (c *TrackerConfig) fill() {
	if c.Site == "" {
		c.Site = "default"
	}
	if c.MaxTimeline == 0 {
		c.MaxTimeline = 3600
	}
	if c.MaxValues == 0 {
		c.MaxValues = 1000
	}
	if c.SaveEvery == 0 {
		c.SaveEvery = 10 * time.Second
	}
	if c.MinAttackRequests == 0 {
		c.MinAttackRequests = 5
	}
}

// Validate reports an invalid configuration.
func (c *TrackerConfig) Validate() error {
	if c.MaxTimeline < 2 || c.MaxValues < 1 || c.SaveEvery < 0 {
		return fmt.Errorf("incident: max_timeline %d, max_values %d, save_every %v: want >= 2, >= 1, >= 0", c.MaxTimeline, c.MaxValues, c.SaveEvery)
	}
	return nil
}

// counter accumulates one attribute's counts over an incident, bounded.
type counter struct {
	max  int
	vals map[uint64]*Count
}

func newCounter(max int) *counter { return &counter{max: max, vals: map[uint64]*Count{}} }

func (c *counter) add(items []telemetry.Item) {
	for _, it := range items {
		v := c.vals[it.Key]
		if v == nil {
			v = &Count{Value: it.Value, key: it.Key}
			if it.Prefix.IsValid() {
				v.Prefix = it.Prefix
			}
			c.vals[it.Key] = v
		}
		v.Requests += it.Count
	}
	if len(c.vals) > 2*c.max {
		// Keep the max largest; the smallest are forgotten (their later
		// counts start from zero again).
		type kv struct {
			k uint64
			v *Count
		}
		all := make([]kv, 0, len(c.vals))
		for k, v := range c.vals {
			all = append(all, kv{k, v})
		}
		sort.Slice(all, func(i, j int) bool { return all[i].v.Requests > all[j].v.Requests })
		for _, x := range all[c.max:] {
			delete(c.vals, x.k)
		}
	}
}

func (c *counter) sorted() []*Count {
	out := make([]*Count, 0, len(c.vals))
	for _, v := range c.vals {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Requests != out[j].Requests {
			return out[i].Requests > out[j].Requests
		}
		return out[i].Value < out[j].Value
	})
	return out
}

func (c *counter) list(total uint64, n int) []Count {
	all := c.sorted()
	if len(all) > n {
		all = all[:n]
	}
	out := make([]Count, len(all))
	for i, v := range all {
		out[i] = *v
		if total > 0 {
			out[i].Share = float64(v.Requests) / float64(total)
		}
	}
	return out
}

// Tracker builds the incidents of one site. Not safe for concurrent use:
// call Observe from the detector's tick goroutine; Current returns a copy
// and may be called from there too (or guard it).
type Tracker struct {
	cfg      TrackerConfig
	geo      Geo
	cur      *Incident
	det      *detect.Detector
	seconds  float64 // observed during the incident
	counters [telemetry.NumAttrs]*counter
	lastSave time.Time
	seq      int
}

// TrackerDeps are a Tracker's optional dependencies.
type TrackerDeps struct {
	Geo Geo // nil: sources without ASN/country
}

// NewTracker returns a Tracker.
func NewTracker(cfg TrackerConfig, deps TrackerDeps) (*Tracker, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Tracker{cfg: cfg, geo: deps.Geo}, nil
}

// Observe feeds the second and the events the detector returned for it (and
// the detector, for the baseline rate; may be nil). It returns a snapshot to
// persist when an incident starts, every SaveEvery while it lasts, and when
// it ends (End set); otherwise nil.
func (t *Tracker) Observe(now time.Time, sec *telemetry.Second, evs []detect.Event, det *detect.Detector) *Incident {
	var ended, started bool
	for i := range evs {
		ev := &evs[i]
		switch ev.Type {
		case detect.EventAttackStart:
			t.begin(ev, det)
			started = true
		case detect.EventAttackEnd:
			ended = true
		}
		if t.cur != nil {
			t.note(ev)
		}
	}
	if t.cur == nil {
		return nil
	}
	if det != nil {
		t.det = det
	}
	if sec != nil && sec.Duration() > 0 {
		t.seconds += sec.Duration().Seconds()
		mode := detect.ModeNormal
		if det != nil {
			mode = det.Mode(now)
		}
		t.add(sec, mode)
	}
	if ended {
		t.cur.End = now
		snap := t.snapshot()
		t.cur = nil
		return snap
	}
	if started || now.Sub(t.lastSave) >= t.cfg.SaveEvery {
		t.lastSave = now
		return t.snapshot()
	}
	return nil
}

// Current returns a snapshot of the incident in progress, or nil.
func (t *Tracker) Current() *Incident {
	if t.cur == nil {
		return nil
	}
	return t.snapshot()
}

func (t *Tracker) begin(ev *detect.Event, det *detect.Detector) {
	t.seq++
	t.seconds = 0
	t.cur = &Incident{
		ID:           fmt.Sprintf("%s-%s-%d", ev.Onset.UTC().Format("20060102T150405Z"), t.cfg.Site, t.seq),
		Site:         t.cfg.Site,
		Start:        ev.Onset,
		Declared:     ev.At,
		TimelineStep: 1,
	}
	if det != nil {
		if st := det.Status(ev.At); st.Baseline != nil {
			if m, ok := st.Baseline[detect.MetricRequests.String()].(map[string]float64); ok {
				t.cur.BaselineRequests = m["mean"]
			}
		}
	}
	for a := range t.counters {
		max := t.cfg.MaxValues
		if a == int(telemetry.AttrSource) {
			max *= 8
		}
		t.counters[a] = newCounter(max)
	}
	t.lastSave = ev.At
}

func (t *Tracker) note(ev *detect.Event) {
	inc := t.cur
	for _, k := range ev.Kinds.Strings() {
		found := false
		for _, have := range inc.Kinds {
			if have == k {
				found = true
			}
		}
		if !found {
			inc.Kinds = append(inc.Kinds, k)
		}
	}
	if ev.Mode > inc.MaxMode {
		inc.MaxMode = ev.Mode
	}
	n := Note{At: ev.At, Type: ev.Type.String()}
	switch ev.Type {
	case detect.EventAttackStart:
		n.Text = fmt.Sprintf("attack declared: %s", ev.Kinds)
		for _, a := range ev.Anomalies {
			n.Text += fmt.Sprintf("; %s %.1f (baseline %.1f, threshold %.1f)", a.Name, a.Value, a.Mean, a.Threshold)
		}
	case detect.EventMitigation:
		n.Text = ev.Mitigation.String()
		replaced := false
		for i := range inc.Rules {
			if inc.Rules[i].Name == ev.Mitigation.Name {
				inc.Rules[i] = *ev.Mitigation
				replaced = true
			}
		}
		if !replaced {
			inc.Rules = append(inc.Rules, *ev.Mitigation)
		}
	case detect.EventModeChange:
		n.Text = "mode " + ev.Mode.String()
	case detect.EventAttackEnd:
		n.Text = "attack ended"
	}
	if len(inc.Notes) < 1000 {
		inc.Notes = append(inc.Notes, n)
	}
}

func (t *Tracker) add(sec *telemetry.Second, mode detect.Mode) {
	inc := t.cur
	d := sec.Duration().Seconds()
	rps := float64(sec.Requests) / d
	cps := float64(sec.Conns) / d
	inc.PeakRequests = max(inc.PeakRequests, rps)
	inc.PeakConns = max(inc.PeakConns, cps)
	inc.PeakSources = max(inc.PeakSources, sec.Sources)
	inc.Requests += sec.Requests
	inc.Passed += sec.Passed()
	inc.Mitigated += sec.Mitigated()
	if mode > inc.MaxMode {
		inc.MaxMode = mode
	}
	for a := range telemetry.NumAttrs {
		t.counters[a].add(sec.Top[a])
	}
	p := Point{T: sec.Start, Seconds: 1, Requests: sec.Requests, Passed: sec.Passed(), Mitigated: sec.Mitigated(),
		Conns: sec.Conns, Sources: sec.Sources, NewSources: sec.NewSources, OriginErrors: sec.OriginErrors, Mode: mode}
	if n := sec.Answered(); n > 0 {
		p.LatencyMS = sec.LatencySum.Seconds() * 1000 / float64(n)
	}
	t.appendPoint(p)
}

// appendPoint adds p, merging it into the last point when the timeline has
// been downsampled, and halving the resolution when the timeline is full.
func (t *Tracker) appendPoint(p Point) {
	inc := t.cur
	if n := len(inc.Timeline); n > 0 && inc.Timeline[n-1].Seconds < inc.TimelineStep {
		mergePoint(&inc.Timeline[n-1], &p)
		return
	}
	if len(inc.Timeline) >= t.cfg.MaxTimeline {
		merged := inc.Timeline[:0]
		for i := 0; i < len(inc.Timeline); i += 2 {
			q := inc.Timeline[i]
			if i+1 < len(inc.Timeline) {
				mergePoint(&q, &inc.Timeline[i+1])
			}
			merged = append(merged, q)
		}
		inc.Timeline = merged
		inc.TimelineStep *= 2
		if n := len(inc.Timeline); inc.Timeline[n-1].Seconds < inc.TimelineStep {
			mergePoint(&inc.Timeline[n-1], &p)
			return
		}
	}
	inc.Timeline = append(inc.Timeline, p)
}

func mergePoint(a, b *Point) {
	w := float64(a.Requests-a.Mitigated) + float64(b.Requests-b.Mitigated)
	if w > 0 {
		a.LatencyMS = (a.LatencyMS*float64(a.Requests-a.Mitigated) + b.LatencyMS*float64(b.Requests-b.Mitigated)) / w
	}
	a.Seconds += b.Seconds
	a.Requests += b.Requests
	a.Passed += b.Passed
	a.Mitigated += b.Mitigated
	a.Conns += b.Conns
	a.Sources = max(a.Sources, b.Sources)
	a.NewSources += b.NewSources
	a.OriginErrors += b.OriginErrors
	a.Mode = max(a.Mode, b.Mode)
}

// snapshot copies the incident in progress with its top lists filled.
func (t *Tracker) snapshot() *Incident {
	inc := *t.cur
	end := inc.End
	if end.IsZero() && len(inc.Timeline) > 0 {
		last := inc.Timeline[len(inc.Timeline)-1]
		end = last.T.Add(time.Duration(last.Seconds) * time.Second)
	}
	inc.DurationSeconds = end.Sub(inc.Start).Seconds()
	if inc.Requests > 0 {
		inc.LeakRatio = float64(inc.Passed) / float64(inc.Requests)
	}
	const show = 100
	inc.Sources = t.counters[telemetry.AttrSource].list(inc.Requests, t.cfg.MaxValues*8)
	inc.Prefixes = t.counters[telemetry.AttrPrefix].list(inc.Requests, show)
	inc.ASNs = t.counters[telemetry.AttrASN].list(inc.Requests, show)
	inc.Countries = t.counters[telemetry.AttrCountry].list(inc.Requests, show)
	inc.UserAgents = t.counters[telemetry.AttrUserAgent].list(inc.Requests, show)
	inc.Paths = t.counters[telemetry.AttrPath].list(inc.Requests, show)
	inc.Queries = t.counters[telemetry.AttrQuery].list(inc.Requests, show)
	inc.HeaderOrders = t.counters[telemetry.AttrHeaderOrder].list(inc.Requests, show)
	inc.Fingerprints = t.counters[telemetry.AttrFingerprint].list(inc.Requests, show)
	for i := range inc.Sources {
		s := &inc.Sources[i]
		var typical float64
		if t.det != nil {
			share, known, rate, perSource := t.det.Expected(telemetry.AttrSource, s.key)
			if known {
				s.Expected = share * rate * t.seconds
			}
			typical = perSource * t.seconds
		}
		thr := max(4*s.Expected, s.Expected+5*math.Sqrt(s.Expected)+5, 2*typical)
		s.Attack = s.Requests >= t.cfg.MinAttackRequests && float64(s.Requests) >= thr
	}
	if t.geo != nil {
		for i := range inc.Sources {
			s := &inc.Sources[i]
			g := t.geo.Lookup(s.Prefix.Addr())
			s.ASN, s.Org, s.Country = g.ASN, g.Org, g.CountryString()
		}
	}
	inc.Kinds = append([]string(nil), inc.Kinds...)
	inc.Rules = append([]detect.Mitigation(nil), inc.Rules...)
	inc.Timeline = append([]Point(nil), inc.Timeline...)
	inc.Notes = append([]Note(nil), inc.Notes...)
	return &inc
}
