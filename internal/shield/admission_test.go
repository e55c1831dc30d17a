package shield

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// capacityOrigin serves at most workers requests at once, each taking
// service time: an origin of fixed capacity whose queue grows without bound
// when overloaded.
func capacityOrigin(t *testing.T, workers int, service time.Duration) string {
	sem := make(chan struct{}, workers)
	return serveOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		sem <- struct{}{}
		time.Sleep(service)
		<-sem
		io.WriteString(w, "ok")
	})
}

type loadResult struct {
	ok, shed, failed   int
	verOK, verTotal    int
	latencies          []time.Duration // of 200 answers
	goodput, p99Millis float64
}

// openLoop offers rate requests/s for d from normal sources, with every
// tenth request from the verified (allowlisted) source.
func openLoop(t *testing.T, addr string, rate int, d time.Duration) loadResult {
	mk := func(src string) *http.Client {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: dialer.DialContext, MaxIdleConnsPerHost: 512, MaxConnsPerHost: 0,
		}}
	}
	normal, verified := mk("127.0.11.1"), mk("127.0.12.1")
	defer normal.CloseIdleConnections()
	defer verified.CloseIdleConnections()
	var mu sync.Mutex
	var res loadResult
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	var inflight atomic.Int64
	for i := 0; time.Since(start) < d; i++ {
		next := start.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(next))
		if inflight.Load() > 2000 { // bound the test's own goroutines
			mu.Lock()
			res.failed++
			mu.Unlock()
			continue
		}
		isVer := i%10 == 0
		cl := normal
		if isVer {
			cl = verified
		}
		wg.Add(1)
		inflight.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			t0 := time.Now()
			resp, err := cl.Get("http://" + addr + "/work")
			lat := time.Since(t0)
			code := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			mu.Lock()
			defer mu.Unlock()
			switch code {
			case 200:
				res.ok++
				res.latencies = append(res.latencies, lat)
			case 503:
				res.shed++
			default:
				res.failed++
			}
			if isVer {
				res.verTotal++
				if code == 200 {
					res.verOK++
				}
			}
		}()
	}
	wg.Wait()
	res.goodput = float64(res.ok) / d.Seconds()
	if n := len(res.latencies); n > 0 {
		sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
		res.p99Millis = float64(res.latencies[n*99/100].Microseconds()) / 1000
	}
	return res
}

// TestOriginProtectionUnderOverload: an origin of fixed capacity (4 workers
// x 20 ms = 200 req/s) behind the shield, offered 1x, 2x and 4x its
// capacity: goodput stays near capacity, admitted latency stays bounded,
// and verified (allowlisted) clients keep being served while the excess is
// shed with 503.
func TestOriginProtectionUnderOverload(t *testing.T) {
	if os.Getenv("LEVEE_OVERLOAD_TEST") == "" {
		t.Skip("timing-sensitive load test (open-loop, up to 800 req/s): run with LEVEE_OVERLOAD_TEST=1 on a quiet machine")
	}
	const workers, service = 4, 20 * time.Millisecond
	capacity := float64(workers) * float64(time.Second/service)
	origin := capacityOrigin(t, workers, service)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - name: app
    upstreams: [{url: "http://%s"}]
    origin_protection: {enabled: true}
allow: [127.0.12.0/24]
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
detection: {disable: true}
`, origin))
	addr := addrOf(s, 0)
	base := openLoop(t, addr, int(capacity/4), 2*time.Second)
	t.Logf("unloaded (0.25x): goodput %.0f/s, p99 %.1f ms", base.goodput, base.p99Millis)
	// LEVEE_OVERLOAD_SECONDS sets each level's duration (default 3 s); the
	// limiter's first second of a new overload weighs less in a longer one.
	per := 3 * time.Second
	if v, err := time.ParseDuration(os.Getenv("LEVEE_OVERLOAD_SECONDS") + "s"); err == nil && v > 0 && v <= time.Minute {
		per = v
	}
	for _, load := range []float64{1, 2, 4} {
		r := openLoop(t, addr, int(capacity*load), per)
		verShare := float64(r.verOK) / float64(max(r.verTotal, 1))
		t.Logf("%.0fx (%d req/s offered): goodput %.0f/s (%.0f%% of capacity), admitted p99 %.1f ms (%.1fx unloaded), shed %d, failed %d, verified %d/%d ok",
			load, int(capacity*load), r.goodput, 100*r.goodput/capacity, r.p99Millis, r.p99Millis/base.p99Millis, r.shed, r.failed, r.verOK, r.verTotal)
		// The targets: goodput >= 95% of capacity (of the offered
		// load at 0.25x-1x), admitted p99 <= 3x unloaded, verified >= 99%.
		// This test runs only when asked for (LEVEE_OVERLOAD_TEST=1), on a
		// quiet machine, so it asserts the targets themselves; the
		// admission package's own end-to-end test runs in the suite.
		want := 0.95 * capacity * min(load, 1)
		if r.goodput < want {
			t.Errorf("%.0fx: goodput %.0f/s, want >= %.0f/s", load, r.goodput, want)
		}
		if r.p99Millis > 3*base.p99Millis {
			t.Errorf("%.0fx: admitted p99 %.1f ms > 3x unloaded p99 %.1f ms", load, r.p99Millis, base.p99Millis)
		}
		if verShare < 0.99 {
			t.Errorf("%.0fx: verified clients served %.1f%%, want >= 99%%", load, 100*verShare)
		}
		if r.failed > r.ok/100 {
			t.Errorf("%.0fx: %d requests failed without an answer (hangs or resets)", load, r.failed)
		}
	}
}

// TestMicroCacheAbsorbsRandomQueryFloodAndServesStale: requests that differ
// only in ignorable query parameters share a cache entry, so a random-query
// flood reaches the origin once; when the origin then fails, the stale
// entry is served.
func TestMicroCacheAbsorbsRandomQueryFloodAndServesStale(t *testing.T) {
	var hits atomic.Int64
	var failing atomic.Bool
	addr := serveOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if failing.Load() {
			w.WriteHeader(502)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=1")
		io.WriteString(w, "page "+r.URL.Path)
	})
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - upstreams: [{url: "http://%s"}]
    cache: {enabled: true, keep_params: [page], stale_for: 1m}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
`, addr))
	c, _ := net.Dial("tcp", addrOf(s, 0))
	defer c.Close()
	for i := 0; i < 500; i++ {
		resp, body, err := get(c, fmt.Sprintf("/article?cachebust=%d&page=1", i))
		if err != nil || resp.StatusCode != 200 || body != "page /article" {
			t.Fatalf("request %d: %v %v %q", i, err, resp, body)
		}
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("random-query flood of 500 requests reached the origin %d times, want 1", n)
	}
	// After the entry expires, the origin fails: the stale entry is served.
	time.Sleep(1100 * time.Millisecond)
	failing.Store(true)
	resp, body, err := get(c, "/article?page=1&x=y")
	if err != nil || resp.StatusCode != 200 || body != "page /article" {
		t.Fatalf("stale serve: %v %v %q", err, resp, body)
	}
	if hits.Load() != 2 {
		t.Fatalf("origin hits %d, want 2 (one revalidation attempt)", hits.Load())
	}
}

// TestOriginProtectionHTTP2: HTTP/2 requests go through the same admission
// gate and micro-cache as HTTP/1.1. With a fixed limit of one request in
// flight and a queue of one, concurrent streams beyond those are shed with
// 503 and Retry-After (JSON when asked for) and the origin never sees two
// at once; a cacheable page is then served from the cache whatever its
// random query string.
func TestOriginProtectionHTTP2(t *testing.T) {
	var inflight, peak, hits atomic.Int64
	originAddr := serveOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		n := inflight.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		inflight.Add(-1)
		w.Header().Set("Cache-Control", "public, max-age=60")
		io.WriteString(w, "page "+r.URL.Path)
	})
	crt, key := selfSigned(t, t.TempDir(), "h2.test")
	s := startShield(t, fmt.Sprintf(`
listen:
  - address: "127.0.0.1:0"
    tls: {certificates: [{cert: %s, key: %s}]}
sites:
  - upstreams: [{url: "http://%s"}]
    origin_protection: {enabled: true, min_limit: 1, max_limit: 1, max_queue: 1}
    cache: {enabled: true, ignore_params: [r]}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
detection: {disable: true}
`, crt, key, originAddr))
	addr := addrOf(s, 0)
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "h2.test", InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(path, accept string) (*http.Response, string, error) {
		req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			return nil, "", fmt.Errorf("answered over %s", resp.Proto)
		}
		return resp, string(b), nil
	}
	if _, _, err := get("/warm", ""); err != nil { // one connection, then streams
		t.Fatal(err)
	}
	// Eight concurrent streams for a slow, uncached page (no-store from the
	// cache's point of view: each has its own path).
	type res struct {
		code      int
		retry, ct string
	}
	out := make(chan res, 8)
	for i := range 8 {
		go func() {
			resp, _, err := get(fmt.Sprintf("/slow?i=%d", i), "application/json")
			if err != nil {
				out <- res{code: -1, retry: err.Error()}
				return
			}
			out <- res{resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type")}
		}()
	}
	ok, shed := 0, 0
	for range 8 {
		r := <-out
		switch {
		case r.code == 200:
			ok++
		case r.code == 503 && r.retry != "" && strings.HasPrefix(r.ct, "application/json"):
			shed++
		default:
			t.Fatalf("stream answered %+v, want 200 or 503 with Retry-After and JSON", r)
		}
	}
	if ok == 0 || shed == 0 || peak.Load() != 1 {
		t.Fatalf("%d served, %d shed, origin peak concurrency %d: want some of each and a peak of 1", ok, shed, peak.Load())
	}
	// The cache: 50 requests that differ only in the ignored parameter
	// reach the origin once.
	before := hits.Load()
	for i := range 50 {
		resp, body, err := get(fmt.Sprintf("/article?r=%d", i), "")
		if err != nil || resp.StatusCode != 200 || body != "page /article" {
			t.Fatalf("request %d: %v %v %q", i, err, resp, body)
		}
		if i > 0 && resp.Header.Get("Age") == "" {
			t.Fatalf("request %d: no Age header on a cache hit", i)
		}
	}
	if n := hits.Load() - before; n != 1 {
		t.Fatalf("50 requests with random r= reached the origin %d times, want 1", n)
	}
}
