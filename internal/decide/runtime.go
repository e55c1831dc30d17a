package decide

import (
	"fmt"
	"time"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/telemetry"
)

// RuntimeRule is a rule added while the shield runs, by an operator (admin
// API, `levee rules add`) or by the detector. Runtime rules are evaluated
// before the configured rules, expire on their own, and are persisted by
// the shield so they survive a restart.
type RuntimeRule struct {
	Rule    config.Rule `json:"rule"`
	Source  string      `json:"source"` // "api", "cli", "detector"
	Created time.Time   `json:"created"`
	Expires time.Time   `json:"expires,omitempty"` // zero: never
	// Explanation says why a generated rule exists (detector rules).
	Explanation string `json:"explanation,omitempty"`
	// Site restricts the rule to one site ("" = all sites).
	Site string `json:"site,omitempty"`
	// EventMatch, when set, is ANDed with Rule.Match and tested against the
	// request's telemetry event (detector rules on header order, query
	// shape, ASN, prefix sets...). It is not persisted.
	EventMatch EventMatcher `json:"-"`
}

// EventMatcher matches a request's telemetry event; detect.Match implements
// it.
type EventMatcher interface {
	Matches(e *telemetry.Event) bool
}

type matchEvent struct{ m EventMatcher }

func (m matchEvent) match(r *Request) bool { return r.Event != nil && m.m.Matches(r.Event) }

type matchSite string

func (m matchSite) match(r *Request) bool { return r.Site == string(m) }

type runtimeSet struct {
	rules   []*rule
	expires []int64 // unix nanos, 0 = never
	meta    []RuntimeRule
}

// SetRuntimeRules validates and compiles rules and replaces the runtime rule
// set atomically. On error nothing changes.
func (e *Engine) SetRuntimeRules(rules []RuntimeRule) error {
	rs := &runtimeSet{}
	old := e.runtime.Load()
	oldHits := map[string]uint64{}
	if old != nil {
		for _, r := range old.rules {
			oldHits[r.name] = r.hits.Load()
		}
	}
	seen := map[string]bool{}
	for i := range rules {
		rr := rules[i]
		if err := config.ValidateRule(&rr.Rule); err != nil {
			return fmt.Errorf("runtime rule %q: %w", rr.Rule.Name, err)
		}
		if seen[rr.Rule.Name] {
			return fmt.Errorf("runtime rule %q: duplicate name", rr.Rule.Name)
		}
		seen[rr.Rule.Name] = true
		r, err := e.compileRule(&rr.Rule, nsRuntime)
		if err != nil {
			return fmt.Errorf("runtime rule %q: %w", rr.Rule.Name, err)
		}
		if rr.EventMatch != nil || rr.Site != "" {
			all := matchAll{r.m}
			if rr.Site != "" {
				all = append(all, matchSite(rr.Site))
			}
			if rr.EventMatch != nil {
				all = append(all, matchEvent{rr.EventMatch})
			}
			r.m = all
		}
		r.hits.Store(oldHits[r.name])
		rs.rules = append(rs.rules, r)
		var exp int64
		if !rr.Expires.IsZero() {
			exp = rr.Expires.UnixNano()
		}
		rs.expires = append(rs.expires, exp)
		rs.meta = append(rs.meta, rr)
	}
	need := false
	for i := range rs.meta {
		need = need || usesHTTPFingerprint(&rs.meta[i].Rule.Match)
	}
	e.runtimeHTTPFP.Store(need)
	e.runtime.Store(rs)
	return nil
}

// RuntimeRules returns the runtime rules with their hit counts, expired
// ones included until they are removed.
func (e *Engine) RuntimeRules() ([]RuntimeRule, []uint64) {
	rs := e.runtime.Load()
	if rs == nil {
		return nil, nil
	}
	hits := make([]uint64, len(rs.rules))
	for i, r := range rs.rules {
		hits[i] = r.hits.Load()
	}
	return append([]RuntimeRule(nil), rs.meta...), hits
}

// PruneRuntime drops expired runtime rules and returns them.
func (e *Engine) PruneRuntime(now time.Time) []RuntimeRule {
	rs := e.runtime.Load()
	if rs == nil {
		return nil
	}
	var keep, gone []RuntimeRule
	for i, m := range rs.meta {
		if rs.expires[i] != 0 && rs.expires[i] <= now.UnixNano() {
			gone = append(gone, m)
			continue
		}
		keep = append(keep, m)
	}
	if len(gone) > 0 {
		_ = e.SetRuntimeRules(keep) // already validated
	}
	return gone
}
