package fingerprint

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
)

// observation is what the capture server saw of one request.
type observation struct {
	client, proto            string
	ja4, ja4h, order, akamai string
}

// TestJA4StableAcrossResumption: Go's client with a session cache resumes
// its TLS sessions; JA4 changes on resumption, JA4Stable does not.
func TestJA4StableAcrossResumption(t *testing.T) {
	if testing.Short() {
		t.Skip("loopback TLS")
	}
	cs := startCapture(t)
	var mu sync.Mutex
	var stable, plain []string
	cs.mu.Lock()
	cs.onHello = func(hi *tls.ClientHelloInfo) {
		mu.Lock()
		stable, plain = append(stable, JA4Stable(hi)), append(plain, JA4(hi))
		mu.Unlock()
	}
	cs.mu.Unlock()
	tr := &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(8)}}
	defer tr.CloseIdleConnections()
	for range 3 {
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + cs.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stable) != 3 {
		t.Fatalf("%d hellos", len(stable))
	}
	if plain[0] == plain[1] {
		t.Logf("JA4 did not change on resumption (%s); the client may not have resumed", plain[0])
	}
	for i := 1; i < 3; i++ {
		if stable[i] != stable[0] {
			t.Errorf("JA4Stable changed on connection %d: %s, first %s (JA4 %s / %s)", i+1, stable[i], stable[0], plain[i], plain[0])
		}
	}
	t.Logf("JA4 %v; JA4Stable %s", plain, stable[0])
}

type captureServer struct {
	addr string
	mu   sync.Mutex
	ja4  map[string]string // remote address -> JA4
	obs  []observation
	// onHello, if set before the first connection, sees every hello.
	onHello func(*tls.ClientHelloInfo)
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "levee test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func clientName(ua string) string {
	switch {
	case strings.HasPrefix(ua, "curl/"):
		return "curl"
	case strings.HasPrefix(ua, "Go-http-client/"):
		return "go"
	case strings.Contains(ua, "Chrome/"):
		return "chromium"
	}
	return "other:" + ua
}

// startCapture runs a TLS server on loopback that records JA4 in
// GetConfigForClient, serves HTTP/2 through WrapH2 and x/net/http2, and
// HTTP/1.1 through fasthttp.
func startCapture(t *testing.T) *captureServer {
	t.Helper()
	cs := &captureServer{ja4: map[string]string{}}
	cfg := &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2", "http/1.1"},
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			cs.mu.Lock()
			cs.ja4[hi.Conn.RemoteAddr().String()] = JA4(hi)
			f := cs.onHello
			cs.mu.Unlock()
			if f != nil {
				f(hi)
			}
			return nil, nil
		}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cs.addr = ln.Addr().String()
	const page = "<!DOCTYPE html><title>ok</title><h1 id=ok>ok</h1>"
	h2srv := &http2.Server{IdleTimeout: 500 * time.Millisecond}
	h2handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/favicon.ico" {
			w.WriteHeader(404)
			return
		}
		o := observation{client: clientName(r.UserAgent()), proto: "h2", ja4: cs.lookup(r.RemoteAddr)}
		if h, ok := H2FromContext(r.Context()); ok {
			o.akamai = h.Akamai
			o.ja4h = JA4H([]byte(r.Method), []byte("HTTP/2.0"), Slice(h.Headers))
			o.order = HeaderOrder(Slice(h.Headers))
		}
		cs.add(o)
		io.WriteString(w, page)
	})
	h1handler := func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/favicon.ico" {
			ctx.SetStatusCode(404)
			return
		}
		raw := ctx.Request.Header.RawHeaders()
		cs.add(observation{client: clientName(string(ctx.UserAgent())), proto: "http/1.1", ja4: cs.lookup(ctx.RemoteAddr().String()),
			ja4h:  JA4H(ctx.Method(), ctx.Request.Header.Protocol(), RawHeaders(raw)),
			order: HeaderOrder(RawHeaders(raw))})
		ctx.SetContentType("text/html")
		ctx.SetBodyString(page)
	}
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				tc := tls.Server(c, cfg)
				if err := tc.Handshake(); err != nil {
					return
				}
				if tc.ConnectionState().NegotiatedProtocol == "h2" {
					wc, rec := WrapH2(tc)
					h2srv.ServeConn(wc, &http2.ServeConnOpts{Context: WithH2(context.Background(), rec), Handler: h2handler})
					return
				}
				fasthttp.ServeConn(tc, h1handler)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return cs
}

func (cs *captureServer) lookup(remote string) string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.ja4[remote]
}

func (cs *captureServer) add(o observation) {
	cs.mu.Lock()
	cs.obs = append(cs.obs, o)
	cs.mu.Unlock()
}

// TestCaptureRealClients fingerprints curl, Go's client and headless
// Chromium, two connections each, over TLS on loopback: the same client
// must give the same fingerprints on every connection, different clients
// different JA4s. LEVEE_UPDATE_CAPTURES=1 rewrites testdata/captures.txt.
func TestCaptureRealClients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real clients")
	}
	cs := startCapture(t)
	base := "https://" + cs.addr + "/"
	versions := []string{"go: " + runtime.Version()}

	goGet := func(h2 bool) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(base)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 2 {
		goGet(false)
		goGet(true)
	}

	if curl, err := exec.LookPath("curl"); err != nil {
		t.Log("curl not installed (apt-get install -y curl): skipping its capture")
	} else {
		out, _ := exec.Command(curl, "--version").Output()
		versions = append(versions, "curl: "+strings.SplitN(string(out), "\n", 2)[0])
		for range 2 {
			for _, flag := range []string{"--http1.1", "--http2"} {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if out, err := exec.CommandContext(ctx, curl, "-sk", "--max-time", "5", flag, base).CombinedOutput(); err != nil {
					t.Fatalf("curl %s: %v %s", flag, err, out)
				}
				cancel()
			}
		}
	}

	if _, err := os.Stat(chromium); err != nil {
		t.Logf("%s not installed (apt-get install -y chromium): skipping its capture", chromium)
	} else {
		out, _ := exec.Command(chromium, "--version").Output()
		versions = append(versions, "chromium: "+strings.TrimSpace(string(out)))
		actx, cancelA := chromedp.NewExecAllocator(context.Background(),
			chromedp.ExecPath(chromium), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
			chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
			chromedp.IgnoreCertErrors, chromedp.UserDataDir(t.TempDir()))
		defer cancelA()
		bctx, cancelB := chromedp.NewContext(actx)
		defer cancelB()
		tctx, cancelT := context.WithTimeout(bctx, 40*time.Second)
		defer cancelT()
		if err := chromedp.Do(tctx, chromedp.Navigate("about:blank")); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			// A new browser context has its own connection pool: a new TLS connection.
			ctx, cancel := chromedp.NewContext(tctx, chromedp.WithNewBrowserContext())
			err := chromedp.Do(ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#ok")))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
		}
	}

	cs.mu.Lock()
	obs := append([]observation(nil), cs.obs...)
	cs.mu.Unlock()
	groups := map[string][]observation{}
	for _, o := range obs {
		k := o.client + " " + o.proto
		groups[k] = append(groups[k], o)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var report strings.Builder
	fmt.Fprintf(&report, "# Fingerprints captured by TestCaptureRealClients on loopback (%s).\n", time.Now().UTC().Format("2006-01-02"))
	for _, v := range versions {
		fmt.Fprintf(&report, "# %s\n", v)
	}
	ja4By := map[string]string{}
	for _, k := range keys {
		g := groups[k]
		if len(g) < 2 {
			t.Errorf("%s: %d connections, want 2", k, len(g))
			continue
		}
		for _, o := range g[1:] {
			if o != g[0] {
				t.Errorf("%s: fingerprints differ between connections:\n%+v\n%+v", k, g[0], o)
			}
		}
		o := g[0]
		if o.ja4 == "" || o.ja4h == "" || (o.proto == "h2" && o.akamai == "") {
			t.Errorf("%s: missing fingerprint %+v", k, o)
		}
		fmt.Fprintf(&report, "%s\tja4=%s\tja4h=%s\theader_order=%s", k, o.ja4, o.ja4h, o.order)
		if o.akamai != "" {
			fmt.Fprintf(&report, "\takamai=%s", o.akamai)
		}
		report.WriteString("\n")
		if prev, ok := ja4By[o.ja4]; ok && !strings.HasPrefix(k, strings.Fields(prev)[0]+" ") {
			t.Errorf("%s and %s share JA4 %s", prev, k, o.ja4)
		}
		ja4By[o.ja4] = k
	}
	t.Log("\n" + report.String())
	if os.Getenv("LEVEE_UPDATE_CAPTURES") != "" {
		if err := os.WriteFile("testdata/captures.txt", []byte(report.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const chromium = "/usr/bin/chromium"

// TestJA4StableChromiumResumption: Chromium resumes its TLS session on a
// new connection (the capture server closes idle HTTP/2 connections after
// 0.5 s); JA4 gains pre_shared_key, JA4Stable stays the same.
func TestJA4StableChromiumResumption(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("%s not installed (apt-get install -y chromium)", chromium)
	}
	cs := startCapture(t)
	var mu sync.Mutex
	var stable, plain []string
	cs.mu.Lock()
	cs.onHello = func(hi *tls.ClientHelloInfo) {
		mu.Lock()
		stable, plain = append(stable, JA4Stable(hi)), append(plain, JA4(hi))
		mu.Unlock()
	}
	cs.mu.Unlock()
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.IgnoreCertErrors, chromedp.UserDataDir(t.TempDir()))
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancelT := context.WithTimeout(bctx, 40*time.Second)
	defer cancelT()
	for i := range 2 {
		if err := chromedp.Do(ctx, chromedp.Navigate(fmt.Sprintf("https://%s/?visit=%d", cs.addr, i)), chromedp.WaitVisible(chromedp.CSS("#ok"))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1200 * time.Millisecond) // past the server's idle timeout: the next visit reconnects
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stable) < 2 {
		t.Fatalf("%d TLS connections, want at least 2", len(stable))
	}
	for i := range stable {
		if stable[i] != stable[0] {
			t.Errorf("JA4Stable changed between connections: %v", stable)
		}
	}
	resumed := false
	for _, p := range plain[1:] {
		resumed = resumed || p != plain[0]
	}
	t.Logf("Chromium JA4 per connection %v; JA4Stable %s; resumed (JA4 changed): %v", plain, stable[0], resumed)
}
