package shield

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestUpstreamPoolLimit: with max_conns_per_upstream: 2 and a slow origin,
// two requests hold both pooled connections; further concurrent requests
// wait connect_timeout for a free one, then get 503 Service Unavailable
// with Retry-After (proxy.upstreamError, fasthttp.ErrNoFreeConns), long
// before the first two complete with 200; the origin never sees more than
// two requests at once.
//
// Note: the doc comment of config.Site.MaxConnsPerUpstream says such
// requests "get 502"; the proxy answers 503 (overload, with Retry-After),
// which is what this test asserts.
func TestUpstreamPoolLimit(t *testing.T) {
	var inflight, peak, hits atomic.Int64
	release := make(chan struct{})
	origin := serveOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		hits.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-release:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "slow done "+r.URL.Path)
	})
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - upstreams: [{url: "http://%s"}]
    max_conns_per_upstream: 2
    connect_timeout: 300ms
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
`, origin))
	type result struct {
		status     int
		retryAfter string
		body       string
		err        error
		took       time.Duration
	}
	do := func(src, path string) result {
		c, err := dialFrom(t, src, addrOf(s, 0))
		if err != nil {
			return result{err: err}
		}
		defer c.Close()
		start := time.Now()
		resp, body, err := get(c, path)
		if err != nil {
			return result{err: err, took: time.Since(start)}
		}
		return result{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: body, took: time.Since(start)}
	}
	var wg sync.WaitGroup
	first := make([]result, 2)
	for i := range first {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first[i] = do(fmt.Sprintf("127.0.0.%d", 81+i), fmt.Sprintf("/first%d", i))
		}()
	}
	// Wait until both hold a pooled connection at the origin.
	deadline := time.Now().Add(3 * time.Second)
	for inflight.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := inflight.Load(); n != 2 {
		close(release)
		wg.Wait()
		t.Fatalf("%d requests at the origin, want the first 2", n)
	}
	over := make([]result, 3)
	var wg2 sync.WaitGroup
	for i := range over {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			over[i] = do(fmt.Sprintf("127.0.0.%d", 91+i), fmt.Sprintf("/over%d", i))
		}()
	}
	wg2.Wait()
	// Only now may the first two finish.
	close(release)
	wg.Wait()
	for i, r := range over {
		if r.err != nil || r.status != 503 || r.retryAfter == "" || strings.Contains(r.body, "127.0.0.1") {
			t.Errorf("request %d over the pool limit: status %d Retry-After %q err %v after %v, body %.80q; want 503 with Retry-After after about connect_timeout",
				i, r.status, r.retryAfter, r.err, r.took, r.body)
		}
		if r.took > 3*time.Second {
			t.Errorf("request %d over the pool limit waited %v, want about connect_timeout (300ms)", i, r.took)
		}
	}
	for i, r := range first {
		if r.err != nil || r.status != 200 || r.body != fmt.Sprintf("slow done /first%d", i) {
			t.Errorf("request %d within the pool limit: status %d err %v body %q, want 200", i, r.status, r.err, r.body)
		}
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("origin saw up to %d concurrent requests, want 2 (max_conns_per_upstream)", p)
	}
	if h := hits.Load(); h != 2 {
		t.Errorf("origin got %d requests, want 2", h)
	}
}
