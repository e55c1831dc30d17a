package decide

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/config"
)

// logLines returns the JSON log records in buf (the engine logs from the
// goroutine that calls Decide: this test's own).
func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, ln := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if ln == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("log line %q: %v", ln, err)
		}
		out = append(out, m)
	}
	return out
}

// TestLogOnlyAndDryRunRulesLog checks that rules with action log, and rules
// in dry run, write a sampled log line (one per rule per second, carrying
// the hits in between), never decide, and name themselves in
// Decision.Logged for the access log.
func TestLogOnlyAndDryRunRulesLog(t *testing.T) {
	var buf bytes.Buffer
	e := engine(t, `
disable_default_limits: true
rules:
  - {name: watch-search, match: {path: {prefix: /search}}, action: log}
  - {name: try-block, match: {method: [DELETE]}, action: block, dry_run: true}
  - {name: admin, match: {path: {prefix: /search/admin}}, action: block}
`, Deps{Logger: slog.New(slog.NewJSONHandler(&buf, nil))})

	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).UnixNano()
	for i := range 100 {
		d := e.Decide(now+int64(i)*int64(time.Millisecond), req("192.0.2.7", "GET", "/search", "ua"))
		if d.Verdict != Pass || d.By != "" || d.Logged != "watch-search" {
			t.Fatalf("GET /search #%d: %+v, want pass logged by watch-search", i, d)
		}
	}
	d := e.Decide(now, req("192.0.2.8", "DELETE", "/item", "ua"))
	if d.Verdict != Pass || d.Logged != "try-block" {
		t.Fatalf("DELETE in dry run: %+v, want pass logged by try-block", d)
	}
	// A later rule that decides keeps the first logging rule's name.
	d = e.Decide(now, req("192.0.2.9", "DELETE", "/search/admin", "ua"))
	if d.Verdict != Block || d.By != "admin" || d.Logged != "watch-search" {
		t.Fatalf("DELETE /search/admin: %+v, want block by admin, logged by watch-search", d)
	}
	if d := e.Decide(now, req("192.0.2.9", "GET", "/", "ua")); d.Logged != "" || d.Verdict != Pass {
		t.Fatalf("GET /: %+v, want a plain pass", d)
	}

	lines := logLines(t, &buf)
	if len(lines) != 2 {
		t.Fatalf("%d log lines in the first second, want 2 (one per rule): %v", len(lines), lines)
	}
	first := lines[0]
	if first["rule"] != "watch-search" || first["msg"] != "rule matched (log only)" || first["client"] != "192.0.2.7" ||
		first["path"] != "/search" || first["method"] != "GET" || first["action"] != "log" || first["hits_not_logged"] != 0.0 {
		t.Fatalf("first line %v", first)
	}
	if dry := lines[1]; dry["rule"] != "try-block" || dry["msg"] != "rule matched (dry run, not enforced)" || dry["action"] != "block" {
		t.Fatalf("dry-run line %v", dry)
	}

	// A second later the next hit is logged with the hits in between
	// (99 from the loop, 1 from the blocked request).
	e.Decide(now+int64(2*time.Second), req("192.0.2.7", "GET", "/search", "ua"))
	lines = logLines(t, &buf)
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3", len(lines))
	}
	if l := lines[2]; l["rule"] != "watch-search" || l["hits_not_logged"] != 100.0 {
		t.Fatalf("second line of watch-search %v, want 100 hits not logged", l)
	}
	for _, rs := range e.Rules() {
		if rs.Name == "watch-search" && rs.Hits != 102 {
			t.Fatalf("watch-search hits %d, want 102", rs.Hits)
		}
	}
}

// TestRuntimeRuleLimitHasItsOwnState: a runtime rate_limit rule named like
// a configured limit (runtime rules skip the config's name check) counts
// in its own namespace: 150 plain requests charge the default per-address
// limit, and the runtime rule's first request still passes.
func TestRuntimeRuleLimitHasItsOwnState(t *testing.T) {
	e := engine(t, "limit_memory: 1MiB\n", Deps{})
	now := time.Unix(1000, 0)
	err := e.SetRuntimeRules([]RuntimeRule{{
		Rule: config.Rule{Name: "per-address", Action: "rate_limit", Match: config.Match{Path: &config.StringMatch{Prefix: "/login"}},
			Limit: &config.Limit{Rate: 1, Burst: 5}},
		Source: "cli",
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 150 {
		if d := e.Decide(now.UnixNano(), req("203.0.113.5", "GET", "/", "Mozilla")); d.Verdict != Pass {
			t.Fatalf("plain request %d: %+v", i, d)
		}
	}
	if d := e.Decide(now.UnixNano(), req("203.0.113.5", "POST", "/login", "Mozilla")); d.Verdict != Pass {
		t.Fatalf("the runtime rule's first request after 150 plain ones: %+v (shares the per-address counters)", d)
	}
}
