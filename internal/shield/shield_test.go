package shield

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/levee-dev/levee/internal/guard"
)

func TestProxyBasicsAndHeaders(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - upstreams: [{url: "http://%s"}]
`, o.addr))
	c, err := dialFrom(t, "127.0.0.9", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// A client-forged X-Forwarded-For from an untrusted peer is replaced;
	// hop-by-hop headers, including those named in Connection, are removed.
	resp, body, err := get(c, "/a?b=1", "X-Forwarded-For: 6.6.6.6", "Connection: keep-alive, X-Hop",
		"X-Hop: secret", "Keep-Alive: 300", "Proxy-Connection: keep-alive")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.Contains(body, "/a?b=1") {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"X-Seen-Xff": "127.0.0.9", "X-Seen-Proto": "http", "X-Seen-Via": "1.1 levee",
		"X-Seen-Host": "test.local", "X-Seen-Hop": "||",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if resp.Header.Get("Keep-Alive") != "" {
		t.Error("hop-by-hop Keep-Alive from the origin was forwarded to the client")
	}
	// Keep-alive: a second request on the same connection works.
	if resp, _, err := get(c, "/second"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("second request on keep-alive conn: %v", err)
	}
}

func TestPipelinedRequests(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"http://%s\"}]}]\n", o.addr))
	c, err := net.Dial("tcp", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b strings.Builder
	for i := 0; i < 5; i++ {
		fmt.Fprintf(&b, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, b.String())
	br := bufio.NewReader(c)
	for i := 0; i < 5; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.HasSuffix(string(body), fmt.Sprintf("/p%d", i)) {
			t.Fatalf("response %d out of order: %q", i, body)
		}
	}
}

func TestSlowlorisCutOffWhileOthersServed(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
guard: {header_timeout: 500ms}
`, o.addr))
	slow, err := dialFrom(t, "127.0.0.2", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		// Trickle a header byte every 100ms, forever (bounded to 5s).
		io.WriteString(slow, "GET / HTTP/1.1\r\n")
		for i := 0; time.Since(start) < 5*time.Second; i++ {
			if _, err := fmt.Fprintf(slow, "X-%d: y\r\n", i); err != nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		// Wait for the server to close.
		slow.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, slow)
		closed <- time.Since(start)
	}()
	// A normal client is served meanwhile.
	for i := 0; i < 5; i++ {
		c, err := dialFrom(t, "127.0.0.3", addrOf(s, 0))
		if err != nil {
			t.Fatal(err)
		}
		resp, _, err := get(c, "/")
		c.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("normal client: %v", err)
		}
	}
	select {
	case d := <-closed:
		if d > 3*time.Second {
			t.Fatalf("slowloris connection lived %v, want about 0.5s", d)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("slowloris connection never closed")
	}
}

// TestSlowReadClientCutOff: a client that asks for a large response and
// then reads it a few bytes at a time (slow read, the write-side twin of
// slowloris) is disconnected by the shield once a write has been blocked
// for write_timeout: the guard's open-connection count drops to 0 while
// the reader still trickles, and the reader then sees EOF (or a reset)
// after draining what was already in flight, far short of the response.
// A normal client is served meanwhile.
//
// The client's receive buffer is made small before connecting (SO_RCVBUF
// in the dialer's Control), so that the window announced in the handshake
// is small and the shield's writes block after a few tens of KiB.
func TestSlowReadClientCutOff(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
guard: {write_timeout: 300ms}
`, o.addr))
	const size = 256 << 20
	d := net.Dialer{
		Timeout:   2 * time.Second,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.61")},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	c, err := d.Dial("tcp", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second)) // hard bound
	if _, err := fmt.Fprintf(c, "GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n", size); err != nil {
		t.Fatal(err)
	}
	// The response has started: read its head.
	var got int64
	buf := make([]byte, 16)
	n, err := io.ReadFull(c, buf)
	got += int64(n)
	if err != nil || !strings.HasPrefix(string(buf), "HTTP/1.1 200") {
		t.Fatalf("slow reader: no response (%q, %v)", buf[:n], err)
	}

	// A normal client from another address is served while the slow
	// reader holds its connection.
	normal := make(chan error, 1)
	go func() {
		for i := 0; i < 10; i++ {
			nc, err := dialFrom(t, "127.0.0.62", addrOf(s, 0))
			if err != nil {
				normal <- err
				return
			}
			resp, body, err := get(nc, fmt.Sprintf("/n%d", i))
			nc.Close()
			if err != nil || resp.StatusCode != 200 || !strings.Contains(body, fmt.Sprintf("/n%d", i)) {
				normal <- fmt.Errorf("request %d: %v %v %q", i, err, resp, body)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		normal <- nil
	}()

	// Trickle: 16 bytes every 100ms, until the shield has closed every
	// connection (the normal client's end on their own) or 5s have passed.
	start := time.Now()
	var normalErr error
	normalDone := false
	closedAt := time.Duration(-1)
	for time.Since(start) < 5*time.Second {
		n, err := c.Read(buf)
		got += int64(n)
		if err != nil {
			t.Fatalf("slow reader: read failed while trickling, after %d bytes and %v: %v", got, time.Since(start), err)
		}
		if !normalDone {
			select {
			case normalErr = <-normal:
				normalDone = true
			default:
			}
		}
		if normalDone && s.Guard().Open() == 0 {
			closedAt = time.Since(start)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !normalDone {
		select {
		case normalErr = <-normal:
		case <-time.After(5 * time.Second):
			normalErr = errors.New("did not finish")
		}
	}
	if normalErr != nil {
		t.Fatalf("normal client during the slow read: %v", normalErr)
	}
	if closedAt < 0 {
		t.Fatalf("slow reader still holds its connection %v after the response started (write_timeout 300ms): %d connection(s) open, %d bytes read",
			time.Since(start).Round(time.Millisecond), s.Guard().Open(), got)
	}
	// Draining at full speed now ends with EOF or a reset once the bytes
	// already sent are read: far short of the response.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n64, err := io.Copy(io.Discard, c)
	got += n64
	if err != nil && isTimeoutErr(err) {
		t.Fatalf("slow reader: connection still open 5s after the guard released it (%d bytes read)", got)
	}
	if got > 8<<20 {
		t.Fatalf("slow reader received %d bytes, want the connection cut off after a few KiB", got)
	}
	t.Logf("slow reader cut off: guard released it %v into the trickle; %d bytes received in all (end: %v)",
		closedAt.Round(time.Millisecond), got, err)
}

func TestPerSourceConnectionCap(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
guard: {max_connections_per_ip: 3}
`, o.addr))
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 3; i++ {
		c, err := dialFrom(t, "127.0.0.4", addrOf(s, 0))
		if err != nil {
			t.Fatal(err)
		}
		if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("conn %d: %v", i, err)
		}
		held = append(held, c)
	}
	// The 4th connection from the same source is closed at accept time.
	c, err := dialFrom(t, "127.0.0.4", addrOf(s, 0))
	if err == nil {
		_, _, err = get(c, "/")
		c.Close()
	}
	if err == nil {
		t.Fatal("4th connection from 127.0.0.4 was served")
	}
	// Another source is served.
	c2, err := dialFrom(t, "127.0.0.5", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if resp, _, err := get(c2, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("other source refused: %v", err)
	}
}

func TestProxyProtocolAndTrustedXFF(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen:
  - {address: "127.0.0.1:0", proxy_protocol: true}
  - {address: "127.0.0.1:0"}
trusted_proxies: [127.0.0.50/32]
sites: [{upstreams: [{url: "http://%s"}]}]
`, o.addr))
	// PROXY v1 names the real client.
	c, err := net.Dial("tcp", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n")
	resp, _, err := get(c, "/")
	c.Close()
	if err != nil || resp.Header.Get("X-Seen-Xff") != "203.0.113.7" {
		t.Fatalf("PROXY v1: err %v, XFF %q", err, resp.Header.Get("X-Seen-Xff"))
	}
	// PROXY v2, IPv6 source.
	c, _ = net.Dial("tcp", addrOf(s, 0))
	hdr := []byte("\r\n\r\n\x00\r\nQUIT\n")
	hdr = append(hdr, 0x21, 0x21, 0, 36)
	hdr = append(hdr, net.ParseIP("2001:db8::7").To16()...)
	hdr = append(hdr, net.ParseIP("::1").To16()...)
	hdr = append(hdr, 0x9c, 0x40, 0, 80)
	c.Write(hdr)
	resp, _, err = get(c, "/")
	c.Close()
	if err != nil || resp.Header.Get("X-Seen-Xff") != "2001:db8::7" {
		t.Fatalf("PROXY v2: err %v, XFF %q", err, resp.Header.Get("X-Seen-Xff"))
	}
	// A connection without a PROXY header on that listener is refused.
	c, _ = net.Dial("tcp", addrOf(s, 0))
	_, _, err = get(c, "/")
	c.Close()
	if err == nil {
		t.Fatal("request without PROXY header was served on a proxy_protocol listener")
	}
	// X-Forwarded-For is honoured from the trusted proxy only: the chain is
	// kept and the peer appended.
	c, _ = dialFrom(t, "127.0.0.50", addrOf(s, 1))
	resp, _, err = get(c, "/", "X-Forwarded-For: 198.51.100.9")
	c.Close()
	if err != nil || resp.Header.Get("X-Seen-Xff") != "198.51.100.9, 127.0.0.50" {
		t.Fatalf("trusted XFF: err %v, XFF %q", err, resp.Header.Get("X-Seen-Xff"))
	}
	c, _ = dialFrom(t, "127.0.0.51", addrOf(s, 1))
	resp, _, err = get(c, "/", "X-Forwarded-For: 198.51.100.9")
	c.Close()
	if err != nil || resp.Header.Get("X-Seen-Xff") != "127.0.0.51" {
		t.Fatalf("untrusted XFF must be replaced: err %v, XFF %q", err, resp.Header.Get("X-Seen-Xff"))
	}
}

func TestTLSWithSNIAndHTTP2(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	c1, k1 := selfSigned(t, dir, "a.test")
	c2, k2 := selfSigned(t, dir, "b.test")
	s := startShield(t, fmt.Sprintf(`
listen:
  - address: "127.0.0.1:0"
    tls:
      certificates: [{cert: %s, key: %s}, {cert: %s, key: %s}]
sites: [{upstreams: [{url: "http://%s"}]}]
`, c1, k1, c2, k2, o.addr))
	for _, name := range []string{"a.test", "b.test"} {
		conn, err := tls.Dial("tcp", addrOf(s, 0), &tls.Config{ServerName: name, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != name {
			t.Errorf("SNI %s got certificate %s", name, cn)
		}
		resp, _, err := get(conn, "/")
		conn.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Seen-Proto") != "https" {
			t.Fatalf("TLS HTTP/1.1 via %s: %v %v", name, err, resp)
		}
	}
	// HTTP/2 through ALPN.
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "a.test", InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for i := 0; i < 20; i++ {
		resp, err := cl.Get("https://" + addrOf(s, 0) + "/h2?i=" + fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.Contains(string(body), "/h2?i=") {
			t.Fatalf("h2: proto %d status %d body %q", resp.ProtoMajor, resp.StatusCode, body)
		}
		if resp.Header.Get("X-Seen-Xff") != "127.0.0.1" {
			t.Fatalf("h2 XFF = %q", resp.Header.Get("X-Seen-Xff"))
		}
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf("listen: [{address: \"127.0.0.1:0\", h2c: true}]\nsites: [{upstreams: [{url: \"http://%s\"}]}]\n", o.addr))
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: nil}
	tr.DialTLS = func(network, addr string, _ *tls.Config) (net.Conn, error) { return net.Dial(network, addr) }
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + addrOf(s, 0) + "/c")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("h2c: proto %d status %d", resp.ProtoMajor, resp.StatusCode)
	}
	// HTTP/1.1 still works on the same listener.
	c, _ := net.Dial("tcp", addrOf(s, 0))
	defer c.Close()
	if r, _, err := get(c, "/"); err != nil || r.StatusCode != 200 {
		t.Fatalf("http/1.1 on h2c listener: %v", err)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"http://%s\"}]}]\n", o.addr))
	c, err := net.Dial("tcp", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("X-Echo") != "yes" {
		t.Fatalf("upgrade: %d %v", resp.StatusCode, resp.Header)
	}
	for _, msg := range []string{"ping-1", "ping-2", strings.Repeat("z", 100000)} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo through tunnel: %v (%d bytes)", err, len(got))
		}
	}
}

func TestUpstreamErrorsDoNotLeak(t *testing.T) {
	// A closed port: 502 with a static page that names no address.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - hosts: [dead.test]
    upstreams: [{url: "http://%s"}]
  - hosts: [slow.test]
    upstreams: [{url: "http://%s"}]
    response_timeout: 300ms
`, dead, o.addr))
	req := func(host, path, accept string) (*http.Response, string) {
		c, _ := net.Dial("tcp", addrOf(s, 0))
		defer c.Close()
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\nAccept: "+accept+"\r\n\r\n")
		c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := req("dead.test", "/", "text/html")
	if resp.StatusCode != 502 || strings.Contains(body, "127.0.0.1") || strings.Contains(body, "refused") {
		t.Fatalf("dead origin: %d %q", resp.StatusCode, body)
	}
	resp, body = req("slow.test", "/slow?d=2s", "application/json")
	if resp.StatusCode != 504 || !strings.HasPrefix(body, "{") || strings.Contains(body, "127.0.0.1") {
		t.Fatalf("slow origin: %d %q", resp.StatusCode, body)
	}
	resp, _ = req("unknown.test", "/", "")
	if resp.StatusCode != 421 {
		t.Fatalf("unknown host: %d, want 421", resp.StatusCode)
	}
}

func TestRoundRobinAndHealthChecks(t *testing.T) {
	o1, o2 := startOrigin(t), startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites:
  - upstreams: [{url: "http://%s"}, {url: "http://%s"}]
    health_check: {path: /health, interval: 100ms, unhealthy_after: 1, healthy_after: 1}
`, o1.addr, o2.addr))
	seen := map[string]int{}
	for i := 0; i < 10; i++ {
		c, _ := net.Dial("tcp", addrOf(s, 0))
		resp, _, err := get(c, "/")
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		seen[resp.Header.Get("X-Origin")]++
	}
	if seen[o1.addr] != 5 || seen[o2.addr] != 5 {
		t.Fatalf("round robin split %v, want 5/5", seen)
	}
	// Stop o2: after the health check marks it down, all traffic goes to o1.
	o2.srv.Close()
	time.Sleep(400 * time.Millisecond)
	for i := 0; i < 6; i++ {
		c, _ := net.Dial("tcp", addrOf(s, 0))
		resp, _, err := get(c, "/")
		c.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Origin") != o1.addr {
			t.Fatalf("after o2 died: %v %v", err, resp)
		}
	}
}

// memory returns the heap in use after a GC.
func memory() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func TestLargeStreamedUploadAndDownloadDoNotGrowMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 x 256 MiB")
	}
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"http://%s\"}]}]\n", o.addr))
	const size = 256 << 20
	before := memory()
	var peak uint64
	var mu sync.Mutex
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				mu.Lock()
				peak = max(peak, m.HeapInuse)
				mu.Unlock()
			}
		}
	}()
	// Upload.
	req, _ := http.NewRequest("POST", "http://"+addrOf(s, 0)+"/upload", io.LimitReader(zeroReader{}, size))
	req.ContentLength = size
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != fmt.Sprint(size) || o.uploaded.Load() != size {
		t.Fatalf("upload: origin got %d bytes, answered %q", o.uploaded.Load(), body)
	}
	// Chunked upload (unknown length).
	req, _ = http.NewRequest("POST", "http://"+addrOf(s, 0)+"/upload", io.NopCloser(io.LimitReader(zeroReader{}, 32<<20)))
	req.ContentLength = -1
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if o.uploaded.Load() != 32<<20 {
		t.Fatalf("chunked upload: origin got %d", o.uploaded.Load())
	}
	// Download.
	resp, err = http.Get(fmt.Sprintf("http://%s/big?n=%d", addrOf(s, 0), size))
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v", n, err)
	}
	close(stop)
	mu.Lock()
	growth := int64(peak) - int64(before)
	mu.Unlock()
	t.Logf("heap before %d MiB, peak during transfers %d MiB", before>>20, peak>>20)
	if growth > 48<<20 {
		t.Fatalf("heap grew by %d MiB while streaming 256 MiB each way: bodies are being buffered", growth>>20)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestBodyLimits(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
guard: {max_body_bytes: 1MiB, max_url_length: 256, max_header_bytes: 4KiB, body_timeout: 500ms, min_body_rate: 100KiB}
`, o.addr))
	post := func(n int64, chunked bool) int {
		req, _ := http.NewRequest("POST", "http://"+addrOf(s, 0)+"/upload", io.LimitReader(zeroReader{}, n))
		req.ContentLength = n
		if chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(io.LimitReader(zeroReader{}, n))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post(512<<10, false); got != 200 {
		t.Errorf("512KiB body: %d", got)
	}
	// Announced too large: refused before the body is read.
	c0, _ := net.Dial("tcp", addrOf(s, 0))
	io.WriteString(c0, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n")
	c0.Write(make([]byte, 8<<10)) // fasthttp reads the first 8 KiB with the head
	c0.SetDeadline(time.Now().Add(5 * time.Second))
	if r, err := http.ReadResponse(bufio.NewReader(c0), nil); err != nil || r.StatusCode != 413 {
		t.Errorf("2MiB body with Content-Length: %v %v, want 413", err, r)
	}
	c0.Close()
	// With Expect: 100-continue the body is refused before it is sent.
	c1, _ := net.Dial("tcp", addrOf(s, 0))
	io.WriteString(c1, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n")
	c1.SetDeadline(time.Now().Add(5 * time.Second))
	if r, err := http.ReadResponse(bufio.NewReader(c1), nil); err != nil || r.StatusCode != 417 {
		t.Errorf("2MiB body with Expect: 100-continue: %v %v, want 417", err, r)
	}
	c1.Close()
	if got := post(2<<20, true); got != 413 && got != 0 {
		t.Errorf("2MiB chunked body: %d, want 413 or connection closed", got)
	}
	c, _ := net.Dial("tcp", addrOf(s, 0))
	resp, _, err := get(c, "/"+strings.Repeat("u", 300))
	c.Close()
	if err != nil || resp.StatusCode != 414 {
		t.Errorf("long URL: %v %v", err, resp)
	}
	c, _ = net.Dial("tcp", addrOf(s, 0))
	resp, _, err = get(c, "/", "X-Big: "+strings.Repeat("h", 8000))
	c.Close()
	if err != nil || resp.StatusCode != 431 {
		t.Errorf("big header: %v %v", err, resp)
	}
	// Slow POST: 10 bytes/100ms against a 100KiB/s minimum.
	c, _ = net.Dial("tcp", addrOf(s, 0))
	defer c.Close()
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
	// The first 8 KiB arrive at once (they are read with the head, under
	// header_timeout); the rest trickles.
	c.Write(make([]byte, 16<<10))
	start := time.Now()
	for time.Since(start) < 4*time.Second {
		if _, err := c.Write(bytes.Repeat([]byte("x"), 10)); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if time.Since(start) >= 4*time.Second {
		t.Fatal("slow POST was never cut off")
	}
}

func TestReloadKeepsOldConfigOnError(t *testing.T) {
	o1, o2 := startOrigin(t), startOrigin(t)
	s := startShield(t, fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"http://%s\"}]}]\n", o1.addr))
	origin := func() string {
		c, err := net.Dial("tcp", addrOf(s, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		resp, _, err := get(c, "/")
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Get("X-Origin")
	}
	if origin() != o1.addr {
		t.Fatal("wrong origin before reload")
	}
	path := s.opts.ConfigPath
	dataDir := s.Config().DataDir
	os.WriteFile(path, []byte(fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"ftp://%s\"}]}]\ndata_dir: %s\nadmin: {address: \"off\"}\n", o2.addr, dataDir)), 0o600)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "scheme must be http") {
		t.Fatalf("bad reload: %v", err)
	}
	if origin() != o1.addr {
		t.Fatal("a failed reload changed the running config")
	}
	os.WriteFile(path, []byte(fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"http://%s\"}]}]\ndata_dir: %s\nadmin: {address: \"off\"}\n", o2.addr, dataDir)), 0o600)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if origin() != o2.addr {
		t.Fatal("good reload not applied")
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"http://%s\"}]}]\n", o.addr))
	c, _ := net.Dial("tcp", addrOf(s, 0))
	defer c.Close()
	done := make(chan error, 1)
	go func() {
		resp, body, err := get(c, "/slow?d=500ms")
		if err == nil && (resp.StatusCode != 200 || body != "slow done") {
			err = fmt.Errorf("status %d body %q", resp.StatusCode, body)
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("in-flight request: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addrOf(s, 0), time.Second); err == nil {
		t.Fatal("listener still accepting after shutdown")
	}
}

// TestConnectionFloodRawAccept: a flood of connections from a banned
// address switches the listener to raw accept (refusals reset without the
// netpoller); every flood connection is refused, new connections from
// other addresses are admitted and served meanwhile, and once the flood
// has been over for two seconds the listener is back on Go's Accept.
func TestConnectionFloodRawAccept(t *testing.T) {
	if rawDisabled {
		t.Skip("LEVEE_RAWACCEPT=off")
	}
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
block: [127.0.66.0/24]
`, o.addr))
	l := s.listeners[0]
	if !l.rawOK {
		t.Skip("raw accept not supported here")
	}
	if l.raw.Load() != nil {
		t.Fatal("raw accept path open before any flood")
	}
	rejected := func() float64 {
		t.Helper()
		for _, line := range strings.Split(metricLines(t, s), "\n") {
			if v, ok := strings.CutPrefix(line, "levee_guard_connections_rejected_total{reason=banned} "); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					t.Fatal(err)
				}
				return f
			}
		}
		return 0
	}
	before := rejected()
	flood := func(n int) {
		t.Helper()
		for i := range n {
			c, err := dialFrom(t, fmt.Sprintf("127.0.66.%d", 1+i%200), addrOf(s, 0))
			if err != nil {
				continue // reset before connect returned: refused too
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Fatal("a banned connection got data")
			}
			c.Close()
		}
	}
	served := func(src string) {
		t.Helper()
		c, err := dialFrom(t, src, addrOf(s, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("client %s during the flood: %v %v", src, resp, err)
		}
	}
	flood(200)
	served("127.0.0.7") // admitted on the raw path (or the call that switches to it)
	if !l.rawMode.Load() {
		t.Fatal("200 refusals did not switch the listener to raw accept")
	}
	flood(300)
	for i := range 5 {
		served(fmt.Sprintf("127.0.0.%d", 10+i))
	}
	if !l.rawMode.Load() {
		t.Fatal("left raw accept during the flood")
	}
	if m := metricLines(t, s); !strings.Contains(m, "levee_guard_flood_listeners{} 1") {
		t.Error("levee_guard_flood_listeners is not 1 during the flood")
	}
	if st := s.Status().(StatusReport); st.FloodListeners != 1 {
		t.Errorf("status flood_listeners %d during the flood, want 1", st.FloodListeners)
	}
	if got := rejected() - before; got != 500 {
		t.Errorf("banned refusals counted: %v, want 500", got)
	}
	// Without any connection, the listener leaves the raw path within
	// about a second of the meter's two-second memory.
	deadline := time.Now().Add(5 * time.Second)
	for l.rawMode.Load() && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l.rawMode.Load() || l.raw.Load() != nil {
		t.Error("still on raw accept (or its descriptor open) seconds after the flood")
	}
	served("127.0.0.20") // through Go's Accept again
	if m := metricLines(t, s); !strings.Contains(m, "levee_guard_flood_listeners{} 0") {
		t.Error("levee_guard_flood_listeners is not 0 after the flood")
	}
}

// TestFloodMeter: the raw path pays off only while refusals are frequent
// and outnumber admissions (admitted connections cost more on it).
func TestFloodMeter(t *testing.T) {
	for _, tt := range []struct {
		name              string
		refused, admitted int
		want              bool
	}{
		{"quiet", 10, 1000, false},
		{"flood of refusals", 500, 20, true},
		{"refusals below the floor", floodRefusals - 1, 0, false},
		{"busy site with some refusals", 200, 2000, false},
		{"even", 300, 300, true},
	} {
		var m floodMeter
		m.add(100, tt.refused, tt.admitted)
		if got := m.flooded(100); got != tt.want {
			t.Errorf("%s: flooded = %v, want %v", tt.name, got, tt.want)
		}
		// The previous second still counts; two seconds later nothing does.
		if got := m.flooded(101); got != tt.want {
			t.Errorf("%s, one second later: flooded = %v, want %v", tt.name, got, tt.want)
		}
		if m.flooded(103) {
			t.Errorf("%s: still flooded three seconds later", tt.name)
		}
	}
}

// TestRefusedAllocs: once its log line for the interval is written, a
// refusal at accept (sampled log, telemetry) allocates nothing.
func TestRefusedAllocs(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
`, o.addr))
	addr := netip.MustParseAddr("127.0.66.1")
	s.refused(addr, guard.Banned) // writes the line of this interval
	if n := testing.AllocsPerRun(100, func() { s.refused(addr, guard.Banned) }); n != 0 {
		t.Errorf("%v allocations per suppressed refusal, want 0", n)
	}
}
