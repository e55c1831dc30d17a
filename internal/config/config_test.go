package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte("sites:\n  - upstreams:\n      - url: http://127.0.0.1:8080\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Listen[0].Address; got != ":8000" {
		t.Errorf("listen address = %q, want :8000", got)
	}
	s := c.Sites[0]
	if s.Name != "default" || s.Balance != "round_robin" || s.Upstreams[0].Weight != 1 {
		t.Errorf("site defaults not applied: %+v", s)
	}
	if c.Guard.HeaderTimeout != 10*time.Second || c.Guard.MaxHeaderBytes != 16<<10 {
		t.Errorf("guard defaults not applied: %+v", c.Guard)
	}
	if c.Admin.Address != "127.0.0.1:9901" {
		t.Errorf("admin address = %q", c.Admin.Address)
	}
	// Defaults is idempotent.
	before := *c
	c.Defaults()
	if c.Guard != before.Guard {
		t.Error("Defaults is not idempotent")
	}
}

func TestParseFull(t *testing.T) {
	src := `
listen:
  - address: "127.0.0.1:8443"
    tls:
      certificates:
        - {cert: a.pem, key: a.key}
  - address: ":8000"
    proxy_protocol: true
trusted_proxies: [10.0.0.0/8, "::1/128"]
sites:
  - name: shop
    hosts: [shop.example.com, "*.shop.example.com"]
    balance: least_conn
    upstreams:
      - url: http://10.0.0.5:8080
        weight: 3
      - url: http://10.0.0.6
    health_check: {path: /healthz, interval: 2s}
guard:
  max_body_bytes: 10MiB
  min_body_rate: 2KB
  http2: {max_concurrent_streams: 50}
`
	c, err := Parse([]byte(src), "full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.TrustedProxies) != 2 || c.TrustedProxies[0].String() != "10.0.0.0/8" {
		t.Errorf("trusted proxies = %v", c.TrustedProxies)
	}
	if c.Guard.MaxBodyBytes != 10<<20 || c.Guard.MinBodyRate != 2000 {
		t.Errorf("sizes = %d %d", c.Guard.MaxBodyBytes, c.Guard.MinBodyRate)
	}
	if c.Sites[0].HealthCheck.Interval != 2*time.Second || c.Sites[0].HealthCheck.Timeout != 2*time.Second {
		t.Errorf("health check = %+v", c.Sites[0].HealthCheck)
	}
	if got := UpstreamAddr(c.Sites[0].Upstreams[1].URL); got != "10.0.0.6:80" {
		t.Errorf("UpstreamAddr = %q", got)
	}
	if c.Guard.HTTP2.MaxConcurrentStreams != 50 {
		t.Errorf("h2 streams = %d", c.Guard.HTTP2.MaxConcurrentStreams)
	}
}

func TestParseErrorsHaveLines(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // substrings, each must appear
	}{
		{"unknown key", "sites:\n  - upstreams:\n      - url: http://a:1\n    colour: red\n",
			[]string{`t.yaml:4: unknown key "colour" in site`}},
		{"bad type", "guard:\n  max_connections: lots\n", []string{"t.yaml:2:", "lots"}},
		{"bad url", "sites:\n  - upstreams:\n      - url: ftp://a:1\n", []string{"t.yaml:3: sites[0].upstreams[0].url:", "scheme must be http"}},
		{"no sites", "listen:\n  - address: \":8000\"\n", []string{"sites: at least one site"}},
		{"bad duration", "guard:\n  header_timeout: soon\n", []string{"t.yaml:2:"}},
		{"negative", "sites:\n  - upstreams: [{url: \"http://a:1\"}]\nguard:\n  idle_timeout: -5s\n", []string{"t.yaml:4: guard.idle_timeout: must be a positive duration"}},
		{"dup host", "sites:\n  - hosts: [a.com]\n    upstreams: [{url: \"http://a:1\"}]\n  - hosts: [A.com]\n    upstreams: [{url: \"http://b:1\"}]\n",
			[]string{"t.yaml:4: sites[1].hosts[0]:", "already served"}},
		{"bad size", "guard:\n  max_header_bytes: 12XB\n", []string{"t.yaml:2:", "invalid size"}},
		{"bad balance", "sites:\n  - upstreams: [{url: \"http://a:1\"}]\n    balance: random\n", []string{"t.yaml:3: sites[0].balance"}},
		{"ejection percent", "sites:\n  - upstreams: [{url: \"http://a:1\"}]\n    passive_health:\n      enabled: true\n      max_ejection_percent: 150\n",
			[]string{"t.yaml:5: sites[0].passive_health.max_ejection_percent: want 1-100"}},
		{"breaker ratio", "sites:\n  - upstreams: [{url: \"http://a:1\"}]\n    passive_health:\n      breaker: {failure_ratio: 1.5}\n",
			[]string{"t.yaml:4: sites[0].passive_health.breaker.failure_ratio"}},
		{"ejection order", "sites:\n  - upstreams: [{url: \"http://a:1\"}]\n    passive_health: {base_ejection: 1m, max_ejection: 10s}\n",
			[]string{"sites[0].passive_health.max_ejection: max_ejection 10s is below base_ejection 1m0s"}},
		{"known cookie name", "sites: [{upstreams: [{url: \"http://a:1\"}]}]\nknown_clients:\n  cookie_name: \"a b\"\n",
			[]string{"t.yaml:3: known_clients.cookie_name: use letters"}},
		{"known clearance name", "sites: [{upstreams: [{url: \"http://a:1\"}]}]\nknown_clients: {cookie_name: levee_clearance}\n",
			[]string{"known_clients.cookie_name: \"levee_clearance\" is the challenge's clearance cookie"}},
		{"known ages", "sites: [{upstreams: [{url: \"http://a:1\"}]}]\nknown_clients: {min_age: 2h, max_age: 1h}\n",
			[]string{"known_clients.min_age: min_age 2h0m0s must be below max_age 1h0m0s"}},
		{"known old key files", "sites: [{upstreams: [{url: \"http://a:1\"}]}]\nknown_clients: {key_file: /k, old_key_files: [\"\", /k/, a, b, c]}\n",
			[]string{"known_clients.old_key_files: at most 4 files, got 5", "known_clients.old_key_files[0]: empty path", "known_clients.old_key_files[1]: \"/k/\" is the key_file itself"}},
		{"rule named like a default limit", "sites: [{upstreams: [{url: \"http://a:1\"}]}]\nrules:\n  - name: per-address\n    match: {path: {prefix: /login}}\n    action: rate_limit\n    limit: {rate: 1, burst: 5}\n",
			[]string{`t.yaml:3: rules[0].name: rule name "per-address" is taken by the limit "per-address" (a built-in default limit`}},
		{"rule named like a limit", "sites: [{upstreams: [{url: \"http://a:1\"}]}]\nlimits:\n  - {name: api, rate: 10}\nrules:\n  - {name: ok, action: allow}\n  - {name: api, action: block}\n",
			[]string{`t.yaml:6: rules[1].name: rule name "api" is taken by limits[0]`}},
		{"rule limit named like a limit", "sites: [{upstreams: [{url: \"http://a:1\"}]}]\nlimits:\n  - {name: api, rate: 10}\nrules:\n  - name: login\n    action: rate_limit\n    limit:\n      name: api\n      rate: 1\n",
			[]string{`t.yaml:8: rules[0].limit.name: limit name "api" is taken by limits[0]`}},
		{"rule limits share a name", "sites: [{upstreams: [{url: \"http://a:1\"}]}]\nrules:\n  - {name: a, action: rate_limit, limit: {name: shared, rate: 1}}\n  - {name: b, action: rate_limit, limit: {name: shared, rate: 2}}\n  - {name: shared, action: rate_limit, limit: {rate: 3}}\n",
			[]string{`t.yaml:4: rules[1].limit.name: limit name "shared" is also the limit name of rules[0] (a)`, `t.yaml:5: rules[2].name: limit name "shared" is also the limit name of rules[0] (a)`}},
		{"two docs", "sites: []\n---\nsites: []\n", []string{"only one YAML document"}},
		{"syntax", "sites: [\n", []string{"t.yaml:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), "t.yaml")
			if err == nil {
				t.Fatal("want error")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error %T is not Errors", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// A rule may not take the name of a limit in effect: limit state is keyed
// by name, so a rate_limit rule named like a limit shared its counter (a
// rule named per-address was limited after 150 plain requests under the
// default limits). The defaults' names are free when the defaults are off.
func TestRuleNamesDistinctFromLimits(t *testing.T) {
	const site = "sites: [{upstreams: [{url: \"http://a:1\"}]}]\n"
	const rule = "rules: [{name: per-address, match: {path: {prefix: /login}}, action: rate_limit, limit: {rate: 1, burst: 5}}]\n"
	for _, tt := range []struct {
		name, src string
		ok        bool
	}{
		{"default limits in effect", rule, false},
		{"default limits disabled", "disable_default_limits: true\n" + rule, true},
		{"other limits configured", "limits: [{name: addr, rate: 50}]\n" + rule, true},
		{"configured limit of that name", "limits: [{name: per-address, rate: 50}]\n" + rule, false},
		{"other rule kinds too", "rules: [{name: per-network, action: log}]\n", false},
		{"distinct names", "rules: [{name: login, action: rate_limit, limit: {rate: 1}}, {name: b, action: rate_limit, limit: {name: b2, rate: 1}}]\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(site+tt.src), "t.yaml")
			if tt.ok && err != nil {
				t.Fatalf("rejected: %v", err)
			}
			if !tt.ok && (err == nil || !strings.Contains(err.Error(), "is taken by")) {
				t.Fatalf("want a name clash error, got %v", err)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"0": 0, "512": 512, "16KiB": 16 << 10, "64MiB": 64 << 20, "1GiB": 1 << 30, "10KB": 10000, "3 MB": 3e6, "7B": 7} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5MiB", "MiB", "1PiB", "99999999999GiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q) accepted", bad)
		}
	}
	if s := ByteSize(64 << 20).String(); s != "64MiB" {
		t.Errorf("String = %q", s)
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{"Example.COM": "example.com", "a.com:8080": "a.com", "a.com.": "a.com", "[::1]:80": "[::1]", "::1": "::1"} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("sites:\n  - upstreams:\n      - url: http://127.0.0.1:8080\n"))
	f.Add([]byte("listen: [{address: ':1', tls: {certificates: [{cert: a, key: b}]}}]\nguard: {max_body_bytes: 1GiB}\n"))
	f.Add([]byte("trusted_proxies: [1.2.3.0/24]\nsites: [{hosts: ['*.a'], upstreams: [{url: 'http://x'}]}]"))
	// Rules and limits: every matcher kind, every action, rate_limit rules
	// with their limits, dry_run, all/any/not (shared with internal/decide's
	// FuzzPolicyDecide, which compiles such policies into the engine).
	files, _ := filepath.Glob("testdata/policies/*.yaml")
	if len(files) < 4 {
		f.Fatalf("policy seeds: %d files", len(files))
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Default limits next to rules, and the rejected clashes of names.
	f.Add([]byte("sites: [{upstreams: [{url: 'http://x'}]}]\nrules: [{name: login, match: {query: {regex: '^(a|b)+$'}}, action: rate_limit, limit: {rate: 1}}]\n"))
	f.Add([]byte("sites: [{upstreams: [{url: 'http://x'}]}]\nrules: [{name: per-address, action: rate_limit, limit: {rate: 1}}]\n"))
	f.Add([]byte("sites: [{upstreams: [{url: 'http://x'}]}]\nlimits: [{name: a, rate: 1}]\nrules: [{name: b, action: rate_limit, limit: {name: a, rate: 1}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error without file name: %v", err)
			}
			return
		}
		// A config that parsed must validate again after re-defaulting.
		c.Defaults()
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails revalidation: %v", err)
		}
		// Rate limit state is keyed by limit name: no rule, and no rule's
		// limit, takes the name of a limit in effect.
		for _, l := range c.Limits {
			for _, r := range c.Rules {
				if r.Name == l.Name || (r.Limit != nil && r.Limit.Name == l.Name) {
					t.Fatalf("rule %q (limit %+v) takes the name of limit %q", r.Name, r.Limit, l.Name)
				}
			}
		}
	})
}

// The documented example must stay valid and must state the real defaults.
func TestExampleConfigIsValidAndDocumentsDefaults(t *testing.T) {
	c, err := Load("../../docs/levee.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var d Config
	d.Sites = c.Sites
	d.DataDir = c.DataDir
	d.Admin.TokenFile = c.Admin.TokenFile
	d.KnownClients.KeyFile = c.KnownClients.KeyFile
	d.Defaults()
	if d.Guard != c.Guard {
		t.Errorf("example guard section differs from the defaults:\nexample %+v\ndefault %+v", c.Guard, d.Guard)
	}
	if c.LimitMemory != d.LimitMemory || len(c.Limits) != len(d.Limits) || c.Limits[0] != d.Limits[0] || c.Limits[1] != d.Limits[1] {
		t.Errorf("example limits differ from the defaults: %+v vs %+v", c.Limits, d.Limits)
	}
	if !reflect.DeepEqual(c.KnownClients, d.KnownClients) {
		t.Errorf("example known_clients differs from the defaults:\nexample %+v\ndefault %+v", c.KnownClients, d.KnownClients)
	}
	var ds Config
	ds.Sites = []Site{{Upstreams: c.Sites[0].Upstreams}}
	ds.Defaults()
	if got, want := c.Sites[0].PassiveHealth, ds.Sites[0].PassiveHealth; got != want {
		t.Errorf("example sites[0].passive_health differs from the defaults:\nexample %+v\ndefault %+v", got, want)
	}
}

func TestPolicyValidation(t *testing.T) {
	base := "sites: [{upstreams: [{url: \"http://a:1\"}]}]\n"
	for name, tc := range map[string]struct{ src, want string }{
		"bad regex":     {"rules:\n  - name: r\n    action: block\n    match: {user_agent: {regex: \"(\"}}\n", "t.yaml:5: rules[0].match.user_agent.regex"},
		"bad action":    {"rules:\n  - {name: r, action: explode}\n", "rules[0].action"},
		"no limit":      {"rules:\n  - {name: r, action: rate_limit}\n", "rules[0].limit"},
		"two matchers":  {"rules:\n  - {name: r, action: block, match: {path: {exact: /a, prefix: /b}}}\n", "set exactly one"},
		"bad key":       {"limits:\n  - {name: l, key: \"ip+nose\", rate: 1}\n", "invalid key part"},
		"zero rate":     {"limits:\n  - {name: l, key: ip}\n", "limits[0].rate"},
		"bad cidr":      {"block: [300.1.1.1]\n", "block[0]"},
		"dup rule":      {"rules:\n  - {name: r, action: log}\n  - {name: r, action: log}\n", "duplicate rule name"},
		"feed format":   {"feeds:\n  - {path: /x, format: xml}\n", "feeds[0].format"},
		"deep nesting":  {"rules:\n  - {name: r, action: log, match: {not: {not: {not: {not: {not: {not: {not: {not: {not: {not: {path: {exact: /}}}}}}}}}}}}}\n", "nested deeper"},
		"limit on rule": {"rules:\n  - {name: r, action: block, limit: {rate: 1}}\n", "only rate_limit rules"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(base+tc.src), "t.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	c, err := Parse([]byte(base+"allow: [10.0.0.1, \"2001:db8::/32\"]\nrules:\n  - {name: r, action: rate_limit, limit: {rate: 2}}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if l := c.Rules[0].Limit; l.Name != "r" || l.Key != "ip" || l.Burst != 2 || l.V4Prefix != 32 {
		t.Errorf("rule limit defaults: %+v", l)
	}
	if p, _ := ParsePrefix("10.0.0.1"); p.String() != "10.0.0.1/32" {
		t.Errorf("bare address prefix: %v", p)
	}
	if p, _ := ParsePrefix("::ffff:10.1.2.3/120"); p.String() != "10.1.2.0/24" {
		t.Errorf("mapped prefix: %v", p)
	}
}

// guard.max_body_bytes: -1 is documented to disable the body cap; it must
// parse, survive Defaults, and stay refused in the size fields that do not
// document it.
func TestMaxBodyBytesNoLimit(t *testing.T) {
	const site = "sites: [{upstreams: [{url: \"http://a:1\"}]}]\n"
	c, err := Parse([]byte(site+"guard:\n  max_body_bytes: -1\n"), "t.yaml")
	if err != nil {
		t.Fatalf("max_body_bytes: -1 refused: %v", err)
	}
	if c.Guard.MaxBodyBytes != -1 {
		t.Fatalf("max_body_bytes = %d, want -1", c.Guard.MaxBodyBytes)
	}
	c.Defaults()
	if c.Guard.MaxBodyBytes != -1 {
		t.Fatalf("Defaults replaced -1 with %d", c.Guard.MaxBodyBytes)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for field, want := range map[string]string{
		"guard:\n  min_body_rate: -1\n":                  "t.yaml:3: guard.min_body_rate: must not be negative",
		"guard:\n  max_header_bytes: -1\n":               "t.yaml:3: guard.max_header_bytes: must not be negative",
		"guard:\n  max_url_length: -1\n":                 "t.yaml:3: guard.max_url_length: must not be negative",
		"guard:\n  http2: {max_header_list_bytes: -1}\n": "t.yaml:3: guard.http2.max_header_list_bytes: must not be negative",
		"guard:\n  http2: {hpack_table_bytes: -1}\n":     "t.yaml:3: guard.http2.hpack_table_bytes: must not be negative",
		"limit_memory: -1\n":                             "t.yaml:2: limit_memory:",
		"guard:\n  max_body_bytes: -2\n":                 "t.yaml:3: guard.max_body_bytes: invalid size \"-2\": sizes may not be negative",
		"guard:\n  max_body_bytes: -1KiB\n":              "t.yaml:3: guard.max_body_bytes: invalid size \"-1KiB\": sizes may not be negative",
	} {
		_, err := Parse([]byte(site+field), "t.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", field, err, want)
		}
	}
}

// Value errors name file, line and field, also those of values parsed by
// the decoder (netip prefixes, sizes, types), and one run reports every
// value error and unknown key, not just the first.
func TestDecodeErrorsHaveFieldAndLine(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"trusted proxy", "trusted_proxies: [notacidr]\n", `t.yaml:1: trusted_proxies[0]: invalid CIDR "notacidr"`},
		{"trusted proxy block", "trusted_proxies:\n  - 10.0.0.0/8\n  - 10.0.0.1\n", `t.yaml:3: trusted_proxies[1]: invalid CIDR "10.0.0.1": want a network such as 10.0.0.0/8 or 2001:db8::/32 (for a single address write 10.0.0.1/32)`},
		{"trusted proxies scalar", "trusted_proxies: 10.0.0.0/8\n", "t.yaml:1: trusted_proxies: want a list of networks"},
		{"allow", "allow:\n  - 10.0.0.0/33\n", `t.yaml:2: allow[0]: invalid CIDR "10.0.0.0/33"`},
		{"block", "block: [nope]\n", `t.yaml:1: block[0]: invalid address "nope"`},
		{"rule ip", "rules:\n  - name: r\n    action: block\n    match: {ip: [1.2.3.4, x/8]}\n", `t.yaml:4: rules[0].match.ip[1]: invalid CIDR "x/8"`},
		{"challenge cidr", "challenge:\n  allow:\n    cidrs: [10.0.0.0/8, nope]\n", `t.yaml:3: challenge.allow.cidrs[1]: "nope" is neither an address nor a CIDR`},
		{"challenge value", "challenge:\n  difficulty:\n    max: 40\n", "t.yaml:3: challenge.difficulty.max: difficulty.max 40: at most 32 bits"},
		{"type", "guard:\n  max_connections: lots\n", "t.yaml:2: guard.max_connections: cannot unmarshal string `lots` into int"},
		{"type in flow", "guard: {max_connections: 5, max_connections_per_ip: many}\n", "t.yaml:1: guard.max_connections_per_ip: cannot unmarshal string `many` into int"},
		{"size", "guard:\n  max_header_bytes: 12QB\n", `t.yaml:2: guard.max_header_bytes: invalid size "12QB"`},
		{"dup feed name", "feeds:\n  - {path: /a/drop.txt}\n  - {path: /b/drop.txt}\n", `t.yaml:3: feeds[1].name: feed name "drop.txt" is also that of feeds[0]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte("sites: [{upstreams: [{url: \"http://a:1\"}]}]\n"+tt.src), "t.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			// The site line is line 1: shift the expected line by one.
			want := shiftLine(tt.want)
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("err = %v\nwant %q", err, want)
			}
		})
	}

	src := `sites:
  - upstreams: [{url: "http://a:1"}]
    balance: weird
    colour: red
guard:
  max_header_bytes: 12QB
  shape: round
  max_connections: lots
trusted_proxies: [notacidr]
`
	_, err := Parse([]byte(src), "t.yaml")
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"t.yaml:3: sites[0].balance: want round_robin or least_conn",
		`t.yaml:4: unknown key "colour" in site`,
		`t.yaml:6: guard.max_header_bytes: invalid size "12QB"`,
		`t.yaml:7: unknown key "shape" in guard`,
		"t.yaml:8: guard.max_connections: cannot unmarshal",
		`t.yaml:9: trusted_proxies[0]: invalid CIDR "notacidr"`,
	}
	if len(es) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(es), len(want), err)
	}
	for i, w := range want {
		if i >= len(es) || !strings.HasPrefix(es[i].Error(), w) {
			t.Errorf("error %d: want prefix %q in\n%v", i, w, err)
		}
	}
}

// shiftLine adds one to the line number of "t.yaml:N: ...".
func shiftLine(s string) string {
	var n int
	rest, ok := strings.CutPrefix(s, "t.yaml:")
	if !ok {
		return s
	}
	i := strings.IndexByte(rest, ':')
	for _, c := range rest[:i] {
		n = n*10 + int(c-'0')
	}
	return fmt.Sprintf("t.yaml:%d%s", n+1, rest[i:])
}

func TestLineOf(t *testing.T) {
	src := []byte("guard:\n  max_body_bytes: 1GiB\nfeeds:\n  - {path: /a}\n  - path: /b\n")
	for path, want := range map[string]int{"guard.max_body_bytes": 2, "feeds[1]": 5, "feeds[1].path": 5, "feeds[2]": 0, "data_dir": 0, "guard.idle_timeout": 0} {
		if got := LineOf(src, path); got != want {
			t.Errorf("LineOf(%q) = %d, want %d", path, got, want)
		}
	}
}

// TestRepeatedKeyReportsOnlyIt: yaml.v3 skips a mapping with a repeated
// key, so the fields it held must not be reported as missing.
func TestRepeatedKeyReportsOnlyIt(t *testing.T) {
	for _, src := range []string{
		"sites:\n  - upstreams: [{url: \"http://127.0.0.1:1\"}]\n    connect_timeout: 1s\n    connect_timeout: 2s\n",
		"sites: [{upstreams: [{url: \"http://127.0.0.1:1\"}]}]\nlog: {level: info}\nlog: {level: debug}\n",
	} {
		_, err := Parse([]byte(src), "levee.yaml")
		if err == nil {
			t.Fatalf("%q accepted", src)
		}
		msg := err.Error()
		if !strings.Contains(msg, "already defined") || strings.Contains(msg, "at least one site") {
			t.Errorf("%q: %v, want only the repeated key", src, msg)
		}
	}
}

// TestSectionValuesCheckedAtLoad: values that the challenge service, the
// micro-cache and the admission gate would refuse when the shield builds
// them are refused by config validation already (levee config check).
func TestSectionValuesCheckedAtLoad(t *testing.T) {
	const site = "sites:\n  - upstreams: [{url: \"http://127.0.0.1:1\"}]\n"
	for src, want := range map[string]string{
		"challenge: {prefix_v4: 40}\n" + site:                               "challenge.prefix_v4",
		"challenge: {prefix_v6: 129}\n" + site:                              "challenge.prefix_v6",
		site + "    cache: {enabled: true, max_bytes: -5}\n":                "cache.max_bytes",
		site + "    cache: {enabled: true, shards: 5000}\n":                 "cache.shards",
		site + "    cache: {name: other}\n":                                 "cache.name",
		site + "    origin_protection: {enabled: true, queue_target: 5s}\n": "origin_protection.queue_target",
	} {
		_, err := Parse([]byte(src), "levee.yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error on %s", src, err, want)
		}
	}
	for _, src := range []string{
		site + "    cache: {enabled: true}\n",
		site + "    origin_protection: {enabled: true, queue_target: 50ms, max_wait: 2s}\n",
		"challenge: {prefix_v4: 32, prefix_v6: 48}\n" + site,
	} {
		if _, err := Parse([]byte(src), "levee.yaml"); err != nil {
			t.Errorf("%q: %v", src, err)
		}
	}
}
