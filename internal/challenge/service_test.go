package challenge

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

func newService(t testing.TB, mod func(*Config)) *Service {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chalFromPage pulls the signed challenge out of a rendered page.
func chalFromPage(t testing.TB, page []byte) []byte {
	t.Helper()
	i := bytes.Index(page, []byte(`name="c" value="`))
	if i < 0 {
		t.Fatalf("no challenge in page")
	}
	i += len(`name="c" value="`)
	return page[i : i+chalLen]
}

func TestProofOfWorkFlow(t *testing.T) {
	s := newService(t, nil)
	addr := netip.MustParseAddr("192.0.2.44")
	page := s.AppendPage(nil, t0, addr, bf("fp"), 8, nil, []byte("/shop?item=1&x=<y>"))
	chal := chalFromPage(t, page)
	nonce := solve(chal, 8)
	post := func(now time.Time, a netip.Addr, c, n []byte) Reply {
		return s.Endpoint(nil, now, a, bf("fp"), &EndpointRequest{Path: []byte(PathVerify), Post: true, Challenge: c, Nonce: n, Return: []byte("/shop?item=1&x=<y>")})
	}
	if r := post(t0, netip.MustParseAddr("192.0.9.1"), chal, nonce); r.Status != 403 {
		t.Errorf("answer from another network: %d, want 403", r.Status)
	}
	bad := []byte("0")
	if LeadingZeroBits(chal, bad) >= 8 {
		bad = []byte("1")
	}
	if r := post(t0, addr, chal, bad); r.Status != 403 {
		t.Errorf("wrong nonce: %d, want 403", r.Status)
	}
	if r := post(t0, addr, chal, []byte("12a")); r.Status != 403 {
		t.Errorf("non-decimal nonce: %d, want 403", r.Status)
	}
	r := post(t0.Add(2*time.Second), addr, chal, nonce)
	if r.Status != 303 || string(r.Location) != "/shop?item=1&x=<y>" {
		t.Fatalf("good answer: %d to %q", r.Status, r.Location)
	}
	for _, want := range []string{"levee_clearance=", "HttpOnly", "SameSite=Lax", "Secure", "Max-Age=3600", "Path=/"} {
		if !strings.Contains(r.Cookie, want) {
			t.Errorf("cookie %q lacks %q", r.Cookie, want)
		}
	}
	tok := r.Cookie[len("levee_clearance="):strings.IndexByte(r.Cookie, ';')]
	c, ok := s.Clearance(t0.Add(3*time.Second), []byte(tok), addr, bf("fp"))
	if !ok || c.Method != MethodPoW {
		t.Fatalf("issued token not accepted: %+v", c)
	}
	if r := post(t0.Add(3*time.Second), addr, chal, nonce); r.Status != 403 {
		t.Errorf("replayed answer: %d, want 403", r.Status)
	}
	if r := post(t0.Add(5*time.Minute), addr, s.Signer().NewChallenge(nil, t0, addr, bf("fp"), 8, time.Minute), nonce); r.Status != 403 {
		t.Errorf("expired challenge: %d, want 403", r.Status)
	}
	// A no-JS challenge (difficulty 0) is not a proof of work.
	zero := s.Signer().NewChallenge(nil, t0, addr, bf("fp"), 0, time.Minute)
	if r := post(t0, addr, zero, []byte("1")); r.Status != 403 {
		t.Errorf("difficulty 0 on the proof-of-work path: %d, want 403", r.Status)
	}
	if r := s.Endpoint(nil, t0, addr, bf("fp"), &EndpointRequest{Path: []byte(PathVerify), Challenge: chal, Nonce: nonce}); r.Status != 404 {
		t.Errorf("GET verify: %d, want 404", r.Status)
	}
}

func TestNoJSFlow(t *testing.T) {
	s := newService(t, func(c *Config) { c.NoJSDelay = 5 * time.Second })
	addr := netip.MustParseAddr("2001:db8::5")
	chal := chalFromPage(t, s.AppendPage(nil, t0, addr, bf(""), 16, nil, []byte("/read")))
	get := func(now time.Time) Reply {
		return s.Endpoint(nil, now, addr, bf(""), &EndpointRequest{Path: []byte(PathNoJS), Challenge: chal, Return: []byte("/read")})
	}
	if c, _ := s.Signer().OpenChallenge(t0, chal, addr, bf("")); c.Issued != t0.Unix() {
		t.Fatalf("issued %d, want %d", c.Issued, t0.Unix())
	}
	// Issued 0.9 s after t0 and answered 4.6 s later: too early, although a
	// truncated issue time would say 5.5 s.
	late := s.Signer().NewChallenge(nil, t0.Add(900*time.Millisecond), addr, bf(""), 16, time.Minute)
	if r := s.Endpoint(nil, t0.Add(5500*time.Millisecond), addr, bf(""), &EndpointRequest{Path: []byte(PathNoJS), Challenge: late}); r.Status != 403 {
		t.Errorf("answer 4.6 s after issue with a 5 s delay: status %d, want 403 (wait page)", r.Status)
	}
	r := get(t0.Add(2 * time.Second))
	if r.Status != 403 || !bytes.Contains(r.Body, []byte(`content="3;url=/.levee/nojs?c=`+string(chal)+`&amp;r=/read"`)) {
		t.Fatalf("early: %d %s", r.Status, r.Body)
	}
	r = get(t0.Add(5 * time.Second))
	if r.Status != 303 || string(r.Location) != "/read" {
		t.Fatalf("after the delay: %d %q", r.Status, r.Location)
	}
	tok := r.Cookie[len("levee_clearance="):strings.IndexByte(r.Cookie, ';')]
	if c, ok := s.Clearance(t0.Add(6*time.Second), []byte(tok), addr, bf("")); !ok || c.Method != MethodNoJS {
		t.Errorf("nojs token: %v %+v", ok, c)
	}
	if r := get(t0.Add(6 * time.Second)); r.Status != 403 {
		t.Errorf("replay: %d", r.Status)
	}
}

func TestRevocation(t *testing.T) {
	t.Run("shared across networks", func(t *testing.T) {
		s := newService(t, nil) // max 3 foreign prefixes
		home := netip.MustParseAddr("192.0.2.1")
		tok := []byte(s.Signer().Issue(t0, home, bf(""), MethodPoW, time.Hour))
		for i, a := range []string{"198.51.100.1", "198.51.100.2", "203.0.113.1", "203.0.114.1"} {
			if _, ok := s.Clearance(t0, tok, netip.MustParseAddr(a), bf("")); ok {
				t.Fatalf("token accepted from foreign %s", a)
			}
			_, ok := s.Clearance(t0, tok, home, bf(""))
			wantOK := i < 3 // 198.51.100.1 and .2 share a /24; revoked at the third distinct foreign prefix
			if ok != wantOK {
				t.Fatalf("after foreign use %d from %s: home ok=%v, want %v", i+1, a, ok, wantOK)
			}
		}
		if s.Revoker().Count() != 1 {
			t.Errorf("revocations %d, want 1", s.Revoker().Count())
		}
	})
	t.Run("rate", func(t *testing.T) {
		cfg := testConfig()
		cfg.Revoke.MaxRequests, cfg.Revoke.WindowSeconds = 10, 10
		var published []uint64
		s, err := New(cfg, Deps{OnRevoke: func(id uint64, _ int64) { published = append(published, id) }})
		if err != nil {
			t.Fatal(err)
		}
		addr := netip.MustParseAddr("192.0.2.1")
		tok := []byte(s.Signer().Issue(t0, addr, bf(""), MethodPoW, time.Hour))
		for i := range 10 {
			if _, ok := s.Clearance(t0.Add(time.Duration(i)*time.Second), tok, addr, bf("")); !ok {
				t.Fatalf("request %d refused", i)
			}
		}
		if _, ok := s.Clearance(t0.Add(9*time.Second), tok, addr, bf("")); ok {
			t.Fatal("11th request in the window accepted")
		}
		if _, ok := s.Clearance(t0.Add(30*time.Minute), tok, addr, bf("")); ok {
			t.Fatal("revoked token accepted later")
		}
		if c, _ := s.Signer().Check(t0, tok, addr, bf("")); len(published) != 1 || published[0] != c.ID {
			t.Errorf("OnRevoke published %v, want the token id %d once", published, c.ID)
		}
		// A peer applies the published revocation.
		peer := newService(t, nil)
		if _, ok := peer.Clearance(t0, tok, addr, bf("")); !ok {
			t.Fatal("peer refused the token before the revocation")
		}
		peer.Revoker().Revoke(t0.Unix(), t0.Add(time.Hour).Unix(), published[0])
		if _, ok := peer.Clearance(t0, tok, addr, bf("")); ok {
			t.Fatal("peer accepted a revoked token")
		}
		// Another token from the same client is unaffected.
		tok2 := []byte(s.Signer().Issue(t0, addr, bf(""), MethodPoW, time.Hour))
		if _, ok := s.Clearance(t0, tok2, addr, bf("")); !ok {
			t.Fatal("fresh token refused")
		}
	})
	t.Run("window resets", func(t *testing.T) {
		r := NewRevoker(RevokeConfig{MaxRequests: 5, WindowSeconds: 10})
		for i := range 20 {
			if r.Observe(t0.Unix()+int64(i*3), t0.Unix()+3600, 42) {
				t.Fatalf("revoked at %d with 3.3 requests per 10 s", i)
			}
		}
	})
	t.Run("revoked set bounded and expiring", func(t *testing.T) {
		r := NewRevoker(RevokeConfig{RevokedCapacity: 16})
		now := t0.Unix()
		for id := uint64(1); id <= 1000; id++ {
			r.Revoke(now, now+int64(id), id)
		}
		if !r.Revoked(now, 1000) {
			t.Error("latest revocation lost")
		}
		if r.Revoked(now+2000, 1000) {
			t.Error("revocation outlived the token")
		}
		held := 0
		for id := uint64(1); id <= 1000; id++ {
			if r.Revoked(now, id) {
				held++
			}
		}
		if held > 16 {
			t.Errorf("%d revocations held in 16 slots", held)
		}
	})
}

func TestReplaySet(t *testing.T) {
	r := NewReplaySet(64) // one id per shard
	now := t0.Unix()
	if err := r.Use(now, now+10, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Use(now, now+10, 1); err != ErrReplayed {
		t.Fatalf("second use: %v", err)
	}
	// Find another id in the same shard: the shard is full until id 1 expires.
	other := uint64(2)
	for (other*0x9E3779B97F4A7C15)>>58 != (1*0x9E3779B97F4A7C15)>>58 {
		other++
	}
	if err := r.Use(now, now+10, other); err != ErrBusy {
		t.Fatalf("full shard: %v", err)
	}
	if err := r.Use(now+10, now+20, other); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if r.Len() != 1 {
		t.Errorf("len %d", r.Len())
	}
}

func TestConfig(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(testSecret(4)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"defaults", func(*Config) {}, true},
		{"key file", func(c *Config) { c.Keys = []Key{{ID: 4, SecretFile: keyFile}} }, true},
		{"both secret and file", func(c *Config) { c.Keys = []Key{{ID: 4, Secret: testSecret(4), SecretFile: keyFile}} }, false},
		{"no keys", func(c *Config) { c.Keys = nil }, false},
		{"bad cookie", func(c *Config) { c.CookieName = "a b" }, false},
		{"delay too long", func(c *Config) { c.NoJSDelay = time.Hour }, false},
		{"difficulty over max", func(c *Config) { c.Difficulty.Default = 30 }, false},
		{"mode over max", func(c *Config) { c.Difficulty.Modes = map[string]uint8{"x": 25} }, false},
		{"max over 32", func(c *Config) { c.Difficulty.Max = 33 }, false},
		{"bad cidr", func(c *Config) { c.Allow.CIDRs = []string{"10.0.0.0/33"} }, false},
		{"relative path", func(c *Config) { c.Allow.Paths = []string{"healthz"} }, false},
		{"language", func(c *Config) { c.Language = "xx" }, false},
		{"api status", func(c *Config) { c.APIStatus = 200 }, false},
		{"german", func(c *Config) { c.Language = "de"; c.APIStatus = 429 }, true},
	}
	for _, tc := range tests {
		cfg := testConfig()
		tc.mod(&cfg)
		_, err := New(cfg, Deps{})
		if (err == nil) != tc.ok {
			t.Errorf("%s: err=%v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestDifficulty(t *testing.T) {
	s := newService(t, nil)
	for _, tc := range []struct {
		mode string
		risk int
		want uint8
	}{{"normal", 0, 16}, {"under_attack", 0, 18}, {"under_attack", 2, 22}, {"under_attack", 9, 24}, {"normal", -1, 16}} {
		if got := s.Difficulty(tc.mode, tc.risk); got != tc.want {
			t.Errorf("Difficulty(%s, %d) = %d, want %d", tc.mode, tc.risk, got, tc.want)
		}
	}
}

func TestExempt(t *testing.T) {
	s := newService(t, func(c *Config) {
		c.Allow = AllowConfig{Paths: []string{"/healthz", "/.well-known/acme-challenge/"}, CIDRs: []string{"10.1.0.0/16", "2001:db8::7"}, UserAgents: []string{"UptimeRobot/"}}
	})
	for _, tc := range []struct {
		path, addr, ua string
		want           bool
	}{
		{"/healthz", "192.0.2.1", "", true},
		{"/.well-known/acme-challenge/abc", "192.0.2.1", "", true},
		{"/", "10.1.200.3", "", true},
		{"/", "::ffff:10.1.0.1", "", true},
		{"/", "2001:db8::7", "", true},
		{"/", "2001:db8::8", "", false},
		{"/", "192.0.2.1", "Mozilla/5.0+(compatible; UptimeRobot/2.0)", true},
		{"/", "192.0.2.1", "curl/8", false},
	} {
		if got := s.Exempt([]byte(tc.path), netip.MustParseAddr(tc.addr), []byte(tc.ua)); got != tc.want {
			t.Errorf("Exempt(%s, %s, %q) = %v", tc.path, tc.addr, tc.ua, got)
		}
	}
}

func TestPickLanguage(t *testing.T) {
	for _, tc := range []struct {
		h    string
		want string
	}{
		{"", "en"}, {"de-DE,de;q=0.9,en;q=0.8", "de"}, {"fr", "fr"}, {"es-ES, FR-ca;q=0.5", "fr"},
		{"dex,de", "de"}, {"*", "en"}, {"en-US,de", "en"}, {"d", "en"},
	} {
		if got := languages[pickLanguage([]byte(tc.h), 0)].Code; got != tc.want {
			t.Errorf("%q: %s, want %s", tc.h, got, tc.want)
		}
	}
}

func TestSafeReturn(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/a/b?c=d", "/a/b?c=d"}, {"", "/"}, {"//evil.example/", "/"}, {"/\\evil.example", "/"},
		{"https://evil.example/", "/"}, {"/a b", "/"}, {"/.levee/nojs?c=x", "/"}, {"/" + strings.Repeat("a", 3000), "/"},
	} {
		if got := string(safeReturn([]byte(tc.in))); got != tc.want {
			t.Errorf("safeReturn(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestPages(t *testing.T) {
	s := newService(t, func(c *Config) { c.NoJSDelay = 7 * time.Second })
	addr := netip.MustParseAddr("192.0.2.1")
	for _, tc := range []struct {
		accept string
		want   []string
	}{
		{"", []string{`<html lang="en">`, "Checking that you are a person", "takes 7 seconds"}},
		{"de-DE", []string{`<html lang="de">`, "Wir prüfen, ob Sie ein Mensch sind", "dauert 7 Sekunden"}},
		{"fr", []string{`<html lang="fr">`, "Nous vérifions que vous êtes une personne"}},
	} {
		page := string(s.AppendPage(nil, t0, addr, bf(""), 14, []byte(tc.accept), []byte(`/p?q="x"&y`)))
		chal := string(chalFromPage(t, []byte(page)))
		want := append(tc.want,
			`<h1>`, `role="status" aria-live="polite"`, `data-d="14"`,
			`<noscript><meta http-equiv="refresh" content="8;url=/.levee/nojs?c=`+chal+`&amp;r=/p%3Fq%3D%22x%22%26y"><style>#js{display:none}</style></noscript>`,
			`name="r" value="/p?q=&#34;x&#34;&amp;y"`, `<a id="nojs" href="/.levee/nojs?c=`+chal)
		for _, w := range want {
			if !strings.Contains(page, w) {
				t.Errorf("%q page lacks %q", tc.accept, w)
			}
		}
		if strings.ContainsRune(page, 0) {
			t.Errorf("%q page has an unfilled slot", tc.accept)
		}
	}
	if !WantsJSON([]byte("application/json")) || WantsJSON([]byte("text/html,application/json")) || WantsJSON(nil) {
		t.Error("WantsJSON")
	}
}

// TestFastHTTPAdapter runs the whole flow through the fasthttp adapter
// over a loopback listener.
func TestFastHTTPAdapter(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := testConfig()
	cfg.APIStatus = 429
	s, err := New(cfg, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	origin := 0
	h := func(ctx *fasthttp.RequestCtx) {
		now := time.Now()
		addr, _ := netip.AddrFromSlice(ctx.RemoteIP())
		addr = addr.Unmap()
		if IsEndpoint(ctx.Path()) {
			s.FastEndpoint(ctx, now, addr, bf("fp"))
			return
		}
		if _, ok := s.FastClearance(ctx, now, addr, bf("fp")); ok || s.FastExempt(ctx, addr) {
			origin++
			ctx.SetBodyString("origin")
			return
		}
		s.FastChallenge(ctx, now, addr, bf("fp"), 6)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h}
	go srv.Serve(ln)
	defer srv.Shutdown()
	base := "http://" + ln.Addr().String()
	c := &fasthttp.Client{}

	do := func(method, uri, accept, cookie string, form map[string]string) *fasthttp.Response {
		req, resp := fasthttp.AcquireRequest(), &fasthttp.Response{}
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(method)
		req.SetRequestURI(base + uri)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		if form != nil {
			req.Header.SetContentType("application/x-www-form-urlencoded")
			args := fasthttp.AcquireArgs()
			for k, v := range form {
				args.Set(k, v)
			}
			req.SetBody(args.QueryString())
			fasthttp.ReleaseArgs(args)
		}
		if err := c.DoTimeout(req, resp, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := do("GET", "/news?id=3", "text/html", "", nil)
	if resp.StatusCode() != 403 || string(resp.Header.Peek("Cache-Control")) != "no-store, private, max-age=0" {
		t.Fatalf("challenge: %d %q", resp.StatusCode(), resp.Header.Peek("Cache-Control"))
	}
	chal := chalFromPage(t, resp.Body())
	if j := do("GET", "/api", "application/json", "", nil); j.StatusCode() != 429 || !bytes.HasPrefix(j.Body(), []byte(`{"error":"challenge_required"`)) {
		t.Errorf("json: %d %s", j.StatusCode(), j.Body())
	}
	resp = do("POST", PathVerify, "", "", map[string]string{"c": string(chal), "n": string(solve(chal, 6)), "r": "/news?id=3"})
	if resp.StatusCode() != 303 || string(resp.Header.Peek("Location")) != "/news?id=3" {
		t.Fatalf("verify: %d %q %s", resp.StatusCode(), resp.Header.Peek("Location"), resp.Body())
	}
	var cookie string
	for k, v := range resp.Header.Cookies() {
		if string(k) == "levee_clearance" {
			cookie = string(v)
		}
	}
	cookie = cookie[:strings.IndexByte(cookie, ';')]
	if r := do("GET", "/news?id=3", "", cookie, nil); string(r.Body()) != "origin" || origin != 1 {
		t.Errorf("with cookie: %d %q", r.StatusCode(), r.Body())
	}
	if got := counterValue(t, reg, "levee_challenge_answers_total", "method", "pow", "result", "ok"); got != 1 {
		t.Errorf("answers ok = %v", got)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s %v not found", name, labels)
	return 0
}

// sharedReplay stands for a fleet's shared replay store.
type sharedReplay struct{ used map[uint64]bool }

func (r *sharedReplay) Use(now, expires int64, id uint64) error {
	if r.used[id] {
		return ErrReplayed
	}
	r.used[id] = true
	return nil
}

func TestSharedReplay(t *testing.T) {
	shared := &sharedReplay{used: map[uint64]bool{}}
	a, err := New(testConfig(), Deps{Replay: shared})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(testConfig(), Deps{Replay: shared})
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("192.0.2.8")
	chal := chalFromPage(t, a.AppendPage(nil, t0, addr, Binding{}, 6, nil, []byte("/")))
	req := &EndpointRequest{Path: []byte(PathVerify), Post: true, Challenge: chal, Nonce: solve(chal, 6)}
	if r := a.Endpoint(nil, t0, addr, Binding{}, req); r.Status != 303 {
		t.Fatalf("node a: %d", r.Status)
	}
	if r := b.Endpoint(nil, t0, addr, Binding{}, req); r.Status != 403 {
		t.Errorf("node b accepted an answer already used on node a: %d", r.Status)
	}
}
