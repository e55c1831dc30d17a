package cache

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"
)

var _ HeaderPeeker = (*fasthttp.RequestHeader)(nil)
var _ HeaderPeeker = NetHTTPHeader(nil)

var t0 = time.Unix(1_700_000_000, 0)

func newCache(t testing.TB, cfg Config) *Cache {
	t.Helper()
	c, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// req builds a Request for "GET host/path?query" with headers "Name: value".
func req(target string, headers ...string) *Request {
	path, query, _ := strings.Cut(target, "?")
	h := http.Header{}
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ": ")
		h.Add(k, v)
	}
	return &Request{Method: []byte("GET"), Host: []byte("example.com"), Path: []byte(path), Query: []byte(query), Header: NetHTTPHeader(h)}
}

func resp(status int, body string, headers ...string) *Response {
	r := &Response{Status: status, Body: []byte(body)}
	for _, kv := range headers {
		k, v, _ := strings.Cut(kv, ": ")
		r.Header = append(r.Header, Field{[]byte(k), []byte(v)})
	}
	return r
}

func TestNormalizeQuery(t *testing.T) {
	for _, tc := range []struct {
		ignore, keep []string
		q, want      string
	}{
		{nil, nil, "", ""},
		{nil, nil, "b=2&a=1", "a=1&b=2"},
		{nil, nil, "a=1&&b=2&", "a=1&b=2"},
		{[]string{"utm_*", "fbclid"}, nil, "utm_source=x&id=3&fbclid=y&utm=z", "id=3&utm=z"},
		{nil, []string{"page", "q"}, "cb=123&page=2&q=shoes&x", "page=2&q=shoes"},
		{[]string{"page"}, []string{"page"}, "page=2&z=1", "page=2"}, // keep wins
		{nil, nil, "a=2&a=1", "a=1&a=2"},
		{nil, nil, "a", "a"},
	} {
		f := queryFilter{ignore: newParamMatcher(tc.ignore), keep: newParamMatcher(tc.keep)}
		got, _ := f.appendNormalizedQuery(nil, []byte(tc.q), nil)
		if string(got) != tc.want {
			t.Errorf("ignore %v keep %v %q: got %q, want %q", tc.ignore, tc.keep, tc.q, got, tc.want)
		}
	}
}

func FuzzNormalizeQuery(f *testing.F) {
	for _, s := range []string{"", "a=1&b=2", "b&&a=%20", "utm_x=1&q=2&q=1", "=&=&"} {
		f.Add(s)
	}
	filter := queryFilter{ignore: newParamMatcher([]string{"utm_*", "cb"})}
	f.Fuzz(func(t *testing.T, q string) {
		n1, _ := filter.appendNormalizedQuery(nil, []byte(q), nil)
		n2, _ := filter.appendNormalizedQuery(nil, n1, nil)
		if !bytes.Equal(n1, n2) {
			t.Fatalf("not idempotent: %q -> %q -> %q", q, n1, n2)
		}
		// Order of parameters does not matter.
		parts := strings.Split(q, "&")
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		n3, _ := filter.appendNormalizedQuery(nil, []byte(strings.Join(parts, "&")), nil)
		if !bytes.Equal(n1, n3) {
			t.Fatalf("order dependent: %q -> %q, reversed -> %q", q, n1, n3)
		}
		if bytes.Contains(n1, []byte("utm_")) && bytes.HasPrefix(n1, []byte("utm_")) {
			t.Fatalf("ignored parameter kept: %q", n1)
		}
	})
}

func FuzzCacheControl(f *testing.F) {
	for _, s := range []string{"max-age=60", "no-store", `s-maxage="10", private`, "max-age=99999999999999999999", "max-age=-1,,=,"} {
		f.Add(s)
	}
	c := newCache(f, Config{})
	f.Fuzz(func(t *testing.T, cc string) {
		d := directives{maxAge: -1, sMaxAge: -1}
		parseCacheControl([]byte(cc), &d)
		if d.maxAge < -1 || d.maxAge > 1<<31 || d.sMaxAge < -1 || d.sMaxAge > 1<<31 {
			t.Fatalf("%q: ages %d %d", cc, d.maxAge, d.sMaxAge)
		}
		p, ok := c.decide(t0, resp(200, "x", "Cache-Control: "+cc))
		if ok && (p.ttl < 0 || p.ttl > c.cfg.MaxTTL) {
			t.Fatalf("%q: ttl %v", cc, p.ttl)
		}
		if ok && (d.noStore || d.private || d.noCache) {
			t.Fatalf("%q: stored despite no-store/private/no-cache", cc)
		}
	})
}

func TestPolicy(t *testing.T) {
	c := newCache(t, Config{DefaultTTL: 2 * time.Second, NotFoundTTL: 3 * time.Second, MaxTTL: time.Hour, StaleFor: time.Minute})
	expires := t0.Add(90 * time.Second).UTC().Format(http.TimeFormat)
	for _, tc := range []struct {
		name     string
		r        *Response
		ok       bool
		ttl      time.Duration
		staleFor time.Duration
		vary     string
	}{
		{"default ttl", resp(200, ""), true, 2 * time.Second, time.Minute, ""},
		{"max-age", resp(200, "", "Cache-Control: public, max-age=60"), true, time.Minute, time.Minute, ""},
		{"s-maxage wins", resp(200, "", "Cache-Control: max-age=60, s-maxage=10"), true, 10 * time.Second, time.Minute, ""},
		{"age subtracted", resp(200, "", "Cache-Control: max-age=60", "Age: 15"), true, 45 * time.Second, time.Minute, ""},
		{"expires", resp(200, "", "Expires: "+expires), true, 90 * time.Second, time.Minute, ""},
		{"bad expires", resp(200, "", "Expires: 0"), false, 0, 0, ""},
		{"max-age over expires", resp(200, "", "Expires: "+expires, "Cache-Control: max-age=5"), true, 5 * time.Second, time.Minute, ""},
		{"capped", resp(200, "", "Cache-Control: max-age=999999"), true, time.Hour, time.Minute, ""},
		{"no-store", resp(200, "", "Cache-Control: no-store"), false, 0, 0, ""},
		{"private", resp(200, "", "Cache-Control: private, max-age=60"), false, 0, 0, ""},
		{"no-cache", resp(200, "", "Cache-Control: no-cache"), false, 0, 0, ""},
		{"split headers", resp(200, "", "Cache-Control: max-age=60", "Cache-Control: no-store"), false, 0, 0, ""},
		{"must-revalidate: no stale", resp(200, "", "Cache-Control: max-age=60, must-revalidate"), true, time.Minute, 0, ""},
		{"max-age=0 stale only", resp(200, "", "Cache-Control: max-age=0"), true, 0, time.Minute, ""},
		{"max-age=0 must-revalidate", resp(200, "", "Cache-Control: max-age=0, must-revalidate"), false, 0, 0, ""},
		{"set-cookie", resp(200, "", "Set-Cookie: a=b"), false, 0, 0, ""},
		{"404 short", resp(404, "", "Cache-Control: max-age=600"), true, 3 * time.Second, time.Minute, ""},
		{"301", resp(301, "", "Location: /x"), true, 2 * time.Second, time.Minute, ""},
		{"500 not cacheable", resp(500, ""), false, 0, 0, ""},
		{"206 not cacheable", resp(206, ""), false, 0, 0, ""},
		{"vary", resp(200, "", "Vary: Accept-Encoding, accept-language", "Vary: Accept-Encoding"), true, 2 * time.Second, time.Minute, "accept-encoding,accept-language"},
		{"vary star", resp(200, "", "Vary: *"), false, 0, 0, ""},
	} {
		p, ok := c.decide(t0, tc.r)
		if ok != tc.ok || (ok && (p.ttl != tc.ttl || p.staleFor != tc.staleFor || strings.Join(p.vary, ",") != tc.vary)) {
			t.Errorf("%s: got ok=%v ttl=%v stale=%v vary=%v; want ok=%v ttl=%v stale=%v vary=%q",
				tc.name, ok, p.ttl, p.staleFor, p.vary, tc.ok, tc.ttl, tc.staleFor, tc.vary)
		}
	}
}

func TestLifecycleFreshStaleGone(t *testing.T) {
	c := newCache(t, Config{StaleFor: 30 * time.Second})
	r := req("/a?x=1")
	if _, st := c.Get(t0, r); st != Miss {
		t.Fatalf("empty cache: %v", st)
	}
	e := c.Store(t0, r, resp(200, "hello", "Cache-Control: max-age=10", "Content-Type: text/plain", "Connection: keep-alive", "Age: 0"))
	if e == nil {
		t.Fatal("not stored")
	}
	for _, tc := range []struct {
		at   time.Duration
		want State
	}{{0, Hit}, {9 * time.Second, Hit}, {10 * time.Second, Stale}, {39 * time.Second, Stale}, {40 * time.Second, Miss}, {41 * time.Second, Miss}} {
		got, st := c.Get(t0.Add(tc.at), req("/a?x=1"))
		if st != tc.want {
			t.Fatalf("at +%v: %v, want %v", tc.at, st, tc.want)
		}
		if st == Hit && (string(got.Body) != "hello" || got.Status != 200 || len(got.Header) != 2 ||
			got.Get("Content-Type") == nil || got.Get("Connection") != nil || got.Get("Age") != nil) {
			t.Fatalf("entry %+v", got)
		}
	}
	if e.Age(t0.Add(2500*time.Millisecond)) != 2 {
		t.Fatal("age")
	}
	if s := c.Stats(); s.Entries != 0 || s.Bytes != 0 || s.Hits != 2 || s.Stale != 2 || s.Misses != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestKeysShareAndSplit(t *testing.T) {
	c := newCache(t, Config{IgnoreParams: []string{"utm_*"}})
	c.Store(t0, req("/p?b=2&a=1&utm_source=mail"), resp(200, "ab", "Cache-Control: max-age=60"))
	for _, target := range []string{"/p?a=1&b=2", "/p?b=2&a=1", "/p?utm_campaign=z&a=1&b=2&"} {
		if _, st := c.Get(t0, req(target)); st != Hit {
			t.Errorf("%s: %v, want hit", target, st)
		}
	}
	for _, target := range []string{"/p?a=1", "/p?a=1&b=3", "/q?a=1&b=2", "/p"} {
		if _, st := c.Get(t0, req(target)); st != Miss {
			t.Errorf("%s: %v, want miss", target, st)
		}
	}
	other := req("/p?a=1&b=2")
	other.Host = []byte("other.example")
	if _, st := c.Get(t0, other); st != Miss {
		t.Error("host not in key")
	}
	// A HEAD response is no answer to a GET (the other way round is fine,
	// see TestHEADFromGETEntry).
	head := req("/hd")
	head.Method = []byte("HEAD")
	if e := c.Store(t0, head, resp(200, "", "Cache-Control: max-age=60")); e != nil {
		t.Error("a HEAD answer was stored (its Content-Length would be served as 0)")
	}
	if _, st := c.Get(t0, req("/hd")); st != Miss {
		t.Error("method not in key")
	}
}

// Headers the origin names in Connection are hop-by-hop too: never stored,
// never replayed from the cache.
func TestConnectionListedHeadersNotStored(t *testing.T) {
	c := newCache(t, Config{})
	e := c.Store(t0, req("/c"), resp(200, "x", "Cache-Control: max-age=60", "Connection: keep-alive, X-Hop , x-other",
		"X-Hop: 1", "X-Other: 2", "X-Kept: 3"))
	if e == nil {
		t.Fatal("not stored")
	}
	got := map[string]bool{}
	for _, f := range e.Header {
		got[strings.ToLower(string(f.Name))] = true
	}
	if got["x-hop"] || got["x-other"] || got["connection"] || !got["x-kept"] {
		t.Fatalf("stored headers %v: want X-Kept only of those", got)
	}
}

func TestVary(t *testing.T) {
	c := newCache(t, Config{})
	c.Store(t0, req("/v", "Accept-Encoding: gzip"), resp(200, "gz", "Vary: Accept-Encoding", "Cache-Control: max-age=60"))
	c.Store(t0, req("/v", "Accept-Encoding: br"), resp(200, "br", "Vary: Accept-Encoding", "Cache-Control: max-age=60"))
	for enc, want := range map[string]string{"gzip": "gz", "br": "br"} {
		e, st := c.Get(t0, req("/v", "Accept-Encoding: "+enc))
		if st != Hit || string(e.Body) != want {
			t.Errorf("%s: %v", enc, st)
		}
	}
	if _, st := c.Get(t0, req("/v")); st != Miss {
		t.Errorf("no Accept-Encoding: %v, want miss", st)
	}
}

func TestBypassAndCookies(t *testing.T) {
	c := newCache(t, Config{BypassCookies: []string{"session", "wp_logged_in_*"}})
	r := resp(200, "x", "Cache-Control: max-age=60")
	c.Store(t0, req("/c"), r)
	post := req("/c")
	post.Method = []byte("POST")
	for name, rq := range map[string]*Request{
		"POST":           post,
		"Authorization":  req("/c", "Authorization: Bearer x"),
		"session cookie": req("/c", "Cookie: theme=dark; session=abc"),
		"prefix cookie":  req("/c", "Cookie: wp_logged_in_123=1"),
	} {
		if _, st := c.Get(t0, rq); st != Bypass {
			t.Errorf("%s: %v, want bypass", name, st)
		}
		if c.Store(t0, rq, r) != nil {
			t.Errorf("%s: stored", name)
		}
	}
	if _, st := c.Get(t0, req("/c", "Cookie: theme=dark; sessionx=1")); st != Hit {
		t.Errorf("unrelated cookie: %v, want hit", st)
	}
	// Set-Cookie responses: not stored by default; stored without the
	// cookie when configured.
	if c.Store(t0, req("/sc"), resp(200, "x", "Set-Cookie: id=1", "Cache-Control: max-age=60")) != nil {
		t.Error("Set-Cookie response stored")
	}
	c2 := newCache(t, Config{CacheSetCookie: true})
	e := c2.Store(t0, req("/sc"), resp(200, "x", "Set-Cookie: id=1", "Cache-Control: max-age=60", "X-A: 1"))
	if e == nil || len(e.Header) != 2 || e.Get("Set-Cookie") != nil || e.Get("X-A") == nil {
		t.Fatalf("entry %+v", e)
	}
}

func TestBudgetLRU(t *testing.T) {
	c := newCache(t, Config{MaxBytes: 64 << 10, MaxEntryBytes: 2 << 10, Shards: 1})
	body := strings.Repeat("x", 1000)
	for i := range 200 {
		c.Store(t0, req(fmt.Sprintf("/k%d", i)), resp(200, body, "Cache-Control: max-age=60"))
		// Keep /k0 hot.
		if _, st := c.Get(t0, req("/k0")); st != Hit {
			t.Fatalf("hot entry evicted after %d stores", i)
		}
	}
	s := c.Stats()
	if s.Bytes > 64<<10 || s.Evictions == 0 || s.Entries < 40 {
		t.Fatalf("stats %+v", s)
	}
	if _, st := c.Get(t0, req("/k1")); st != Miss {
		t.Fatal("cold entry not evicted")
	}
	if _, st := c.Get(t0, req("/k199")); st != Hit {
		t.Fatal("newest entry missing")
	}
	if c.Store(t0, req("/big"), resp(200, strings.Repeat("y", 2<<10), "Cache-Control: max-age=60")) != nil {
		t.Fatal("entry above MaxEntryBytes (2 KiB) stored")
	}
}

func TestFetchCoalesces(t *testing.T) {
	c := newCache(t, Config{})
	var calls atomic.Int32
	release := make(chan struct{})
	fetch := func() (*Response, error) {
		calls.Add(1)
		<-release
		return resp(200, "one", "Cache-Control: max-age=60"), nil
	}
	const n = 20
	var wg sync.WaitGroup
	states := make(chan State, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, st, err := c.Fetch(context.Background(), t0, req("/slow?cb=1"), fetch)
			if err != nil || string(e.Body) != "one" {
				t.Errorf("%v %v", e, err)
			}
			states <- st
		}()
	}
	// Wait until all but the leader wait on the flight.
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Coalesced != n-1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !c.Fetching(req("/slow?cb=1")) || c.Fetching(req("/other")) {
		t.Fatal("Fetching wrong during the fetch")
	}
	close(release)
	wg.Wait()
	close(states)
	count := map[State]int{}
	for st := range states {
		count[st]++
	}
	if calls.Load() != 1 || count[Miss] != 1 || count[Coalesced] != n-1 {
		t.Fatalf("origin calls %d, states %v", calls.Load(), count)
	}
	if c.Fetching(req("/slow?cb=1")) {
		t.Fatal("Fetching after the fetch ended")
	}
}

func TestFetchUncacheableNotShared(t *testing.T) {
	c := newCache(t, Config{})
	var calls atomic.Int32
	release := make(chan struct{})
	fetch := func() (*Response, error) {
		calls.Add(1)
		<-release
		return resp(200, "mine", "Cache-Control: private", "Set-Cookie: s=1"), nil
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e, st, err := c.Fetch(context.Background(), t0, req("/private"), fetch)
			if err != nil || st != Miss || e.Get("Set-Cookie") == nil {
				t.Errorf("%v %v %v", e, st, err)
			}
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Coalesced != 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if calls.Load() != 3 {
		t.Fatalf("origin calls %d: private responses must not be shared", calls.Load())
	}
}

// Get returns the first value of a header of the entry (test helper).
func (e *Entry) Get(name string) []byte {
	r := Response{Header: e.Header}
	return r.Get(name)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := New(Config{Name: "m"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	c.Store(t0, req("/m"), resp(200, "x", "Cache-Control: max-age=1"))
	c.Get(t0, req("/m"))
	c.Get(t0.Add(2*time.Second), req("/m"))
	c.NoteStaleServed()
	want := `
# HELP levee_cache_lookups_total Cache lookups by result (hit, miss, stale: expired entry found, bypass).
# TYPE levee_cache_lookups_total counter
levee_cache_lookups_total{cache="m",result="bypass"} 0
levee_cache_lookups_total{cache="m",result="hit"} 1
levee_cache_lookups_total{cache="m",result="miss"} 0
levee_cache_lookups_total{cache="m",result="stale"} 1
# HELP levee_cache_stale_served_total Stale entries served because the origin could not answer.
# TYPE levee_cache_stale_served_total counter
levee_cache_stale_served_total{cache="m"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "levee_cache_lookups_total", "levee_cache_stale_served_total"); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Name: "m"}, reg); err == nil {
		t.Fatal("duplicate registration accepted")
	}
	c.Unregister()
	if _, err := New(Config{Name: "m"}, reg); err != nil {
		t.Fatalf("rebuild after Unregister: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, cfg := range []Config{
		{MaxBytes: -1},
		{MaxBytes: 100, MaxEntryBytes: 200},
		{Shards: 10000},
		{Statuses: []int{999}},
		{IgnoreParams: []string{""}},
		{KeepParams: []string{"*"}},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestGetHitAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	c := newCache(t, Config{})
	var h fasthttp.RequestHeader
	h.Set("Accept-Encoding", "gzip")
	r := &Request{Method: []byte("GET"), Host: []byte("example.com"), Path: []byte("/a"), Query: []byte("z=1&a=2"), Header: &h}
	c.Store(t0, r, resp(200, "x", "Cache-Control: max-age=60", "Vary: Accept-Encoding"))
	n := testing.AllocsPerRun(1000, func() {
		if _, st := c.Get(t0, r); st != Hit {
			t.Fatal("miss")
		}
	})
	if n != 0 {
		t.Fatalf("%v allocs per hit", n)
	}
}

func BenchmarkGetHit(b *testing.B) {
	c := newCache(b, Config{})
	// Each goroutine has its own header, as each fasthttp request does
	// (RequestHeader.Peek uses a scratch buffer: not safe for concurrent use).
	mk := func(i int, h *fasthttp.RequestHeader) *Request {
		return &Request{Method: []byte("GET"), Host: []byte("example.com"), Path: []byte(fmt.Sprintf("/static/page/%d", i)),
			Query: []byte("utm_source=x&id=42&lang=en"), Header: h}
	}
	newHeader := func() *fasthttp.RequestHeader {
		h := new(fasthttp.RequestHeader)
		h.Set("Accept-Encoding", "gzip, br")
		return h
	}
	const keys = 1024
	h0 := newHeader()
	for i := range keys {
		c.Store(t0, mk(i, h0), resp(200, strings.Repeat("b", 2048), "Cache-Control: max-age=600", "Vary: Accept-Encoding", "Content-Type: text/html"))
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		h := newHeader()
		rs := make([]*Request, keys)
		for i := range rs {
			rs[i] = mk(i, h)
		}
		i := 0
		for pb.Next() {
			if _, st := c.Get(t0, rs[i%keys]); st != Hit {
				b.Fatal("miss")
			}
			i++
		}
	})
}

func TestAcceptEncodingNormalized(t *testing.T) {
	same := []string{"gzip, br", "br,gzip", "BR ; q=0.8, gzip;q=1", "gzip, br, identity, x-unknown", "gzip, br, deflate;q=0"}
	want := acceptedCodings([]byte(same[0]))
	for _, v := range same[1:] {
		if got := acceptedCodings([]byte(v)); got != want {
			t.Errorf("%q: %q, want %q (same set as %q)", v, got, want, same[0])
		}
	}
	for _, v := range []string{"gzip", "br", "gzip, br, zstd", "", "gzip;q=0, br"} {
		if v != "gzip;q=0, br" && acceptedCodings([]byte(v)) == want {
			t.Errorf("%q: same set as %q", v, same[0])
		}
	}
	if acceptedCodings([]byte("gzip;q=0, br")) != acceptedCodings([]byte("br")) {
		t.Error("q=0 not excluded")
	}
	if acceptedCodings([]byte("*")) != acceptedCodings([]byte("br, compress, deflate, gzip, zstd")) {
		t.Error("* is not every coding")
	}
	// Through the cache: a flood of Accept-Encoding spellings shares entries.
	c := newCache(t, Config{})
	c.Store(t0, req("/ae", "Accept-Encoding: gzip, deflate, br"), resp(200, "x", "Vary: Accept-Encoding", "Cache-Control: max-age=60"))
	if _, st := c.Get(t0, req("/ae", "Accept-Encoding: br;q=1.0, gzip;q=0.9, deflate, x-random-123")); st != Hit {
		t.Fatalf("%v, want hit", st)
	}
}

func TestVariantsBounded(t *testing.T) {
	c := newCache(t, Config{MaxVariants: 4, MaxBytes: 1 << 20, Shards: 1})
	for i := range 20 {
		c.Store(t0, req("/ua", fmt.Sprintf("User-Agent: bot-%d", i)), resp(200, "x", "Vary: User-Agent", "Cache-Control: max-age=60"))
	}
	s := c.Stats()
	if s.Entries != 4 || s.VariantsFull != 16 || s.VaryKeys != 1 {
		t.Fatalf("stats %+v", s)
	}
	if _, st := c.Get(t0, req("/ua", "User-Agent: bot-3")); st != Hit {
		t.Fatal("stored variant missing")
	}
	// Expired variants are dropped on lookup and free their places; the
	// Vary record goes with the last one.
	later := t0.Add(2 * time.Hour)
	for i := range 4 {
		c.Get(later, req("/ua", fmt.Sprintf("User-Agent: bot-%d", i)))
	}
	if s := c.Stats(); s.Entries != 0 || s.VaryKeys != 0 || s.Bytes != 0 {
		t.Fatalf("after expiry: %+v", s)
	}
	if c.Store(later, req("/ua", "User-Agent: new"), resp(200, "x", "Vary: User-Agent", "Cache-Control: max-age=60")) == nil {
		t.Fatal("variant refused after the old ones expired")
	}
}

func FuzzAcceptEncoding(f *testing.F) {
	for _, s := range []string{"gzip, br", "*;q=0", "br;q=0.000, gzip;q=", ",,;;==", "GZIP;Q=0.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		set := acceptedCodings([]byte(v))
		if set < '@' || set > '@'+31 {
			t.Fatalf("%q: %d", v, set)
		}
		// Order does not matter.
		parts := strings.Split(v, ",")
		for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
			parts[i], parts[j] = parts[j], parts[i]
		}
		if got := acceptedCodings([]byte(strings.Join(parts, ","))); got != set {
			t.Fatalf("%q: %q reversed %q", v, set, got)
		}
	})
}

func TestHEADFromGETEntry(t *testing.T) {
	c := newCache(t, Config{})
	c.Store(t0, req("/h?b=1&a=2"), resp(200, "body", "Cache-Control: max-age=60", "Content-Type: text/plain"))
	head := req("/h?a=2&b=1")
	head.Method = []byte("HEAD")
	e, st := c.Get(t0, head)
	if st != Hit || e.Get("Content-Type") == nil {
		t.Fatalf("HEAD: %v", st)
	}
	if _, st := c.Get(t0.Add(90*time.Second), head); st != Stale {
		t.Fatalf("HEAD later: %v, want stale", st)
	}
	other := req("/other")
	other.Method = []byte("HEAD")
	if _, st := c.Get(t0, other); st != Miss {
		t.Fatalf("HEAD other: %v", st)
	}
	if s := c.Stats(); s.Hits != 1 || s.Stale != 1 || s.Misses != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestFetchBypassNotCoalesced(t *testing.T) {
	c := newCache(t, Config{})
	release := make(chan struct{})
	var calls atomic.Int32
	slow := func() (*Response, error) {
		calls.Add(1)
		<-release
		return resp(200, "public", "Cache-Control: max-age=60"), nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Fetch(context.Background(), t0, req("/b"), slow)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// An authorized request for the same URL does not wait for it.
	e, st, err := c.Fetch(context.Background(), t0, req("/b", "Authorization: Basic eA=="), func() (*Response, error) {
		return resp(200, "mine", "Cache-Control: max-age=60"), nil
	})
	if err != nil || st != Bypass || string(e.Body) != "mine" {
		t.Fatalf("%v %v %v", e, st, err)
	}
	close(release)
	<-done
	if e, st := c.Get(t0, req("/b")); st != Hit || string(e.Body) != "public" {
		t.Fatalf("%v", st)
	}
}
