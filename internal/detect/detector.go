package detect

import (
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"
)

// Kind is a set of attack kinds (a bit mask).
type Kind uint8

// Attack kinds.
const (
	KindRequestSurge   Kind = 1 << iota // requests per second
	KindConnSurge                       // new connections per second
	KindNewSourceSurge                  // never-seen sources per second
	KindErrorSurge                      // origin errors per second
	KindLatencySurge                    // origin latency
)

var kindOfMetric = [NumMetrics]Kind{KindRequestSurge, KindConnSurge, KindNewSourceSurge, KindErrorSurge, KindLatencySurge}

var kindNames = []string{"request_surge", "connection_surge", "new_source_surge", "origin_error_surge", "origin_latency_surge"}

// Strings lists the kinds in the set.
func (k Kind) Strings() []string {
	var out []string
	for i, n := range kindNames {
		if k&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// String joins the kinds with "+".
func (k Kind) String() string { return strings.Join(k.Strings(), "+") }

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	*k = 0
	if len(b) == 0 {
		return nil
	}
	for _, s := range strings.Split(string(b), "+") {
		found := false
		for i, n := range kindNames {
			if n == s {
				*k |= 1 << i
				found = true
			}
		}
		if !found {
			return fmt.Errorf("detect: unknown attack kind %q", s)
		}
	}
	return nil
}

// State is whether a site is under attack.
type State uint8

// States.
const (
	StateNormal State = iota
	StateAttack
)

func (s State) String() string {
	if s == StateAttack {
		return "attack"
	}
	return "normal"
}

// EventType says what happened.
type EventType uint8

// Event types.
const (
	EventAttackStart EventType = iota // an attack was declared
	EventMitigation                   // a rule was generated (or its action changed)
	EventModeChange                   // the effective mode changed (escalation, override, end)
	EventAttackEnd                    // the attack ended
)

var eventNames = []string{"attack_start", "mitigation", "mode_change", "attack_end"}

func (t EventType) String() string {
	if int(t) < len(eventNames) {
		return eventNames[t]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (t EventType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// Anomaly is one metric above its threshold.
type Anomaly struct {
	Metric    Metric  `json:"-"`
	Name      string  `json:"metric"`
	Value     float64 `json:"value"`
	Mean      float64 `json:"baseline"`
	Threshold float64 `json:"threshold"`
}

// Event is something the operator and the rest of Levee must learn about.
type Event struct {
	Type       EventType   `json:"type"`
	At         time.Time   `json:"at"`
	Site       string      `json:"site"`
	Onset      time.Time   `json:"onset"` // start of the first anomalous second of the attack
	Kinds      Kind        `json:"kinds"`
	Mode       Mode        `json:"mode"`
	Anomalies  []Anomaly   `json:"anomalies,omitempty"`
	Mitigation *Mitigation `json:"mitigation,omitempty"`
}

// Deps are a Detector's optional dependencies.
type Deps struct {
	Registerer prometheus.Registerer // nil: no metrics
	Logger     *slog.Logger          // nil: discard
}

// Detector watches one site. All methods are safe for concurrent use (one
// mutex; Observe runs once per tick, the others are cheap). The zero value
// is not usable; call New.
type Detector struct {
	mu   sync.Mutex
	cfg  Config
	base *Baseline
	log  *slog.Logger
	m    *metrics

	state      State
	onset      time.Time
	declared   time.Time
	kinds      Kind
	quietSince time.Time
	autoMode   Mode
	override   override
	lastMode   Mode
	rules      map[string]*Mitigation
	attackSet  map[string]bool // rule names generated during the current attack
}

type override struct {
	set   bool
	mode  Mode
	until time.Time // zero: no expiry
}

// New returns a Detector.
func New(cfg Config, deps Deps) (*Detector, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	d := &Detector{cfg: cfg, base: newBaseline(&cfg), log: deps.Logger, rules: map[string]*Mitigation{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registerer, cfg.Site)
	if err != nil {
		return nil, fmt.Errorf("detect: register metrics for site %s: %w", cfg.Site, err)
	}
	d.m = m
	return d, nil
}

// Config returns the configuration with defaults filled.
func (d *Detector) Config() Config { return d.cfg }

// thresholds returns the attack threshold and the end threshold of m.
func (d *Detector) thresholds(m Metric) (start, end float64) {
	e := &d.base.metrics[m]
	ratio, floor := d.cfg.Ratio, 0.0
	switch m {
	case MetricRequests:
		floor = d.cfg.MinRequests
	case MetricConns:
		floor = d.cfg.MinConns
	case MetricNewSources:
		floor = d.cfg.MinNewSources
	case MetricErrors:
		floor = d.cfg.MinErrors
	case MetricLatency:
		floor = d.cfg.MinLatency.Seconds()
		ratio = d.cfg.LatencyRatio
	}
	start = math.Max(e.Mean*ratio, math.Max(e.Mean+d.cfg.Z*e.sd(), e.Mean+floor))
	end = math.Max(e.Mean*d.cfg.EndRatio, e.Mean+floor/2)
	return start, end
}

// Observe feeds one closed telemetry second, taken at now, and returns what
// happened. Seconds of zero duration (the first Tick) are ignored.
func (d *Detector) Observe(now time.Time, sec *telemetry.Second) []Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	var evs []Event
	if sec.Duration() > 0 {
		evs = d.observe(now, sec)
	}
	d.expire(now)
	if mode := d.modeLocked(now); mode != d.lastMode {
		evs = append(evs, Event{Type: EventModeChange, At: now, Site: d.cfg.Site, Onset: d.onset, Kinds: d.kinds, Mode: mode})
		d.log.Info("detect: mode changed", "site", d.cfg.Site, "from", d.lastMode, "to", mode)
		d.lastMode = mode
	}
	d.m.set(d, now)
	return evs
}

func (d *Detector) observe(now time.Time, sec *telemetry.Second) []Event {
	var evs []Event
	v, ok := values(sec)
	warm := d.base.Warm(d.cfg.WarmUp)
	var anomalies []Anomaly
	var kinds Kind
	quiet := true
	maxRatio := 0.0
	for m := range NumMetrics {
		if !ok[m] {
			continue
		}
		start, end := d.thresholds(m)
		if v[m] >= end {
			quiet = false
		}
		if warm && v[m] >= start {
			anomalies = append(anomalies, Anomaly{Metric: m, Name: m.String(), Value: v[m], Mean: d.base.Mean(m), Threshold: start})
			kinds |= kindOfMetric[m]
			if m != MetricRequests && m != MetricConns {
				continue // only volume decides under-attack at once
			}
			if mean := d.base.Mean(m); mean > 0 {
				maxRatio = math.Max(maxRatio, v[m]/mean)
			} else {
				maxRatio = math.Inf(1)
			}
		}
	}

	if d.state == StateNormal {
		if len(anomalies) == 0 {
			d.base.learn(sec)
			return nil
		}
		d.state = StateAttack
		d.onset = sec.Start
		d.declared = now
		d.kinds = kinds
		d.quietSince = time.Time{}
		d.attackSet = map[string]bool{}
		d.autoMode = ModeElevated
		if maxRatio >= d.cfg.UnderAttackRatio {
			d.autoMode = ModeUnderAttack
		}
		d.m.attacks.Inc()
		d.log.Warn("detect: attack declared", "site", d.cfg.Site, "kinds", kinds.String(), "onset", sec.Start)
		evs = append(evs, Event{Type: EventAttackStart, At: now, Site: d.cfg.Site, Onset: d.onset, Kinds: kinds, Mode: d.autoMode, Anomalies: anomalies})
		return append(evs, d.mitigate(now, sec)...)
	}

	// Under attack: the baseline is frozen.
	d.kinds |= kinds
	if quiet {
		if d.quietSince.IsZero() {
			d.quietSince = sec.Start
		}
		if now.Sub(d.quietSince) >= d.cfg.Quiet {
			d.state = StateNormal
			d.autoMode = ModeNormal
			d.log.Info("detect: attack ended", "site", d.cfg.Site, "kinds", d.kinds.String(), "duration", now.Sub(d.onset))
			evs = append(evs, Event{Type: EventAttackEnd, At: now, Site: d.cfg.Site, Onset: d.onset, Kinds: d.kinds, Mode: ModeNormal})
			d.kinds = 0
			return evs
		}
		return nil
	}
	d.quietSince = time.Time{}
	if d.autoMode < ModeUnderAttack {
		leak := float64(sec.Passed()) / sec.Duration().Seconds()
		start, _ := d.thresholds(MetricRequests)
		if maxRatio >= d.cfg.UnderAttackRatio || (now.Sub(d.declared) >= d.cfg.EscalateAfter && leak >= start) {
			d.autoMode = ModeUnderAttack
		}
	}
	return append(evs, d.mitigate(now, sec)...)
}

// mitigate turns the best candidates of this second into rules: new ones
// are announced, known ones renewed.
func (d *Detector) mitigate(now time.Time, sec *telemetry.Second) []Event {
	cands := d.extract(sec)
	var evs []Event
	covered := map[string]float64{} // family -> attack share covered
	coverage := 0.0
	for i := range cands {
		c := &cands[i]
		if coverage >= 0.95 {
			break
		}
		if c.family == "address" && covered["address"] > 0 {
			continue
		}
		name := ruleName(&c.match)
		isSet := len(c.match.All) == 1 && (len(c.match.All[0].Prefixes) > 0 || (c.match.All[0].Attr == telemetry.AttrASN && len(c.match.All[0].Nums) > 1))
		if isSet {
			name = fmt.Sprintf("auto-%s-set-%d", c.match.All[0].Attr, d.onset.Unix())
		}
		existing := d.rules[name]
		if existing == nil && len(d.attackSet) >= d.cfg.MaxRules {
			continue
		}
		act := d.action(c)
		exp := Explanation{
			AttackShare: round4(c.attackShare), TrafficShare: round4(c.trafficShare),
			ExpectedCollateral: round6(c.collateral), CollateralBound: round6(c.bound), Lift: math.Round(min(c.lift, 1000)*10) / 10,
		}
		if c.bound == 0 {
			exp.Text = fmt.Sprintf("%s: %.0f%% of the attack traffic (%.0f%% of all current requests); never among normal traffic's frequent values",
				c.what, 100*exp.AttackShare, 100*exp.TrafficShare)
		} else {
			exp.Text = fmt.Sprintf("%s: %.0f%% of the attack traffic (%.0f%% of all current requests, %.1fx its normal share); expected to hit %.3f%% of normal traffic (at most %.3f%%)",
				c.what, 100*exp.AttackShare, 100*exp.TrafficShare, exp.Lift, 100*exp.ExpectedCollateral, 100*exp.CollateralBound)
		}
		if c.pair {
			exp.Text += "; pair collateral assumes the two values are independent in normal traffic"
		}
		conf := round4(d.score(c))
		covered[c.family] += c.attackShare
		coverage = 1 - (1-coverage)*(1-c.attackShare)

		if existing != nil {
			existing.Expires = now.Add(d.cfg.RuleTTL)
			changed := act.Kind > existing.Action.Kind
			if isSet {
				changed = mergeSet(&existing.Match.All[0], &c.match.All[0], d.cfg.MaxSetSize) || changed
			}
			if changed {
				existing.Action = act
				existing.Confidence = conf
				existing.Explanation = exp
				cp := *existing
				evs = append(evs, Event{Type: EventMitigation, At: now, Site: d.cfg.Site, Onset: d.onset, Kinds: d.kinds, Mode: d.autoMode, Mitigation: &cp})
			}
			continue
		}
		mt := &Mitigation{Name: name, Site: d.cfg.Site, Match: c.match, Action: act, Created: now,
			Expires: now.Add(d.cfg.RuleTTL), Confidence: conf, Explanation: exp}
		d.rules[name] = mt
		d.attackSet[name] = true
		d.m.rules[act.Kind].Inc()
		d.log.Warn("detect: rule generated", "site", d.cfg.Site, "rule", mt.String())
		cp := *mt
		evs = append(evs, Event{Type: EventMitigation, At: now, Site: d.cfg.Site, Onset: d.onset, Kinds: d.kinds, Mode: d.autoMode, Mitigation: &cp})
	}
	return evs
}

// mergeSet adds the members of add to c (up to max) and reports a change.
func mergeSet(c, add *Cond, max int) bool {
	changed := false
	for _, p := range add.Prefixes {
		if len(c.Prefixes) >= max {
			break
		}
		found := false
		for _, q := range c.Prefixes {
			if q == p {
				found = true
				break
			}
		}
		if !found {
			c.Prefixes = append(c.Prefixes, p)
			changed = true
		}
	}
	for _, n := range add.Nums {
		if len(c.Nums) >= max {
			break
		}
		found := false
		for _, q := range c.Nums {
			if q == n {
				found = true
				break
			}
		}
		if !found {
			c.Nums = append(c.Nums, n)
			changed = true
		}
	}
	return changed
}

func (d *Detector) expire(now time.Time) {
	for name, r := range d.rules {
		if !now.Before(r.Expires) {
			delete(d.rules, name)
		}
	}
	if d.override.set && !d.override.until.IsZero() && !now.Before(d.override.until) {
		d.override = override{}
	}
}

// Active returns copies of the rules in force at now, strongest action
// first. The decision engine publishes them as its automatic rule set.
func (d *Detector) Active(now time.Time) []Mitigation {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Mitigation, 0, len(d.rules))
	for _, r := range d.rules {
		if now.Before(r.Expires) {
			cp := *r
			cp.Match.All = append([]Cond(nil), r.Match.All...)
			for i := range cp.Match.All {
				c := &cp.Match.All[i]
				c.Prefixes = append([]netip.Prefix(nil), c.Prefixes...)
				c.Nums = append([]uint64(nil), c.Nums...)
				c.Values = append([]string(nil), c.Values...)
			}
			out = append(out, cp)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Action.Kind != out[j].Action.Kind {
			return out[i].Action.Kind > out[j].Action.Kind
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Remove withdraws a generated rule (an operator found it wrong). It reports
// whether the rule existed.
func (d *Detector) Remove(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.rules[name]
	delete(d.rules, name)
	return ok
}

// Status is a snapshot for the admin API.
type Status struct {
	Site          string         `json:"site"`
	State         string         `json:"state"`
	Mode          Mode           `json:"mode"`
	AutoMode      Mode           `json:"auto_mode"`
	Override      *Mode          `json:"override,omitempty"`
	OverrideUntil time.Time      `json:"override_until,omitzero"`
	Onset         time.Time      `json:"onset,omitzero"`
	Kinds         Kind           `json:"kinds,omitempty"`
	Warm          bool           `json:"warm"`
	Baseline      map[string]any `json:"baseline"`
	Rules         []Mitigation   `json:"rules"`
}

// Status returns the detector's state at now.
func (d *Detector) Status(now time.Time) Status {
	rules := d.Active(now)
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Status{Site: d.cfg.Site, State: d.state.String(), Mode: d.modeLocked(now), AutoMode: d.autoMode,
		Kinds: d.kinds, Warm: d.base.Warm(d.cfg.WarmUp), Rules: rules, Baseline: map[string]any{}}
	if d.state == StateAttack {
		st.Onset = d.onset
	}
	if d.override.set && (d.override.until.IsZero() || now.Before(d.override.until)) {
		m := d.override.mode
		st.Override = &m
		st.OverrideUntil = d.override.until
	}
	for m := range NumMetrics {
		st.Baseline[m.String()] = map[string]float64{"mean": d.base.Mean(m), "sd": d.base.SD(m)}
	}
	return st
}

// Expected describes normal traffic for one value (key as in
// telemetry.Item.Key) of attribute a: its learned share of requests, whether
// the baseline remembers it (if not, share is 0 and the value was never
// among the frequent ones), the baseline request rate and the mean request
// rate of one active source (requests/s over distinct sources/s). The
// incident tracker uses it to tell attack sources from regular visitors.
func (d *Detector) Expected(a telemetry.Attr, key uint64) (share float64, known bool, rate, perSource float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	share, known = d.base.Share(a, key)
	rate = d.base.Mean(MetricRequests)
	if s := d.base.sources.Mean; s > 0 {
		perSource = rate / s
	}
	return share, known, rate, perSource
}

// State returns whether the site is under attack and, if so, since when.
func (d *Detector) State() (State, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state, d.onset
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }
func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }
