package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/levee-dev/levee/internal/accesslog"
	"github.com/levee-dev/levee/internal/admission"
	"github.com/levee-dev/levee/internal/telemetry"
	"github.com/levee-dev/levee/internal/upstream"
)

func TestRouterMatch(t *testing.T) {
	r := NewRouter()
	a, b, def := &Site{Name: "a"}, &Site{Name: "b"}, &Site{Name: "def"}
	r.Add(a, []string{"a.example.com"})
	r.Add(b, []string{"*.b.example.com"})
	r.Add(def, nil)
	for host, want := range map[string]*Site{
		"a.example.com": a, "A.Example.COM:8443": a, "a.example.com.": a,
		"x.b.example.com": b, "y.x.b.example.com": b, "b.example.com": def,
		"other.org": def, "": def, "[::1]:80": def, strings.Repeat("x", 300): def,
	} {
		if got := r.Match([]byte(host)); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got.Name, want.Name)
		}
	}
	only := NewRouter()
	only.Add(a, []string{"a.example.com"})
	if only.Match([]byte("nope.example.com")) != nil {
		t.Error("no default site: unknown host must give nil")
	}
	if n := testing.AllocsPerRun(100, func() { r.Match([]byte("Y.X.B.example.com:443")) }); n != 0 {
		t.Errorf("Match allocates %.0f", n)
	}
}

func TestPrepareRequest(t *testing.T) {
	var req fasthttp.Request
	req.Header.SetMethod("GET")
	req.SetRequestURI("/x")
	req.Header.Set("Connection", "keep-alive, X-Secret")
	req.Header.Set("X-Secret", "1")
	req.Header.Set("Keep-Alive", "300")
	req.Header.Set("Proxy-Authorization", "Basic x")
	req.Header.Set("TE", "trailers")
	req.Header.Set("X-Forwarded-For", "6.6.6.6")
	req.Header.Set("Via", "1.0 upstream-cdn")
	prepareRequest(&req.Header, netip.MustParseAddr("203.0.113.5"), false, true, "origin.internal")
	h := &req.Header
	for _, k := range []string{"Connection", "X-Secret", "Keep-Alive", "Proxy-Authorization", "TE"} {
		if v := h.Peek(k); len(v) > 0 {
			t.Errorf("%s forwarded: %q", k, v)
		}
	}
	if v := string(h.Peek("X-Forwarded-For")); v != "203.0.113.5" {
		t.Errorf("XFF from untrusted peer = %q", v)
	}
	if v := string(h.Peek("X-Forwarded-Proto")); v != "https" {
		t.Errorf("X-Forwarded-Proto = %q", v)
	}
	if v := string(h.Peek("Via")); v != "1.0 upstream-cdn, 1.1 levee" {
		t.Errorf("Via = %q", v)
	}
	if v := string(h.Host()); v != "origin.internal" {
		t.Errorf("Host = %q", v)
	}
	// Trusted peer: the chain is kept, the peer appended, proto kept.
	var r2 fasthttp.Request
	r2.Header.Set("X-Forwarded-For", "198.51.100.1, 10.0.0.2")
	r2.Header.Set("X-Forwarded-Proto", "https")
	prepareRequest(&r2.Header, netip.MustParseAddr("10.0.0.3"), true, false, "")
	if v := string(r2.Header.Peek("X-Forwarded-For")); v != "198.51.100.1, 10.0.0.2, 10.0.0.3" {
		t.Errorf("trusted XFF = %q", v)
	}
	if v := string(r2.Header.Peek("X-Forwarded-Proto")); v != "https" {
		t.Errorf("trusted proto = %q", v)
	}
}

func TestPrepareResponse(t *testing.T) {
	var resp fasthttp.Response
	resp.Header.Set("Connection", "close, X-Internal")
	resp.Header.Set("X-Internal", "secret")
	resp.Header.Set("Keep-Alive", "timeout=5")
	resp.Header.Set("Upgrade", "h2c")
	resp.SetBodyString("hello")
	prepareResponse(&resp.Header)
	for _, k := range []string{"X-Internal", "Keep-Alive", "Upgrade"} {
		if v := resp.Header.Peek(k); len(v) > 0 {
			t.Errorf("%s forwarded: %q", k, v)
		}
	}
	if resp.Header.ConnectionClose() {
		t.Error("origin's Connection: close leaked to the client connection")
	}
}

func FuzzPrepareRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n"), true)
	f.Add([]byte("POST /x?y HTTP/1.1\r\nHost: a\r\nConnection: close,,, ,\r\nTE: trailers\r\nVia: 1.0 a\r\nContent-Length: 0\r\n\r\n"), false)
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nx-real-ip: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-REAL-IP: 7.7.7.7\r\nTrue-Client-IP: 1.1.1.1\r\nCF-Connecting-IP: 2.2.2.2\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, raw []byte, trusted bool) {
		var req fasthttp.Request
		if err := req.Read(bufioReader(raw)); err != nil {
			return
		}
		prepareRequest(&req.Header, netip.MustParseAddr("192.0.2.1"), trusted, false, "")
		for _, k := range []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Te", "Upgrade"} {
			if v := req.Header.Peek(k); len(v) > 0 {
				t.Fatalf("hop-by-hop %s survived: %q", k, v)
			}
		}
		xff := string(req.Header.Peek("X-Forwarded-For"))
		if !strings.HasSuffix(xff, "192.0.2.1") || (!trusted && xff != "192.0.2.1") {
			t.Fatalf("XFF = %q (trusted %v)", xff, trusted)
		}
		if !bytes.HasSuffix(req.Header.Peek("Via"), []byte("1.1 levee")) {
			t.Fatalf("Via = %q", req.Header.Peek("Via"))
		}
		if !trusted {
			for _, k := range clientIPHeaders {
				if v := req.Header.Peek(k); v != nil {
					t.Fatalf("%s from an untrusted client survived: %q", k, v)
				}
			}
		}
		// The rewritten head must still serialize and parse (the head
		// alone: a Content-Length names a body that is not part of it).
		var again fasthttp.RequestHeader
		if err := again.Read(bufioReader(req.Header.Header())); err != nil {
			t.Fatalf("rewritten head does not parse: %v\n%q", err, req.Header.Header())
		}
	})
}

// TestClientIPHeadersFromUntrustedPeers: headers naming a client address
// are removed from untrusted peers' requests (every copy, any case) and
// passed on from trusted proxies; other headers are untouched.
func TestClientIPHeadersFromUntrustedPeers(t *testing.T) {
	raw := "GET / HTTP/1.1\r\nHost: a\r\nX-Real-IP: 6.6.6.6\r\nforwarded: for=6.6.6.6\r\nx-real-ip: 7.7.7.7\r\n" +
		"True-Client-IP: 1.1.1.1\r\nX-Forwarded-Host: evil.example\r\nX-Other: kept\r\n\r\n"
	for _, trusted := range []bool{false, true} {
		var req fasthttp.Request
		if err := req.Read(bufioReader([]byte(raw))); err != nil {
			t.Fatal(err)
		}
		prepareRequest(&req.Header, netip.MustParseAddr("192.0.2.1"), trusted, false, "")
		head := string(req.Header.Header())
		for _, k := range []string{"X-Real-Ip", "Forwarded", "True-Client-Ip", "X-Forwarded-Host"} {
			if got := req.Header.Peek(k) != nil; got != trusted {
				t.Errorf("trusted %v: %s present %v\n%s", trusted, k, got, head)
			}
		}
		if string(req.Header.Peek("X-Other")) != "kept" {
			t.Errorf("trusted %v: X-Other lost\n%s", trusted, head)
		}
	}
	var req fasthttp.Request
	req.Read(bufioReader([]byte("GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n")))
	if n := testing.AllocsPerRun(100, func() { stripClientIPHeaders(&req.Header) }); n != 0 {
		t.Errorf("stripClientIPHeaders allocates %v times on a request without such headers", n)
	}
}

func TestWantsJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"application/json": true, "text/html,application/json": false, "application/json, text/html": true,
		"*/*": false, "": false, "application/jsonx": true,
	} {
		if got := wantsJSON([]byte(accept)); got != want {
			t.Errorf("wantsJSON(%q) = %v", accept, got)
		}
	}
}

// FuzzAccessLogLine: whatever bytes a client sends, the access log line
// stays one valid JSON object, and levee analyze's parser reads it back.
func FuzzAccessLogLine(f *testing.F) {
	f.Add([]byte("plain"))
	f.Add([]byte("quote\" back\\ ctl\x01\x7f \xff\xfe é"))
	f.Fuzz(func(t *testing.T, s []byte) {
		e := accesslog.Entry{Format: accesslog.FormatJSON, Time: time.Unix(1, 0), Client: netip.MustParseAddr("192.0.2.1"),
			Method: []byte("GET"), Path: []byte("/"), UserAgent: s, Status: 200, HasVerdict: true}
		b := accesslog.AppendJSON(nil, &e)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("invalid JSON %q: %v", b, err)
		}
		if bytes.ContainsAny(b[:len(b)-1], "\n\r") {
			t.Fatalf("raw newline in %q", b)
		}
		var back accesslog.Entry
		line := bytes.TrimSuffix(b, []byte("\n"))
		if err := accesslog.ParseLine(line, &back, make([]byte, len(line))); err != nil {
			t.Fatalf("analyze cannot read the line %q: %v", b, err)
		}
		if back.Status != 200 || back.Client != e.Client {
			t.Fatalf("read back status %d client %v", back.Status, back.Client)
		}
	})
}

func TestRetryAfter(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "1", time.Millisecond: "1", time.Second: "1", 1500 * time.Millisecond: "2", time.Minute: "60"} {
		if got := retryAfter(d); got != want {
			t.Errorf("retryAfter(%v) = %q, want %q", d, got, want)
		}
	}
}

// newBenchProxy returns a proxy in front of a fasthttp origin on loopback.
func newBenchProxy(tb testing.TB) (*Proxy, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	origin := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if bytes.HasSuffix(ctx.Path(), []byte(".html")) {
			ctx.SetContentType("text/html; charset=utf-8")
		}
		ctx.SetBodyString("hello")
	}}
	go origin.Serve(ln)
	pool, err := upstream.New(upstream.Config{Site: "b", Targets: []upstream.Target{{Addr: ln.Addr().String()}}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	m, _ := NewMetrics(prometheus.NewRegistry())
	p := New(m, nil)
	r := NewRouter()
	r.Add(p.NewSite("b", pool, ""), nil)
	p.Publish(&State{Router: r, Config: Config{MaxURLLength: 8192, MaxBodyBytes: 1 << 20, BodyTimeout: time.Second}})
	return p, func() { pool.Close(); origin.Shutdown(); ln.Close() }
}

func serveOnce(p *Proxy, ctx *fasthttp.RequestCtx, req *fasthttp.Request) {
	ctx.Request.Reset()
	req.CopyTo(&ctx.Request)
	ctx.Response.Reset()
	p.ServeFastHTTP(ctx)
	// As the server does after the handler: send the (streamed) body, which
	// returns the upstream connection to the pool.
	_ = ctx.Response.BodyWriteTo(io.Discard)
	ctx.Response.Reset()
}

func TestServeFastHTTPAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items)")
	}
	t.Run("plain", func(t *testing.T) {
		p, stop := newBenchProxy(t)
		defer stop()
		testServeAllocs(t, p)
	})
	t.Run("passive health", func(t *testing.T) {
		p, stop := newBenchProxy(t)
		defer stop()
		withPassiveHealth(t, p)
		testServeAllocs(t, p)
	})
	// Known-client cookie: issued with every HTML page to a client without
	// one, checked (and not issued) for a client presenting one.
	cookies, err := admission.NewCookies(admission.CookieConfig{Key: bytes.Repeat([]byte("k"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("known cookie issued", func(t *testing.T) {
		p, stop := newBenchProxy(t)
		defer stop()
		p.State().Router.Sites()[0].Cookies = cookies
		testServeAllocs(t, p, "Set-Cookie")
	})
	t.Run("known cookie presented", func(t *testing.T) {
		p, stop := newBenchProxy(t)
		defer stop()
		p.State().Router.Sites()[0].Cookies = cookies
		tok := cookies.Issue(time.Now(), netip.MustParseAddr("203.0.113.9"))
		testServeAllocs(t, p, "Cookie", cookies.Name()+"="+tok)
	})
}

// withPassiveHealth replaces the bench proxy's site by one with two targets
// (the same origin twice) under outlier detection and a circuit breaker.
func withPassiveHealth(tb testing.TB, p *Proxy) {
	old := p.State().Router.Sites()[0]
	addr := old.Pool.Backends()[0].Addr
	pool, err := upstream.New(upstream.Config{Site: "b", Targets: []upstream.Target{{Addr: addr}, {Addr: addr}}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	set, _ := admission.NewOutlierSet([]admission.OutlierConfig{{Name: "1"}, {Name: "2"}}, 0, admission.Deps{})
	if err := pool.SetOutliers([]upstream.Outlier{set.Target(0), set.Target(1)}); err != nil {
		tb.Fatal(err)
	}
	site := p.NewSite("b", pool, "")
	if site.Breaker, err = admission.NewBreaker(admission.BreakerConfig{}, admission.Deps{}); err != nil {
		tb.Fatal(err)
	}
	r := NewRouter()
	r.Add(site, nil)
	st := *p.State()
	st.Router = r
	p.Publish(&st)
}

// testServeAllocs proxies a request through p and counts allocations. With
// one argument, hdr names a response header that must be present; with
// two, a request header to send.
func testServeAllocs(t *testing.T, p *Proxy, hdr ...string) {
	var req fasthttp.Request
	req.SetRequestURI("http://site.test/index.html?x=1")
	req.Header.Set("User-Agent", "Mozilla/5.0")
	if len(hdr) == 2 {
		req.Header.Set(hdr[0], hdr[1])
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 5555}, nil)
	ctx.Request.Reset()
	req.CopyTo(&ctx.Request)
	p.ServeFastHTTP(&ctx)
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Body()) != "hello" {
		t.Fatalf("proxied response: %d %q", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	if got := ctx.Response.Header.Peek("Set-Cookie"); (len(hdr) == 1) != (len(got) > 0) {
		t.Fatalf("Set-Cookie %q; want one: %v", got, len(hdr) == 1)
	}
	ctx.Response.Reset()
	n := testing.AllocsPerRun(200, func() { serveOnce(p, &ctx, &req) })
	t.Logf("allocations per proxied request: %.1f", n)
	// fasthttp's streaming HostClient allocates 4 small objects per
	// response (the body stream and its release closures); everything of
	// Levee's own on this path is allocation-free.
	if n > 4 {
		t.Fatalf("clean proxy path allocates %.1f times per request, want <= 4", n)
	}
}

// BenchmarkServeFastHTTP measures the whole HTTP/1.1 proxy path, including
// a loopback round trip to a fasthttp origin, with and without per-request
// telemetry (the detector's input), and with the decision engine's default
// limits: the telemetry=on / telemetry=off ratio is the cost of detection.
func BenchmarkServeFastHTTP(b *testing.B) {
	for _, tel := range []bool{false, true} {
		b.Run(fmt.Sprintf("telemetry=%v", tel), func(b *testing.B) {
			p, stop := newBenchProxy(b)
			defer stop()
			st := p.State()
			if tel {
				rec, err := telemetry.New(telemetry.Config{Site: "b"}, telemetry.Deps{})
				if err != nil {
					b.Fatal(err)
				}
				for _, s := range st.Router.Sites() {
					s.Rec = rec
				}
			}
			var req fasthttp.Request
			req.SetRequestURI("http://site.test/index.html?x=1")
			req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
			req.Header.Set("Accept", "text/html")
			req.Header.Set("Accept-Language", "en-US")
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 5555}, nil)
			b.ReportAllocs()
			for b.Loop() {
				serveOnce(p, &ctx, &req)
			}
		})
	}
}

// BenchmarkTelemetryPerRequest is the CPU the request path spends on
// detection's input for one request: building the telemetry event (header
// order hash, query shape) and recording it. Divide by the CPU per proxied
// request measured by bench/run.sh for the overhead ratio.
func BenchmarkTelemetryPerRequest(b *testing.B) {
	rec, err := telemetry.New(telemetry.Config{Site: "b"}, telemetry.Deps{})
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.Request
	req.SetRequestURI("http://site.test/index.html?x=1&y=2")
	req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Accept-Language", "en-US")
	req.Header.Set("Accept-Encoding", "gzip")
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(203, 0, 113, 9), Port: 5555}, nil)
	var ev telemetry.Event
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		client := netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})
		fillEvent(&ev, &ctx, client, ctx.URI().Path(), ctx.URI().QueryString())
		ev.Status = 200
		rec.Record(&ev)
	}
}
