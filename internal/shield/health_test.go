package shield

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// switchOrigin is a loopback origin that answers 502 while failing is set.
type switchOrigin struct {
	addr    string
	hits    atomic.Int64
	failing atomic.Bool
}

func startSwitchOrigin(t *testing.T) *switchOrigin {
	t.Helper()
	o := &switchOrigin{}
	o.addr = serveOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		w.Header().Set("X-Origin", o.addr)
		if o.failing.Load() {
			w.WriteHeader(502)
			io.WriteString(w, "origin says bad gateway")
			return
		}
		if r.URL.Path == "/page" {
			w.Header().Set("Cache-Control", "public, max-age=1")
		}
		io.WriteString(w, "page "+r.URL.Path)
	})
	return o
}

// metricLines renders the registry as "name{k=v,...} value" lines.
func metricLines(t *testing.T, s *Shield) string {
	t.Helper()
	mfs, err := s.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			fmt.Fprintf(&b, "%s{%s}", mf.GetName(), strings.Join(labels, ","))
			if m.GetCounter() != nil {
				fmt.Fprintf(&b, " %v", m.GetCounter().GetValue())
			}
			if m.GetGauge() != nil {
				fmt.Fprintf(&b, " %v", m.GetGauge().GetValue())
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestPassiveHealthEjectsFailingOrigin: of two origins, one starts
// answering 502. After consecutive_errors of them it is ejected and every
// request goes to the good one; the ejection shows in the metrics and the
// status, survives a reload that does not change the site, and starts
// afresh (metrics re-registered, no duplicate-registration error) after a
// reload that does.
func TestPassiveHealthEjectsFailingOrigin(t *testing.T) {
	good, bad := startSwitchOrigin(t), startSwitchOrigin(t)
	conf := func(errors int) string {
		return fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - name: app
    upstreams: [{url: "http://%s"}, {url: "http://%s"}]
    passive_health: {enabled: true, consecutive_errors: %d, max_ejection_percent: 50}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
detection: {disable: true}
`, good.addr, bad.addr, errors)
	}
	s := startShield(t, conf(3))
	c, err := net.Dial("tcp", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(n int) (codes map[int]int, from map[string]int) {
		codes, from = map[int]int{}, map[string]int{}
		for i := 0; i < n; i++ {
			resp, _, err := get(c, "/")
			if err != nil {
				t.Fatal(err)
			}
			codes[resp.StatusCode]++
			from[resp.Header.Get("X-Origin")]++
		}
		return codes, from
	}
	if _, from := send(10); from[good.addr] != 5 || from[bad.addr] != 5 {
		t.Fatalf("healthy pool: %v, want round robin", from)
	}
	bad.failing.Store(true)
	before := bad.hits.Load()
	codes, _ := send(40)
	if got := bad.hits.Load() - before; got != 3 {
		t.Errorf("the failing origin got %d requests, want 3 (consecutive_errors) before its ejection", got)
	}
	if codes[502] != 3 || codes[200] != 37 {
		t.Errorf("answers %v, want 3 x 502 then only 200", codes)
	}
	m := metricLines(t, s)
	for _, want := range []string{
		"levee_admission_outlier_ejected{site=app,upstream=" + bad.addr + "} 1",
		"levee_admission_outlier_ejected{site=app,upstream=" + good.addr + "} 0",
		"levee_admission_outlier_ejections_total{reason=errors,site=app,upstream=" + bad.addr + "} 1",
		"levee_admission_breaker_state{upstream=app} 0",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	st := s.Status().(StatusReport)
	if u := st.Sites[0].Upstreams; len(u) != 2 || u[0].Ejected || !u[1].Ejected || st.Sites[0].Breaker != "closed" {
		t.Errorf("status: %+v", st.Sites[0])
	}

	// A reload that leaves the site alone keeps the ejection.
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	before = bad.hits.Load()
	if codes, _ := send(10); codes[200] != 10 || bad.hits.Load() != before {
		t.Errorf("after an unchanged reload: %v, failing origin hit %d times", codes, bad.hits.Load()-before)
	}
	// A reload that changes passive_health starts afresh.
	if err := os.WriteFile(s.opts.ConfigPath, []byte(conf(4)+"data_dir: "+s.Config().DataDir+"\nadmin: {address: \"off\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if m := metricLines(t, s); !strings.Contains(m, "levee_admission_outlier_ejected{site=app,upstream="+bad.addr+"} 0") {
		t.Errorf("after a changed reload the ejection was kept:\n%s", m)
	}
	before = bad.hits.Load()
	if codes, _ := send(20); codes[502] != 4 || bad.hits.Load()-before != 4 {
		t.Errorf("after a changed reload: %v, failing origin hit %d times, want 4", codes, bad.hits.Load()-before)
	}
}

// TestBreakerStopsTrafficToFailingOriginAndRecovers: a single origin that
// starts failing opens the breaker; while it is open the origin receives no
// request, clients get 503 with Retry-After (or the stale cache entry), and
// after open_time half-open trials close it again.
func TestBreakerStopsTrafficToFailingOriginAndRecovers(t *testing.T) {
	o := startSwitchOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - name: app
    upstreams: [{url: "http://%s"}]
    cache: {enabled: true, stale_for: 1m}
    passive_health:
      enabled: true
      breaker: {min_requests: 4, failure_ratio: 0.5, open_time: 3s, half_open_probes: 2}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
detection: {disable: true}
`, o.addr))
	c, err := net.Dial("tcp", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fetch := func(path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		resp, body, err := get(c, path, hdr...)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	if resp, body := fetch("/page"); resp.StatusCode != 200 || body != "page /page" {
		t.Fatalf("healthy: %d %q", resp.StatusCode, body)
	}
	cached := time.Now()
	o.failing.Store(true)
	// One success then failures: the window reaches min_requests 4 with 3
	// failures (>= 0.5), and the breaker opens.
	for i := 0; i < 3; i++ {
		if resp, body := fetch("/x"); resp.StatusCode != 502 || !strings.Contains(body, "origin says") {
			t.Fatalf("failure %d: %d %q, want the origin's 502", i, resp.StatusCode, body)
		}
	}
	opened := time.Now()
	hits := o.hits.Load()
	for i := 0; i < 10; i++ {
		resp, body := fetch("/x", "Accept: text/html")
		if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "3" || !strings.Contains(body, "Service Unavailable") {
			t.Fatalf("open breaker, request %d: %d Retry-After %q %q", i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if resp, body := fetch("/x", "Accept: application/json"); resp.StatusCode != 503 || !strings.HasPrefix(body, "{") {
		t.Errorf("open breaker, API client: %d %q", resp.StatusCode, body)
	}
	// The cached page expires (max-age=1): with the breaker open its stale
	// copy is served without asking the origin.
	time.Sleep(time.Until(cached.Add(1100 * time.Millisecond)))
	if resp, body := fetch("/page"); resp.StatusCode != 200 || body != "page /page" {
		t.Errorf("open breaker, stale entry: %d %q", resp.StatusCode, body)
	}
	if time.Since(opened) > 3*time.Second {
		t.Skip("machine too slow: the open time ran out before the checks")
	}
	if got := o.hits.Load(); got != hits {
		t.Fatalf("the origin received %d requests while the breaker was open", got-hits)
	}
	if m := metricLines(t, s); !strings.Contains(m, "levee_admission_breaker_state{upstream=app} 1") ||
		!strings.Contains(m, "levee_admission_breaker_trips_total{upstream=app} 1") {
		t.Errorf("breaker metrics:\n%s", m)
	}
	// The origin recovers; after open_time the half-open trials close the
	// breaker and traffic flows again.
	o.failing.Store(false)
	time.Sleep(time.Until(opened.Add(3100 * time.Millisecond)))
	for i := 0; i < 10; i++ { // distinct paths: micro-cache hits would not reach the origin
		path := fmt.Sprintf("/r%d", i)
		if resp, body := fetch(path); resp.StatusCode != 200 || body != "page "+path {
			t.Fatalf("recovered, request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if got := o.hits.Load() - hits; got != 10 {
		t.Errorf("origin got %d requests after recovery, want 10", got)
	}
	if m := metricLines(t, s); !strings.Contains(m, "levee_admission_breaker_state{upstream=app} 0") {
		t.Errorf("breaker not closed again:\n%s", m)
	}
}

// TestBreakerHTTP2: the HTTP/2 request path records answers in the breaker
// and, once it is open, answers 503 with Retry-After without contacting the
// origin.
func TestBreakerHTTP2(t *testing.T) {
	o := startSwitchOrigin(t)
	o.failing.Store(true)
	crt, key := selfSigned(t, t.TempDir(), "h2.test")
	s := startShield(t, fmt.Sprintf(`
listen:
  - address: "127.0.0.1:0"
    tls: {certificates: [{cert: %s, key: %s}]}
sites:
  - upstreams: [{url: "http://%s"}]
    passive_health: {enabled: true, breaker: {min_requests: 2, open_time: 1m}}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
detection: {disable: true}
`, crt, key, o.addr))
	addr := addrOf(s, 0)
	for i := 0; i < 2; i++ {
		if code := h2Status(t, "h2.test", addr); code != 502 {
			t.Fatalf("failure %d: %d, want the origin's 502", i, code)
		}
	}
	hits := o.hits.Load()
	if code := h2Status(t, "h2.test", addr); code != 503 || o.hits.Load() != hits {
		t.Fatalf("open breaker over HTTP/2: %d, origin hit %d times", code, o.hits.Load()-hits)
	}
}

// TestAbortedUploadsDoNotTripBreaker: clients that cut their own uploads
// off (a reset in the middle of the body) fail the request on their side;
// that must not count against the origin, or one client could open the
// site's breaker for everyone.
func TestAbortedUploadsDoNotTripBreaker(t *testing.T) {
	o := startSwitchOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - upstreams: [{url: "http://%s"}]
    passive_health: {enabled: true, breaker: {min_requests: 4, failure_ratio: 0.5, open_time: 1m}}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
detection: {disable: true}
`, o.addr))
	addr := addrOf(s, 0)
	chunk := bytes.Repeat([]byte("x"), 70_000)
	for i := 0; i < 8; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
		c.Write(chunk)
		time.Sleep(50 * time.Millisecond) // the proxy is streaming the body upstream
		c.(*net.TCPConn).SetLinger(0)
		c.Close() // reset, 30 KB short
		time.Sleep(50 * time.Millisecond)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, body, err := get(c, "/after")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after 8 aborted uploads: %v %v %q (the breaker counted the clients' failures against the origin)", err, resp, body)
	}
}

// TestPassiveHealthLatencyFromEndOfUpload: requests with a body are judged
// on the time the origin took after the body was sent, not on the client's
// upload. Slow uploads (400 ms) to fast origins eject nothing under a
// 200 ms latency threshold; fast uploads to an origin that takes 300 ms to
// answer eject it for latency. (The latency check needs 20 samples per
// origin, so each phase sends 48 requests at once, from 48 addresses.)
func TestPassiveHealthLatencyFromEndOfUpload(t *testing.T) {
	origin := func(slow bool) string {
		return serveOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			if slow && r.URL.Path == "/slow" {
				time.Sleep(300 * time.Millisecond)
			}
			io.WriteString(w, "ok")
		})
	}
	fast, slow := origin(false), origin(true)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - name: app
    upstreams: [{url: "http://%s"}, {url: "http://%s"}]
    passive_health: {enabled: true, max_ejection_percent: 50, latency_threshold: 200ms}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
detection: {disable: true}
`, fast, slow))
	post := func(src, path string, pause time.Duration) error {
		c, err := dialFrom(t, src, addrOf(s, 0))
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// 64 KiB: more than the server reads with the headers, so the
		// body streams to the origin while it arrives.
		half := strings.Repeat("x", 32<<10)
		if _, err := io.WriteString(c, "POST "+path+" HTTP/1.1\r\nHost: test.local\r\nContent-Length: 65536\r\n\r\n"+half); err != nil {
			return err
		}
		time.Sleep(pause)
		if _, err := io.WriteString(c, half); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("POST %s: %d", path, resp.StatusCode)
		}
		return nil
	}
	phase := func(net, path string, pause time.Duration) {
		t.Helper()
		errs := make(chan error, 48)
		for i := range 48 {
			go func() { errs <- post(fmt.Sprintf("127.0.%s.%d", net, i+1), path, pause) }()
		}
		for range 48 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
	}
	ejected := func(addr string) string {
		return "levee_admission_outlier_ejections_total{reason=latency,site=app,upstream=" + addr + "} 1"
	}
	phase("36", "/upload", 400*time.Millisecond)
	if m := metricLines(t, s); strings.Contains(m, ejected(fast)) || strings.Contains(m, ejected(slow)) {
		t.Fatalf("slow uploads to fast origins ejected one for latency:\n%s", m)
	}
	phase("37", "/slow", 0)
	if m := metricLines(t, s); !strings.Contains(m, ejected(slow)) || strings.Contains(m, ejected(fast)) {
		t.Errorf("want only the slow origin ejected for latency; metrics:\n%s", m)
	}
}
