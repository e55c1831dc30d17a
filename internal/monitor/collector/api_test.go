package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor"
	"github.com/levee-dev/levee/internal/monitor/api"
	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/probe"
)

// newIdle builds a collector without running probes, for API tests.
func newIdle(t testing.TB, extra string) *Collector {
	t.Helper()
	dir := t.TempDir()
	cfgYAML := fmt.Sprintf(`data_dir: %s
probe_local: false
agents:
  - {name: a1, token_file: a1.token}
  - {name: a2, token_file: a2.token}
%s
targets:
  - {name: site, kind: tcp, address: "127.0.0.1:9"}
  - {name: only-a2, kind: tcp, address: "127.0.0.1:9", agents: [a2]}
`, dir+"/data", extra)
	h := writeConfig(t, dir, cfgYAML, "a1", "a2")
	c, err := New(h, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func writeConfig(t testing.TB, dir, cfgYAML string, agents ...string) *monitor.Config {
	t.Helper()
	for _, a := range agents {
		writeFile(t, dir+"/"+a+".token", agentTokenPrefix+a)
	}
	writeFile(t, dir+"/m.yaml", cfgYAML)
	cfg, err := monitor.Load(dir + "/m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := osWriteFile(path, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func do(t *testing.T, h http.Handler, method, path, token string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func TestAgentAuthAndPlan(t *testing.T) {
	c := newIdle(t, "")
	h := c.Handler()
	tests := []struct {
		name, token string
		code        int
	}{
		{"no token", "", 401},
		{"wrong token", "nope-nope-nope-nope", 401},
		{"prefix of a token", agentTokenPrefix, 401},
		{"a1", agentTokenPrefix + "a1", 200},
	}
	for _, tt := range tests {
		code, body := do(t, h, "GET", api.PlanPath, tt.token, nil)
		if code != tt.code {
			t.Errorf("%s: status %d (%s), want %d", tt.name, code, body, tt.code)
		}
		if strings.Contains(body, agentTokenPrefix) {
			t.Errorf("%s: response leaks a token", tt.name)
		}
	}
	for agent, want := range map[string]int{"a1": 1, "a2": 2} {
		_, body := do(t, h, "GET", api.PlanPath, agentTokenPrefix+agent, nil)
		var p api.Plan
		if err := json.Unmarshal([]byte(body), &p); err != nil {
			t.Fatal(err)
		}
		if p.Vantage != agent || len(p.Targets) != want || p.Targets[0].Interval != 10*time.Second {
			t.Errorf("plan for %s: %+v", agent, p)
		}
	}
}

func TestIngestIdempotentAndValidated(t *testing.T) {
	c := newIdle(t, "")
	h := c.Handler()
	now := time.Now()
	batch := api.Results{Results: []probe.Result{
		{ID: "a1-1", Target: "site", At: now.Add(-2 * time.Second), OK: true, Timings: probe.Timings{Total: time.Millisecond}},
		{ID: "a1-2", Target: "site", At: now.Add(-time.Second), OK: true, Timings: probe.Timings{Total: time.Millisecond}},
		{ID: "a1-3", Target: "only-a2", At: now, OK: true},             // not a1's target
		{ID: "", Target: "site", At: now, OK: true},                    // no id
		{ID: "a1-4", Target: "site", At: now.Add(time.Hour), OK: true}, // from the future
		{ID: "a1-5", Target: "site", Vantage: "a2", At: now, OK: true}, // claims another vantage
	}}
	code, body := do(t, h, "POST", api.ResultsPath, agentTokenPrefix+"a1", batch)
	var ack api.Ack
	json.Unmarshal([]byte(body), &ack)
	if code != 200 || ack != (api.Ack{Accepted: 3, Rejected: 3}) {
		t.Fatalf("first post: %d %s", code, body)
	}
	// The agent lost the ack and resends: nothing is counted twice.
	_, body = do(t, h, "POST", api.ResultsPath, agentTokenPrefix+"a1", batch)
	json.Unmarshal([]byte(body), &ack)
	if ack != (api.Ack{Duplicate: 3, Rejected: 3}) {
		t.Fatalf("replay: %s", body)
	}
	rs, _ := c.Store().Results(context.Background(), "site", now.Add(-time.Hour), now.Add(time.Hour), 100)
	for _, r := range rs {
		if r.Vantage != "a1" {
			t.Errorf("result %s stored as vantage %q, want the authenticated a1", r.ID, r.Vantage)
		}
	}
	if len(rs) != 3 {
		t.Errorf("stored %d results, want 3", len(rs))
	}
	if code, _ := do(t, h, "POST", api.ResultsPath, "", batch); code != 401 {
		t.Errorf("unauthenticated post: %d", code)
	}
	big := api.Results{Results: make([]probe.Result, api.MaxBatch+1)}
	if code, _ := do(t, h, "POST", api.ResultsPath, agentTokenPrefix+"a1", big); code != 413 {
		t.Errorf("oversized batch: %d", code)
	}
	if code, _ := do(t, h, "GET", "/metrics", "", nil); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
	_, m := do(t, h, "GET", "/metrics", "", nil)
	for _, want := range []string{`levee_monitor_ingested_results_total{outcome="duplicate",vantage="a1"} 3`, `levee_monitor_agent_auth_failures_total 1`, `levee_monitor_probes_total{result="ok",target="site",vantage="a1"} 3`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// seedIncident stores a closed incident and some history for page tests.
func seedIncident(t *testing.T, c *Collector) outage.Incident {
	now := time.Now()
	var rs []probe.Result
	for i := range 120 {
		at := now.Add(-time.Duration(120-i) * time.Minute)
		ok := i < 60 || i > 70
		r := probe.Result{ID: fmt.Sprintf("a1-%d", i), Target: "site", At: at, OK: ok, Timings: probe.Timings{Total: time.Duration(10+i%7) * time.Millisecond}}
		if !ok {
			r.Failure = probe.FailRefused
		}
		rs = append(rs, r)
	}
	if _, err := c.IngestAt(now, "a1", rs); err != nil {
		t.Fatal(err)
	}
	inc := outage.Incident{ID: "site-1", Target: "site", Start: now.Add(-60 * time.Minute), Detected: now.Add(-59 * time.Minute),
		End: now.Add(-49 * time.Minute), Closed: now.Add(-48 * time.Minute), Peak: outage.Down, Vantages: []string{"a1", "a2"},
		Onsets: map[string]time.Time{"a1": now.Add(-60 * time.Minute), "a2": now.Add(-60*time.Minute + 7*time.Second)},
		Label:  outage.LabelCleanCut, Evidence: []string{"2 of 2 vantage points down <script>"},
		Timeline: []outage.Classification{{At: now.Add(-59 * time.Minute), Label: outage.LabelCleanCut, Evidence: []string{"failures: 10 refused"}}}}
	if err := c.Store().SaveIncident(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	return inc
}

var externalRef = regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`)

func TestStatusPageSelfContained(t *testing.T) {
	c := newIdle(t, "")
	seedIncident(t, c)
	for _, rng := range []string{"24h", "7d", "90d"} {
		code, body := do(t, c.Handler(), "GET", "/?range="+rng, "", nil)
		if code != 200 {
			t.Fatalf("status page %s: %d", rng, code)
		}
		for _, want := range []string{"<svg", "site", "clean cut", "Incident history", "only-a2", ">90."} {
			if !strings.Contains(body, want) {
				t.Errorf("range %s: page lacks %q", rng, want)
			}
		}
		if externalRef.MatchString(body) || strings.Contains(body, "<script") {
			t.Errorf("range %s: page references external assets or scripts", rng)
		}
	}
	code, body := do(t, c.Handler(), "GET", "/incidents/site-1", "", nil)
	if code != 200 || !strings.Contains(body, "failures: 10 refused") || !strings.Contains(body, "&lt;script&gt;") || !strings.Contains(body, "(+7.0 s)") || !strings.Contains(body, "From where") || !strings.Contains(body, "refused</title>") {
		t.Errorf("incident page %d:\n%s", code, body)
	}
	if code, _ := do(t, c.Handler(), "GET", "/incidents/nope", "", nil); code != 404 {
		t.Errorf("unknown incident: %d", code)
	}
}

func TestJSONAPI(t *testing.T) {
	c := newIdle(t, "")
	seedIncident(t, c)
	h := c.Handler()
	var st struct {
		Targets []struct {
			Name   string
			Uptime []struct {
				Range string
				Ratio float64
			}
		}
		Incidents []struct {
			ID   string
			Rank string
		}
	}
	_, body := do(t, h, "GET", "/api/v1/status", "", nil)
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Targets) != 2 || len(st.Incidents) != 1 || st.Incidents[0].Rank != "only incident in the last 90 days" {
		t.Fatalf("status: %s", body)
	}
	// 11 minutes of outage over ~2 hours of data.
	if u := st.Targets[0].Uptime[0]; u.Range != "24h" || u.Ratio < 0.90 || u.Ratio > 0.95 {
		t.Errorf("uptime %+v", u)
	}
	code, body := do(t, h, "GET", "/api/v1/targets/site/series?range=24h", "", nil)
	var ch struct {
		Buckets []struct{ N, OK int }
	}
	json.Unmarshal([]byte(body), &ch)
	total := 0
	for _, b := range ch.Buckets {
		total += b.N
	}
	if code != 200 || total != 120 {
		t.Errorf("series: %d, %d probes in buckets", code, total)
	}
	if code, _ := do(t, h, "GET", "/api/v1/targets/nope/series", "", nil); code != 404 {
		t.Errorf("unknown target series: %d", code)
	}
	code, body = do(t, h, "GET", "/api/v1/incidents?target=site", "", nil)
	if code != 200 || !strings.Contains(body, `"site-1"`) {
		t.Errorf("incidents: %d %s", code, body)
	}
	code, body = do(t, h, "GET", "/api/v1/targets/site/results?limit=5", "", nil)
	if code != 200 || strings.Count(body, `"id"`) != 5 {
		t.Errorf("results: %d %s", code, body)
	}
}

func TestShieldLink(t *testing.T) {
	var gotAuth, gotQuery string
	shield := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotQuery = r.Header.Get("Authorization"), r.URL.RawQuery
		if r.URL.Path != "/v1/incidents" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{"incidents":[{"id":"shield-42","kind":"http_flood","peak_rps":120000}]}`)
	}))
	defer shield.Close()
	dir := t.TempDir()
	writeFile(t, dir+"/admin.token", "admin-secret")
	c := newIdle(t, fmt.Sprintf("shield: {admin_url: %q, token_file: %q}", shield.URL, dir+"/admin.token"))
	seedIncident(t, c)
	code, body := do(t, c.Handler(), "GET", "/incidents/site-1", "", nil)
	if code != 200 || !strings.Contains(body, "shield-42") || !strings.Contains(body, "http_flood") {
		t.Fatalf("incident page lacks the shield incident: %d\n%s", code, body)
	}
	if gotAuth != "Bearer admin-secret" || !strings.Contains(gotQuery, "from=") {
		t.Errorf("shield request auth %q query %q", gotAuth, gotQuery)
	}
	shield.Close()
	_, body = do(t, c.Handler(), "GET", "/api/v1/incidents/site-1", "", nil)
	if !strings.Contains(body, "shield_error") {
		t.Errorf("unreachable shield not reported: %s", body)
	}
}

func TestWebhookRetries(t *testing.T) {
	var (
		mu    sync.Mutex
		calls int
		got   WebhookEvent
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls < 3 {
			http.Error(w, "busy", 503)
			return
		}
		if r.Header.Get("Authorization") != "Bearer hook-token" {
			t.Errorf("webhook auth %q", r.Header.Get("Authorization"))
		}
		json.NewDecoder(r.Body).Decode(&got)
	}))
	defer srv.Close()
	c := newIdle(t, "")
	w := newWebhooks([]monitor.Webhook{{URL: srv.URL, Token: "hook-token", Timeout: time.Second}}, srv.Client(), c.log, c.m)
	w.backoff = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.run(ctx); close(done) }()
	w.enqueue(WebhookEvent{Event: "open", Target: "site", Label: outage.LabelCleanCut, Incident: outage.Incident{ID: "x"}})
	waitFor(t, 2*time.Second, "webhook delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got.Event == "open"
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if calls != 3 || got.Incident.ID != "x" {
		t.Errorf("calls %d event %+v", calls, got)
	}
}
