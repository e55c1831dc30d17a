package shield

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestMetricFamiliesExistAndMove: the metric families the monitoring
// requirements name are registered and move with traffic: the request
// latency histogram per site, open connections, connections rejected by
// reason, upstream health (1, then 0 once an origin with health checks
// stops), and upstream pool sizes (open pooled connections, requests in
// flight).
func TestMetricFamiliesExistAndMove(t *testing.T) {
	oa, ob := startOrigin(t), startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - {name: alpha, hosts: [a.test], upstreams: [{url: "http://%s"}]}
  - name: beta
    hosts: [b.test]
    upstreams: [{url: "http://%s"}]
    health_check: {path: /health, interval: 100ms, timeout: 200ms, unhealthy_after: 1, healthy_after: 1}
block: [127.0.12.0/24]
guard: {max_connections_per_ip: 1}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
`, oa.addr, ob.addr))
	request := func(c net.Conn, host, path string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s%s: %v", host, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s%s: status %d", host, path, resp.StatusCode)
		}
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := metricValue(t, s, name, labels)
		if !ok {
			t.Fatalf("metric %s%v missing; %s", name, labels, seriesOf(t, s, name))
		}
		return v
	}

	// Traffic: a kept-alive connection to each site.
	ca, err := dialFrom(t, "127.0.13.1", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	cb, err := dialFrom(t, "127.0.13.2", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	for i := range 3 {
		request(ca, "a.test", fmt.Sprintf("/a%d", i))
	}
	request(cb, "b.test", "/b")

	// Open connections: the two held ones.
	if v := value("levee_guard_connections_open", nil); v != 2 {
		t.Errorf("levee_guard_connections_open = %v, want 2", v)
	}
	if v := value("levee_guard_connections_admitted_total", nil); v != 2 {
		t.Errorf("levee_guard_connections_admitted_total = %v, want 2", v)
	}

	// Rejected connections by reason: a blocked source, and a second
	// connection from an address at its cap of 1.
	if c, err := dialFrom(t, "127.0.12.1", addrOf(s, 0)); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
	if c, err := dialFrom(t, "127.0.13.1", addrOf(s, 0)); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1))
		c.Close()
	}
	for _, reason := range []string{"banned", "per_ip_cap"} {
		if v := value("levee_guard_connections_rejected_total", map[string]string{"reason": reason}); v != 1 {
			t.Errorf("levee_guard_connections_rejected_total{reason=%s} = %v, want 1", reason, v)
		}
	}
	if v := value("levee_guard_connections_rejected_total", map[string]string{"reason": "global_cap"}); v != 0 {
		t.Errorf("levee_guard_connections_rejected_total{reason=global_cap} = %v, want 0", v)
	}

	// Latency histogram, per site.
	hist, ok := gatherFamily(t, s, "levee_http_request_duration_seconds")
	if !ok {
		t.Fatal("levee_http_request_duration_seconds missing")
	}
	counts := map[string]uint64{}
	for _, se := range hist {
		counts[se.labels["site"]] += se.count
		if se.count > 0 && se.value <= 0 {
			t.Errorf("latency histogram of site %q: %d samples summing to %v", se.labels["site"], se.count, se.value)
		}
	}
	if counts["alpha"] != 3 || counts["beta"] != 1 {
		t.Errorf("levee_http_request_duration_seconds samples by site %v, want alpha 3, beta 1", counts)
	}

	// Upstream health and pool sizes.
	for site, o := range map[string]*origin{"alpha": oa, "beta": ob} {
		l := map[string]string{"site": site, "upstream": o.addr}
		if v := value("levee_upstream_healthy", l); v != 1 {
			t.Errorf("levee_upstream_healthy%v = %v, want 1", l, v)
		}
		if v := value("levee_upstream_connections", l); v < 1 {
			t.Errorf("levee_upstream_connections%v = %v after traffic, want at least 1 pooled connection", l, v)
		}
	}
	// Requests in flight: one slow request to alpha.
	done := make(chan struct{})
	go func() {
		defer close(done)
		ca.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(ca, "GET /slow?d=600ms HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if resp, err := http.ReadResponse(bufio.NewReader(ca), nil); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	la := map[string]string{"site": "alpha", "upstream": oa.addr}
	var inflight float64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if inflight = value("levee_upstream_inflight_requests", la); inflight > 0 {
			break
		}
	}
	if inflight != 1 {
		t.Errorf("levee_upstream_inflight_requests%v = %v during a slow request, want 1", la, inflight)
	}
	<-done
	if v := value("levee_upstream_inflight_requests", la); v != 0 {
		t.Errorf("levee_upstream_inflight_requests%v = %v after the slow request, want 0", la, v)
	}
	// Upstream health moves: beta's origin stops, its health check fails.
	ob.srv.Close()
	lb := map[string]string{"site": "beta", "upstream": ob.addr}
	healthy := 1.0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if healthy = value("levee_upstream_healthy", lb); healthy == 0 {
			break
		}
	}
	if healthy != 0 {
		t.Errorf("levee_upstream_healthy%v = %v seconds after the origin stopped, want 0", lb, healthy)
	}
	if t.Failed() {
		for _, n := range []string{"levee_guard_connections_open", "levee_guard_connections_rejected_total",
			"levee_upstream_healthy", "levee_upstream_connections", "levee_upstream_inflight_requests"} {
			t.Log(seriesOf(t, s, n))
		}
	}
}
