// Package layers holds the test that keeps Levee's packages layered: the
// building blocks below the data plane must not import it, and the outage
// monitor stays a leaf. One table instead of a copy of the same test in
// each package.
package layers

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const mod = "github.com/levee-dev/levee/"

type rule struct {
	pkg string // import path below mod; "..." patterns allowed
	why string
	// bad reports whether dep (an import path) must not be a dependency.
	bad func(dep string) bool
	// mustList is a dependency the listing must contain (a sanity check
	// that the listing really covers the imports).
	mustList string
}

// only allows, from this module, the package's own tree and the prefixes
// given.
func only(own string, also ...string) func(string) bool {
	return func(dep string) bool {
		if !strings.HasPrefix(dep, mod) || dep == mod+own || strings.HasPrefix(dep, mod+own+"/") {
			return false
		}
		for _, a := range also {
			if dep == mod+a {
				return false
			}
		}
		return true
	}
}

// none forbids the given packages of this module (and their subpackages).
func none(pkgs ...string) func(string) bool {
	return func(dep string) bool {
		for _, p := range pkgs {
			if dep == mod+p || strings.HasPrefix(dep, mod+p+"/") {
				return true
			}
		}
		return false
	}
}

var rules = []rule{
	{pkg: "internal/admission", why: "origin-protection building blocks sit below the data plane",
		bad: none("internal/proxy", "internal/shield")},
	{pkg: "internal/cache", why: "the micro-cache sits below the data plane",
		bad: none("internal/proxy", "internal/shield")},
	{pkg: "internal/accesslog", why: "the offline analyzer uses telemetry, detect and incident, not the data plane or the monitor",
		bad: none("internal/proxy", "internal/shield", "internal/monitor"), mustList: mod + "internal/detect"},
	{pkg: "internal/challenge", why: "the data plane imports challenge, not the other way",
		bad: only("internal/challenge")},
	{pkg: "internal/fingerprint", why: "the data plane imports fingerprint, not the other way",
		bad: only("internal/fingerprint")},
	{pkg: "internal/iplist", why: "the store depends on iplist, not the other way",
		bad: func(dep string) bool {
			return only("internal/iplist")(dep) || strings.HasPrefix(dep, "modernc.org/") || dep == "database/sql"
		}},
	{pkg: "internal/monitor/...", why: "the monitor is a leaf: it talks to the shield over HTTP",
		bad: only("internal/monitor", "internal/buildinfo")},
}

func TestLayers(t *testing.T) {
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", mod+r.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", r.pkg, err, out)
			}
			deps := strings.Fields(string(out))
			for _, dep := range deps {
				if r.bad(dep) {
					t.Errorf("%s depends on %s: %s", r.pkg, dep, r.why)
				}
			}
			if r.mustList != "" && !strings.Contains(string(out), r.mustList) {
				t.Fatalf("go list output does not list %s:\n%s", r.mustList, out)
			}
		})
	}
}

// The predicates themselves: a broken one would let every rule pass.
func TestRulePredicates(t *testing.T) {
	for _, c := range []struct {
		bad  func(string) bool
		dep  string
		want bool
	}{
		{none("internal/proxy"), mod + "internal/proxy", true},
		{none("internal/proxy"), mod + "internal/proxyproto", false},
		{none("internal/monitor"), mod + "internal/monitor/probe", true},
		{only("internal/challenge"), mod + "internal/challenge", false},
		{only("internal/challenge"), mod + "internal/config", true},
		{only("internal/challenge"), "golang.org/x/crypto/blake2b", false},
		{only("internal/monitor", "internal/buildinfo"), mod + "internal/buildinfo", false},
		{only("internal/monitor", "internal/buildinfo"), mod + "internal/monitor/status", false},
		{only("internal/monitor", "internal/buildinfo"), mod + "internal/shield", true},
	} {
		if got := c.bad(c.dep); got != c.want {
			t.Errorf("rule on %s: bad = %v, want %v", c.dep, got, c.want)
		}
	}
}
