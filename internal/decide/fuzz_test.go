package decide

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/config"
)

// policySeeds are the fuzz seeds shared with internal/config's FuzzParse:
// configurations with rules and limits (every matcher kind, all/any/not,
// every action, rate_limit rules with their limits, dry_run, limits with
// key expressions and matches), and the example configuration.
func policySeeds(f *testing.F) {
	files, _ := filepath.Glob("../config/testdata/policies/*.yaml")
	files = append(files, "../../docs/levee.example.yaml")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	if len(files) < 5 {
		f.Fatalf("policy seeds: %d files", len(files))
	}
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
	policySeeds(f)
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
