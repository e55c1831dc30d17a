package shield

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/levee-dev/levee/internal/accesslog"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/decide"
)

// TestOneHeavySourceLimitedOthersServed: one address over its limit gets 429
// while 50 other addresses at a normal rate are all served.
func TestOneHeavySourceLimitedOthersServed(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
limits:
  - {name: per-address, key: ip, rate: 20, burst: 20}
`, o.addr))
	var wg sync.WaitGroup
	var mu sync.Mutex
	normalOK, normalTotal := 0, 0
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := dialFrom(t, fmt.Sprintf("127.0.1.%d", i+1), addrOf(s, 0))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for time.Now().Before(deadline) { // 5 req/s each
				resp, _, err := get(c, "/")
				mu.Lock()
				normalTotal++
				if err == nil && resp.StatusCode == 200 {
					normalOK++
				}
				mu.Unlock()
				time.Sleep(200 * time.Millisecond)
			}
		}(i)
	}
	heavy, err := dialFrom(t, "127.0.2.1", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer heavy.Close()
	ok, limited, retry := 0, 0, ""
	for time.Now().Before(deadline) {
		resp, _, err := get(heavy, "/")
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case 200:
			ok++
		case 429:
			limited++
			retry = resp.Header.Get("Retry-After")
		}
	}
	wg.Wait()
	if normalOK != normalTotal || normalTotal < 300 {
		t.Fatalf("normal clients: %d/%d served", normalOK, normalTotal)
	}
	if limited == 0 || ok > 20+2*20+5 || retry == "" {
		t.Fatalf("heavy source: %d ok, %d limited (Retry-After %q)", ok, limited, retry)
	}
	t.Logf("heavy source: %d ok, %d x 429; 50 normal clients: %d/%d ok", ok, limited, normalOK, normalTotal)
}

// TestNetworkLimitCatchesManyAddresses: a /24 limit catches many addresses
// of one network while another network is served.
func TestNetworkLimitCatchesManyAddresses(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
limits:
  - {name: per-address, key: ip, rate: 100, burst: 100}
  - {name: per-network, key: ip, v4_prefix: 24, rate: 1, burst: 30}
`, o.addr))
	okN, limitedN := 0, 0
	for i := 1; i <= 60; i++ {
		c, err := dialFrom(t, fmt.Sprintf("127.0.3.%d", i), addrOf(s, 0))
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := get(c, "/")
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			okN++
		} else if resp.StatusCode == 429 {
			limitedN++
		}
	}
	if okN < 30 || okN > 34 || limitedN < 26 {
		t.Fatalf("60 addresses of one /24: %d ok, %d limited; want ~30 ok", okN, limitedN)
	}
	c, _ := dialFrom(t, "127.0.4.1", addrOf(s, 0))
	defer c.Close()
	if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("other network: %v %v", err, resp)
	}
}

func TestBanClosesNextConnectionAndPersists(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	cfgSrc := fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"http://%s\"}]}]\ndata_dir: %s\n", o.addr, dir)
	s := startShield(t, cfgSrc)
	// A connection opened before the ban.
	open, _ := dialFrom(t, "127.0.5.5", addrOf(s, 0))
	defer open.Close()
	if resp, _, err := get(open, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatal("before ban:", err)
	}
	b, _ := parseBan(BanRequest{Prefix: "127.0.5.0/24", For: "1h", Reason: "test"}, time.Now())
	if err := s.bans.Add(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	// The next connection is reset at accept time.
	c, err := dialFrom(t, "127.0.5.6", addrOf(s, 0))
	if err == nil {
		_, _, err = get(c, "/")
		c.Close()
	}
	if err == nil {
		t.Fatal("banned source served on a new connection")
	}
	// A request on the connection opened before the ban gets 403.
	if resp, _, err := get(open, "/"); err != nil || resp.StatusCode != 403 {
		t.Fatalf("request on an open connection after the ban: %v %v", err, resp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Shutdown(ctx)

	// Restart on the same data directory: the ban is still there.
	cfg, err := config.Parse([]byte(cfgSrc+"admin: {address: \"off\"}\n"), "levee.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Shutdown(ctx)
	if !s2.bans.Banned(netip.MustParseAddr("127.0.5.99"), time.Now()) {
		t.Fatal("ban lost across restart")
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	c, err = dialFrom(t, "127.0.5.7", addrOf(s2, 0))
	if err == nil {
		_, _, err = get(c, "/")
		c.Close()
	}
	if err == nil {
		t.Fatal("banned source served after restart")
	}
}

func TestRulesThroughTheProxy(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
tarpit_delay: 300ms
rules:
  - {name: scanners, match: {user_agent: {contains: sqlmap}}, action: block}
  - {name: wp, match: {path: {prefix: /wp-}}, action: drop}
  - {name: xmlrpc, match: {path: {exact: /xmlrpc.php}}, action: tarpit}
  - {name: heavy, match: {path: {prefix: /search}}, action: rate_limit, limit: {rate: 1, burst: 2}}
  - {name: chal, match: {path: {prefix: /chal}}, action: challenge}
`, o.addr))
	do := func(path, ua string) (int, error) {
		c, err := net.Dial("tcp", addrOf(s, 0))
		if err != nil {
			return 0, err
		}
		defer c.Close()
		resp, _, err := get(c, path, "User-Agent: "+ua)
		if err != nil {
			return 0, err
		}
		return resp.StatusCode, nil
	}
	if code, _ := do("/", "sqlmap/1.7"); code != 403 {
		t.Errorf("scanner: %d", code)
	}
	if code, _ := do("/", "Mozilla"); code != 200 {
		t.Errorf("browser: %d", code)
	}
	// Drop and tarpit reset the connection (RST, not FIN): the client
	// reads ECONNRESET.
	if _, err := do("/wp-login.php", "x"); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("drop rule: err %v, want a connection reset", err)
	}
	start := time.Now()
	if _, err := do("/xmlrpc.php", "x"); !errors.Is(err, syscall.ECONNRESET) || time.Since(start) < 250*time.Millisecond {
		t.Errorf("tarpit: err %v after %v, want a connection reset after the delay", err, time.Since(start))
	}
	codes := []int{}
	for i := 0; i < 4; i++ {
		code, _ := do("/search?q=x", "Mozilla")
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[200 200 429 429]" {
		t.Errorf("rate_limit rule: %v", codes)
	}
	// The challenge verdict serves the challenge page, not the origin.
	hitsBefore := o.hits.Load()
	c, _ := net.Dial("tcp", addrOf(s, 0))
	resp, body, err := get(c, "/chal", "User-Agent: Mozilla", "Accept: text/html")
	c.Close()
	if err != nil || o.hits.Load() != hitsBefore || !strings.Contains(body, "/.levee/") || resp.Header.Get("Cache-Control") == "" {
		t.Errorf("challenge: %v, origin hits %d -> %d, status %v, body %.200q", err, hitsBefore, o.hits.Load(), resp.StatusCode, body)
	}
	hits := map[string]uint64{}
	for _, r := range s.engine.Rules() {
		hits[r.Name] = r.Hits
	}
	if hits["scanners"] != 1 || hits["heavy"] != 4 || hits["wp"] != 1 {
		t.Errorf("rule hits: %v", hits)
	}
}

func TestAccessLogLines(t *testing.T) {
	o := startOrigin(t)
	logPath := t.TempDir() + "/access.log"
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0", h2c: true}]
sites: [{name: shop, upstreams: [{url: "http://%s"}]}]
log: {access_log: %s}
rules:
  - {name: watch-a, match: {path: {prefix: /a}}, action: log}
  - {name: scanners, match: {user_agent: {contains: sqlmap}}, action: block}
`, o.addr, logPath))
	c, _ := dialFrom(t, "127.0.6.1", addrOf(s, 0))
	get(c, "/a?b=1", "User-Agent: Mozilla \"quoted\" \xff")
	get(c, "/b", "User-Agent: sqlmap")
	c.Close()
	// HTTP/2 requests (h2c) are logged the same way.
	tr := &http2.Transport{AllowHTTP: true}
	tr.DialTLS = func(network, addr string, _ *tls.Config) (net.Conn, error) { return net.Dial(network, addr) }
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for _, ua := range []string{"h2-client", "sqlmap-h2"} {
		rq, _ := http.NewRequest("GET", "http://"+addrOf(s, 0)+"/a2?z=9", nil)
		rq.Header.Set("User-Agent", ua)
		resp, err := cl.Do(rq)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	data := shutdownAndRead(t, s, logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 lines, got %q", data)
	}
	type logLine struct {
		TS       time.Time `json:"ts"`
		Site     string    `json:"site"`
		Client   string    `json:"client"`
		Method   string    `json:"method"`
		Path     string    `json:"path"`
		Query    string    `json:"query"`
		Status   int       `json:"status"`
		UA       string    `json:"ua"`
		Verdict  string    `json:"verdict"`
		Duration float64   `json:"duration_ms"`
		Bytes    int       `json:"bytes"`
		By       string    `json:"by"`
		LogRule  string    `json:"log_rule"`
	}
	var e logLine
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("line 1 is not JSON: %v: %s", err, lines[0])
	}
	if e.Site != "shop" || e.Client != "127.0.6.1" || e.Path != "/a" || e.Query != "b=1" || e.Status != 200 || e.Verdict != "pass" || e.UA != "Mozilla \"quoted\" \ufffd" || time.Since(e.TS) > time.Minute ||
		e.By != "" || e.LogRule != "watch-a" {
		t.Fatalf("line 1: %+v", e)
	}
	// Verdict names are telemetry's (pass, blocked, limited, ...), the ones
	// levee analyze reads.
	e = logLine{}
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil || e.Status != 403 || e.Verdict != "blocked" || e.By != "scanners" || e.LogRule != "" {
		t.Fatalf("line 2: %v %+v", err, e)
	}
	e = logLine{}
	if err := json.Unmarshal([]byte(lines[2]), &e); err != nil || e.Status != 200 || e.Verdict != "pass" || e.Method != "GET" ||
		e.Path != "/a2" || e.Query != "z=9" || e.UA != "h2-client" || e.Site != "shop" || e.Client != "127.0.0.1" ||
		e.LogRule != "watch-a" || e.By != "" || e.Bytes == 0 {
		t.Fatalf("line 3 (HTTP/2): %v %+v", err, e)
	}
	e = logLine{}
	if err := json.Unmarshal([]byte(lines[3]), &e); err != nil || e.Status != 403 || e.Verdict != "blocked" || e.By != "scanners" || e.LogRule != "watch-a" {
		t.Fatalf("line 4 (HTTP/2, blocked): %v %+v", err, e)
	}
	r, err := accesslog.NewReader(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		le, err := r.Next()
		if err != nil || le.Format != accesslog.FormatJSON || !le.HasVerdict || le.Status == 0 {
			t.Fatalf("levee analyze's reader on line %d: %v %+v", i+1, err, le)
		}
	}
}

func TestMetricsExposeUpstreamsAndVerdicts(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{name: shop, upstreams: [{url: "http://%s"}]}]
rules: [{name: scanners, match: {user_agent: {contains: sqlmap}}, action: block}]
`, o.addr))
	c, _ := net.Dial("tcp", addrOf(s, 0))
	get(c, "/", "User-Agent: sqlmap")
	get(c, "/")
	c.Close()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			fmt.Fprintf(&text, "%s{%s}", mf.GetName(), strings.Join(labels, ","))
			if m.GetCounter() != nil {
				fmt.Fprintf(&text, " %v", m.GetCounter().GetValue())
			}
			if m.GetGauge() != nil {
				fmt.Fprintf(&text, " %v", m.GetGauge().GetValue())
			}
			text.WriteString("\n")
		}
	}
	out := text.String()
	for _, want := range []string{
		`levee_upstream_healthy{site=shop,upstream=` + o.addr + `} 1`,
		`levee_http_requests_total{code=4xx,site=shop,verdict=block} 1`,
		`levee_http_requests_total{code=2xx,site=shop,verdict=pass} 1`,
		`levee_decide_rule_hits_total{action=block,rule=scanners} 1`,
		`levee_guard_connections_admitted_total{} 1`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}

func TestUnderAttackModeChallengesUnverifiedClients(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
allow: [127.0.13.9]
challenge: {allow: {paths: [/health]}}
`, o.addr))
	fetch := func(src, path, accept string) (*http.Response, string) {
		c, err := dialFrom(t, src, addrOf(s, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resp, body, err := get(c, path, "Accept: "+accept)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	if resp, _ := fetch("127.0.13.1", "/", "text/html"); resp.StatusCode != 200 {
		t.Fatalf("normal mode: %d", resp.StatusCode)
	}
	s.engine.SetMode(decide.ModeState{Mode: decide.UnderAttack, Until: time.Now().Add(time.Minute)})
	hits := o.hits.Load()
	resp, body := fetch("127.0.13.1", "/", "text/html")
	if resp.StatusCode == 200 || !strings.Contains(body, "/.levee/") || o.hits.Load() != hits {
		t.Fatalf("under attack, unverified browser: %d, origin reached %v", resp.StatusCode, o.hits.Load() != hits)
	}
	if !strings.Contains(resp.Header.Get("Cache-Control"), "no-store") {
		t.Errorf("challenge page cacheable: %q", resp.Header.Get("Cache-Control"))
	}
	resp, body = fetch("127.0.13.1", "/", "application/json")
	if !strings.HasPrefix(strings.TrimSpace(body), "{") || resp.StatusCode < 400 {
		t.Errorf("API client under attack: %d %q", resp.StatusCode, body)
	}
	if resp, _ := fetch("127.0.13.9", "/", "text/html"); resp.StatusCode != 200 {
		t.Errorf("allowlisted client challenged: %d", resp.StatusCode)
	}
	if resp, _ := fetch("127.0.13.1", "/health", "text/html"); resp.StatusCode != 200 {
		t.Errorf("exempt path challenged: %d", resp.StatusCode)
	}
}

// TestAccessLogCapsRejectedLines: under a flood of rejected requests the
// access log writes at most log.access_log_max_rejected of their lines per
// second and counts the rest; passed requests are all written.
func TestAccessLogCapsRejectedLines(t *testing.T) {
	o := startOrigin(t)
	logPath := t.TempDir() + "/access.log"
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{name: shop, upstreams: [{url: "http://%s"}]}]
log: {access_log: %s, access_log_max_rejected: 5}
rules: [{name: scanners, match: {user_agent: {contains: sqlmap}}, action: block}]
`, o.addr, logPath))
	c, _ := dialFrom(t, "127.0.6.2", addrOf(s, 0))
	for i := range 30 {
		get(c, "/x", "User-Agent: sqlmap")
		if i%6 == 0 {
			get(c, "/ok")
		}
	}
	c.Close()
	data := shutdownAndRead(t, s, logPath)
	rejected := strings.Count(string(data), `"verdict":"blocked"`)
	passed := strings.Count(string(data), `"verdict":"pass"`)
	suppressed, _ := metricValue(t, s, "levee_access_log_suppressed_total", nil)
	// The 30 requests may straddle a second: at most two windows of 5.
	if rejected < 5 || rejected > 10 || rejected+int(suppressed) != 30 {
		t.Fatalf("%d rejected lines written and %v left out, want 5-10 written and 30 in all", rejected, suppressed)
	}
	if passed != 5 {
		t.Fatalf("%d passed lines, want all 5", passed)
	}
}

// TestAccessLogKeepsHTTP2LinesAcrossReload: an HTTP/2 request in flight
// while a reload reopens the access log (log rotation) is still logged.
func TestAccessLogKeepsHTTP2LinesAcrossReload(t *testing.T) {
	o := startOrigin(t)
	logPath := t.TempDir() + "/access.log"
	cfgText := fmt.Sprintf(`
listen: [{address: "127.0.0.1:0", h2c: true}]
sites: [{name: shop, upstreams: [{url: "http://%s"}]}]
log: {access_log: %s}
`, o.addr, logPath)
	s := startShield(t, cfgText)
	tr := &http2.Transport{AllowHTTP: true}
	tr.DialTLS = func(network, addr string, _ *tls.Config) (net.Conn, error) { return net.Dial(network, addr) }
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() {
		resp, err := cl.Get("http://" + addrOf(s, 0) + "/slow?d=600ms")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	reapply(t, s, cfgText)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	data := shutdownAndRead(t, s, logPath)
	if !strings.Contains(string(data), `"path":"/slow"`) {
		t.Fatalf("the HTTP/2 request in flight across the reload is not in the access log:\n%s", data)
	}
}

// TestRetiredAccessLogsAreReleased: an access log replaced by a reload is
// closed and forgotten after its grace period (each holds a 64 KiB
// buffer: a shield reloaded hourly must not keep them all), and one still
// in its grace period is flushed by Shutdown.
func TestRetiredAccessLogsAreReleased(t *testing.T) {
	o := startOrigin(t)
	logPath := t.TempDir() + "/access.log"
	cfgText := fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{name: shop, upstreams: [{url: "http://%s"}]}]
log: {access_log: %s}
`, o.addr, logPath)
	s := startShield(t, cfgText)
	reload := func() { t.Helper(); reapply(t, s, cfgText) }
	reload()
	reload()
	retired := func() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.retiredLogs) }
	if n := retired(); n != 2 {
		t.Fatalf("%d retired logs right after two reloads, want 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for retired() != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := retired(); n != 0 {
		t.Fatalf("%d retired logs kept after their grace period", n)
	}
	// A line written to a log just retired (by a request that loaded it
	// before the swap) reaches the file at Shutdown.
	old := s.alog
	reload()
	old.Write(&accesslog.Entry{Format: accesslog.FormatJSON, Time: time.Now(), Path: []byte("/after-reload"), HasVerdict: true}, false)
	data := shutdownAndRead(t, s, logPath)
	if !strings.Contains(string(data), `"path":"/after-reload"`) {
		t.Fatalf("line missing after shutdown:\n%s", data)
	}
}

// reapply reloads s with the configuration text cfgText, keeping the
// listeners it started on (port 0 became real ports).
func reapply(t *testing.T, s *Shield, cfgText string) {
	t.Helper()
	cfg, err := config.Parse([]byte(cfgText), "levee.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = s.cfg.Load().Listen
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
}

// shutdownAndRead shuts s down (flushing its access log) and returns the
// contents of the file at path.
func shutdownAndRead(t *testing.T, s *Shield, path string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Shutdown(ctx)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
