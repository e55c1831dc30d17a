// Package detect learns each site's normal traffic from telemetry seconds,
// declares attacks when the current second departs from it, and extracts
// attack signatures that become mitigation rules with a TTL.
//
// One [Detector] per site is fed one [telemetry.Second] per tick through
// [Detector.Observe], which returns [Event]s (attack start, escalation, new
// mitigation, attack end). The active rules ([Detector.Active]) and the
// escalation [Mode] ([Detector.Mode]) are what the decision engine applies.
// All logic is driven by the time passed in; nothing reads the clock.
package detect

import (
	"fmt"
	"time"
)

// Config tunes a Detector. The zero value is valid: every field has a
// default. Rates are per second.
type Config struct {
	// Site names the site in events and metrics. Default "default".
	Site string `yaml:"site"`
	// HalfLife of the baseline's exponentially weighted statistics.
	// Default 5m: a ramp that doubles traffic over a few minutes is
	// followed, a surge within seconds is not.
	HalfLife time.Duration `yaml:"half_life"`
	// WarmUp is how much traffic history the baseline needs before any
	// attack is declared. Default 60s.
	WarmUp time.Duration `yaml:"warm_up"`
	// Z is how many baseline standard deviations a metric must exceed.
	// Default 6.
	Z float64 `yaml:"z"`
	// Ratio is how many times its baseline mean a metric must reach.
	// Default 2.5.
	Ratio float64 `yaml:"ratio"`
	// MinRequests, MinConns, MinNewSources and MinErrors are absolute floors:
	// a surge must exceed the baseline by at least this many per second.
	// Defaults 50, 50, 20, 10.
	MinRequests   float64 `yaml:"min_requests"`
	MinConns      float64 `yaml:"min_conns"`
	MinNewSources float64 `yaml:"min_new_sources"`
	MinErrors     float64 `yaml:"min_errors"`
	// LatencyRatio is how many times its baseline the mean origin latency
	// must reach, and MinLatency the least increase. Defaults 3 and 100ms.
	LatencyRatio float64       `yaml:"latency_ratio"`
	MinLatency   time.Duration `yaml:"min_latency"`
	// EndRatio: the attack may end when every metric is below its baseline
	// times EndRatio (plus half its floor). Default 1.5.
	EndRatio float64 `yaml:"end_ratio"`
	// Quiet is how long every metric must stay below the end threshold
	// before the attack ends. Default 10s.
	Quiet time.Duration `yaml:"quiet"`

	// RuleTTL is the lifetime of a generated rule, renewed while the attack
	// still matches it. Default 10m.
	RuleTTL time.Duration `yaml:"rule_ttl"`
	// MaxRules is the most rules applied for one attack. Default 4.
	MaxRules int `yaml:"max_rules"`
	// MinAttackShare is the least share of the attack traffic a rule must
	// match to be considered. Default 0.3.
	MinAttackShare float64 `yaml:"min_attack_share"`
	// BlockCollateral, ChallengeCollateral and MaxCollateral are the
	// expected-collateral limits (share of normal traffic a rule would hit)
	// for blocking, challenging, and for any rule at all (above it a rule
	// only rate-limits). Defaults 0.001, 0.01, 0.05.
	BlockCollateral     float64 `yaml:"block_collateral"`
	ChallengeCollateral float64 `yaml:"challenge_collateral"`
	MaxCollateral       float64 `yaml:"max_collateral"`
	// Challenge reports that the data plane can challenge clients. Without
	// it, rules that would challenge rate-limit instead.
	Challenge bool `yaml:"challenge"`
	// MaxSetSize bounds the prefixes or ASNs of one set rule. Default 256.
	MaxSetSize int `yaml:"max_set_size"`

	// EscalateAfter: an attack still leaking more than Ratio times the
	// baseline to the origin after this long raises the mode to
	// under-attack. Default 30s.
	EscalateAfter time.Duration `yaml:"escalate_after"`
	// UnderAttackRatio: a surge of this many times the baseline goes to
	// under-attack at once. Default 10.
	UnderAttackRatio float64 `yaml:"under_attack_ratio"`
	// MaxValues bounds the values the baseline remembers per attribute.
	// Default 512.
	MaxValues int `yaml:"max_values"`
}

func (c *Config) fill() {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Site == "" {
		c.Site = "default"
	}
	defDur(&c.HalfLife, 5*time.Minute)
	defDur(&c.WarmUp, time.Minute)
	def(&c.Z, 6)
	def(&c.Ratio, 2.5)
	def(&c.MinRequests, 50)
	def(&c.MinConns, 50)
	def(&c.MinNewSources, 20)
	def(&c.MinErrors, 10)
	def(&c.LatencyRatio, 3)
	defDur(&c.MinLatency, 100*time.Millisecond)
	def(&c.EndRatio, 1.5)
	defDur(&c.Quiet, 10*time.Second)
	defDur(&c.RuleTTL, 10*time.Minute)
	defInt(&c.MaxRules, 4)
	def(&c.MinAttackShare, 0.3)
	def(&c.BlockCollateral, 0.001)
	def(&c.ChallengeCollateral, 0.01)
	def(&c.MaxCollateral, 0.05)
	defInt(&c.MaxSetSize, 256)
	defDur(&c.EscalateAfter, 30*time.Second)
	def(&c.UnderAttackRatio, 10)
	defInt(&c.MaxValues, 512)
}

// Validate reports the first invalid field. New calls it after filling
// defaults.
func (c *Config) Validate() error {
	switch {
	case c.HalfLife < time.Second:
		return fmt.Errorf("detect: half_life %v: want at least 1s", c.HalfLife)
	case c.WarmUp < 0:
		return fmt.Errorf("detect: warm_up %v: want >= 0", c.WarmUp)
	case c.Z <= 0 || c.Ratio <= 1 || c.LatencyRatio <= 1:
		return fmt.Errorf("detect: z %v, ratio %v, latency_ratio %v: want z > 0 and ratios > 1", c.Z, c.Ratio, c.LatencyRatio)
	case c.EndRatio < 1 || c.EndRatio > c.Ratio:
		return fmt.Errorf("detect: end_ratio %v: want between 1 and ratio %v", c.EndRatio, c.Ratio)
	case c.MinRequests < 0 || c.MinConns < 0 || c.MinNewSources < 0 || c.MinErrors < 0 || c.MinLatency < 0:
		return fmt.Errorf("detect: negative floor")
	case c.Quiet < time.Second:
		return fmt.Errorf("detect: quiet %v: want at least 1s", c.Quiet)
	case c.RuleTTL < time.Second:
		return fmt.Errorf("detect: rule_ttl %v: want at least 1s", c.RuleTTL)
	case c.MaxRules < 1 || c.MaxSetSize < 1 || c.MaxValues < 16:
		return fmt.Errorf("detect: max_rules %d, max_set_size %d, max_values %d: want >= 1, >= 1, >= 16", c.MaxRules, c.MaxSetSize, c.MaxValues)
	case c.MinAttackShare <= 0 || c.MinAttackShare > 1:
		return fmt.Errorf("detect: min_attack_share %v: want in (0, 1]", c.MinAttackShare)
	case !(0 <= c.BlockCollateral && c.BlockCollateral <= c.ChallengeCollateral && c.ChallengeCollateral <= c.MaxCollateral && c.MaxCollateral <= 1):
		return fmt.Errorf("detect: want 0 <= block_collateral <= challenge_collateral <= max_collateral <= 1")
	case c.UnderAttackRatio < c.Ratio:
		return fmt.Errorf("detect: under_attack_ratio %v below ratio %v", c.UnderAttackRatio, c.Ratio)
	case c.EscalateAfter < 0:
		return fmt.Errorf("detect: escalate_after %v: want >= 0", c.EscalateAfter)
	}
	return nil
}
