package shield

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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
// client on its own connection completes all its requests. The cut-off
// must be Levee's own (levee_h2guard_abuse_total{reason=rapid_reset}):
// x/net/http2's early-reset protection sends the same GOAWAY.
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
	// It was Levee's own accounting (internal/h2guard) that cut the client
	// off: x/net/http2's built-in early-reset protection sends the same
	// GOAWAY but is not counted here.
	if got := abuseCount(t, s, "rapid_reset"); got != 1 {
		t.Fatalf("levee_h2guard_abuse_total{reason=rapid_reset} = %v, want 1 (the GOAWAY came from x/net's own defense, not h2guard?); %s",
			got, seriesOf(t, s, "levee_h2guard_abuse_total"))
	}
	wg.Wait()
	if err := <-normalErr; err != nil {
		t.Fatalf("normal HTTP/2 client: %v", err)
	}
	t.Logf("rapid reset: GOAWAY(ENHANCE_YOUR_CALM) after %d streams written by the client; normal client: 200/200 ok", sent)
}

// normalH2 runs n GETs of path through an http2.Transport (its own
// connection, from 127.0.0.1) once start is called (callable more than
// once), and sends the outcome on the returned channel.
func normalH2(addr, sni, path string, n int) (start func(), result <-chan error) {
	out := make(chan error, 1)
	begin := make(chan struct{})
	go func() {
		<-begin
		tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: sni, InsecureSkipVerify: true}}
		defer tr.CloseIdleConnections()
		cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for i := 0; i < n; i++ {
			resp, err := cl.Get(fmt.Sprintf("https://%s%s?i=%d", addr, path, i))
			if err != nil {
				out <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || !bytes.Contains(body, []byte(path)) {
				out <- fmt.Errorf("request %d: proto %d status %d body %q", i, resp.ProtoMajor, resp.StatusCode, body)
				return
			}
		}
		out <- nil
	}()
	return sync.OnceFunc(func() { close(begin) }), out
}

// h2AbuseShield starts a shield with one TLS listener (certificate for
// sni) in front of a fresh origin, with HTTP/2 budgets lowered to 100 and
// a rate limit no test here reaches.
func h2AbuseShield(t *testing.T, sni string) *Shield {
	t.Helper()
	return h2AbuseShieldWith(t, sni, "", "")
}

// h2AbuseShieldWith is h2AbuseShield with more guard.http2 settings (a
// flow-mapping fragment such as "abuse_ban: 1m") and more top-level YAML.
func h2AbuseShieldWith(t *testing.T, sni, http2Extra, extra string) *Shield {
	t.Helper()
	o := startOrigin(t)
	crt, key := selfSigned(t, t.TempDir(), sni)
	if http2Extra != "" {
		http2Extra = ", " + http2Extra
	}
	return startShield(t, fmt.Sprintf(`
listen:
  - address: "127.0.0.1:0"
    tls: {certificates: [{cert: %s, key: %s}]}
sites: [{upstreams: [{url: "http://%s"}]}]
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
guard: {http2: {max_resets_per_window: 100, max_server_resets_per_window: 100, max_continuation_frames: 32%s}}
%s`, crt, key, o.addr, http2Extra, extra))
}

// TestContinuationFloodGetsGoAwayNormalClientServed: through the real
// shield, a client that sends HEADERS without END_HEADERS and then an
// endless run of small CONTINUATION frames (CVE-2023-45288) gets
// GOAWAY(ENHANCE_YOUR_CALM) and is disconnected by Levee's h2guard
// (levee_h2guard_abuse_total{reason=continuation_flood}), while a normal
// HTTP/2 client on its own connection is served.
func TestContinuationFloodGetsGoAwayNormalClientServed(t *testing.T) {
	const sni = "cont.test"
	s := h2AbuseShield(t, sni)
	addr := addrOf(s, 0)
	startNormal, normal := normalH2(addr, sni, "/normal", 100)
	defer startNormal()

	c := dialRawH2(t, "127.0.0.71", addr, sni)
	// A valid header block (about 6 KiB, under the 16 KiB header list
	// limit) cut into 24-byte fragments: HEADERS, then CONTINUATION
	// frames, never END_HEADERS.
	var extra []string
	for i := range 200 {
		extra = append(extra, fmt.Sprintf("x-filler-%03d", i), strings.Repeat("v", 20))
	}
	block := c.headerBlock(sni, "/cont", extra...)
	const frag = 24
	if !c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:frag], EndStream: true})
	}) {
		t.Fatal("write HEADERS failed")
	}
	sent := 0
	for off := frag; off+frag <= len(block) && !c.closed(); off += frag {
		if !c.write(func() error { return c.fr.WriteContinuation(1, false, block[off:off+frag]) }) {
			break
		}
		sent++
		if sent == 10 {
			startNormal()
		}
	}
	startNormal()
	c.waitCutOff(t, "CONTINUATION flood")
	if got := abuseCount(t, s, "continuation_flood"); got != 1 {
		t.Fatalf("levee_h2guard_abuse_total{reason=continuation_flood} = %v after %d CONTINUATION frames, want 1 (cut off by x/net's own limit, not h2guard?); %s",
			got, sent, seriesOf(t, s, "levee_h2guard_abuse_total"))
	}
	if err := <-normal; err != nil {
		t.Fatalf("normal HTTP/2 client during the CONTINUATION flood: %v", err)
	}
	t.Logf("CONTINUATION flood: GOAWAY(ENHANCE_YOUR_CALM) after %d of %d frames written", sent, len(block)/frag-1)
}

// TestMadeYouResetGetsGoAwayNormalClientServed: through the real shield,
// a client that opens streams legitimately and then provokes the server
// into resetting each of them with WINDOW_UPDATE(0) (MadeYouReset,
// CVE-2025-8671; it never sends RST_STREAM itself, so client-reset
// accounting does not see it) gets GOAWAY(ENHANCE_YOUR_CALM) and is
// disconnected by Levee's h2guard
// (levee_h2guard_abuse_total{reason=server_resets}), while a normal HTTP/2
// client on its own connection is served.
func TestMadeYouResetGetsGoAwayNormalClientServed(t *testing.T) {
	const sni = "myr.test"
	s := h2AbuseShield(t, sni)
	addr := addrOf(s, 0)
	startNormal, normal := normalH2(addr, sni, "/normal", 100)
	defer startNormal()

	c := dialRawH2(t, "127.0.0.72", addr, sni)
	sent := 0
	deadline := time.Now().Add(8 * time.Second)
	for id := uint32(1); sent < 2000 && time.Now().Before(deadline) && !c.closed(); id += 2 {
		block := c.headerBlock(sni, "/myr")
		if !c.write(func() error {
			// HEADERS without END_STREAM: the stream stays open for a body.
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}); err != nil {
				return err
			}
			return c.fr.WriteWindowUpdate(id, 0)
		}) {
			break
		}
		sent++
		if sent == 10 {
			startNormal()
		}
		if sent%20 == 0 {
			time.Sleep(time.Millisecond) // let the server answer each provocation
		}
	}
	startNormal()
	c.waitCutOff(t, "MadeYouReset")
	if got := abuseCount(t, s, "server_resets"); got != 1 {
		t.Fatalf("levee_h2guard_abuse_total{reason=server_resets} = %v after %d provocations (%d RST_STREAM received), want 1; %s",
			got, sent, c.serverRST, seriesOf(t, s, "levee_h2guard_abuse_total"))
	}
	if c.serverRST < 100 {
		t.Fatalf("only %d server resets before the cut-off, want at least 100 (budget)", c.serverRST)
	}
	if err := <-normal; err != nil {
		t.Fatalf("normal HTTP/2 client during MadeYouReset: %v", err)
	}
	t.Logf("MadeYouReset: GOAWAY(ENHANCE_YOUR_CALM) after %d provocations, %d RST_STREAM from the server", sent, c.serverRST)
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
