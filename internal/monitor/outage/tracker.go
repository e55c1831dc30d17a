// Package outage turns probe results from several vantage points into
// per-vantage states (up, degraded, down) with hysteresis, a global state
// per target by quorum, rolling latency baselines, and incidents that are
// classified (clean cut, attack pattern, degraded, recovering) with the
// evidence for each label.
//
// Everything is driven by the times passed in, so tests run on a fake clock.
package outage

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Config tunes detection. Zero fields take the defaults named in their
// comments; the ones derived from the probe interval are resolved per target.
type Config struct {
	// Interval is the expected probe interval. Default 10s.
	Interval time.Duration `yaml:"interval"`
	// DownAfter consecutive failures mark a vantage point down. Default 2.
	DownAfter int `yaml:"down_after"`
	// UpAfter consecutive successes bring a down vantage point back. Default 2.
	UpAfter int `yaml:"up_after"`
	// DegradedAfter consecutive slow answers mark a vantage point degraded. Default 3.
	DegradedAfter int `yaml:"degraded_after"`
	// NormalAfter consecutive normal answers end degraded. Default 3.
	NormalAfter int `yaml:"normal_after"`
	// SlowFactor: an answer is slow above max(SlowFactor x median, p99) of the
	// baseline. Default 3.
	SlowFactor float64 `yaml:"slow_factor"`
	// RecoveringFactor: latency above max(RecoveringFactor x median, p99)
	// counts as still elevated while recovering. Default 2.
	RecoveringFactor float64 `yaml:"recovering_factor"`
	// AttackFactor: median latency during an incident this many times the
	// baseline median is evidence of an attack. Default 4.
	AttackFactor float64 `yaml:"attack_factor"`
	// MinSlow: latencies below this are never slow or elevated. Default 50ms.
	MinSlow time.Duration `yaml:"min_slow"`
	// BaselineWindow is the number of samples per baseline. Default 360.
	BaselineWindow int `yaml:"baseline_window"`
	// BaselineMin samples are needed before latency can be judged. Default 20.
	BaselineMin int `yaml:"baseline_min"`
	// QuorumMin: a target is down when at least this many vantage points
	// agree... Default 2.
	QuorumMin int `yaml:"quorum_min"`
	// QuorumFraction: ...or when more than this fraction of the active
	// vantage points agree. Default 0.5.
	QuorumFraction float64 `yaml:"quorum_fraction"`
	// StaleAfter: a vantage point not heard from for this long is left out
	// of the quorum. Default 3 x Interval.
	StaleAfter time.Duration `yaml:"stale_after"`
	// RecoveryWindow: an incident closes after the target has been healthy
	// (up, latency normal) this long. Default 6 x Interval.
	RecoveryWindow time.Duration `yaml:"recovery_window"`
	// QuietWindow: failures must have stopped this long before an incident
	// can be labelled recovering. Default 6 x Interval.
	QuietWindow time.Duration `yaml:"quiet_window"`
}

// WithDefaults returns c with zero fields filled; derived durations use
// c.Interval.
func (c Config) WithDefaults() Config {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	deff := func(p *float64, v float64) {
		if *p <= 0 {
			*p = v
		}
	}
	if c.Interval <= 0 {
		c.Interval = 10 * time.Second
	}
	def(&c.DownAfter, 2)
	def(&c.UpAfter, 2)
	def(&c.DegradedAfter, 3)
	def(&c.NormalAfter, 3)
	deff(&c.SlowFactor, 3)
	deff(&c.RecoveringFactor, 2)
	deff(&c.AttackFactor, 4)
	if c.MinSlow <= 0 {
		c.MinSlow = 50 * time.Millisecond
	}
	def(&c.BaselineWindow, DefaultBaselineWindow)
	def(&c.BaselineMin, 20)
	def(&c.QuorumMin, 2)
	deff(&c.QuorumFraction, 0.5)
	if c.StaleAfter <= 0 {
		c.StaleAfter = 3 * c.Interval
	}
	if c.RecoveryWindow <= 0 {
		c.RecoveryWindow = 6 * c.Interval
	}
	if c.QuietWindow <= 0 {
		c.QuietWindow = 6 * c.Interval
	}
	return c
}

// Validate reports a nonsensical setting.
func (c Config) Validate() error {
	if c.QuorumFraction >= 1 {
		return fmt.Errorf("outage: quorum_fraction %.2f: must be below 1", c.QuorumFraction)
	}
	if c.SlowFactor < 1 || c.RecoveringFactor < 1 || c.AttackFactor < 1 {
		return fmt.Errorf("outage: slow_factor, recovering_factor and attack_factor must be >= 1")
	}
	if c.BaselineMin > c.BaselineWindow {
		return fmt.Errorf("outage: baseline_min %d exceeds baseline_window %d", c.BaselineMin, c.BaselineWindow)
	}
	return nil
}

// Tracker follows many targets. It is safe for concurrent use; the zero
// Tracker is not usable, build one with New.
type Tracker struct {
	mu      sync.Mutex
	cfg     Config
	targets map[string]*target
}

// New returns a Tracker with cfg's defaults filled, or an error for an
// invalid cfg.
func New(cfg Config) (*Tracker, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Tracker{cfg: cfg, targets: map[string]*target{}}, nil
}

// SetTarget declares a target probed every interval; derived windows
// (stale, recovery, quiet) scale with it unless set explicitly.
func (tr *Tracker) SetTarget(name string, interval time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.get(name, interval)
}

func (tr *Tracker) get(name string, interval time.Duration) *target {
	t, ok := tr.targets[name]
	if ok {
		return t
	}
	c := tr.cfg
	if interval > 0 && interval != c.Interval {
		base := tr.cfg.Interval
		c.Interval = interval
		// Rescale derived windows that were left at their defaults.
		if c.StaleAfter == 3*base {
			c.StaleAfter = 3 * interval
		}
		if c.RecoveryWindow == 6*base {
			c.RecoveryWindow = 6 * interval
		}
		if c.QuietWindow == 6*base {
			c.QuietWindow = 6 * interval
		}
	}
	t = &target{name: name, cfg: c, vs: map[string]*vantage{}}
	tr.targets[name] = t
	return t
}

// Warm adds a latency sample to a vantage point's baseline without
// affecting state (used to restore baselines after a restart).
func (tr *Tracker) Warm(targetName, vantageName string, latency time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t := tr.get(targetName, 0)
	t.vantage(vantageName).base.Add(latency)
}

// Restore re-opens an incident that was open when the process stopped. It
// closes normally once the target is healthy for the recovery window.
func (tr *Tracker) Restore(inc Incident) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t := tr.get(inc.Target, 0)
	t.open = &incState{inc: inc.clone(), ev: map[string]*evidence{}, minRun: t.cfg.DownAfter}
	t.open.hadDown = inc.Peak == Down
	t.state = inc.Peak
}

// ObserveAt feeds one observation for targetName, seen at now, and returns
// what changed. Observations older than the stale window or older than the
// vantage point's last one only count for history, not for state; they
// return nil.
func (tr *Tracker) ObserveAt(now time.Time, targetName string, o Observation) []Event {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	t := tr.get(targetName, 0)
	v := t.vantage(o.Vantage)
	if o.At.Before(now.Add(-t.cfg.StaleAfter)) || (v.n > 0 && !o.At.After(v.last)) {
		return nil
	}
	var evs []Event
	prev := v.state
	if v.observe(&t.cfg, o) {
		evs = append(evs, Event{Kind: EventVantageState, Target: t.name, Vantage: v.name, At: now, From: prev, To: v.state})
	}
	if t.open != nil {
		t.open.record(o)
	}
	return append(evs, t.evaluate(now)...)
}

// TickAt re-evaluates every target at now: vantage points that went quiet
// leave the quorum and recovered incidents close. Call it about once per
// second (or per fake-clock step).
func (tr *Tracker) TickAt(now time.Time) []Event {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var evs []Event
	for _, name := range tr.names() {
		evs = append(evs, tr.targets[name].evaluate(now)...)
	}
	return evs
}

func (tr *Tracker) names() []string {
	names := make([]string, 0, len(tr.targets))
	for n := range tr.targets {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// VantageStatus is one vantage point's view of a target.
type VantageStatus struct {
	Name        string        `json:"name"`
	State       State         `json:"state"`
	Stale       bool          `json:"stale"`
	Last        time.Time     `json:"last,omitzero"`
	LastLatency time.Duration `json:"last_latency_ns"`
	BaselineP50 time.Duration `json:"baseline_p50_ns"`
	BaselineP95 time.Duration `json:"baseline_p95_ns"`
	Samples     int           `json:"baseline_samples"`
}

// TargetStatus is the current state of one target.
type TargetStatus struct {
	Name     string          `json:"name"`
	State    State           `json:"state"`
	Since    time.Time       `json:"since,omitzero"`
	Vantages []VantageStatus `json:"vantages"`
	// Incident is the open incident, if any.
	Incident *Incident `json:"incident,omitempty"`
}

// Status returns the state of every known target, sorted by name.
func (tr *Tracker) Status(now time.Time) []TargetStatus {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []TargetStatus
	for _, name := range tr.names() {
		t := tr.targets[name]
		ts := TargetStatus{Name: name, State: t.state, Since: t.since}
		for _, vn := range t.vantageNames() {
			v := t.vs[vn]
			ts.Vantages = append(ts.Vantages, VantageStatus{
				Name: vn, State: v.state, Stale: now.Sub(v.last) > t.cfg.StaleAfter, Last: v.last,
				LastLatency: v.lastLatency, BaselineP50: v.base.Quantile(0.5),
				BaselineP95: v.base.Quantile(0.95), Samples: v.base.Len(),
			})
		}
		if t.open != nil {
			ts.Incident = t.open.inc.clone()
		}
		out = append(out, ts)
	}
	return out
}

// target is one monitored target across vantage points.
type target struct {
	name  string
	cfg   Config
	vs    map[string]*vantage
	state State
	since time.Time
	open  *incState
}

func (t *target) vantage(name string) *vantage {
	v, ok := t.vs[name]
	if !ok {
		v = newVantage(name, &t.cfg)
		t.vs[name] = v
	}
	return v
}

func (t *target) vantageNames() []string {
	names := make([]string, 0, len(t.vs))
	for n := range t.vs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// quorum reports whether n of active vantage points is enough agreement.
func (t *target) quorum(n, active int) bool {
	if n == 0 || active == 0 {
		return false
	}
	return n >= t.cfg.QuorumMin || float64(n)/float64(active) > t.cfg.QuorumFraction
}

// evaluate recomputes the global state and the incident at now.
func (t *target) evaluate(now time.Time) []Event {
	var active []*vantage
	nDown, nBad, nElevated := 0, 0, 0
	for _, name := range t.vantageNames() {
		v := t.vs[name]
		if v.n == 0 || now.Sub(v.last) > t.cfg.StaleAfter {
			continue
		}
		active = append(active, v)
		switch v.state {
		case Down:
			nDown++
			nBad++
		case Degraded:
			nBad++
		}
		if v.state != Down && v.elevated(&t.cfg) {
			nElevated++
		}
	}
	g := Up
	switch {
	case len(active) == 0:
		g = Unknown
	case t.quorum(nDown, len(active)):
		g = Down
	case t.quorum(nBad, len(active)):
		g = Degraded
	}
	var evs []Event
	if g != t.state {
		evs = append(evs, Event{Kind: EventState, Target: t.name, At: now, From: t.state, To: g})
		t.state, t.since = g, now
	}
	if t.open == nil {
		if g == Down || g == Degraded {
			t.openIncident(now, active)
			evs = append(evs, Event{Kind: EventOpen, Target: t.name, At: now, To: g, Incident: t.open.inc.clone()})
		}
		return evs
	}
	st := t.open
	inc := st.inc
	if g > inc.Peak && g != Unknown {
		inc.Peak = g
	}
	if g == Down {
		st.hadDown = true
		st.agreement(active)
	}
	for _, v := range active {
		if v.state == Down || v.state == Degraded {
			st.affect(v, now)
		}
	}
	healthy := g == Up && !t.quorum(nElevated, len(active))
	if healthy {
		if st.healthySince.IsZero() {
			st.healthySince = now
		}
	} else {
		st.healthySince = time.Time{}
	}
	if label, evidence := t.classify(now, active, g, nElevated); label != "" {
		inc.Evidence = evidence
		if label != inc.Label {
			inc.Label = label
			inc.Timeline = append(inc.Timeline, Classification{At: now, Label: label, Evidence: evidence})
			evs = append(evs, Event{Kind: EventClassified, Target: t.name, At: now, To: g, Incident: inc.clone()})
		}
	}
	if healthy && now.Sub(st.healthySince) >= t.cfg.RecoveryWindow {
		inc.End, inc.Closed = st.healthySince, now
		evs = append(evs, Event{Kind: EventClose, Target: t.name, At: now, To: g, Incident: inc.clone()})
		t.open = nil
	}
	return evs
}

func (t *target) openIncident(now time.Time, active []*vantage) {
	st := &incState{ev: map[string]*evidence{}, onset: map[string]time.Time{}, minRun: t.cfg.DownAfter}
	inc := &Incident{Target: t.name, Detected: now, Peak: t.state}
	st.inc = inc
	start := now
	for _, v := range active {
		if v.state == Down || v.state == Degraded {
			if !v.since.IsZero() && v.since.Before(start) {
				start = v.since
			}
		}
	}
	inc.Start = start
	inc.ID = fmt.Sprintf("%s-%d", t.name, start.UnixMilli())
	for _, v := range active {
		st.before(v, start)
		for _, o := range v.recent(start) {
			st.record(o)
		}
		if v.state == Down || v.state == Degraded {
			st.affect(v, now)
		}
	}
	if t.state == Down {
		st.hadDown = true
		st.agreement(active)
	}
	t.open = st
	label, evidence := t.classify(now, active, t.state, 0)
	if label == "" {
		label = LabelOutage
	}
	inc.Label, inc.Evidence = label, evidence
	inc.Timeline = []Classification{{At: now, Label: label, Evidence: evidence}}
}
