package outage

import (
	"fmt"
	"time"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

// State is the availability of a target, from one vantage point or overall.
// The zero State is Unknown (no data yet).
type State int8

// States.
const (
	Unknown State = iota
	Up
	Degraded
	Down
)

var stateNames = [...]string{"unknown", "up", "degraded", "down"}

func (s State) String() string {
	if s < 0 || int(s) >= len(stateNames) {
		return fmt.Sprintf("state(%d)", s)
	}
	return stateNames[s]
}

// MarshalText encodes s as its name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a state name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("outage: unknown state %q", b)
}

// Observation is one probe result as the detector sees it.
type Observation struct {
	Vantage string
	At      time.Time
	OK      bool
	Failure probe.Failure
	// Latency is the probe's total time (successes and failures).
	Latency time.Duration
}

// ringSize is how many recent observations a vantage keeps for evidence
// that predates the incident (the onset and the latency just before it).
const ringSize = 32

// vantage is the per-(target, vantage point) state machine with hysteresis.
type vantage struct {
	name   string
	state  State
	last   time.Time
	fails  int // consecutive failures
	oks    int // consecutive successes
	slows  int // consecutive slow successes
	normal int // consecutive normal successes
	// since is when the current bad streak (failures or slowness) began.
	since time.Time
	base  *Baseline
	ring  [ringSize]Observation
	n     int // observations ever seen, ring index = n % ringSize
	// lastLatency is the latency of the last successful probe.
	lastLatency time.Duration
}

func newVantage(name string, cfg *Config) *vantage {
	return &vantage{name: name, base: NewBaseline(cfg.BaselineWindow)}
}

// slow reports whether d is unusually slow for this vantage's baseline.
// With too few samples nothing is slow.
func (v *vantage) slow(cfg *Config, d time.Duration) bool {
	if v.base.Len() < cfg.BaselineMin {
		return false
	}
	return d > v.base.Threshold(cfg.SlowFactor, cfg.MinSlow)
}

// elevated reports whether the last successful latency is still above the
// (lower) recovering threshold.
func (v *vantage) elevated(cfg *Config) bool {
	if v.base.Len() < cfg.BaselineMin || v.lastLatency == 0 {
		return false
	}
	return v.lastLatency > v.base.Threshold(cfg.RecoveringFactor, cfg.MinSlow)
}

// observe advances the state machine with o and reports whether the state changed.
func (v *vantage) observe(cfg *Config, o Observation) bool {
	prev := v.state
	v.last = o.At
	v.ring[v.n%ringSize] = o
	v.n++
	if v.state == Unknown {
		v.state = Up
	}
	if !o.OK {
		if v.fails == 0 && v.state == Up {
			v.since = o.At
		}
		v.fails++
		v.oks = 0
		if v.fails >= cfg.DownAfter {
			v.state = Down
		}
		return v.state != prev
	}
	v.fails = 0
	v.oks++
	v.lastLatency = o.Latency
	slow := v.slow(cfg, o.Latency)
	switch v.state {
	case Down:
		if v.oks >= cfg.UpAfter {
			if slow {
				v.state, v.slows, v.normal = Degraded, cfg.DegradedAfter, 0
			} else {
				v.state, v.slows, v.normal = Up, 0, 0
			}
		}
	case Up:
		if slow {
			if v.slows == 0 {
				v.since = o.At
			}
			v.slows++
			v.normal = 0
			if v.slows >= cfg.DegradedAfter {
				v.state = Degraded
			}
		} else {
			v.slows, v.normal = 0, v.normal+1
			v.base.Add(o.Latency)
		}
	case Degraded:
		if slow {
			v.normal = 0
		} else {
			v.normal++
			if v.normal >= cfg.NormalAfter {
				v.state, v.slows = Up, 0
			}
		}
	}
	return v.state != prev
}

// recent returns the held observations at or after from, oldest first.
func (v *vantage) recent(from time.Time) []Observation {
	var out []Observation
	start := max(0, v.n-ringSize)
	for i := start; i < v.n; i++ {
		o := v.ring[i%ringSize]
		if !o.At.Before(from) {
			out = append(out, o)
		}
	}
	return out
}

// latencyBefore is the median latency of the successes held before t,
// 0 when there are none.
func (v *vantage) latencyBefore(t time.Time) time.Duration {
	var b Baseline
	start := max(0, v.n-ringSize)
	for i := start; i < v.n; i++ {
		o := v.ring[i%ringSize]
		if o.OK && o.At.Before(t) {
			b.Add(o.Latency)
		}
	}
	return b.Quantile(0.5)
}
