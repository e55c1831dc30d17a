package decide

import (
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/config"
)

// fuzzPolicySeeds are configurations with rules and limits: every matcher
// kind, all/any/not, every action, rate_limit rules with their limits,
// dry_run, limits with key expressions and matches.
var fuzzPolicySeeds = []string{
	// Every action and matcher kind, configured limits.
	`sites: [{upstreams: [{url: "http://127.0.0.1:8080"}]}]
allow: [10.9.0.0/16]
block: [192.0.2.66, "2001:db8:bad::/48"]
limit_memory: 256KiB
limits:
  - {name: addr, key: ip, rate: 50, burst: 200}
  - {name: net, key: ip, v4_prefix: 24, v6_prefix: 64, rate: 500}
  - {name: api, key: "header:X-Api-Key+route", rate: 5, match: {path: {prefix: /api/}}}
  - {name: sess, key: "cookie:session+site", rate: 10, burst: 20}
  - {name: all, key: global, rate: 10000}
rules:
  - {name: health, match: {ip: [198.51.100.0/24], path: {exact: /healthz}}, action: allow}
  - {name: scanners, match: {user_agent: {regex: "(?i)sqlmap|nikto"}}, action: block}
  - {name: debug, match: {query: {contains: "debug=1"}}, action: limit}
  - {name: trace, match: {method: [TRACE, connect]}, action: drop}
  - {name: php, match: {path: {suffix: .php}}, action: tarpit}
  - {name: chal, match: {host: ["*.example.com", "shop.example.org:8443"]}, action: challenge}
  - {name: login, match: {path: {exact: /login}, method: [POST]}, action: rate_limit, limit: {rate: 1, burst: 5}}
  - {name: xdebug, match: {header: {name: X-Debug, present: true}}, action: log}
  - {name: ja4, match: {tls_fingerprint: {prefix: t13d}}, action: block, dry_run: true}
  - {name: ja4h, match: {http_fingerprint: {regex: "^ge11"}}, action: block}
  - {name: nocookie, match: {cookie: {name: session, present: false}}, action: log}
  - {name: badcookie, match: {cookie: {name: session, exact: "x"}}, action: block}
`,
	// all/any/not, nested; a rate_limit rule with a keyed, matched limit in
	// dry run; no limits.
	`sites: [{upstreams: [{url: "http://127.0.0.1:8080"}]}]
disable_default_limits: true
challenge_fallback: block
limit_memory: 64KiB
rules:
  - name: admin-post
    match:
      all:
        - {method: [POST]}
        - any: [{path: {prefix: /admin}}, {header: {name: X-Admin, exact: "1"}}]
      not: {ip: ["10.0.0.0/8", "::1"]}
    action: block
  - name: nested
    match:
      any:
        - not: {user_agent: {present: true}}
        - all: [{tls_fingerprint: {exact: t13d1516h2_8daaf6152771_02713d6af862}}, {http_fingerprint: {contains: "m,a,s,p"}}]
        - {not: {not: {host: [a.example]}}}
    action: challenge
  - name: per-route
    match: {not: {path: {prefix: /static/}}}
    action: rate_limit
    limit: {key: ip+route, v4_prefix: 24, v6_prefix: 48, rate: 2.5, burst: 10, match: {method: [GET]}}
    dry_run: true
  - name: api-key
    match: {header: {name: X-Api-Key, present: true}}
    action: rate_limit
    limit: {name: api-key-limit, key: "header:X-Api-Key", rate: 0.5}
  - {name: everything, action: log}
`,
	// The default limits with rules next to them.
	`sites: [{upstreams: [{url: "http://127.0.0.1:8080"}]}]
limit_memory: 1MiB
rules:
  - {name: login, match: {path: {exact: /login}}, action: rate_limit, limit: {rate: 1}}
  - {name: ua, match: {user_agent: {suffix: "bot"}}, action: tarpit, dry_run: true}
  - {name: q, match: {query: {regex: "^(a|b)+$"}}, action: drop}
`,
	// A rejected one: a rule named like a default limit.
	`sites: [{upstreams: [{url: "http://127.0.0.1:8080"}]}]
rules: [{name: per-address, action: rate_limit, limit: {rate: 1}}]
`,
}

// fuzzRequests are the fixed requests every accepted policy decides.
func fuzzRequests() []*Request {
	full := req("203.0.113.1", "POST", "/login", "Mozilla/5.0 sqlmap")
	full.Host = []byte("shop.example.com:8443")
	full.Query = []byte("debug=1&a=b")
	full.Headers = hdrs{"X-Api-Key": "k1", "X-Admin": "1", "X-Debug": "yes", "cookie:session": "x"}
	full.TLSFingerprint = "t13d1516h2_8daaf6152771_02713d6af862"
	full.HTTPFingerprint = "ge11nn05enus_974ebe531c03_000000000000_000000000000"
	v6 := req("2001:db8::1", "GET", "/static/app.js", "")
	v6.Host = []byte("[2001:db8::1]:443")
	v6.HTTPFingerprint = "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"
	v6.Verified = true
	mapped := &Request{Client: netip.MustParseAddr("::ffff:192.0.2.66"), Host: []byte("A.EXAMPLE.")}
	known := req("10.9.0.1", "TRACE", "/x.php", "curl/8")
	known.Known = true
	known.Headers = nil
	return []*Request{full, v6, mapped, known}
}

// FuzzPolicyDecide parses a configuration the way the shield does
// (config.Parse, as config.Load does for the file), compiles every policy
// that is accepted into an Engine, and decides a few fixed requests. An
// accepted policy must compile (validation catches what compilation would
// refuse), and nothing may panic. That Decide does not allocate is
// TestDecideDoesNotAllocate's concern.
func FuzzPolicyDecide(f *testing.F) {
	for _, s := range fuzzPolicySeeds {
		f.Add([]byte(s))
	}
	if b, err := os.ReadFile("../../docs/levee.example.yaml"); err == nil {
		f.Add(b)
	}
	reqs := fuzzRequests()
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := config.Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		// The limit table is allocated whole: keep it small so that each
		// input is cheap (the memory budget does not change decisions).
		c.LimitMemory = min(c.LimitMemory, 256<<10)
		e, err := New(&c.Policy, Deps{})
		if err != nil {
			t.Fatalf("accepted policy does not compile: %v", err)
		}
		now := time.Unix(1000, 0)
		decide := func() {
			for _, r := range reqs {
				for i := 0; i < 3; i++ {
					d := e.Decide(now.UnixNano()+int64(i), r)
					if d.Verdict >= numVerdicts {
						t.Fatalf("verdict %d", d.Verdict)
					}
				}
			}
		}
		decide()
		// A reload of the same policy, the configured rules as runtime
		// rules, and the modes that scale the limits.
		if err := e.Apply(&c.Policy); err != nil {
			t.Fatalf("reload of an accepted policy: %v", err)
		}
		// (Renamed, so that they take no configured rule's or limit's name.)
		rt := make([]RuntimeRule, len(c.Rules))
		for i := range c.Rules {
			r := c.Rules[i]
			r.Name = "runtime:" + r.Name
			if r.Limit != nil {
				l := *r.Limit
				l.Name = "runtime:" + l.Name
				r.Limit = &l
			}
			rt[i] = RuntimeRule{Rule: r, Source: "api", Site: "s"}
		}
		if err := e.SetRuntimeRules(rt); err != nil {
			t.Fatalf("configured rules refused as runtime rules: %v", err)
		}
		e.SetChallengesAvailable(true)
		e.SetMode(ModeState{Mode: UnderAttack, Until: now.Add(time.Minute)})
		decide()
		e.SetMode(ModeState{Mode: Elevated, Until: now.Add(time.Minute)})
		decide()
	})
}
