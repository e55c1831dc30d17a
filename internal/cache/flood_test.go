package cache

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// front is a minimal caching reverse proxy on net/http, the way the shield
// is meant to use the cache: Get; on a miss or stale entry Fetch (coalesced);
// when the origin fails, serve the stale entry.
type front struct {
	c      *Cache
	origin string
	client *http.Client
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cr := &Request{Method: []byte(r.Method), Host: []byte(r.Host), Path: []byte(r.URL.Path),
		Query: []byte(r.URL.RawQuery), Header: NetHTTPHeader(r.Header)}
	now := time.Now()
	e, st := f.c.Get(now, cr)
	if st == Hit {
		f.write(w, e, "hit", now)
		return
	}
	fetch := func() (*Response, error) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, f.origin+r.URL.RequestURI(), nil)
		resp, err := f.client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 500 {
			return nil, fmt.Errorf("origin status %d", resp.StatusCode)
		}
		out := &Response{Status: resp.StatusCode, Body: body}
		for k, vs := range resp.Header {
			for _, v := range vs {
				out.Header = append(out.Header, Field{[]byte(k), []byte(v)})
			}
		}
		return out, nil
	}
	fresh, fst, err := f.c.Fetch(r.Context(), now, cr, fetch)
	if err != nil {
		if st == Stale {
			f.c.NoteStaleServed()
			f.write(w, e, "stale", now)
			return
		}
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	f.write(w, fresh, fst.String(), now)
}

func (f *front) write(w http.ResponseWriter, e *Entry, how string, now time.Time) {
	for _, h := range e.Header {
		w.Header().Add(string(h.Name), string(h.Value))
	}
	w.Header().Set("X-Cache", how)
	w.Header().Set("Age", fmt.Sprint(e.Age(now)))
	w.WriteHeader(e.Status)
	w.Write(e.Body)
}

func listen(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// A flood of requests with random query strings reaches the origin about
// once per freshness period, and when the origin then fails, clients get the
// stale page instead of errors.
func TestRandomQueryFloodAbsorbed(t *testing.T) {
	var originHits atomic.Int64
	var down atomic.Bool
	origin := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		originHits.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		time.Sleep(5 * time.Millisecond) // an expensive page
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<h1>products page "+r.URL.Query().Get("page")+"</h1>")
	}))
	c, err := New(Config{KeepParams: []string{"page"}, DefaultTTL: time.Second, StaleFor: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	f := &front{c: c, origin: origin, client: client}
	url := listen(t, f)

	run := func(n int) (ok, stale int) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		jobs := make(chan int)
		for w := range 32 {
			wg.Add(1)
			go func(seed uint64) {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, 2))
				for range jobs {
					// Cache-busting: random parameter names and values.
					u := fmt.Sprintf("%s/products?page=%d&%x=%x", url, rng.IntN(2), rng.Uint64(), rng.Uint64())
					resp, err := client.Get(u)
					if err != nil {
						t.Error(err)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					mu.Lock()
					if resp.StatusCode == 200 {
						ok++
						if resp.Header.Get("X-Cache") == "stale" {
							stale++
						}
					}
					mu.Unlock()
				}
			}(uint64(w))
		}
		for i := range n {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		return ok, stale
	}

	const n = 3000
	start := time.Now()
	ok, _ := run(n)
	elapsed := time.Since(start)
	hits := originHits.Load()
	// Two pages, each fetched at most once per second of freshness (plus
	// one for the first fetch of each).
	maxHits := 2 * (int64(elapsed/time.Second) + 2)
	t.Logf("%d random-query requests in %v: %d reached the origin (max %d), %d ok; stats %+v", n, elapsed, hits, maxHits, ok, c.Stats())
	if ok != n {
		t.Fatalf("%d of %d requests failed", n-ok, n)
	}
	if hits > maxHits {
		t.Fatalf("origin got %d requests, want <= %d", hits, maxHits)
	}

	// The origin fails: after the entries expire, clients get stale pages.
	down.Store(true)
	time.Sleep(1100 * time.Millisecond)
	ok, stale := run(300)
	if ok != 300 || stale == 0 {
		t.Fatalf("origin down: %d ok, %d stale of 300", ok, stale)
	}
	if s := c.Stats(); s.StaleServed != uint64(stale) {
		t.Fatalf("stale served %d, counted %d", stale, s.StaleServed)
	}
}
