package shield

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/levee-dev/levee/internal/decide"
)

// TestRapidResetGetsGoAwayNormalClientServed: through the real shield, a
// Rapid Reset client (HEADERS then RST_STREAM, over and over) receives
// GOAWAY(ENHANCE_YOUR_CALM) and is disconnected, while a normal HTTP/2
// client on its own connection completes all its requests.
func TestRapidResetGetsGoAwayNormalClientServed(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	crt, key := selfSigned(t, dir, "h2.test")
	s := startShield(t, fmt.Sprintf(`
listen:
  - address: "127.0.0.1:0"
    tls: {certificates: [{cert: %s, key: %s}]}
sites: [{upstreams: [{url: "http://%s"}]}]
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
guard: {http2: {max_resets_per_window: 100}}
`, crt, key, o.addr))
	addr := addrOf(s, 0)

	var wg sync.WaitGroup
	normalErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "h2.test", InsecureSkipVerify: true}}
		defer tr.CloseIdleConnections()
		cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for i := 0; i < 200; i++ {
			resp, err := cl.Get("https://" + addr + "/n")
			if err != nil {
				normalErr <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				normalErr <- fmt.Errorf("normal request %d: status %d", i, resp.StatusCode)
				return
			}
		}
		normalErr <- nil
	}()

	conn, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "h2.test", InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if conn.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatal("h2 not negotiated")
	}
	conn.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "h2.test"}, {":path", "/rr"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	block := hb.Bytes()
	// Reader: wait for GOAWAY.
	goaway := make(chan http2.ErrCode, 1)
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				close(goaway)
				return
			}
			if ga, ok := f.(*http2.GoAwayFrame); ok {
				goaway <- ga.ErrCode
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	sent := 0
	for id := uint32(1); id < 20000 && time.Now().Before(deadline); id += 2 {
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true, EndStream: true}); err != nil {
			break
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			break
		}
		sent++
	}
	select {
	case code, ok := <-goaway:
		if !ok || code != http2.ErrCodeEnhanceYourCalm {
			t.Fatalf("rapid reset client: got GOAWAY %v (received %v) after %d streams, want ENHANCE_YOUR_CALM", code, ok, sent)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no GOAWAY after %d reset streams", sent)
	}
	// The connection is then closed.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, conn); err != nil && isTimeoutErr(err) {
		t.Fatal("abusive connection not closed after GOAWAY")
	}
	wg.Wait()
	if err := <-normalErr; err != nil {
		t.Fatalf("normal HTTP/2 client: %v", err)
	}
	t.Logf("rapid reset: GOAWAY(ENHANCE_YOUR_CALM) after %d streams written by the client; normal client: 200/200 ok", sent)
}

func TestHTTP2UnderAttackServesChallenge(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	crt, key := selfSigned(t, dir, "h2c.test")
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0", tls: {certificates: [{cert: %s, key: %s}]}}]
sites: [{upstreams: [{url: "http://%s"}]}]
`, crt, key, o.addr))
	s.engine.SetMode(decide.ModeState{Mode: decide.UnderAttack, Until: time.Now().Add(time.Minute)})
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "h2c.test", InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "https://"+addrOf(s, 0)+"/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode == 200 || !bytes.Contains(body, []byte("/.levee/")) || o.hits.Load() != 0 {
		t.Fatalf("h2 under attack: proto %d status %d origin hits %d body %.120q", resp.ProtoMajor, resp.StatusCode, o.hits.Load(), body)
	}
}

// TestTLSFingerprintRule: the JA4 fingerprint of each TLS connection is
// available to rules (and to telemetry and challenges).
func TestTLSFingerprintRule(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	crt, key := selfSigned(t, dir, "fp.test")
	s := startShield(t, fmt.Sprintf(`
listen:
  - {address: "127.0.0.1:0", tls: {certificates: [{cert: %s, key: %s}]}}
  - {address: "127.0.0.1:0"}
sites: [{upstreams: [{url: "http://%s"}]}]
rules:
  - {name: tls13-go-client, match: {tls_fingerprint: {prefix: "t13d"}}, action: block}
`, crt, key, o.addr))
	conn, err := tls.Dial("tcp", addrOf(s, 0), &tls.Config{ServerName: "fp.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, _, err := get(conn, "/")
	conn.Close()
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("TLS 1.3 client: %v %v, want 403 from the fingerprint rule", err, resp)
	}
	// HTTP/2 requests carry the fingerprint too.
	if code := h2Status(t, "fp.test", addrOf(s, 0)); code != 403 {
		t.Fatalf("h2 request: %d, want 403", code)
	}
	// A plain connection has no fingerprint: the rule does not match.
	c, _ := net.Dial("tcp", addrOf(s, 1))
	defer c.Close()
	if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("plain client: %v %v", err, resp)
	}
}

// TestHTTPFingerprintRules: JA4H (HTTP/1.1) and the Akamai HTTP/2
// fingerprint are available to rules.
func TestHTTPFingerprintRules(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	crt, key := selfSigned(t, dir, "hfp.test")
	s := startShield(t, fmt.Sprintf(`
listen:
  - {address: "127.0.0.1:0", tls: {certificates: [{cert: %s, key: %s}]}}
  - {address: "127.0.0.1:0"}
sites: [{upstreams: [{url: "http://%s"}]}]
rules:
  - {name: h2-clients, match: {http_fingerprint: {contains: "|"}}, action: block}
  - {name: post-no-cookie, match: {http_fingerprint: {prefix: "po11n"}}, action: block}
`, crt, key, o.addr))
	if code := h2Status(t, "hfp.test", addrOf(s, 0)); code != 403 {
		t.Fatalf("HTTP/2 request: %d, want 403 from the Akamai fingerprint rule", code)
	}
	c, _ := net.Dial("tcp", addrOf(s, 1))
	defer c.Close()
	if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTP/1.1 GET: %v %v", err, resp)
	}
	io.WriteString(c, "POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("HTTP/1.1 POST without cookie: %v %v, want 403 from the JA4H rule", err, resp)
	}
}

// h2Status sends one HTTP/2 GET / to addr (TLS, server name sni) and
// returns the status.
func h2Status(t *testing.T, sni, addr string) int {
	t.Helper()
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
