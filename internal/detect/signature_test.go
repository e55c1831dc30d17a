package detect

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

// TestSignatureExtraction: attack traffic differs from normal traffic in one
// attribute; the rules generated must match >= 95 % of the attack and
// <= 1 % of normal traffic, and explain themselves.
func TestSignatureExtraction(t *testing.T) {
	tests := []struct {
		name   string
		attack func(p *population, e *telemetry.Event)
		attr   telemetry.Attr
		action ActionKind
	}{
		{"user agent", func(p *population, e *telemetry.Event) {
			p.bot(e)
			e.UserAgent = []byte("EvilBot/1.0 (+http://flood.example)")
		}, telemetry.AttrUserAgent, ActionBlock},
		{"path", func(p *population, e *telemetry.Event) {
			p.bot(e)
			e.Path = []byte("/wp-login.php")
		}, telemetry.AttrPath, ActionBlock},
		{"header order", func(p *population, e *telemetry.Event) {
			p.bot(e)
			e.HeaderOrder = 0xdeadbeef
		}, telemetry.AttrHeaderOrder, ActionBlock},
		{"fingerprint", func(p *population, e *telemetry.Event) {
			p.bot(e)
			e.Fingerprint = 0x1234567
		}, telemetry.AttrFingerprint, ActionBlock},
		{"query shape", func(p *population, e *telemetry.Event) {
			p.bot(e)
			e.QueryShape = telemetry.QueryShape([]byte("s=x&nocache=1"))
		}, telemetry.AttrQuery, ActionBlock},
		{"prefixes", func(p *population, e *telemetry.Event) {
			p.normal(e) // everything normal but the addresses: 16 /24s
			n := p.rng.Uint32N(16 * 200)
			e.Client = netip.AddrFrom4([4]byte{198, 18, byte(n / 200), byte(n%200 + 1)})
			e.ASN = 64700 + n%3
		}, telemetry.AttrPrefix, ActionBlock},
		{"asn", func(p *population, e *telemetry.Event) {
			p.bot(e)
			e.ASN = 65001
		}, telemetry.AttrASN, ActionBlock},
		{"long user agent", func(p *population, e *telemetry.Event) {
			p.bot(e)
			e.UserAgent = []byte(strings.Repeat("Mozilla/5.0 (compatible; EvilCrawler) ", 5))
		}, telemetry.AttrUserAgent, ActionBlock},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, Config{})
			p := newPopulation(21)
			s.warm(p, 3*time.Minute, 200)
			onset := s.now
			for range 5 {
				s.second(200+1500, func(i int, e *telemetry.Event) {
					if i < 200 {
						p.normal(e)
					} else {
						tc.attack(p, e)
					}
				})
			}
			var first *Event
			for i := range s.events {
				if s.events[i].Type == EventMitigation {
					first = &s.events[i]
					break
				}
			}
			if first == nil {
				t.Fatal("no mitigation generated")
			}
			if d := first.At.Sub(onset); d > 3*time.Second {
				t.Fatalf("first mitigation %v after onset", d)
			}
			rules := s.det.Active(s.now)
			var hasAttr bool
			for _, r := range rules {
				t.Logf("rule %s", r.String())
				t.Logf("  %s", r.Explanation.Text)
				for _, c := range r.Match.All {
					if c.Attr == tc.attr {
						hasAttr = true
						if r.Action.Kind != tc.action {
							t.Errorf("rule on %v: action %v, want %v", tc.attr, r.Action.Kind, tc.action)
						}
						if r.Explanation.AttackShare < 0.9 || r.Explanation.Text == "" || r.Confidence <= 0 {
							t.Errorf("weak explanation %+v confidence %v", r.Explanation, r.Confidence)
						}
					}
				}
			}
			if !hasAttr {
				t.Fatalf("no rule on %v among %d rules", tc.attr, len(rules))
			}
			// Precision on fresh samples.
			var e telemetry.Event
			matches := func(e *telemetry.Event) bool {
				for i := range rules {
					if rules[i].Match.Matches(e) {
						return true
					}
				}
				return false
			}
			const n = 20000
			hitA, hitN := 0, 0
			for range n {
				tc.attack(p, &e)
				if matches(&e) {
					hitA++
				}
				p.normal(&e)
				if matches(&e) {
					hitN++
				}
			}
			recall, collateral := float64(hitA)/n, float64(hitN)/n
			t.Logf("rules match %.2f%% of attack, %.3f%% of normal traffic", 100*recall, 100*collateral)
			if recall < 0.95 || collateral > 0.01 {
				t.Fatalf("rules match %.2f%% of attack (want >= 95%%) and %.3f%% of normal (want <= 1%%)", 100*recall, 100*collateral)
			}
		})
	}
}

// TestPairSignature: the attack uses a popular user agent and a popular
// path, each too common in normal traffic to block alone; only the pair
// separates it.
func TestPairSignature(t *testing.T) {
	s := newSim(t, Config{Challenge: true})
	p := newPopulation(33)
	s.warm(p, 3*time.Minute, 200)
	attack := func(e *telemetry.Event) {
		p.normal(e)            // the site's own audience: addresses tell nothing
		e.UserAgent = p.uas[0] // the most common browser
		e.Path = p.paths[3]    // a common page
	}
	for range 5 {
		s.second(200+1500, func(i int, e *telemetry.Event) {
			if i < 200 {
				p.normal(e)
			} else {
				attack(e)
			}
		})
	}
	var pair *Mitigation
	rules := s.det.Active(s.now)
	for i, r := range rules {
		t.Logf("rule %s", r.String())
		if len(r.Match.All) == 2 {
			pair = &rules[i]
		}
	}
	if pair == nil {
		t.Fatal("no pair rule")
	}
	if pair.Explanation.CollateralBound <= pair.Explanation.ExpectedCollateral || !strings.Contains(pair.Explanation.Text, "independent") {
		t.Errorf("pair explanation %+v", pair.Explanation)
	}
	var e telemetry.Event
	hitA, hitN := 0, 0
	const n = 20000
	for range n {
		attack(&e)
		if pair.Match.Matches(&e) {
			hitA++
		}
		p.normal(&e)
		if pair.Match.Matches(&e) {
			hitN++
		}
	}
	t.Logf("pair matches %.2f%% of attack, %.3f%% of normal", 100*float64(hitA)/n, 100*float64(hitN)/n)
	if hitA < n*95/100 {
		t.Fatalf("pair matches %d of %d attack requests", hitA, n)
	}
}

// TestNoRuleForIndistinguishableAttack: a surge that looks exactly like
// normal traffic (same addresses, agents, paths) gets no block rule.
func TestNoRuleForIndistinguishableAttack(t *testing.T) {
	s := newSim(t, Config{})
	p := newPopulation(44)
	s.warm(p, 3*time.Minute, 200)
	for range 5 {
		s.second(1500, func(_ int, e *telemetry.Event) { p.normal(e) })
	}
	if s.find(EventAttackStart) == nil {
		t.Fatal("surge not detected")
	}
	for _, r := range s.det.Active(s.now) {
		if r.Action.Kind == ActionBlock {
			t.Errorf("block rule for traffic identical to normal: %s", r.String())
		}
	}
}

func TestRuleTTLAndRemove(t *testing.T) {
	s := newSim(t, Config{RuleTTL: 30 * time.Second})
	p := newPopulation(55)
	s.warm(p, 2*time.Minute, 100)
	for range 3 {
		s.second(2000, func(_ int, e *telemetry.Event) {
			p.bot(e)
			e.UserAgent = []byte("EvilBot")
		})
	}
	rules := s.det.Active(s.now)
	if len(rules) == 0 {
		t.Fatal("no rules")
	}
	if ttl := rules[0].TTL(s.now); ttl != 30*time.Second {
		t.Errorf("TTL %v", ttl)
	}
	b, err := json.Marshal(rules[0])
	if err != nil || !strings.Contains(string(b), `"attr":"user_agent"`) || !strings.Contains(string(b), `"kind":"block"`) {
		t.Errorf("JSON %s %v", b, err)
	}
	if got := s.det.Active(s.now.Add(31 * time.Second)); len(got) != 0 {
		t.Errorf("%d rules after their TTL", len(got))
	}
	if !s.det.Remove(rules[0].Name) || s.det.Remove(rules[0].Name) {
		t.Error("Remove")
	}
}

func TestMatch(t *testing.T) {
	e := &telemetry.Event{Client: netip.MustParseAddr("::ffff:192.0.2.9"), Path: []byte("/a"), UserAgent: []byte("curl/8.0 extra"),
		ASN: 64500, Country: [2]byte{'D', 'E'}, HeaderOrder: 5, Fingerprint: 6, QueryShape: 7}
	tests := []struct {
		name string
		m    Match
		want bool
	}{
		{"empty matches nothing", Match{}, false},
		{"prefix", Match{All: []Cond{{Attr: telemetry.AttrPrefix, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}}}, true},
		{"other prefix", Match{All: []Cond{{Attr: telemetry.AttrSource, Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.3.9/32")}}}}, false},
		{"path", Match{All: []Cond{{Attr: telemetry.AttrPath, Values: []string{"/b", "/a"}}}}, true},
		{"ua exact", Match{All: []Cond{{Attr: telemetry.AttrUserAgent, Values: []string{"curl/8.0"}}}}, false},
		{"ua truncated", Match{All: []Cond{{Attr: telemetry.AttrUserAgent, Values: []string{"curl/8.0"}, Truncated: true}}}, true},
		{"asn", Match{All: []Cond{{Attr: telemetry.AttrASN, Nums: []uint64{64500}}}}, true},
		{"country", Match{All: []Cond{{Attr: telemetry.AttrCountry, Values: []string{"DE"}}}}, true},
		{"hashes", Match{All: []Cond{{Attr: telemetry.AttrHeaderOrder, Nums: []uint64{5}}, {Attr: telemetry.AttrFingerprint, Nums: []uint64{6}}, {Attr: telemetry.AttrQuery, Nums: []uint64{7}}}}, true},
		{"pair one fails", Match{All: []Cond{{Attr: telemetry.AttrPath, Values: []string{"/a"}}, {Attr: telemetry.AttrASN, Nums: []uint64{1}}}}, false},
	}
	for _, tc := range tests {
		if got := tc.m.Matches(e); got != tc.want {
			t.Errorf("%s: Matches = %v (%s)", tc.name, got, tc.m)
		}
	}
}

// TestDetectionDelay measures detection and first-mitigation delay for
// attacks starting at different points inside a second and of different
// sizes (go test -run DetectionDelay -v prints the table in BENCHMARKS.md).
func TestDetectionDelay(t *testing.T) {
	for _, tc := range []struct {
		rate     int     // attack requests per second
		fraction float64 // part of the first second the attack was on
	}{{2000, 1}, {2000, 0.5}, {2000, 0.1}, {600, 1}, {600, 0.5}, {600, 0.1}} {
		s := newSim(t, Config{})
		p := newPopulation(66)
		s.warm(p, 3*time.Minute, 200)
		onset := s.now.Add(time.Duration((1 - tc.fraction) * float64(time.Second)))
		attack := func(e *telemetry.Event) {
			p.bot(e)
			e.UserAgent = []byte("EvilBot/2")
		}
		s.second(200+int(float64(tc.rate)*tc.fraction), func(i int, e *telemetry.Event) {
			if i < 200 {
				p.normal(e)
			} else {
				attack(e)
			}
		})
		for range 4 {
			s.second(200+tc.rate, func(i int, e *telemetry.Event) {
				if i < 200 {
					p.normal(e)
				} else {
					attack(e)
				}
			})
		}
		start, mit := s.find(EventAttackStart), s.find(EventMitigation)
		if start == nil || mit == nil {
			t.Fatalf("rate %d fraction %v: start %v mitigation %v", tc.rate, tc.fraction, start, mit)
		}
		dd, md := start.At.Sub(onset), mit.At.Sub(onset)
		t.Logf("attack %5d req/s on %3.0f%% of its first second: declared after %v, first rule after %v", tc.rate, 100*tc.fraction, dd, md)
		if dd > 2*time.Second || md > 3*time.Second {
			t.Errorf("too slow: declared after %v, first rule after %v", dd, md)
		}
	}
}
