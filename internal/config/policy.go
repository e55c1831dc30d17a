package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Policy holds the decision engine's configuration: lists, feeds, rate
// limits and rules. It is embedded in Config (its keys are top-level).
type Policy struct {
	// Allow lists addresses or CIDRs that skip rate limits and rules (bans
	// and block lists still apply). Default: none.
	Allow []string `yaml:"allow"`
	// Block lists addresses or CIDRs whose connections are closed at accept
	// time, before TLS. Default: none.
	Block []string `yaml:"block"`
	// Feeds are threat-intelligence list files (plain IP/CIDR, FireHOL
	// .netset/.ipset, Spamhaus DROP JSON or text). Matching clients are
	// refused at accept time. Files are re-read when they change.
	Feeds []Feed `yaml:"feeds"`
	// FeedRefresh is how often feed files are checked for changes.
	// Default 60s.
	FeedRefresh time.Duration `yaml:"feed_refresh"`
	// Limits are per-client rate limits, all applied to every request.
	// Default: the built-in limits (see DefaultLimits) unless
	// DisableDefaultLimits is set or Limits is non-empty.
	Limits []Limit `yaml:"limits"`
	// DisableDefaultLimits turns off the built-in limits when Limits is
	// empty. Default false.
	DisableDefaultLimits bool `yaml:"disable_default_limits"`
	// LimitMemory is the memory budget of all rate limit state. A flood of
	// distinct sources evicts the coldest state instead of failing.
	// Default 64MiB.
	LimitMemory ByteSize `yaml:"limit_memory"`
	// Rules are evaluated in order for every request; see Rule.
	Rules []Rule `yaml:"rules"`
	// TarpitDelay is how long a tarpitted connection is held before it is
	// closed. Default 10s.
	TarpitDelay time.Duration `yaml:"tarpit_delay"`
	// MaxTarpits bounds connections held in the tarpit at once; beyond it
	// tarpit behaves as drop. Default 1000.
	MaxTarpits int `yaml:"max_tarpits"`
	// ChallengeFallback is what the "challenge" verdict does until
	// challenges are available: "limit" (429, default) or "block" (403).
	ChallengeFallback string `yaml:"challenge_fallback"`
}

// Feed is one threat feed file.
type Feed struct {
	// Name labels the feed in metrics and logs. Default: file base name.
	Name string `yaml:"name"`
	// Path of the file.
	Path string `yaml:"path"`
	// Format: auto (default), plain, netset, spamhaus-json, spamhaus-text.
	Format string `yaml:"format"`
	// Strict fails the load on a bad line (default: bad lines are counted
	// and skipped, as third-party feeds warrant).
	Strict bool `yaml:"strict"`
}

// Limit is one rate limit.
type Limit struct {
	// Name identifies the limit in metrics and 429 logs. Required.
	Name string `yaml:"name"`
	// Key says what is counted: "ip" (the client address, grouped by
	// V4Prefix / V6Prefix), "site", "global", "route" (site and path),
	// "header:NAME", "cookie:NAME", or several joined with "+", e.g.
	// "ip+route". Default "ip".
	Key string `yaml:"key"`
	// V4Prefix and V6Prefix group client addresses for "ip" keys: 24 and 64
	// make a per-network limit. Defaults 32 and 128.
	V4Prefix int `yaml:"v4_prefix"`
	V6Prefix int `yaml:"v6_prefix"`
	// Rate is the sustained rate in requests per second. Required.
	Rate float64 `yaml:"rate"`
	// Burst is how many requests may arrive at once. Default: Rate, at
	// least 1.
	Burst int `yaml:"burst"`
	// Match, when set, applies the limit only to matching requests.
	Match *Match `yaml:"match"`
}

// DefaultLimits are applied when no limits are configured: generous for
// browsing (a page load of 100+ requests passes), tight enough that a
// single flooding source or network is stopped.
func DefaultLimits() []Limit {
	return []Limit{
		{Name: "per-address", Key: "ip", V4Prefix: 32, V6Prefix: 128, Rate: 50, Burst: 200},
		{Name: "per-network", Key: "ip", V4Prefix: 24, V6Prefix: 64, Rate: 500, Burst: 2000},
	}
}

// Rule matches requests and decides what happens to them. Rules are
// evaluated in the order written; the first rule with a final action
// (allow, block, limit, drop, tarpit, challenge) decides. "rate_limit"
// decides only when its limit is exceeded; "log" only counts.
type Rule struct {
	// Name identifies the rule in metrics, logs and the admin API. Required;
	// it may not be the name of a limit in effect (see Limits).
	Name string `yaml:"name"`
	// Match selects requests; an empty match matches everything.
	Match Match `yaml:"match"`
	// Action: allow, block, limit, drop, tarpit, challenge, rate_limit, log.
	Action string `yaml:"action"`
	// Limit is the rate limit of a rate_limit rule (key defaults to ip,
	// name to the rule's). Rate limit state is kept per limit name, so the
	// name may not be that of a limit in effect or of another rule's limit.
	Limit *Limit `yaml:"limit"`
	// DryRun counts and logs hits without enforcing the action.
	DryRun bool `yaml:"dry_run"`
}

// Match is a set of conditions that must all hold. All, Any and Not combine
// nested matches.
type Match struct {
	// IP: client addresses or CIDRs.
	IP []string `yaml:"ip"`
	// Host: Host header values (case-insensitive, port ignored; "*.x.com").
	Host []string `yaml:"host"`
	// Method: request methods, e.g. [POST, PUT].
	Method []string `yaml:"method"`
	// Path, Query and UserAgent match those parts of the request.
	Path      *StringMatch `yaml:"path"`
	Query     *StringMatch `yaml:"query"`
	UserAgent *StringMatch `yaml:"user_agent"`
	// TLSFingerprint matches the connection's JA4 fingerprint, e.g.
	// {exact: t13d1516h2_8daaf6152771_02713d6af862}.
	TLSFingerprint *StringMatch `yaml:"tls_fingerprint"`
	// HTTPFingerprint matches the request's HTTP fingerprint: JA4H for
	// HTTP/1.1 requests, the Akamai HTTP/2 fingerprint
	// ("SETTINGS|WINDOW_UPDATE|PRIORITY|PSEUDO") for HTTP/2 requests.
	HTTPFingerprint *StringMatch `yaml:"http_fingerprint"`
	// Header and Cookie match a named header or cookie.
	Header *NamedMatch `yaml:"header"`
	Cookie *NamedMatch `yaml:"cookie"`
	// All, Any and Not combine matches.
	All []Match `yaml:"all"`
	Any []Match `yaml:"any"`
	Not *Match  `yaml:"not"`
}

// StringMatch tests a string; set exactly one field. Present true matches
// any non-empty value, false matches a missing or empty value.
type StringMatch struct {
	Exact    string `yaml:"exact"`
	Prefix   string `yaml:"prefix"`
	Suffix   string `yaml:"suffix"`
	Contains string `yaml:"contains"`
	Regex    string `yaml:"regex"`
	Present  *bool  `yaml:"present"`
}

// NamedMatch is a StringMatch on a named header or cookie.
type NamedMatch struct {
	Name        string `yaml:"name"`
	StringMatch `yaml:",inline"`
}

// ParsePrefix parses "192.0.2.0/24", "2001:db8::/32" or a bare address
// (taken as a single-address prefix).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address %q: want an IP or a CIDR", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

var actions = map[string]bool{"allow": true, "block": true, "limit": true, "drop": true, "tarpit": true, "challenge": true, "rate_limit": true, "log": true}

func (c *Config) defaultsPolicy() {
	p := &c.Policy
	setDur(&p.FeedRefresh, 60*time.Second)
	setSize(&p.LimitMemory, 64<<20)
	setDur(&p.TarpitDelay, 10*time.Second)
	setInt(&p.MaxTarpits, 1000)
	if p.ChallengeFallback == "" {
		p.ChallengeFallback = "limit"
	}
	if len(p.Limits) == 0 && !p.DisableDefaultLimits {
		p.Limits = DefaultLimits()
	}
	for i := range p.Limits {
		defaultLimit(&p.Limits[i])
	}
	for i := range p.Rules {
		if p.Rules[i].Limit != nil {
			if p.Rules[i].Limit.Name == "" {
				p.Rules[i].Limit.Name = p.Rules[i].Name
			}
			defaultLimit(p.Rules[i].Limit)
		}
	}
	for i := range p.Feeds {
		if p.Feeds[i].Format == "" {
			p.Feeds[i].Format = "auto"
		}
	}
}

func defaultLimit(l *Limit) {
	if l.Key == "" {
		l.Key = "ip"
	}
	setInt(&l.V4Prefix, 32)
	setInt(&l.V6Prefix, 128)
	if l.Burst == 0 {
		l.Burst = max(int(l.Rate), 1)
	}
}

func (v *validator) policy(p *Policy) {
	for i, s := range p.Allow {
		if _, err := ParsePrefix(s); err != nil {
			v.add(fmt.Sprintf("allow[%d]", i), "%v", err)
		}
	}
	for i, s := range p.Block {
		if _, err := ParsePrefix(s); err != nil {
			v.add(fmt.Sprintf("block[%d]", i), "%v", err)
		}
	}
	feedNames := map[string]int{}
	for i, f := range p.Feeds {
		path := fmt.Sprintf("feeds[%d]", i)
		if f.Path == "" {
			v.add(path+".path", "feed file path is required")
		} else {
			name := f.Name
			if name == "" {
				name = filepath.Base(f.Path)
			}
			if j, dup := feedNames[name]; dup {
				v.add(path+".name", "feed name %q is also that of feeds[%d] (the name defaults to the file's base name; set name: to tell them apart)", name, j)
			} else {
				feedNames[name] = i
			}
		}
		switch f.Format {
		case "auto", "plain", "netset", "spamhaus-json", "spamhaus-text":
		default:
			v.add(path+".format", "want auto, plain, netset, spamhaus-json or spamhaus-text, got %q", f.Format)
		}
	}
	v.positiveDur("feed_refresh", p.FeedRefresh)
	if p.LimitMemory < 64<<10 {
		v.add("limit_memory", "want at least 64KiB, got %s", p.LimitMemory)
	}
	names := map[string]bool{}
	for i := range p.Limits {
		path := fmt.Sprintf("limits[%d]", i)
		v.limit(path, &p.Limits[i])
		if names[p.Limits[i].Name] {
			v.add(path+".name", "duplicate limit name %q", p.Limits[i].Name)
		}
		names[p.Limits[i].Name] = true
	}
	ruleNames := map[string]bool{}
	ruleLimits := map[string]int{} // limit name of a rate_limit rule -> rule index
	limitNames := make([]string, len(p.Limits))
	for i := range p.Limits {
		limitNames[i] = p.Limits[i].Name
	}
	describeLimit := func(i int) string { return fmt.Sprintf("limits[%d]", i) }
	if usesDefaultLimits(p) {
		describeLimit = func(i int) string {
			return fmt.Sprintf("the limit %q (a built-in default limit: the defaults apply when no limits are configured)", limitNames[i])
		}
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		path := fmt.Sprintf("rules[%d]", i)
		if r.Name != "" && ruleNames[r.Name] {
			v.add(path+".name", "duplicate rule name %q", r.Name)
		}
		ruleNames[r.Name] = true
		v.rule(path, r)
		for _, c := range ruleLimitConflicts(r, limitNames, describeLimit) {
			v.add(path+c.field, "%s", c.msg)
		}
		if r.Limit != nil && r.Limit.Name != "" {
			if j, dup := ruleLimits[r.Limit.Name]; dup {
				field := ".limit.name"
				if r.Limit.Name == r.Name {
					field = ".name"
				}
				v.add(path+field, "limit name %q is also the limit name of rules[%d] (%s): the two rules would share one rate limit state; give each rule's limit its own name", r.Limit.Name, j, p.Rules[j].Name)
			} else {
				ruleLimits[r.Limit.Name] = i
			}
		}
	}
	v.positiveDur("tarpit_delay", p.TarpitDelay)
	v.positiveInt("max_tarpits", p.MaxTarpits)
	if p.ChallengeFallback != "limit" && p.ChallengeFallback != "block" {
		v.add("challenge_fallback", "want limit or block, got %q", p.ChallengeFallback)
	}
}

// usesDefaultLimits reports whether p's limits are the built-in defaults
// (usually because no limits are configured), to name them as such in
// errors.
func usesDefaultLimits(p *Policy) bool {
	d := DefaultLimits()
	if p.DisableDefaultLimits || len(p.Limits) != len(d) {
		return false
	}
	for i := range d {
		if p.Limits[i] != d[i] {
			return false
		}
	}
	return true
}

type nameConflict struct{ field, msg string }

// ruleLimitConflicts finds the names of r that clash with a limit's: a rule,
// or a rate_limit rule's limit, may not be named like a limit, because a
// verdict's "by", the access log, the logs and the limit metrics would not
// say which of the two decided. (Their counters are apart: the engine keys
// limits[] and rules' limits in separate namespaces.) names are the
// limits' names, desc(i) describes limit i in a message. field is relative
// to the rule (".name" or ".limit.name").
func ruleLimitConflicts(r *Rule, names []string, desc func(i int) string) []nameConflict {
	var out []nameConflict
	for i, name := range names {
		if name == "" {
			continue
		}
		switch {
		case r.Name == name:
			out = append(out, nameConflict{".name", fmt.Sprintf("rule name %q is taken by %s: rules and limits need distinct names (verdicts, logs and metrics name what decided); rename the rule", r.Name, desc(i))})
		case r.Limit != nil && r.Limit.Name == name:
			out = append(out, nameConflict{".limit.name", fmt.Sprintf("limit name %q is taken by %s: verdicts, logs and metrics would not tell them apart; choose another name", name, desc(i))})
		}
	}
	return out
}

// ValidateRule fills a single rule's defaults and validates it (for rules
// added at runtime through the admin API).
func ValidateRule(r *Rule) error {
	if r.Limit != nil {
		if r.Limit.Name == "" {
			r.Limit.Name = r.Name
		}
		defaultLimit(r.Limit)
	}
	v := &validator{}
	v.rule("rule", r)
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

func (v *validator) rule(path string, r *Rule) {
	{
		if r.Name == "" {
			v.add(path+".name", "every rule needs a name")
		}
		if !actions[r.Action] {
			v.add(path+".action", "want one of allow, block, limit, drop, tarpit, challenge, rate_limit, log; got %q", r.Action)
		}
		if r.Action == "rate_limit" {
			if r.Limit == nil {
				v.add(path+".limit", "a rate_limit rule needs a limit: {rate: N, burst: M}")
			} else {
				v.limit(path+".limit", r.Limit)
			}
		} else if r.Limit != nil {
			v.add(path+".limit", "only rate_limit rules take a limit")
		}
		v.match(path+".match", &r.Match, 0)
	}
}

func (v *validator) limit(path string, l *Limit) {
	if l.Name == "" {
		v.add(path+".name", "every limit needs a name")
	}
	if l.Rate <= 0 || l.Rate > 1e9 {
		v.add(path+".rate", "want a rate in requests per second (0 < rate <= 1e9), got %v", l.Rate)
	}
	if l.Burst < 1 || l.Burst > 1<<30 {
		v.add(path+".burst", "want 1 to 2^30, got %d", l.Burst)
	}
	if l.V4Prefix < 1 || l.V4Prefix > 32 {
		v.add(path+".v4_prefix", "want 1-32, got %d", l.V4Prefix)
	}
	if l.V6Prefix < 1 || l.V6Prefix > 128 {
		v.add(path+".v6_prefix", "want 1-128, got %d", l.V6Prefix)
	}
	if err := ValidateLimitKey(l.Key); err != nil {
		v.add(path+".key", "%v", err)
	}
	if l.Match != nil {
		v.match(path+".match", l.Match, 0)
	}
}

// ValidateLimitKey checks a limit key expression such as "ip+route".
func ValidateLimitKey(k string) error {
	parts := strings.Split(k, "+")
	if len(parts) > 4 {
		return fmt.Errorf("key %q combines too many parts (at most 4)", k)
	}
	for _, p := range parts {
		switch {
		case p == "ip", p == "site", p == "global", p == "route":
		case strings.HasPrefix(p, "header:") && len(p) > len("header:"):
		case strings.HasPrefix(p, "cookie:") && len(p) > len("cookie:"):
		default:
			return fmt.Errorf("invalid key part %q: want ip, site, global, route, header:NAME or cookie:NAME", p)
		}
	}
	return nil
}

func (v *validator) match(path string, m *Match, depth int) {
	if depth > 8 {
		v.add(path, "matches nested deeper than 8 levels")
		return
	}
	for i, s := range m.IP {
		if _, err := ParsePrefix(s); err != nil {
			v.add(fmt.Sprintf("%s.ip[%d]", path, i), "%v", err)
		}
	}
	v.stringMatch(path+".path", m.Path)
	v.stringMatch(path+".query", m.Query)
	v.stringMatch(path+".user_agent", m.UserAgent)
	v.stringMatch(path+".tls_fingerprint", m.TLSFingerprint)
	v.stringMatch(path+".http_fingerprint", m.HTTPFingerprint)
	if m.Header != nil {
		if m.Header.Name == "" {
			v.add(path+".header.name", "header name is required")
		}
		v.stringMatch(path+".header", &m.Header.StringMatch)
	}
	if m.Cookie != nil {
		if m.Cookie.Name == "" {
			v.add(path+".cookie.name", "cookie name is required")
		}
		v.stringMatch(path+".cookie", &m.Cookie.StringMatch)
	}
	for i := range m.All {
		v.match(fmt.Sprintf("%s.all[%d]", path, i), &m.All[i], depth+1)
	}
	for i := range m.Any {
		v.match(fmt.Sprintf("%s.any[%d]", path, i), &m.Any[i], depth+1)
	}
	if m.Not != nil {
		v.match(path+".not", m.Not, depth+1)
	}
}

func (v *validator) stringMatch(path string, s *StringMatch) {
	if s == nil {
		return
	}
	n := 0
	for _, set := range []bool{s.Exact != "", s.Prefix != "", s.Suffix != "", s.Contains != "", s.Regex != "", s.Present != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		v.add(path, "set exactly one of exact, prefix, suffix, contains, regex, present")
	}
	if s.Regex != "" {
		if _, err := regexp.Compile(s.Regex); err != nil {
			v.add(path+".regex", "invalid regular expression: %v", err)
		}
	}
}
