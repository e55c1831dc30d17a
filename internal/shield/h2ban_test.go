package shield

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/levee-dev/levee/internal/iplist"
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

// TestStoreAbuseBans: the ban worker's batches drop repeats of one address,
// a batch refused whole (max_bans) keeps the bans that fit, and the worker
// stores what is queued when it is stopped.
func TestStoreAbuseBans(t *testing.T) {
	bans, err := iplist.NewBans(context.Background(), iplist.BansConfig{MaxBans: 3}, iplist.BansDeps{})
	if err != nil {
		t.Fatal(err)
	}
	s := &Shield{bans: bans, log: slog.New(slog.DiscardHandler), abuseBans: make(chan iplist.Ban, 16),
		banStop: make(chan struct{}), banDone: make(chan struct{})}
	s.sampled = newSampledLog(s.log, time.Second)
	now := time.Now()
	ban := func(last byte) iplist.Ban {
		return iplist.Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, last}), 32), Reason: "http2 abuse: test",
			Source: "h2guard", Created: now, Expires: now.Add(time.Minute)}
	}
	for _, last := range []byte{1, 1, 2, 1, 2} {
		s.abuseBans <- ban(last)
	}
	if got := s.drainBans(nil); len(got) != 2 {
		t.Fatalf("drained %d bans, want 2 distinct", len(got))
	}
	s.storeBans([]iplist.Ban{ban(3), ban(4), ban(5), ban(6)}) // 4 > max 3: refused whole, kept one by one
	if n := len(bans.List(now)); n != 3 {
		t.Fatalf("%d bans stored of a batch of 4 with max_bans 3, want 3", n)
	}
	// Stopping the worker stores what is still queued.
	bans2, _ := iplist.NewBans(context.Background(), iplist.BansConfig{}, iplist.BansDeps{})
	s.bans = bans2
	s.abuseBans <- ban(7)
	s.abuseBans <- ban(8)
	close(s.banStop)
	s.banAbusers()
	if n := len(bans2.List(now)); n != 2 {
		t.Fatalf("%d bans stored after stop, want the 2 queued", n)
	}
}
