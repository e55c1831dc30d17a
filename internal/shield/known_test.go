package shield

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/levee-dev/levee/internal/decide"
)

// htmlOrigin serves HTML pages (and one script), counting hits per path.
func htmlOrigin(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	addr := serveOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		switch r.URL.Path {
		case "/app.js":
			w.Header().Set("Content-Type", "application/javascript")
			io.WriteString(w, "1;")
			return
		case "/cached":
			w.Header().Set("Cache-Control", "public, max-age=60")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, "<p>page "+r.URL.Path+"</p>")
	})
	return addr, &hits
}

// fetchHTML GETs path from s's first listener as a browser at address src
// would (Accept: text/html, plus hdr) on a new connection.
func fetchHTML(t *testing.T, s *Shield, src, path string, hdr ...string) (*http.Response, string) {
	t.Helper()
	c, err := dialFrom(t, src, addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, body, err := get(c, path, append([]string{"Accept: text/html"}, hdr...)...)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// knownCookieOf returns the levee_known value of a response's Set-Cookie.
func knownCookieOf(resp *http.Response) (value, attrs string) {
	for _, sc := range resp.Header.Values("Set-Cookie") {
		if v, ok := strings.CutPrefix(sc, "levee_known="); ok {
			value, attrs, _ = strings.Cut(v, ";")
			return value, attrs
		}
	}
	return "", ""
}

// TestKnownClientCookie: in normal mode a browser gets the known-client
// cookie with a successful HTML page (once: not again while it presents a
// valid one, not with scripts, not from a micro-cache hit). Under attack,
// once the cookie is min_age old, its holder is served without a challenge
// from any address of its /24, while a fresh client and the same cookie
// from another /24 are challenged. The key survives a restart.
func TestKnownClientCookie(t *testing.T) {
	originAddr, hits := htmlOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}], cache: {enabled: true}}]
known_clients: {min_age: 1s}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
`, originAddr))
	fetch := func(src, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		return fetchHTML(t, s, src, path, hdr...)
	}
	resp, _ := fetch("127.0.31.5", "/")
	tok, attrs := knownCookieOf(resp)
	if resp.StatusCode != 200 || len(tok) != 44 {
		t.Fatalf("normal mode, first page: %d, Set-Cookie %q", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	issued := time.Now()
	if want := " Path=/; Max-Age=2592000; HttpOnly; SameSite=Lax"; attrs != want {
		t.Errorf("cookie attributes %q, want %q (no Secure on plain HTTP)", attrs, want)
	}
	cookie := "Cookie: other=1; levee_known=" + tok
	// (Distinct paths below: a micro-cache hit would prove nothing.)
	if resp, _ := fetch("127.0.31.5", "/again", cookie); resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("a client with a valid (young) cookie got another: %q", resp.Header.Values("Set-Cookie"))
	}
	if resp, _ := fetch("127.0.31.5", "/app.js"); resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("a script got the cookie: %q", resp.Header.Values("Set-Cookie"))
	}
	// The micro-cache stores the page without the cookie: the miss gets
	// one, the hit (another client) none.
	if resp, _ := fetch("127.0.31.6", "/cached"); resp.StatusCode != 200 || resp.Header.Get("Set-Cookie") == "" {
		t.Errorf("cache miss: %d, no cookie", resp.StatusCode)
	}
	before := hits.Load()
	if resp, body := fetch("127.0.31.7", "/cached"); resp.StatusCode != 200 || !strings.Contains(body, "page /cached") ||
		resp.Header.Get("Set-Cookie") != "" || hits.Load() != before {
		t.Errorf("cache hit: %d %q, Set-Cookie %q, origin hit %v", resp.StatusCode, body, resp.Header.Values("Set-Cookie"), hits.Load() != before)
	}

	s.engine.SetMode(decide.ModeState{Mode: decide.UnderAttack, Until: time.Now().Add(time.Minute)})
	challenged := func(what string, resp *http.Response, body string) {
		t.Helper()
		if resp.StatusCode == 200 || !strings.Contains(body, "/.levee/") {
			t.Errorf("%s: %d, want a challenge", what, resp.StatusCode)
		}
	}
	if time.Since(issued) < 900*time.Millisecond {
		resp, body := fetch("127.0.31.5", "/young", cookie)
		challenged("cookie younger than min_age", resp, body)
	}
	time.Sleep(time.Until(issued.Add(time.Second)))
	before = hits.Load()
	for _, src := range []string{"127.0.31.5", "127.0.31.200"} {
		path := "/attack-" + src
		resp, body := fetch(src, path, cookie)
		if resp.StatusCode != 200 || !strings.Contains(body, "page "+path) {
			t.Errorf("under attack, cookie holder from %s: %d %.60q", src, resp.StatusCode, body)
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("cookie issued under attack: %q", resp.Header.Values("Set-Cookie"))
		}
	}
	if hits.Load() != before+2 {
		t.Errorf("origin hits %d, want 2", hits.Load()-before)
	}
	resp, body := fetch("127.0.31.8", "/fresh")
	challenged("fresh client", resp, body)
	resp, body = fetch("127.0.32.5", "/other-net", cookie)
	challenged("cookie from another /24", resp, body)
	if v, _ := knownCookieOf(resp); v != "" {
		t.Error("challenge page carries a known-client cookie")
	}

	// The key is in the data directory and outlives the shield.
	key := filepath.Join(s.Config().DataDir, "known.key")
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file %s: %v %v", key, st, err)
	}
	c1, _ := knownCookies(s.Config())
	c2, _ := knownCookies(s.Config())
	if _, known := c2.Check(time.Now(), netip.MustParseAddr("127.0.31.5"), []byte(tok)); !known || c1 == nil {
		t.Error("a cookie is not valid with the key read again (restart)")
	}
}

// TestKnownClientCookieHTTP2: the HTTP/2 path issues the cookie (Secure
// over TLS) and lets its holder through under attack.
func TestKnownClientCookieHTTP2(t *testing.T) {
	originAddr, _ := htmlOrigin(t)
	crt, key := selfSigned(t, t.TempDir(), "h2.test")
	s := startShield(t, fmt.Sprintf(`
listen:
  - address: "127.0.0.1:0"
    tls: {certificates: [{cert: %s, key: %s}]}
sites: [{upstreams: [{url: "http://%s"}]}]
known_clients: {min_age: 1s}
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
`, crt, key, originAddr))
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "h2.test", InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	fetch := func(cookie string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+addrOf(s, 0)+"/", nil)
		req.Header.Set("Accept", "text/html")
		if cookie != "" {
			req.Header.Set("Cookie", "levee_known="+cookie)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, _ := fetch("")
	tok, attrs := knownCookieOf(resp)
	issued := time.Now()
	if resp.StatusCode != 200 || len(tok) != 44 || !strings.HasSuffix(attrs, "; Secure") {
		t.Fatalf("HTTP/2 first page: %d, Set-Cookie %q", resp.StatusCode, resp.Header.Values("Set-Cookie"))
	}
	if resp, _ := fetch(tok); resp.Header.Get("Set-Cookie") != "" {
		t.Errorf("HTTP/2: a client with a valid cookie got another")
	}
	s.engine.SetMode(decide.ModeState{Mode: decide.UnderAttack, Until: time.Now().Add(time.Minute)})
	time.Sleep(time.Until(issued.Add(time.Second)))
	if resp, body := fetch(tok); resp.StatusCode != 200 || !strings.Contains(body, "page /") {
		t.Errorf("HTTP/2 under attack, cookie holder: %d", resp.StatusCode)
	}
	if resp, body := fetch(""); resp.StatusCode == 200 || !strings.Contains(body, "/.levee/") {
		t.Errorf("HTTP/2 under attack, fresh client: %d", resp.StatusCode)
	}
}

// TestKnownClientKeyRotation: the operator's rotation through a reload.
// After moving known.key to old_key_files and reloading, new cookies are
// signed with a new key while a cookie signed with the old one still
// counts under attack; dropping the old file and reloading revokes it. A
// missing old key file is refused and the running keys stay.
func TestKnownClientKeyRotation(t *testing.T) {
	originAddr, _ := htmlOrigin(t)
	base := fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
`, originAddr)
	s := startShield(t, base+"known_clients: {min_age: 1s}\n")
	dir := s.Config().DataDir
	path := s.opts.ConfigPath
	reload := func(known string) error {
		t.Helper()
		if err := os.WriteFile(path, []byte(base+"known_clients: "+known+"\ndata_dir: "+dir+"\nadmin: {address: \"off\"}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return s.Reload()
	}
	fetch := func(src, path string, hdr ...string) (*http.Response, string) {
		t.Helper()
		return fetchHTML(t, s, src, path, hdr...)
	}
	resp, _ := fetch("127.0.34.5", "/")
	oldTok, _ := knownCookieOf(resp)
	if oldTok == "" {
		t.Fatal("no cookie in normal mode")
	}
	issued := time.Now()

	// A missing old key file: refused, the running cookie keys stay.
	if err := reload(`{min_age: 1s, old_key_files: [` + filepath.Join(dir, "missing.key") + `]}`); err == nil ||
		!strings.Contains(err.Error(), "old_key_files[0]") {
		t.Fatalf("reload with a missing old key file: %v", err)
	}
	// Rotate: the current key becomes an old key; known.key is generated anew.
	oldKey := filepath.Join(dir, "known.old.key")
	if err := os.Rename(filepath.Join(dir, "known.key"), oldKey); err != nil {
		t.Fatal(err)
	}
	if err := reload(`{min_age: 1s, old_key_files: [` + oldKey + `]}`); err != nil {
		t.Fatal(err)
	}
	resp, _ = fetch("127.0.35.5", "/")
	newTok, _ := knownCookieOf(resp)
	addr := netip.MustParseAddr("127.0.35.5")
	onlyNew := *s.Config() // a copy: the running config is shared
	onlyNew.KnownClients.OldKeyFiles = nil
	c, err := knownCookies(&onlyNew)
	if err != nil {
		t.Fatal(err)
	}
	if valid, _ := c.Check(time.Now(), addr, []byte(newTok)); newTok == "" || !valid {
		t.Errorf("the cookie issued after the rotation (%q) is not signed with the new key", newTok)
	}
	if valid, _ := c.Check(time.Now(), netip.MustParseAddr("127.0.34.5"), []byte(oldTok)); valid {
		t.Error("the old cookie verifies with the new key alone")
	}

	s.engine.SetMode(decide.ModeState{Mode: decide.UnderAttack, Until: time.Now().Add(time.Minute)})
	time.Sleep(time.Until(issued.Add(1100 * time.Millisecond)))
	if resp, body := fetch("127.0.34.5", "/after-rotation", "Cookie: levee_known="+oldTok); resp.StatusCode != 200 || !strings.Contains(body, "page /after-rotation") {
		t.Errorf("old-key cookie after rotation: %d %.60q, want the page", resp.StatusCode, body)
	}
	// Revoke the old key.
	if err := reload(`{min_age: 1s}`); err != nil {
		t.Fatal(err)
	}
	if resp, body := fetch("127.0.34.5", "/after-revocation", "Cookie: levee_known="+oldTok); resp.StatusCode == 200 || !strings.Contains(body, "/.levee/") {
		t.Errorf("old-key cookie after its key was dropped: %d, want a challenge", resp.StatusCode)
	}
}
