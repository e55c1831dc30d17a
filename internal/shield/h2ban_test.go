package shield

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHTTP2AbuseBan: with guard.http2.abuse_ban set, a client cut off for
// Rapid Reset is banned: the ban is listed with its reason and source,
// the client's next connection is refused at accept, and a client from
// another address is still served.
func TestHTTP2AbuseBan(t *testing.T) {
	s := h2AbuseShieldWith(t, "h2.test", "abuse_ban: 1m", "allow: [127.0.7.11]\n")
	addr := addrOf(s, 0)
	tlsDial := func(src string) (*tls.Conn, error) {
		d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: "h2.test", InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	}
	abuse(t, "127.0.7.9", addr)
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
	abuse(t, "127.0.7.11", addr)
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

// abuse runs a Rapid Reset from src until the shield cuts the connection
// off with GOAWAY(ENHANCE_YOUR_CALM).
func abuse(t *testing.T, src, addr string) {
	t.Helper()
	c := dialRawH2(t, src, addr, "h2.test")
	block := c.headerBlock("h2.test", "/rr")
	for id := uint32(1); id < 2000 && !c.closed(); id += 2 {
		if !c.write(func() error {
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true, EndStream: true}); err != nil {
				return err
			}
			return c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}) {
			break
		}
	}
	c.waitCutOff(t, "rapid reset from "+src)
}
