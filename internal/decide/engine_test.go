package decide

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/iplist"
)

type hdrs map[string]string

func (h hdrs) Peek(n string) []byte   { return []byte(h[n]) }
func (h hdrs) Cookie(n string) []byte { return []byte(h["cookie:"+n]) }

func policy(t testing.TB, src string) *config.Policy {
	t.Helper()
	var c config.Config
	if err := yaml.Unmarshal([]byte(src), &c); err != nil {
		t.Fatal(err)
	}
	c.Sites = []config.Site{{Upstreams: []config.Upstream{{URL: "http://127.0.0.1:1"}}}}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c.Policy
}

func engine(t testing.TB, src string, deps Deps) *Engine {
	t.Helper()
	deps.Registerer = prometheus.NewRegistry()
	e, err := New(policy(t, src), deps)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func req(client, method, path, ua string) *Request {
	return &Request{Client: netip.MustParseAddr(client), Site: "s", Host: []byte("shop.example.com"),
		Method: []byte(method), Path: []byte(path), UserAgent: []byte(ua), Headers: hdrs{}}
}

func TestRulesOrderAndVerdicts(t *testing.T) {
	e := engine(t, `
disable_default_limits: true
allow: [10.9.0.0/16]
block: [192.0.2.66]
rules:
  - {name: dry, match: {path: {prefix: /}}, action: block, dry_run: true}
  - {name: health, match: {path: {exact: /healthz}}, action: allow}
  - {name: scanners, match: {user_agent: {regex: "(?i)sqlmap|nikto"}}, action: block}
  - {name: admin-post, match: {all: [{method: [POST]}, {path: {prefix: /admin}}]}, action: drop}
  - {name: wp, match: {any: [{path: {suffix: .php}}, {path: {contains: wp-}}]}, action: tarpit}
  - {name: not-json, match: {header: {name: X-Api, present: true}, not: {header: {name: Content-Type, exact: application/json}}}, action: limit}
  - {name: chal, match: {host: ["*.example.com"], query: {contains: "bot=1"}}, action: challenge}
  - {name: net, match: {ip: [198.51.100.0/24]}, action: block}
  - {name: sess, match: {cookie: {name: session, prefix: "bad"}}, action: block}
`, Deps{})
	tests := []struct {
		name string
		r    *Request
		want Verdict
		by   string
	}{
		{"plain pass", req("203.0.113.1", "GET", "/", "Mozilla"), Pass, ""},
		{"allow rule beats later block", req("203.0.113.1", "GET", "/healthz", "sqlmap"), Pass, "health"},
		{"scanner", req("203.0.113.1", "GET", "/", "Mozilla sqlmap/1.0"), Block, "scanners"},
		{"scanner case", req("203.0.113.1", "GET", "/", "NIKTO"), Block, "scanners"},
		{"all: post admin", req("203.0.113.1", "POST", "/admin/x", "Mozilla"), Drop, "admin-post"},
		{"all: get admin passes", req("203.0.113.1", "GET", "/admin/x", "Mozilla"), Pass, ""},
		{"any suffix", req("203.0.113.1", "GET", "/x.php", "Mozilla"), Tarpit, "wp"},
		{"any contains", req("203.0.113.1", "GET", "/wp-login", "Mozilla"), Tarpit, "wp"},
		{"ip rule", req("198.51.100.77", "GET", "/", "Mozilla"), Block, "net"},
		{"block list", req("192.0.2.66", "GET", "/healthz", "Mozilla"), Block, "block"},
		{"allow list skips rules", req("10.9.1.1", "GET", "/", "sqlmap"), Pass, "allow"},
	}
	hdr := req("203.0.113.1", "GET", "/", "Mozilla")
	hdr.Headers = hdrs{"X-Api": "1", "Content-Type": "text/plain"}
	tests = append(tests, struct {
		name string
		r    *Request
		want Verdict
		by   string
	}{"header not", hdr, Limit, "not-json"})
	hdr2 := req("203.0.113.1", "GET", "/", "Mozilla")
	hdr2.Headers = hdrs{"X-Api": "1", "Content-Type": "application/json"}
	tests = append(tests, struct {
		name string
		r    *Request
		want Verdict
		by   string
	}{"header json passes", hdr2, Pass, ""})
	ch := req("203.0.113.1", "GET", "/", "Mozilla")
	ch.Query = []byte("a=1&bot=1")
	tests = append(tests, struct {
		name string
		r    *Request
		want Verdict
		by   string
	}{"challenge falls back to limit", ch, Limit, "chal"})
	ck := req("203.0.113.1", "GET", "/", "Mozilla")
	ck.Headers = hdrs{"cookie:session": "bad123"}
	tests = append(tests, struct {
		name string
		r    *Request
		want Verdict
		by   string
	}{"cookie", ck, Block, "sess"})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.Decide(time.Now().UnixNano(), tt.r)
			if d.Verdict != tt.want || d.By != tt.by {
				t.Fatalf("got %v by %q, want %v by %q", d.Verdict, d.By, tt.want, tt.by)
			}
		})
	}
	// The dry-run rule counted every request but decided nothing.
	for _, rs := range e.Rules() {
		if rs.Name == "dry" && rs.Hits != uint64(len(tests)-2) { // two requests stopped at the lists
			t.Errorf("dry-run hits = %d, want %d", rs.Hits, len(tests)-2)
		}
	}
}

func TestDefaultLimitsStopOneHeavySource(t *testing.T) {
	e := engine(t, ``, Deps{})
	now := time.Unix(1000, 0).UnixNano()
	// A browser loading a page: 150 requests at once, then 10/s: all pass.
	for i := 0; i < 150; i++ {
		if d := e.Decide(now, req("203.0.113.5", "GET", "/", "Mozilla")); d.Verdict != Pass {
			t.Fatalf("page load request %d: %v by %s", i, d.Verdict, d.By)
		}
	}
	// A flooder at 1000/s for 5 s gets about burst + 50/s through.
	passed := 0
	for i := 0; i < 5000; i++ {
		d := e.Decide(now+int64(i)*int64(time.Millisecond), req("203.0.113.9", "GET", "/", "x"))
		if d.Verdict == Pass {
			passed++
		} else if d.Verdict != Limit || d.By != "per-address" || d.RetryAfter <= 0 {
			t.Fatalf("flood: %+v", d)
		}
	}
	if passed < 200+5*50-2 || passed > 200+5*50+2 {
		t.Fatalf("flooder passed %d, want about %d", passed, 200+5*50)
	}
}

func TestNetworkLimitCatchesManyAddresses(t *testing.T) {
	e := engine(t, `
limits:
  - {name: addr, key: ip, rate: 100, burst: 100}
  - {name: net24, key: ip, v4_prefix: 24, v6_prefix: 64, rate: 10, burst: 20}
`, Deps{})
	now := time.Unix(1000, 0).UnixNano()
	passed, byNet := 0, 0
	for i := 0; i < 200; i++ {
		a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})
		d := e.Decide(now, &Request{Client: a})
		if d.Verdict == Pass {
			passed++
		} else if d.By == "net24" {
			byNet++
		}
	}
	if passed != 20 || byNet != 180 {
		t.Fatalf("passed %d, refused by /24 %d; want 20 and 180", passed, byNet)
	}
	// IPv6: addresses of one /64 share the limit, another /64 does not.
	for i := 0; i < 25; i++ {
		e.Decide(now, &Request{Client: netip.AddrFrom16([16]byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, byte(i)})})
	}
	if d := e.Decide(now, &Request{Client: netip.MustParseAddr("2001:db8:0:1::ff")}); d.Verdict != Limit {
		t.Fatalf("same /64: %v", d.Verdict)
	}
	if d := e.Decide(now, &Request{Client: netip.MustParseAddr("2001:db8:0:2::1")}); d.Verdict != Pass {
		t.Fatalf("other /64: %v", d.Verdict)
	}
}

func TestRateLimitRuleAndHeaderKey(t *testing.T) {
	e := engine(t, `
disable_default_limits: true
rules:
  - name: login
    match: {path: {exact: /login}, method: [POST]}
    action: rate_limit
    limit: {rate: 1, burst: 3}
limits:
  - {name: api-key, key: "header:X-Api-Key", rate: 5, burst: 5}
`, Deps{})
	now := time.Unix(1000, 0).UnixNano()
	got := 0
	for i := 0; i < 10; i++ {
		if e.Decide(now, req("203.0.113.1", "POST", "/login", "")).Verdict == Pass {
			got++
		}
	}
	if got != 3 {
		t.Fatalf("login passed %d, want 3", got)
	}
	// Other paths are not limited by the login rule.
	if d := e.Decide(now, req("203.0.113.1", "POST", "/other", "")); d.Verdict != Pass {
		t.Fatalf("other path: %v", d)
	}
	// Header keyed limit: per key value; requests without the header are not counted.
	for _, key := range []string{"k1", "k2"} {
		n := 0
		for i := 0; i < 8; i++ {
			r := req("203.0.113.1", "GET", "/", "")
			r.Headers = hdrs{"X-Api-Key": key}
			if e.Decide(now, r).Verdict == Pass {
				n++
			}
		}
		if n != 5 {
			t.Fatalf("key %s passed %d, want 5", key, n)
		}
	}
	for i := 0; i < 20; i++ {
		if e.Decide(now, req("203.0.113.1", "GET", "/", "")).Verdict != Pass {
			t.Fatal("request without the key header was limited")
		}
	}
}

func TestBansApplyToConnectionsAndRequests(t *testing.T) {
	bans, err := iplist.NewBans(context.Background(), iplist.BansConfig{}, iplist.BansDeps{})
	if err != nil {
		t.Fatal(err)
	}
	e := engine(t, `block: [192.0.2.0/24]`, Deps{Bans: bans})
	now := time.Now()
	if _, refused := e.CheckConn(netip.MustParseAddr("203.0.113.7"), now); refused {
		t.Fatal("refused before ban")
	}
	bans.Add(context.Background(), iplist.Ban{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Reason: "test", Expires: now.Add(time.Hour)})
	if by, refused := e.CheckConn(netip.MustParseAddr("203.0.113.7"), now); !refused || by != "ban" {
		t.Fatalf("after ban: %q %v", by, refused)
	}
	if d := e.Decide(now.UnixNano(), req("203.0.113.7", "GET", "/", "")); d.Verdict != Block || d.By != "ban" {
		t.Fatalf("request from banned client: %+v", d)
	}
	if by, refused := e.CheckConn(netip.MustParseAddr("192.0.2.9"), now); !refused || by != "block" {
		t.Fatalf("block list: %q %v", by, refused)
	}
	// Expired ban no longer applies.
	if _, refused := e.CheckConn(netip.MustParseAddr("203.0.113.7"), now.Add(2*time.Hour)); refused {
		t.Fatal("expired ban still applies")
	}
}

func TestReloadKeepsLimitStateAndHits(t *testing.T) {
	src := "limits: [{name: a, key: ip, rate: 1, burst: 2}]\nrules: [{name: r, match: {path: {exact: /x}}, action: log}]\n"
	e := engine(t, src, Deps{})
	now := time.Unix(1000, 0).UnixNano()
	e.Decide(now, req("203.0.113.1", "GET", "/x", ""))
	e.Decide(now, req("203.0.113.1", "GET", "/x", ""))
	if err := e.Apply(policy(t, src)); err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(now, req("203.0.113.1", "GET", "/x", "")); d.Verdict != Limit {
		t.Fatalf("limit state lost across reload: %+v", d)
	}
	if h := e.Rules()[0].Hits; h != 3 {
		t.Fatalf("rule hits across reload = %d, want 3", h)
	}
}

func TestDecideDoesNotAllocate(t *testing.T) {
	// The fingerprint rules cover every string match form on both
	// fingerprints; each is evaluated and does not decide (the ones that
	// match the request sit under a not).
	e := engine(t, `
rules:
  - {name: scanners, match: {user_agent: {regex: "sqlmap"}}, action: block}
  - {name: p, match: {any: [{path: {prefix: /admin}}, {host: [a.example]}]}, action: block}
  - {name: tls-exact, match: {tls_fingerprint: {exact: t13d1516h2_000000000000_000000000000}}, action: block}
  - {name: tls-prefix, match: {tls_fingerprint: {prefix: t12d}}, action: block}
  - {name: tls-suffix, match: {tls_fingerprint: {suffix: _ffff}}, action: block}
  - {name: tls-contains, match: {tls_fingerprint: {contains: deadbeef}}, action: block}
  - {name: tls-regex, match: {tls_fingerprint: {regex: "^t1[23]d[0-9]{4}h1_"}}, action: block}
  - {name: tls-absent, match: {tls_fingerprint: {present: false}}, action: block}
  - {name: tls-hit, match: {not: {any: [{tls_fingerprint: {exact: t13d1516h2_8daaf6152771_02713d6af862}}, {tls_fingerprint: {regex: "^t13d"}}]}}, action: block}
  - {name: http-exact, match: {http_fingerprint: {exact: "2:0;4:0|0|0|m,a,s,p"}}, action: block}
  - {name: http-prefix, match: {http_fingerprint: {prefix: po11}}, action: block}
  - {name: http-suffix, match: {http_fingerprint: {suffix: _ffff}}, action: block}
  - {name: http-contains, match: {http_fingerprint: {contains: deadbeef}}, action: block}
  - {name: http-regex, match: {http_fingerprint: {regex: "^po[0-9]+"}}, action: block}
  - {name: http-absent, match: {http_fingerprint: {present: false}}, action: block}
  - {name: http-hit, match: {not: {all: [{http_fingerprint: {prefix: ge11}}, {http_fingerprint: {regex: "^ge11(nn|cn)"}}]}}, action: block}
`, Deps{})
	r := req("203.0.113.1", "GET", "/index.html", "Mozilla/5.0")
	r.TLSFingerprint = "t13d1516h2_8daaf6152771_02713d6af862"
	r.HTTPFingerprint = "ge11nn05enus_974ebe531c03_000000000000_000000000000"
	if d := e.Decide(time.Now().UnixNano(), r); d.Verdict != Pass {
		t.Fatalf("a fingerprint rule decided: %+v", d)
	}
	now := time.Now().UnixNano()
	allocs := testing.AllocsPerRun(1000, func() {
		now += int64(time.Second)
		e.Decide(now, r)
	})
	if allocs != 0 && !raceEnabled { // regexp's matchers come from a sync.Pool
		t.Fatalf("Decide allocates %.1f times per call", allocs)
	}
}

func BenchmarkDecideDefaultLimits(b *testing.B) {
	e := engine(b, ``, Deps{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint32(0)
		r := req("203.0.113.1", "GET", "/", "Mozilla")
		for pb.Next() {
			i++
			r.Client = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			e.Decide(time.Now().UnixNano(), r)
		}
	})
}

func TestModesTightenLimits(t *testing.T) {
	e := engine(t, "limits: [{name: a, key: ip, rate: 100, burst: 100}]\n", Deps{})
	now := time.Unix(1000, 0)
	count := func(client string) int {
		n := 0
		for i := 0; i < 200; i++ {
			if e.Decide(now.UnixNano(), req(client, "GET", "/", "")).Verdict == Pass {
				n++
			}
		}
		return n
	}
	if n := count("203.0.113.1"); n != 100 {
		t.Fatalf("normal: %d", n)
	}
	e.SetMode(ModeState{Mode: Elevated, Until: now.Add(time.Minute)})
	if n := count("203.0.113.2"); n != 50 {
		t.Fatalf("elevated: %d", n)
	}
	if m := e.ModeAt(now); m.Mode != Elevated || m.Source != "manual" {
		t.Fatalf("mode: %+v", m)
	}
	e.SetMode(ModeState{Mode: UnderAttack, Until: now.Add(time.Minute)})
	if n := count("203.0.113.3"); n != 25 {
		t.Fatalf("under attack: %d", n)
	}
	// Expiry returns to normal; a detector escalation applies when no manual override is active.
	later := now.Add(2 * time.Minute)
	if m := e.ModeAt(later); m.Mode != Normal {
		t.Fatalf("after expiry: %+v", m)
	}
	e.SetMode(ModeState{Mode: Elevated, Source: "detector", Until: later.Add(time.Minute)})
	if m := e.ModeAt(later); m.Mode != Elevated || m.Source != "detector" {
		t.Fatalf("detector mode: %+v", m)
	}
	e.SetMode(ModeState{Mode: Normal, Until: later.Add(time.Minute)})
	if m := e.ModeAt(later); m.Mode != Normal || m.Source != "manual" {
		t.Fatalf("manual normal override: %+v", m)
	}
	e.ClearManualMode()
	if m := e.ModeAt(later); m.Mode != Elevated {
		t.Fatalf("after clearing the override: %+v", m)
	}
	for _, s := range []string{"normal", "elevated", "under-attack", "UNDER_ATTACK"} {
		if _, err := ParseMode(s); err != nil {
			t.Errorf("ParseMode(%q): %v", s, err)
		}
	}
	if _, err := ParseMode("panic"); err == nil {
		t.Error("ParseMode accepted panic")
	}
}

func TestRuntimeRulesFirstAndExpire(t *testing.T) {
	e := engine(t, "disable_default_limits: true\nrules: [{name: cfg-allow, match: {path: {prefix: /}}, action: allow}]\n", Deps{})
	now := time.Unix(1000, 0)
	err := e.SetRuntimeRules([]RuntimeRule{{
		Rule:    config.Rule{Name: "gen-ua", Action: "block", Match: config.Match{UserAgent: &config.StringMatch{Exact: "EvilBot/1.0"}}},
		Source:  "detector",
		Expires: now.Add(time.Minute),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if d := e.Decide(now.UnixNano(), req("203.0.113.1", "GET", "/", "EvilBot/1.0")); d.Verdict != Block || d.By != "gen-ua" {
		t.Fatalf("runtime rule before config rules: %+v", d)
	}
	if d := e.Decide(now.Add(2*time.Minute).UnixNano(), req("203.0.113.1", "GET", "/", "EvilBot/1.0")); d.Verdict != Pass {
		t.Fatalf("expired runtime rule still applies: %+v", d)
	}
	if gone := e.PruneRuntime(now.Add(2 * time.Minute)); len(gone) != 1 || gone[0].Rule.Name != "gen-ua" {
		t.Fatalf("prune: %v", gone)
	}
	if err := e.SetRuntimeRules([]RuntimeRule{{Rule: config.Rule{Name: "x", Action: "nope"}}}); err == nil {
		t.Fatal("invalid runtime rule accepted")
	}
	if err := e.SetRuntimeRules([]RuntimeRule{{Rule: config.Rule{Name: "x", Action: "log"}}, {Rule: config.Rule{Name: "x", Action: "log"}}}); err == nil {
		t.Fatal("duplicate runtime rule names accepted")
	}
}

func TestUnderAttackChallengesOnlyUnknownUnverified(t *testing.T) {
	e := engine(t, "disable_default_limits: true\n", Deps{})
	e.SetChallengesAvailable(true)
	now := time.Unix(1000, 0)
	e.SetMode(ModeState{Mode: UnderAttack, Until: now.Add(time.Minute)})
	r := req("203.0.113.1", "GET", "/", "Mozilla")
	if d := e.Decide(now.UnixNano(), r); d.Verdict != Challenge || d.By != "mode" {
		t.Fatalf("unknown, unverified: %+v", d)
	}
	r.Known = true
	if d := e.Decide(now.UnixNano(), r); d.Verdict != Pass {
		t.Fatalf("known client challenged: %+v", d)
	}
	r.Known, r.Verified = false, true
	if d := e.Decide(now.UnixNano(), r); d.Verdict != Pass {
		t.Fatalf("verified client challenged: %+v", d)
	}
	e.SetChallengesAvailable(false)
	r.Verified = false
	if d := e.Decide(now.UnixNano(), r); d.Verdict != Pass {
		t.Fatalf("without challenges, under-attack only tightens limits: %+v", d)
	}
}

// After a reload that changes limit_memory (a new table), the
// levee_limit_table_* metrics describe the table in use, not the first one.
func TestLimitMetricsFollowReplacedTable(t *testing.T) {
	reg := prometheus.NewRegistry()
	e, err := New(policy(t, "limit_memory: 1MiB\n"), Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	bytesMetric := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "levee_limit_table_bytes" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no levee_limit_table_bytes")
		return 0
	}
	if b := bytesMetric(); b > 1<<20 || b < 900<<10 {
		t.Fatalf("table bytes %v, want about 1 MiB", b)
	}
	if err := e.Apply(policy(t, "limit_memory: 4MiB\n")); err != nil {
		t.Fatal(err)
	}
	if b := bytesMetric(); b > 4<<20 || b < 3<<20 {
		t.Fatalf("table bytes %v after the reload to 4 MiB: the metrics still describe the old table", b)
	}
}

// Fingerprints are matched as strings (not converted to bytes): every
// match form decides on both fingerprint fields.
func TestFingerprintMatchers(t *testing.T) {
	const tls = "t13d1516h2_8daaf6152771_02713d6af862"
	const h2 = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
	for _, f := range []string{"tls_fingerprint", "http_fingerprint"} {
		v := tls
		if f == "http_fingerprint" {
			v = h2
		}
		for _, tt := range []struct {
			m          string
			hit, other string // a matching and a non-matching fingerprint ("" = none)
		}{
			{`{exact: "` + v + `"}`, v, v + "x"},
			{`{prefix: "` + v[:5] + `"}`, v, "x" + v},
			{`{suffix: "` + v[len(v)-5:] + `"}`, v, v + "x"},
			{`{contains: "` + v[3:9] + `"}`, v, v[:4]},
			{`{regex: "^` + regexp.QuoteMeta(v[:3]) + `.*` + regexp.QuoteMeta(v[len(v)-3:]) + `$"}`, v, "x" + v},
			{`{present: true}`, v, ""},
			{`{present: false}`, "", v},
		} {
			e := engine(t, "disable_default_limits: true\nlimit_memory: 64KiB\nrules: [{name: fp, match: {"+f+": "+tt.m+"}, action: block}]\n", Deps{})
			for _, c := range []struct {
				fp   string
				want Verdict
			}{{tt.hit, Block}, {tt.other, Pass}} {
				r := req("203.0.113.1", "GET", "/", "")
				if f == "tls_fingerprint" {
					r.TLSFingerprint, r.HTTPFingerprint = c.fp, h2
				} else {
					r.HTTPFingerprint, r.TLSFingerprint = c.fp, tls
				}
				if d := e.Decide(time.Now().UnixNano(), r); d.Verdict != c.want {
					t.Errorf("%s: %s on %q: %v, want %v", f, tt.m, c.fp, d.Verdict, c.want)
				}
			}
		}
	}
}

// A rate_limit rule counts in its own state, not in a limit's: limit state
// is keyed by name, so config validation refuses a rule named like a limit
// in effect (here the default per-address limit), and a rule with its own
// name is not charged for the requests the limits counted.
func TestRateLimitRuleHasItsOwnState(t *testing.T) {
	const rules = "\n    match: {path: {prefix: /login}}\n    action: rate_limit\n    limit: {rate: 1, burst: 5}\n"
	const site = "sites: [{upstreams: [{url: \"http://127.0.0.1:1\"}]}]\n"
	run := func(p *config.Policy) Decision {
		e, err := New(p, Deps{})
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(1000, 0).UnixNano()
		for i := 0; i < 150; i++ {
			if d := e.Decide(now, req("203.0.113.5", "GET", "/", "Mozilla")); d.Verdict != Pass {
				t.Fatalf("plain request %d: %+v", i, d)
			}
		}
		return e.Decide(now, req("203.0.113.5", "POST", "/login", "Mozilla"))
	}
	c, err := config.Parse([]byte(site+"limit_memory: 1MiB\nrules:\n  - name: login"+rules), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := run(&c.Policy); d.Verdict != Pass {
		t.Fatalf("first login request after 150 plain ones: %+v", d)
	}
	c, err = config.Parse([]byte(site+"limit_memory: 1MiB\nrules:\n  - name: per-address"+rules), "t.yaml")
	if err == nil {
		t.Fatalf("a rule named like the default limit per-address is accepted; its first request after 150 plain ones: %+v", run(&c.Policy))
	}
	if !strings.Contains(err.Error(), `t.yaml:4: rules[0].name: rule name "per-address" is taken by the limit "per-address"`) {
		t.Fatalf("error: %v", err)
	}
}
