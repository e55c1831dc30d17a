package shield

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countingConn counts the bytes read from the server.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// TestBannedSourceRefusedBeforeTLSHandshake: on a TLS listener, a
// connection from a banned source is reset at accept: the client's
// handshake fails with a reset or EOF and not one byte (no ServerHello)
// comes from the shield; the refusal is counted as
// levee_guard_connections_rejected_total{reason=banned}. A source that is
// not banned completes the handshake and is served.
func TestBannedSourceRefusedBeforeTLSHandshake(t *testing.T) {
	o := startOrigin(t)
	crt, key := selfSigned(t, t.TempDir(), "ban.test")
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0", tls: {certificates: [{cert: %s, key: %s}]}}]
sites: [{upstreams: [{url: "http://%s"}]}]
`, crt, key, o.addr))
	b, err := parseBan(BanRequest{Prefix: "127.0.8.0/24", For: "1h", Reason: "test"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.bans.Add(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	rejected := func() float64 {
		v, _ := metricValue(t, s, "levee_guard_connections_rejected_total", map[string]string{"reason": "banned"})
		return v
	}
	before := rejected()
	for i := range 3 {
		raw, err := dialFrom(t, fmt.Sprintf("127.0.8.%d", 5+i), addrOf(s, 0))
		if err != nil {
			continue // reset before connect returned: refused too
		}
		cc := &countingConn{Conn: raw}
		raw.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Client(cc, &tls.Config{ServerName: "ban.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
		err = tc.Handshake()
		raw.Close()
		if err == nil {
			t.Fatalf("banned source 127.0.8.%d completed a TLS handshake", 5+i)
		}
		if isTimeoutErr(err) {
			t.Fatalf("banned source: handshake hung until the deadline instead of being reset: %v", err)
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isReset(err) {
			t.Errorf("banned source: handshake error %v, want a reset or EOF", err)
		}
		if n := cc.n.Load(); n != 0 {
			t.Fatalf("banned source received %d bytes from the shield (a ServerHello?), want none", n)
		}
	}
	if got := rejected() - before; got != 3 {
		t.Errorf("levee_guard_connections_rejected_total{reason=banned} moved by %v, want 3", got)
	}
	// Another source is served over TLS.
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.9.5")}},
		"tcp", addrOf(s, 0), &tls.Config{ServerName: "ban.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("unbanned source: %v", err)
	}
	defer conn.Close()
	if resp, _, err := get(conn, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("unbanned source over TLS: %v %v", err, resp)
	}
}

// isReset reports a connection reset (or a write to a reset connection).
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// TestGlobalConnectionCap: with guard.max_connections: 3, three open
// connections (from different sources, so the per-address cap plays no
// part) are served; a fourth, from yet another source, is refused at
// accept (levee_guard_connections_rejected_total{reason=global_cap}) while
// the three are still served; once one closes, a new connection is
// admitted and served.
func TestGlobalConnectionCap(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0"}]
sites: [{upstreams: [{url: "http://%s"}]}]
guard: {max_connections: 3}
`, o.addr))
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 3 {
		c, err := dialFrom(t, fmt.Sprintf("127.0.10.%d", 1+i), addrOf(s, 0))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d under the cap: %v %v", i, err, resp)
		}
	}
	if n := s.Guard().Open(); n != 3 {
		t.Fatalf("guard counts %d open connections, want 3", n)
	}
	over := func() float64 {
		v, _ := metricValue(t, s, "levee_guard_connections_rejected_total", map[string]string{"reason": "global_cap"})
		return v
	}
	for i := range 2 {
		c, err := dialFrom(t, fmt.Sprintf("127.0.11.%d", 1+i), addrOf(s, 0))
		if err == nil {
			_, _, err = get(c, "/")
			c.Close()
		}
		if err == nil {
			t.Fatalf("connection %d over the global cap was served", 4+i)
		}
	}
	if got := over(); got != 2 {
		t.Errorf("levee_guard_connections_rejected_total{reason=global_cap} = %v, want 2", got)
	}
	// The connections under the cap are still served.
	for i, c := range held {
		if resp, _, err := get(c, "/again"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("held connection %d after the refusals: %v %v", i, err, resp)
		}
	}
	// Free a slot: a new connection is admitted.
	held[0].Close()
	held = held[1:]
	deadline := time.Now().Add(3 * time.Second)
	for s.Guard().Open() > 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c, err := dialFrom(t, "127.0.11.9", addrOf(s, 0))
	if err != nil {
		t.Fatal(err)
	}
	held = append(held, c)
	if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("connection after one closed (open %d): %v %v", s.Guard().Open(), err, resp)
	}
}
