package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/admission"
	"github.com/levee-dev/levee/internal/challenge"
)

// FieldError is a validation error for one field, named by its YAML path
// such as "sites[0].upstreams[1].url".
type FieldError struct {
	Path string
	Msg  string
	// Line is the line in the source file, when known (set by Load).
	Line int
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
	}
	return e.Path + ": " + e.Msg
}

// Errors is a list of configuration errors. It implements error.
type Errors []error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

type validator struct{ errs Errors }

func (v *validator) add(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) positiveDur(path string, d time.Duration) {
	if d < 0 {
		v.add(path, "must be a positive duration such as 10s, got %s", d)
	}
}

// size rejects a negative size: -1 ("no limit") is for the fields that
// document it, which do not call size.
func (v *validator) size(path string, b ByteSize) {
	if b < 0 {
		v.add(path, "must not be negative, got %d (-1, no limit, is only for guard.max_body_bytes)", b)
	}
}

func (v *validator) positiveInt(path string, n int) {
	if n < 0 {
		v.add(path, "must be positive, got %d", n)
	}
}

// Validate checks a defaulted config and returns all problems found, as
// Errors of *FieldError, or nil.
func (c *Config) Validate() error {
	v := &validator{}
	seenAddr := map[string]int{}
	for i, l := range c.Listen {
		p := fmt.Sprintf("listen[%d]", i)
		if _, _, err := net.SplitHostPort(l.Address); err != nil {
			v.add(p+".address", "want host:port such as \":8000\", got %q", l.Address)
		} else if j, dup := seenAddr[l.Address]; dup && !strings.HasSuffix(l.Address, ":0") {
			v.add(p+".address", "%q is already used by listen[%d]", l.Address, j)
		}
		seenAddr[l.Address] = i
		v.positiveDur(p+".proxy_protocol_timeout", l.ProxyProtocolTimeout)
		for j, crt := range l.TLS.Certificates {
			cp := fmt.Sprintf("%s.tls.certificates[%d]", p, j)
			if crt.Cert == "" {
				v.add(cp+".cert", "certificate file is required")
			}
			if crt.Key == "" {
				v.add(cp+".key", "key file is required")
			}
		}
		if l.TLS.MinVersion != "1.2" && l.TLS.MinVersion != "1.3" {
			v.add(p+".tls.min_version", "want \"1.2\" or \"1.3\", got %q", l.TLS.MinVersion)
		}
		if l.H2C && l.TLS.Enabled() {
			v.add(p+".h2c", "h2c is for plain listeners; a TLS listener negotiates HTTP/2 with ALPN")
		}
	}
	if len(c.Sites) == 0 {
		v.add("sites", "at least one site with an upstream is required (or run `levee serve --upstream URL`)")
	}
	defaultSites := 0
	seenHost := map[string]string{}
	seenName := map[string]bool{}
	for i, s := range c.Sites {
		p := fmt.Sprintf("sites[%d]", i)
		if seenName[s.Name] {
			v.add(p+".name", "duplicate site name %q", s.Name)
		}
		seenName[s.Name] = true
		if len(s.Hosts) == 0 {
			defaultSites++
			if defaultSites > 1 {
				v.add(p+".hosts", "only one site may have no hosts (the default site)")
			}
		}
		for j, h := range s.Hosts {
			hp := fmt.Sprintf("%s.hosts[%d]", p, j)
			n := NormalizeHost(h)
			if n == "" || strings.ContainsAny(n, " /\\") || strings.Count(n, "*") > 1 ||
				(strings.Contains(n, "*") && !strings.HasPrefix(n, "*.")) {
				v.add(hp, "invalid host %q: want a name such as example.com or *.example.com", h)
				continue
			}
			if other, dup := seenHost[n]; dup {
				v.add(hp, "host %q is already served by site %q", h, other)
			}
			seenHost[n] = s.Name
		}
		if len(s.Upstreams) == 0 {
			v.add(p+".upstreams", "at least one upstream is required")
		}
		for j, u := range s.Upstreams {
			up := fmt.Sprintf("%s.upstreams[%d]", p, j)
			if err := validUpstreamURL(u.URL); err != nil {
				v.add(up+".url", "%v", err)
			}
			if u.Weight < 1 || u.Weight > 100 {
				v.add(up+".weight", "want 1-100, got %d", u.Weight)
			}
		}
		if s.Balance != "round_robin" && s.Balance != "least_conn" {
			v.add(p+".balance", "want round_robin or least_conn, got %q", s.Balance)
		}
		v.positiveDur(p+".connect_timeout", s.ConnectTimeout)
		v.positiveDur(p+".response_timeout", s.ResponseTimeout)
		v.positiveDur(p+".idle_conn_timeout", s.IdleConnTimeout)
		v.positiveInt(p+".max_conns_per_upstream", s.MaxConnsPerUpstream)
		h := s.HealthCheck
		if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
			v.add(p+".health_check.path", "must start with /, got %q", h.Path)
		}
		v.positiveDur(p+".health_check.interval", h.Interval)
		v.positiveDur(p+".health_check.timeout", h.Timeout)
		v.positiveInt(p+".health_check.unhealthy_after", h.UnhealthyAfter)
		v.positiveInt(p+".health_check.healthy_after", h.HealthyAfter)
		if _, _, err := ParseStatusRange(h.ExpectStatus); err != nil {
			v.add(p+".health_check.expect_status", "%v", err)
		}
		op := s.OriginProtection
		v.positiveInt(p+".origin_protection.min_limit", op.MinLimit)
		v.positiveInt(p+".origin_protection.max_limit", op.MaxLimit)
		v.positiveInt(p+".origin_protection.max_queue", op.MaxQueue)
		v.positiveDur(p+".origin_protection.queue_target", op.QueueTarget)
		v.positiveDur(p+".origin_protection.max_wait", op.MaxWait)
		if op.MinLimit > 0 && op.MaxLimit > 0 && op.MinLimit > op.MaxLimit {
			v.add(p+".origin_protection.min_limit", "min_limit %d is above max_limit %d", op.MinLimit, op.MaxLimit)
		}
		// The gate's own rules, with its defaults for what is unset.
		if g := (admission.GateConfig{MaxQueue: op.MaxQueue, Target: max(op.QueueTarget, 0), MaxWait: max(op.MaxWait, 0)}).WithDefaults(); g.Target > g.MaxWait || g.Target > g.Interval {
			v.add(p+".origin_protection.queue_target", "%v: at most max_wait (%v) and the gate's %v control interval", g.Target, g.MaxWait, g.Interval)
		}
		if s.Cache.Name != "" {
			v.add(p+".cache.name", "the cache is named after its site; remove it")
		}
		if s.Cache.Enabled {
			cc := s.Cache.Config
			cc.Name = s.Name
			if err := cc.WithDefaults().Validate(); err != nil {
				v.addNamed(p+".cache", err.Error(), func(k string) bool { return cacheKeys[k] })
			}
		}
		v.passiveHealth(p+".passive_health", s.PassiveHealth)
	}
	if c.Admin.Address != "off" {
		if _, _, err := net.SplitHostPort(c.Admin.Address); err != nil {
			v.add("admin.address", "want host:port such as 127.0.0.1:9901, or \"off\", got %q", c.Admin.Address)
		} else if _, dup := seenAddr[c.Admin.Address]; dup {
			v.add("admin.address", "%q is also a client listener", c.Admin.Address)
		}
	}
	for i, p := range c.TrustedProxies {
		if !p.IsValid() {
			v.add(fmt.Sprintf("trusted_proxies[%d]", i), "invalid prefix")
		}
	}
	if c.ClientIPHeader != "x-forwarded-for" && c.ClientIPHeader != "forwarded" {
		v.add("client_ip_header", "want x-forwarded-for or forwarded, got %q", c.ClientIPHeader)
	}
	g := c.Guard
	v.positiveInt("guard.max_connections", g.MaxConnections)
	v.positiveInt("guard.max_connections_per_ip", g.MaxConnectionsPerIP)
	if g.NewConnectionsPerIP < 0 {
		v.add("guard.new_connections_per_ip", "must be positive, got %v", g.NewConnectionsPerIP)
	}
	v.positiveInt("guard.new_connections_burst", g.NewConnectionsBurst)
	v.positiveDur("guard.header_timeout", g.HeaderTimeout)
	v.positiveDur("guard.idle_timeout", g.IdleTimeout)
	v.positiveDur("guard.body_timeout", g.BodyTimeout)
	v.positiveDur("guard.write_timeout", g.WriteTimeout)
	v.positiveDur("guard.log_sample_interval", g.LogSampleInterval)
	v.positiveDur("guard.tunnel_idle_timeout", g.TunnelIdleTimeout)
	v.size("guard.min_body_rate", g.MinBodyRate)
	if g.MaxHeaderBytes < 0 {
		v.size("guard.max_header_bytes", g.MaxHeaderBytes)
	} else if g.MaxHeaderBytes < 1024 || g.MaxHeaderBytes > 1<<20 {
		v.add("guard.max_header_bytes", "want 1KiB-1MiB, got %s", g.MaxHeaderBytes)
	}
	if g.MaxURLLength < 0 {
		v.size("guard.max_url_length", g.MaxURLLength)
	} else if g.MaxURLLength < 256 || g.MaxURLLength > g.MaxHeaderBytes {
		v.add("guard.max_url_length", "want 256 bytes up to guard.max_header_bytes, got %s", g.MaxURLLength)
	}
	if g.MaxBodyBytes < NoLimit {
		v.add("guard.max_body_bytes", "want a size or -1 (no cap), got %d", g.MaxBodyBytes)
	}
	h2 := g.HTTP2
	v.size("guard.http2.max_header_list_bytes", h2.MaxHeaderListBytes)
	v.size("guard.http2.hpack_table_bytes", h2.HPACKTableBytes)
	if h2.MaxConcurrentStreams < 1 || h2.MaxConcurrentStreams > 1000 {
		v.add("guard.http2.max_concurrent_streams", "want 1-1000, got %d", h2.MaxConcurrentStreams)
	}
	v.positiveInt("guard.http2.max_resets_per_window", h2.MaxResetsPerWindow)
	v.positiveInt("guard.http2.max_server_resets_per_window", h2.MaxServerResetsPerWindow)
	v.positiveInt("guard.http2.max_continuation_frames", h2.MaxContinuationFrames)
	v.positiveDur("guard.http2.window", h2.Window)
	v.policy(&c.Policy)
	d := c.Detection
	v.positiveDur("detection.warm_up", d.WarmUp)
	if d.Ratio < 0 || (d.Ratio > 0 && d.Ratio < 1.1) {
		v.add("detection.ratio", "want at least 1.1, got %v", d.Ratio)
	}
	if d.MinRequests < 0 {
		v.add("detection.min_requests", "must not be negative")
	}
	for i, w := range d.Webhooks {
		p := fmt.Sprintf("detection.webhooks[%d]", i)
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add(p+".url", "want an absolute http(s) URL, got %q", w.URL)
		}
		if w.Format != "" && w.Format != "json" && w.Format != "slack" {
			v.add(p+".format", "want json or slack, got %q", w.Format)
		}
		for j, e := range w.Events {
			switch e {
			case "attack_start", "escalation", "mitigation", "attack_end":
			default:
				v.add(fmt.Sprintf("%s.events[%d]", p, j), "want attack_start, escalation, mitigation or attack_end, got %q", e)
			}
		}
	}
	v.challenge(&c.Challenge)
	k := c.KnownClients
	if !challenge.ValidCookieName(k.CookieName) {
		v.add("known_clients.cookie_name", "use letters, digits, '-' and '_', got %q", k.CookieName)
	} else if k.CookieName == c.Challenge.CookieName || (c.Challenge.CookieName == "" && k.CookieName == "levee_clearance") {
		v.add("known_clients.cookie_name", "%q is the challenge's clearance cookie; choose another name", k.CookieName)
	}
	if len(k.OldKeyFiles) > MaxOldKeyFiles {
		v.add("known_clients.old_key_files", "at most %d files, got %d (each costs an HMAC for every cookie no key verifies)", MaxOldKeyFiles, len(k.OldKeyFiles))
	}
	for i, f := range k.OldKeyFiles {
		switch {
		case f == "":
			v.add(fmt.Sprintf("known_clients.old_key_files[%d]", i), "empty path")
		case filepath.Clean(f) == filepath.Clean(k.KeyFile):
			v.add(fmt.Sprintf("known_clients.old_key_files[%d]", i), "%q is the key_file itself", f)
		}
	}
	v.positiveDur("known_clients.max_age", k.MaxAge)
	v.positiveDur("known_clients.min_age", k.MinAge)
	if k.MaxAge > 0 && k.MinAge >= k.MaxAge {
		v.add("known_clients.min_age", "min_age %s must be below max_age %s", k.MinAge, k.MaxAge)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "want debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Guard.HTTP2.AbuseBan < 0 {
		v.add("guard.http2.abuse_ban", "must not be negative (0: off), got %v", c.Guard.HTTP2.AbuseBan)
	}
	if c.Log.AccessLogMaxRejected < -1 {
		v.add("log.access_log_max_rejected", "want a number of lines per second, or -1 for every line, got %d", c.Log.AccessLogMaxRejected)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		v.add("log.format", "want text or json, got %q", c.Log.Format)
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

// challenge validates the challenge section as the challenge service will
// when the shield starts (challenge.Config.Validate, which stops at the
// first problem), and each allow.cidrs entry with its index. Keys are not
// loaded here (levee config check does it); with none configured the
// shield generates one, so a placeholder stands in for it.
func (v *validator) challenge(c *challenge.Config) {
	for i, s := range c.Allow.CIDRs {
		if !validChallengeCIDR(s) {
			v.add(fmt.Sprintf("challenge.allow.cidrs[%d]", i), "%q is neither an address nor a CIDR such as 10.0.0.0/8", s)
		}
	}
	cc := *c
	cc.Allow.CIDRs = nil // reported above, with their index
	cc.Difficulty.Modes = maps.Clone(c.Difficulty.Modes)
	if len(cc.Keys) == 0 {
		cc.Keys = []challenge.Key{{ID: 1, Secret: "placeholder"}}
	}
	cc.SetDefaults()
	if err := cc.Validate(); err != nil {
		v.addNamed("challenge", strings.TrimPrefix(err.Error(), "challenge: "), func(k string) bool {
			return strings.Trim(k, "abcdefghijklmnopqrstuvwxyz0123456789_.") == ""
		})
	}
}

// validChallengeCIDR accepts what the challenge service accepts in
// allow.cidrs: a CIDR or a single address.
func validChallengeCIDR(s string) bool {
	if _, err := netip.ParsePrefix(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (v *validator) passiveHealth(p string, ph PassiveHealth) {
	v.positiveInt(p+".consecutive_errors", ph.ConsecutiveErrors)
	v.positiveDur(p+".base_ejection", ph.BaseEjection)
	v.positiveDur(p+".max_ejection", ph.MaxEjection)
	v.positiveDur(p+".latency_threshold", ph.LatencyThreshold)
	if ph.BaseEjection > 0 && ph.MaxEjection > 0 && ph.MaxEjection < ph.BaseEjection {
		v.add(p+".max_ejection", "max_ejection %s is below base_ejection %s", ph.MaxEjection, ph.BaseEjection)
	}
	if ph.MaxEjectionPercent < 1 || ph.MaxEjectionPercent > 100 {
		v.add(p+".max_ejection_percent", "want 1-100, got %d", ph.MaxEjectionPercent)
	}
	b := ph.Breaker
	v.positiveDur(p+".breaker.window", b.Window)
	v.positiveInt(p+".breaker.min_requests", b.MinRequests)
	if !(b.FailureRatio > 0 && b.FailureRatio <= 1) {
		v.add(p+".breaker.failure_ratio", "want a share within (0, 1] such as 0.5, got %v", b.FailureRatio)
	}
	v.positiveDur(p+".breaker.open_time", b.OpenTime)
	v.positiveDur(p+".breaker.max_open_time", b.MaxOpenTime)
	if b.OpenTime > 0 && b.MaxOpenTime > 0 && b.MaxOpenTime < b.OpenTime {
		v.add(p+".breaker.max_open_time", "max_open_time %s is below open_time %s", b.MaxOpenTime, b.OpenTime)
	}
	v.positiveInt(p+".breaker.half_open_probes", b.HalfOpenProbes)
}

func validUpstreamURL(s string) error {
	if s == "" {
		return fmt.Errorf("upstream url is required, e.g. http://127.0.0.1:8080")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid url %q: %v", s, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("url %q: scheme must be http (https upstreams are not supported yet)", s)
	}
	if u.Host == "" {
		return fmt.Errorf("url %q has no host", s)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return fmt.Errorf("url %q: give only scheme://host:port (no path, query or credentials)", s)
	}
	return nil
}

// UpstreamAddr returns host:port of an upstream URL that passed validation,
// with port 80 when none is given.
func UpstreamAddr(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), "80")
	}
	return u.Host
}

// NormalizeHost lowercases a host and strips a port and a trailing dot.
func NormalizeHost(h string) string {
	h = strings.ToLower(strings.TrimSpace(h))
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[:i+1]
		}
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	return strings.TrimSuffix(h, ".")
}

// ParseStatusRange parses "200-399" or "200".
func ParseStatusRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	if err1 != nil || err2 != nil || lo < 100 || hi > 599 || lo > hi {
		return 0, 0, fmt.Errorf("invalid status range %q: want e.g. 200-399", s)
	}
	return lo, hi, nil
}

// addNamed adds msg, an error of a section's own validation, under
// section; when msg starts with one of the section's keys (isKey), under
// that key's path, so that the error gets the key's line.
func (v *validator) addNamed(section, msg string, isKey func(string) bool) {
	if i := strings.IndexAny(msg, " :"); i > 0 && isKey(msg[:i]) {
		section += "." + msg[:i]
	}
	v.add(section, "%s", msg)
}

// cacheKeys are the cache settings whose name starts cache.Config.Validate's
// messages, for the line of the error.
var cacheKeys = map[string]bool{"max_bytes": true, "max_entry_bytes": true, "shards": true, "max_ttl": true,
	"not_found_ttl": true, "max_variants": true, "coalesce_wait": true, "statuses": true}
