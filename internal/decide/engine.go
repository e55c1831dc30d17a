// Package decide is Levee's decision engine: for every connection and
// request it answers one question, whatever the protocol: what happens to
// this client and this request now? Pass, block (403), limit (429), drop
// (close without answer), tarpit (hold, then close) or challenge.
//
// The engine reads one immutable compiled snapshot (lists, rules, limits)
// through an atomic pointer; a reload compiles a new snapshot and swaps it
// whole. Runtime bans and threat feeds are lock-free tables owned by
// internal/iplist; rate limit state lives in one bounded internal/limit
// table shared by all limits. Decide allocates nothing.
package decide

import (
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/iplist"
	"github.com/levee-dev/levee/internal/limit"
)

// Verdict is what happens to a request or connection.
type Verdict uint8

// Verdicts. The zero value is Pass.
const (
	Pass Verdict = iota
	Block
	Limit
	Drop
	Tarpit
	Challenge
	numVerdicts
)

var verdictNames = [numVerdicts]string{"pass", "block", "limit", "drop", "tarpit", "challenge"}

func (v Verdict) String() string {
	if v < numVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// Headers gives access to request headers and cookies. fasthttp's
// *RequestHeader satisfies it.
type Headers interface {
	Peek(name string) []byte
	Cookie(name string) []byte
}

// Request is the protocol-independent view of a request that rules and
// limits look at. The byte slices are borrowed from the protocol layer for
// the duration of Decide.
type Request struct {
	Client    netip.Addr
	Site      string
	Host      []byte
	Method    []byte
	Path      []byte // decoded, normalized path
	Query     []byte // raw query string, without '?'
	UserAgent []byte
	Headers   Headers
	// Fingerprint slots, filled by the fingerprinting layer when present.
	TLSFingerprint  string
	HTTPFingerprint string
	// Verified is set for clients that passed a challenge.
	Verified bool
}

// Decision is the outcome of Decide.
type Decision struct {
	Verdict Verdict
	// By names the rule, limit or list that decided ("" for a default pass).
	By string
	// RetryAfter is set for Limit verdicts from rate limits.
	RetryAfter time.Duration
}

// Deps are the engine's collaborators.
type Deps struct {
	// Bans are the runtime bans (may be nil).
	Bans *iplist.Bans
	// Feeds are the threat feeds (may be nil).
	Feeds *iplist.Set
	// Registerer receives metrics (nil: not registered).
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Engine makes decisions. It is safe for concurrent use; create it with New
// and update it with Apply.
type Engine struct {
	snap    atomic.Pointer[snapshot]
	mode    atomic.Pointer[modeHolder]
	runtime atomic.Pointer[runtimeSet]
	modeMu  sync.Mutex
	feeds   atomic.Pointer[iplist.Set]
	table   atomic.Pointer[limit.Table]
	deps    Deps
	m       *metrics
	log     *slog.Logger
}

type snapshot struct {
	allow     *iplist.Table
	block     *iplist.Table
	rules     []*rule
	limits    []*limitSpec
	challenge Verdict // what Challenge becomes until challenges exist
}

type rule struct {
	name   string
	action string
	v      Verdict
	m      matcher
	limit  *limitSpec // rate_limit rules
	dryRun bool
	hits   atomic.Uint64
	hitCtr prometheus.Counter
}

type keyKind uint8

const (
	kIP keyKind = iota
	kSite
	kGlobal
	kRoute
	kHeader
	kCookie
)

type keyPart struct {
	kind keyKind
	name string
}

type limitSpec struct {
	name   string
	id     uint32
	parts  []keyPart
	v4, v6 int
	lim    limit.Limit
	m      matcher
	denied prometheus.Counter
}

// New builds an engine from a defaulted, validated configuration.
func New(p *config.Policy, deps Deps) (*Engine, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	e := &Engine{deps: deps, m: m, log: deps.Logger}
	e.mode.Store(&modeHolder{})
	e.feeds.Store(deps.Feeds)
	if err := e.Apply(p); err != nil {
		return nil, err
	}
	return e, nil
}

// Apply compiles p and swaps it in. On error nothing changes. Rate limit
// state is kept across reloads for limits whose name and key are unchanged,
// unless the memory budget changes.
func (e *Engine) Apply(p *config.Policy) error {
	s := &snapshot{challenge: Limit}
	if p.ChallengeFallback == "block" {
		s.challenge = Block
	}
	var err error
	if s.allow, err = buildTable(p.Allow); err != nil {
		return fmt.Errorf("allow: %w", err)
	}
	if s.block, err = buildTable(p.Block); err != nil {
		return fmt.Errorf("block: %w", err)
	}
	old := e.snap.Load()
	oldHits := map[string]uint64{}
	if old != nil {
		for _, r := range old.rules {
			oldHits[r.name] = r.hits.Load()
		}
	}
	for i := range p.Limits {
		ls, err := e.compileLimit(&p.Limits[i])
		if err != nil {
			return fmt.Errorf("limits[%d]: %w", i, err)
		}
		s.limits = append(s.limits, ls)
	}
	for i := range p.Rules {
		r, err := e.compileRule(&p.Rules[i])
		if err != nil {
			return fmt.Errorf("rules[%d] %s: %w", i, p.Rules[i].Name, err)
		}
		r.hits.Store(oldHits[r.name])
		s.rules = append(s.rules, r)
	}
	if t := e.table.Load(); t == nil || t.Stats().Bytes > int64(p.LimitMemory) || t.Stats().Bytes < int64(p.LimitMemory)*9/10 {
		nt, err := limit.New(limit.Config{Name: "limits", MemoryBytes: int64(p.LimitMemory)}, limit.Deps{Registerer: e.m.tableReg(), Logger: e.log})
		if err != nil {
			return fmt.Errorf("limit table: %w", err)
		}
		e.table.Store(nt)
	}
	e.snap.Store(s)
	return nil
}

func (e *Engine) compileRule(cr *config.Rule) (*rule, error) {
	r := &rule{name: cr.Name, action: cr.Action, dryRun: cr.DryRun}
	var err error
	if r.m, err = compileMatch(&cr.Match); err != nil {
		return nil, err
	}
	switch cr.Action {
	case "block":
		r.v = Block
	case "limit":
		r.v = Limit
	case "drop":
		r.v = Drop
	case "tarpit":
		r.v = Tarpit
	case "challenge":
		r.v = Challenge
	case "rate_limit":
		if r.limit, err = e.compileLimit(cr.Limit); err != nil {
			return nil, err
		}
	}
	r.hitCtr = e.m.ruleHits.WithLabelValues(r.name, cr.Action)
	return r, nil
}

func buildTable(list []string) (*iplist.Table, error) {
	var b iplist.Builder
	for _, s := range list {
		p, err := config.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		if err := b.Add(p, 0); err != nil {
			return nil, err
		}
	}
	return b.Build(), nil
}

func (e *Engine) compileLimit(l *config.Limit) (*limitSpec, error) {
	ls := &limitSpec{name: l.Name, v4: l.V4Prefix, v6: l.V6Prefix, lim: limit.Limit{Rate: l.Rate, Burst: l.Burst}}
	if err := ls.lim.Validate(); err != nil {
		return nil, err
	}
	h := fnv.New32a()
	fmt.Fprintf(h, "%s|%s|%d|%d", l.Name, l.Key, l.V4Prefix, l.V6Prefix)
	ls.id = h.Sum32()
	for _, part := range strings.Split(l.Key, "+") {
		switch {
		case part == "ip":
			ls.parts = append(ls.parts, keyPart{kind: kIP})
		case part == "site":
			ls.parts = append(ls.parts, keyPart{kind: kSite})
		case part == "global":
			ls.parts = append(ls.parts, keyPart{kind: kGlobal})
		case part == "route":
			ls.parts = append(ls.parts, keyPart{kind: kRoute})
		case strings.HasPrefix(part, "header:"):
			ls.parts = append(ls.parts, keyPart{kind: kHeader, name: part[len("header:"):]})
		case strings.HasPrefix(part, "cookie:"):
			ls.parts = append(ls.parts, keyPart{kind: kCookie, name: part[len("cookie:"):]})
		default:
			return nil, fmt.Errorf("invalid key part %q", part)
		}
	}
	if l.Match != nil {
		m, err := compileMatch(l.Match)
		if err != nil {
			return nil, err
		}
		ls.m = m
	}
	ls.denied = e.m.limitDenied.WithLabelValues(l.Name)
	return ls, nil
}

// key computes the limit key of r; ok is false when a header or cookie the
// key needs is absent (such requests are not counted, as in nginx).
func (ls *limitSpec) key(r *Request) (k uint64, ok bool) {
	for i, p := range ls.parts {
		var pk uint64
		switch p.kind {
		case kIP:
			bits := ls.v6
			if r.Client.Is4() || r.Client.Is4In6() {
				bits = ls.v4
			}
			pk = limit.KeyAddr(ls.id, r.Client, bits)
		case kSite:
			pk = limit.KeyString(ls.id, r.Site)
		case kGlobal:
			pk = limit.KeyString(ls.id, "*")
		case kRoute:
			pk = limit.KeyCombine(ls.id, limit.KeyString(ls.id, r.Site), limit.KeyBytes(ls.id, r.Path))
		case kHeader, kCookie:
			if r.Headers == nil {
				return 0, false
			}
			var v []byte
			if p.kind == kHeader {
				v = r.Headers.Peek(p.name)
			} else {
				v = r.Headers.Cookie(p.name)
			}
			if len(v) == 0 {
				return 0, false
			}
			pk = limit.KeyBytes(ls.id, v)
		}
		if i == 0 {
			k = pk
		} else {
			k = limit.KeyCombine(ls.id, k, pk)
		}
	}
	return k, true
}

// Banned implements the connection guard's check at accept time: runtime
// bans, the static block list and threat feeds.
func (e *Engine) Banned(addr netip.Addr, now time.Time) bool {
	_, refused := e.CheckConn(addr, now)
	return refused
}

// CheckConn reports whether a connection from addr is refused, and by what
// ("ban", "block" or the feed's name).
func (e *Engine) CheckConn(addr netip.Addr, now time.Time) (by string, refused bool) {
	s := e.snap.Load()
	if e.deps.Bans != nil && e.deps.Bans.Banned(addr, now) {
		e.m.connRefused[0].Inc()
		return "ban", true
	}
	if s.block.Contains(addr) {
		e.m.connRefused[1].Inc()
		return "block", true
	}
	if f := e.feeds.Load(); f != nil {
		if name, ok := f.Lookup(addr); ok {
			e.m.connRefused[2].Inc()
			return name, true
		}
	}
	return "", false
}

// Decide returns the verdict for r at time now (Unix nanoseconds).
func (e *Engine) Decide(now int64, r *Request) Decision {
	s := e.snap.Load()
	// Connections are checked at accept; a ban added later applies to
	// requests on connections that are already open.
	if e.deps.Bans != nil && e.deps.Bans.Banned(r.Client, time.Unix(0, now)) {
		return Decision{Verdict: Block, By: "ban"}
	}
	if s.block.Contains(r.Client) {
		return Decision{Verdict: Block, By: "block"}
	}
	if s.allow.Contains(r.Client) {
		return Decision{By: "allow"}
	}
	if rs := e.runtime.Load(); rs != nil {
		for i, ru := range rs.rules {
			if exp := rs.expires[i]; exp != 0 && exp <= now {
				continue
			}
			if d, final := e.applyRule(now, s, ru, r); final {
				return d
			}
		}
	}
	for _, ru := range s.rules {
		if d, final := e.applyRule(now, s, ru, r); final {
			return d
		}
	}
	return e.checkLimits(now, s, r)
}

// applyRule evaluates one rule; final reports whether it decided.
func (e *Engine) applyRule(now int64, s *snapshot, ru *rule, r *Request) (Decision, bool) {
	{
		if !ru.m.match(r) {
			return Decision{}, false
		}
		ru.hits.Add(1)
		ru.hitCtr.Inc()
		if ru.dryRun {
			return Decision{}, false
		}
		switch ru.action {
		case "log":
			return Decision{}, false
		case "allow":
			return Decision{By: ru.name}, true
		case "rate_limit":
			if d, denied := e.checkLimit(now, ru.limit, r); denied {
				d.By = ru.name
				return d, true
			}
			return Decision{}, false
		}
		v := ru.v
		if v == Challenge && !r.Verified {
			v = s.challenge
		} else if v == Challenge {
			return Decision{}, false
		}
		return Decision{Verdict: v, By: ru.name}, true
	}
}

func (e *Engine) checkLimit(now int64, ls *limitSpec, r *Request) (Decision, bool) {
	k, ok := ls.key(r)
	if !ok {
		return Decision{}, false
	}
	allowed, ra := e.table.Load().AllowAt(now, k, scaled(ls.lim, e.modeNow(now)))
	if allowed {
		return Decision{}, false
	}
	ls.denied.Inc()
	return Decision{Verdict: Limit, By: ls.name, RetryAfter: ra}, true
}

// checkLimits charges every applicable limit, all or nothing.
func (e *Engine) checkLimits(now int64, s *snapshot, r *Request) Decision {
	var buf [8]limit.Check
	var which [8]*limitSpec
	checks := buf[:0]
	mode := e.modeNow(now)
	for _, ls := range s.limits {
		if ls.m != nil && !ls.m.match(r) {
			continue
		}
		k, ok := ls.key(r)
		if !ok {
			continue
		}
		if len(checks) == len(buf) {
			// More than 8 applicable limits: charge this batch now.
			if d, denied := e.charge(now, checks, which[:]); denied {
				return d
			}
			checks = checks[:0]
		}
		which[len(checks)] = ls
		checks = append(checks, limit.Check{Key: k, Limit: scaled(ls.lim, mode)})
	}
	if len(checks) == 0 {
		return Decision{}
	}
	d, _ := e.charge(now, checks, which[:])
	return d
}

func (e *Engine) charge(now int64, checks []limit.Check, which []*limitSpec) (Decision, bool) {
	ok, ra, failed := e.table.Load().AllowAllAt(now, checks)
	if ok {
		return Decision{}, false
	}
	ls := which[failed]
	ls.denied.Inc()
	return Decision{Verdict: Limit, By: ls.name, RetryAfter: ra}, true
}

// scaled tightens a limit for the mode: Elevated halves rate and burst,
// UnderAttack divides them by four.
func scaled(l limit.Limit, m Mode) limit.Limit {
	if m == Normal {
		return l
	}
	f := m.factor()
	return limit.Limit{Rate: l.Rate * f, Burst: max(int(float64(l.Burst)*f), 1)}
}

// RuleStats is one rule's hit count, for the admin API and `levee status`.
type RuleStats struct {
	Name   string `json:"name"`
	Action string `json:"action"`
	DryRun bool   `json:"dry_run,omitempty"`
	Hits   uint64 `json:"hits"`
}

// Rules returns the rules in evaluation order with their hit counts.
func (e *Engine) Rules() []RuleStats {
	s := e.snap.Load()
	out := make([]RuleStats, len(s.rules))
	for i, r := range s.rules {
		out[i] = RuleStats{Name: r.name, Action: r.action, DryRun: r.dryRun, Hits: r.hits.Load()}
	}
	return out
}

// SetFeeds replaces the threat feed set (after a reload changed the list
// of feed files); nil removes it.
func (e *Engine) SetFeeds(f *iplist.Set) { e.feeds.Store(f) }

// Feeds returns the current threat feed set (may be nil).
func (e *Engine) Feeds() *iplist.Set { return e.feeds.Load() }

// LimitTable returns the rate limit table (for status and metrics).
func (e *Engine) LimitTable() *limit.Table { return e.table.Load() }
