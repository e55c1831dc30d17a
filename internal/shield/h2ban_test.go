package shield

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestHTTP2AbuseBan: with guard.http2.abuse_ban set, a client cut off for
// Rapid Reset is banned: the ban is listed with its reason and source,
// the client's next connection is refused at accept, and a client from
// another address is still served.
func TestHTTP2AbuseBan(t *testing.T) {
	o := startOrigin(t)
	dir := t.TempDir()
	crt, key := selfSigned(t, dir, "h2.test")
	s := startShield(t, fmt.Sprintf(`
listen:
  - address: "127.0.0.1:0"
    tls: {certificates: [{cert: %s, key: %s}]}
sites: [{upstreams: [{url: "http://%s"}]}]
limits: [{name: generous, key: ip, rate: 100000, burst: 100000}]
allow: [127.0.7.11]
guard: {http2: {max_resets_per_window: 100, abuse_ban: 1m}}
`, crt, key, o.addr))
	addr := addrOf(s, 0)
	tlsDial := func(src string) (*tls.Conn, error) {
		d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: "h2.test", InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	}
	abuse(t, tlsDial, "127.0.7.9")
	var listed bool
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && !listed; time.Sleep(20 * time.Millisecond) {
		for _, b := range s.bans.List(time.Now()) {
			if b.Prefix.String() == "127.0.7.9/32" && b.Source == "h2guard" && strings.Contains(b.Reason, "rapid_reset") &&
				b.Expires.Sub(b.Created) == time.Minute {
				listed = true
			}
		}
	}
	if !listed {
		t.Fatalf("abuser not banned: %+v", s.bans.List(time.Now()))
	}
	if c, err := tlsDial("127.0.7.9"); err == nil {
		c.Close()
		t.Fatal("banned abuser completed a TLS handshake")
	}
	// An allowlisted client is cut off for abuse but not banned.
	abuse(t, tlsDial, "127.0.7.11")
	time.Sleep(300 * time.Millisecond)
	for _, b := range s.bans.List(time.Now()) {
		if b.Prefix.String() == "127.0.7.11/32" {
			t.Fatal("allowlisted client banned")
		}
	}
	tr := &http2.Transport{TLSClientConfig: &tls.Config{ServerName: "h2.test", InsecureSkipVerify: true},
		DialTLS: func(network, a string, cfg *tls.Config) (net.Conn, error) { return tlsDial("127.0.7.10") }}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/ok")
	if err != nil {
		t.Fatalf("another client: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("another client: status %d", resp.StatusCode)
	}
}

// abuse opens an HTTP/2 connection from src and resets streams until the
// shield closes it.
func abuse(t *testing.T, tlsDial func(string) (*tls.Conn, error), src string) {
	t.Helper()
	conn, err := tlsDial(src)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "h2.test"}, {":path", "/rr"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(io.Discard, conn) // until the shield closes the connection
	}()
	for id := uint32(1); id < 2000; id += 2 {
		if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true, EndStream: true}) != nil ||
			fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
			break
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("abusive connection not closed")
	}
}
