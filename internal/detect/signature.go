package detect

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/cespare/xxhash/v2"
	"github.com/levee-dev/levee/internal/telemetry"
)

// candidate is a possible rule with its estimated effect.
type candidate struct {
	match        Match
	family       string // rules of one family match disjoint or overlapping traffic alike
	attackShare  float64
	trafficShare float64
	collateral   float64 // expected share of normal traffic hit
	bound        float64 // upper bound of collateral
	lift         float64
	pair         bool
	what         string
}

// valueStat is one top value of the current second compared with the
// baseline.
type valueStat struct {
	attr        telemetry.Attr
	item        telemetry.Item
	count       float64 // lower bound of the current count
	base        float64 // baseline share (0 when not remembered)
	known       bool
	bound       float64 // upper bound of the baseline share
	excess      float64
	attackShare float64
	share       float64 // of current traffic
	lift        float64
}

// extract compares the current second with the baseline and returns rule
// candidates, best first. See README "Signature extraction".
func (d *Detector) extract(sec *telemetry.Second) []candidate {
	total := float64(sec.Requests)
	if total == 0 {
		return nil
	}
	dur := sec.Duration().Seconds()
	normal := d.base.Mean(MetricRequests) * dur // expected normal requests in this bucket
	attack := total - normal
	if attack < 0.1*total {
		// No volume excess (for example an origin error surge): compare
		// the whole current traffic with the baseline instead.
		attack = total
		normal = 0
	}
	var stats [telemetry.NumAttrs][]valueStat
	for a := range telemetry.NumAttrs {
		for _, it := range sec.Top[a] {
			c := float64(it.Count - it.Err)
			if c <= 0 {
				continue
			}
			b, known := d.base.Share(a, it.Key)
			bound := b
			if !known {
				bound = d.base.Floor(a)
			}
			vs := valueStat{attr: a, item: it, count: c, base: b, known: known, bound: bound}
			vs.share = c / total
			vs.excess = c - b*normal
			vs.attackShare = clamp01(vs.excess / attack)
			vs.lift = vs.share / math.Max(b, 1e-6)
			stats[a] = append(stats[a], vs)
		}
	}

	var cands []candidate
	// Single values of non-address attributes.
	for a := range telemetry.NumAttrs {
		if a == telemetry.AttrSource || a == telemetry.AttrPrefix {
			continue
		}
		for _, vs := range stats[a] {
			if vs.attackShare < d.cfg.MinAttackShare || vs.lift < 3 {
				continue
			}
			cands = append(cands, candidate{
				match:        Match{All: []Cond{condFor(a, []telemetry.Item{vs.item})}},
				family:       a.String(),
				attackShare:  vs.attackShare,
				trafficShare: vs.share,
				collateral:   math.Max(vs.base, vs.bound),
				bound:        math.Max(vs.base, vs.bound),
				lift:         vs.lift,
				what:         fmt.Sprintf("%s %s", a, quoteValue(a, vs.item)),
			})
		}
	}
	// Sets of addresses, prefixes and ASNs the baseline (almost) never saw.
	for _, a := range []telemetry.Attr{telemetry.AttrPrefix, telemetry.AttrSource, telemetry.AttrASN} {
		if c, ok := d.setCandidate(a, stats[a], total, attack, normal); ok {
			cands = append(cands, c)
		}
	}
	// Pairs of values that each cover most of the attack but hit too much
	// normal traffic alone.
	var strong []valueStat
	for a := range telemetry.NumAttrs {
		if a == telemetry.AttrSource || a == telemetry.AttrPrefix {
			continue
		}
		for _, vs := range stats[a] {
			if vs.attackShare >= 0.8 && math.Max(vs.base, vs.bound) > d.cfg.BlockCollateral {
				strong = append(strong, vs)
			}
		}
	}
	for i := range strong {
		for j := i + 1; j < len(strong); j++ {
			x, y := strong[i], strong[j]
			if x.attr == y.attr {
				continue
			}
			if x.attr > y.attr {
				x, y = y, x
			}
			bx, by := math.Max(x.base, x.bound), math.Max(y.base, y.bound)
			share := x.attackShare + y.attackShare - 1 // union bound: at least this much of the attack has both
			if share < d.cfg.MinAttackShare {
				continue
			}
			cands = append(cands, candidate{
				match: Match{All: []Cond{
					condFor(x.attr, []telemetry.Item{x.item}),
					condFor(y.attr, []telemetry.Item{y.item}),
				}},
				family:       x.attr.String() + "+" + y.attr.String(),
				attackShare:  share,
				trafficShare: math.Min(x.share, y.share),
				collateral:   bx * by, // assumes independence in normal traffic
				bound:        math.Min(bx, by),
				lift:         math.Min(x.share, y.share) / math.Max(bx*by, 1e-6),
				pair:         true,
				what:         fmt.Sprintf("%s %s with %s %s", x.attr, quoteValue(x.attr, x.item), y.attr, quoteValue(y.attr, y.item)),
			})
		}
	}
	sort.SliceStable(cands, func(i, j int) bool { return d.score(&cands[i]) > d.score(&cands[j]) })
	return cands
}

// setCandidate gathers the values of a that are far above their baseline
// and that the baseline does not know (or barely), into one set rule.
func (d *Detector) setCandidate(a telemetry.Attr, stats []valueStat, total, attack, normal float64) (candidate, bool) {
	var members []valueStat
	for _, vs := range stats {
		if vs.base > d.cfg.BlockCollateral/10 {
			continue
		}
		if vs.count < 3 || vs.count < 5*vs.base*normal {
			continue
		}
		members = append(members, vs)
	}
	if len(members) == 0 {
		return candidate{}, false
	}
	sort.Slice(members, func(i, j int) bool { return members[i].count > members[j].count })
	if len(members) > d.cfg.MaxSetSize {
		members = members[:d.cfg.MaxSetSize]
	}
	var excess, base, count float64
	items := make([]telemetry.Item, len(members))
	for i, m := range members {
		excess += m.excess
		base += m.base
		count += m.count
		items[i] = m.item
	}
	share := clamp01(excess / attack)
	if share < d.cfg.MinAttackShare {
		return candidate{}, false
	}
	fam := a.String()
	if a == telemetry.AttrSource || a == telemetry.AttrPrefix {
		fam = "address"
	}
	return candidate{
		match:        Match{All: []Cond{condFor(a, items)}},
		family:       fam,
		attackShare:  share,
		trafficShare: count / total,
		collateral:   base,
		bound:        base,
		lift:         (count / total) / math.Max(base, 1e-6),
		what:         fmt.Sprintf("%d %s values unknown to the baseline", len(items), a),
	}, true
}

// score ranks candidates: attack coverage discounted by collateral; pairs
// (whose collateral is an estimate under independence) lose a fifth.
func (d *Detector) score(c *candidate) float64 {
	s := c.attackShare * (1 - math.Min(1, c.collateral/d.cfg.MaxCollateral)*0.9)
	if c.pair {
		s *= 0.8
	}
	return s
}

// action chooses what a candidate does: block when its collateral is
// provably tiny, challenge (or a strict limit without challenges) when it is
// expected to be small, otherwise an aggregate limit at twice the matched
// normal rate.
func (d *Detector) action(c *candidate) Action {
	if c.bound <= d.cfg.BlockCollateral && c.attackShare >= 0.5 {
		return Action{Kind: ActionBlock}
	}
	normalRate := c.collateral * d.base.Mean(MetricRequests)
	if c.collateral <= d.cfg.ChallengeCollateral && d.cfg.Challenge {
		return Action{Kind: ActionChallenge}
	}
	rate := math.Max(2*normalRate, 1)
	return Action{Kind: ActionLimit, Rate: math.Round(rate*10) / 10, Burst: int(math.Ceil(math.Max(rate, 5)))}
}

func condFor(a telemetry.Attr, items []telemetry.Item) Cond {
	c := Cond{Attr: a}
	for _, it := range items {
		switch a {
		case telemetry.AttrSource, telemetry.AttrPrefix:
			c.Prefixes = append(c.Prefixes, it.Prefix)
		case telemetry.AttrASN, telemetry.AttrQuery, telemetry.AttrHeaderOrder, telemetry.AttrFingerprint:
			c.Nums = append(c.Nums, it.Num)
		default:
			c.Values = append(c.Values, it.Value)
			if it.Truncated {
				c.Truncated = true
			}
		}
	}
	return c
}

func quoteValue(a telemetry.Attr, it telemetry.Item) string {
	switch a {
	case telemetry.AttrPath, telemetry.AttrUserAgent:
		return fmt.Sprintf("%q", it.Value)
	}
	return it.Value
}

// ruleName is stable for the same match.
func ruleName(m *Match) string {
	var fams []string
	for _, c := range m.All {
		fams = append(fams, strings.ReplaceAll(c.Attr.String(), "_", ""))
	}
	return fmt.Sprintf("auto-%s-%08x", strings.Join(fams, "-"), uint32(xxhash.Sum64String(m.String())))
}

func clamp01(x float64) float64 {
	switch {
	case x < 0 || math.IsNaN(x):
		return 0
	case x > 1:
		return 1
	}
	return x
}
