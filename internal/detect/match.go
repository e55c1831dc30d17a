package detect

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

// Cond is one condition of a Match: the request's attribute is one of the
// listed values. Exactly one of Values, Nums and Prefixes is used, by Attr:
//
//	path, user_agent, country      Values (exact; with Truncated, by prefix)
//	asn, query, header_order,
//	fingerprint                    Nums (AS numbers or hashes, see telemetry.Hash)
//	source, prefix                 Prefixes (client address inside any)
type Cond struct {
	Attr      telemetry.Attr `json:"attr"`
	Values    []string       `json:"values,omitempty"`
	Truncated bool           `json:"truncated,omitempty"`
	Nums      []uint64       `json:"nums,omitempty"`
	Prefixes  []netip.Prefix `json:"prefixes,omitempty"`
}

// Match selects requests: all of its conditions must hold. The zero Match
// matches nothing.
type Match struct {
	All []Cond `json:"all"`
}

// Matches reports whether e satisfies every condition. It does not allocate;
// it is a reference implementation for tests and offline analysis (the
// decision engine compiles rules into its own tables).
func (m *Match) Matches(e *telemetry.Event) bool {
	if len(m.All) == 0 {
		return false
	}
	for i := range m.All {
		if !m.All[i].matches(e) {
			return false
		}
	}
	return true
}

func (c *Cond) matches(e *telemetry.Event) bool {
	switch c.Attr {
	case telemetry.AttrSource, telemetry.AttrPrefix:
		if !e.Client.IsValid() {
			return false
		}
		a := e.Client.Unmap()
		for _, p := range c.Prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	case telemetry.AttrPath:
		return c.matchBytes(e.Path)
	case telemetry.AttrUserAgent:
		return c.matchBytes(e.UserAgent)
	case telemetry.AttrCountry:
		return e.Country != [2]byte{} && c.matchBytes(e.Country[:])
	case telemetry.AttrASN:
		return e.ASN != 0 && slices.Contains(c.Nums, uint64(e.ASN))
	case telemetry.AttrQuery:
		return e.QueryShape != 0 && slices.Contains(c.Nums, e.QueryShape)
	case telemetry.AttrHeaderOrder:
		return e.HeaderOrder != 0 && slices.Contains(c.Nums, e.HeaderOrder)
	case telemetry.AttrFingerprint:
		return e.Fingerprint != 0 && slices.Contains(c.Nums, e.Fingerprint)
	}
	return false
}

func (c *Cond) matchBytes(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, v := range c.Values {
		if c.Truncated {
			if bytes.HasPrefix(b, []byte(v)) {
				return true
			}
		} else if string(b) == v {
			return true
		}
	}
	return false
}

// String renders the match for humans: `user_agent = "x" AND path = "/y"`.
func (m Match) String() string {
	var sb strings.Builder
	for i, c := range m.All {
		if i > 0 {
			sb.WriteString(" AND ")
		}
		sb.WriteString(c.Attr.String())
		vals := c.values()
		op := " = "
		if len(vals) > 1 {
			op = " in "
		}
		if c.Truncated {
			op = " starts with "
		}
		sb.WriteString(op)
		if len(vals) > 1 {
			sb.WriteString("[")
		}
		const show = 5
		for j, v := range vals {
			if j == show {
				fmt.Fprintf(&sb, ", ... %d more", len(vals)-show)
				break
			}
			if j > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(v)
		}
		if len(vals) > 1 {
			sb.WriteString("]")
		}
	}
	return sb.String()
}

func (c *Cond) values() []string {
	var out []string
	switch {
	case len(c.Prefixes) > 0:
		for _, p := range c.Prefixes {
			if p.IsSingleIP() {
				out = append(out, p.Addr().String())
			} else {
				out = append(out, p.String())
			}
		}
	case len(c.Nums) > 0:
		for _, n := range c.Nums {
			if c.Attr == telemetry.AttrASN {
				out = append(out, fmt.Sprintf("AS%d", n))
			} else {
				out = append(out, fmt.Sprintf("%016x", n))
			}
		}
	default:
		for _, v := range c.Values {
			out = append(out, fmt.Sprintf("%q", v))
		}
	}
	return out
}

// ActionKind is what a rule does to matching requests.
type ActionKind uint8

// Actions, from mildest to strongest.
const (
	ActionLimit     ActionKind = iota // rate-limit matching requests (in aggregate)
	ActionChallenge                   // challenge matching clients
	ActionBlock                       // refuse matching requests
)

var actionNames = []string{"limit", "challenge", "block"}

func (a ActionKind) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// MarshalText implements encoding.TextMarshaler.
func (a ActionKind) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *ActionKind) UnmarshalText(b []byte) error {
	for i, n := range actionNames {
		if n == string(b) {
			*a = ActionKind(i)
			return nil
		}
	}
	return fmt.Errorf("detect: unknown action %q", b)
}

// Action is a rule's effect. Rate and Burst are set for ActionLimit: the
// requests matching the rule, all clients together, may pass at Rate per
// second with bursts of Burst.
type Action struct {
	Kind  ActionKind `json:"kind"`
	Rate  float64    `json:"rate,omitempty"`
	Burst int        `json:"burst,omitempty"`
}

// Explanation says why a rule was generated and what it is expected to
// cost.
type Explanation struct {
	// AttackShare is the estimated share of the attack's excess requests
	// the rule matches.
	AttackShare float64 `json:"attack_share"`
	// TrafficShare is the share of all current requests the rule matches.
	TrafficShare float64 `json:"traffic_share"`
	// ExpectedCollateral is the estimated share of normal (baseline)
	// traffic the rule would hit.
	ExpectedCollateral float64 `json:"expected_collateral"`
	// CollateralBound is an upper bound of ExpectedCollateral (equal to it
	// for single-value rules; for pairs, the smaller single share).
	CollateralBound float64 `json:"collateral_bound"`
	// Lift is TrafficShare over the baseline share, capped at 1000 (a value
	// never seen in normal traffic).
	Lift float64 `json:"lift"`
	// Text is a one-line human explanation.
	Text string `json:"text"`
}

// Mitigation is a generated rule. It is a plain value; safe to copy.
type Mitigation struct {
	Name        string      `json:"name"` // stable for the same match: "auto-<attr>-<hash>"
	Site        string      `json:"site"`
	Match       Match       `json:"match"`
	Action      Action      `json:"action"`
	Created     time.Time   `json:"created"`
	Expires     time.Time   `json:"expires"`
	Confidence  float64     `json:"confidence"` // 0..1
	Explanation Explanation `json:"explanation"`
}

// TTL is the time left at now.
func (m *Mitigation) TTL(now time.Time) time.Duration { return m.Expires.Sub(now) }

// String is a one-line summary for logs and reports.
func (m *Mitigation) String() string {
	act := m.Action.Kind.String()
	if m.Action.Kind == ActionLimit {
		act = fmt.Sprintf("limit %.0f/s burst %d", m.Action.Rate, m.Action.Burst)
	}
	return fmt.Sprintf("%s: %s when %s (%.0f%% of attack, ~%.2f%% of normal traffic)",
		m.Name, act, m.Match, 100*m.Explanation.AttackShare, 100*m.Explanation.ExpectedCollateral)
}
