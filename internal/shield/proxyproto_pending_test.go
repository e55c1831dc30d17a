package shield

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// TestProxyProtocolPendingHeadersAreCapped: on a PROXY protocol listener a
// connection counts against the global cap while its header is pending, and
// pending connections hold at most half of it, so headerless connections
// cannot pile up nor starve admitted clients; once headers arrive, the
// clients they name are admitted and served (the per-address cap applies to
// them, not to the balancer).
func TestProxyProtocolPendingHeadersAreCapped(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0", proxy_protocol: true}]
guard: {max_connections: 10, max_connections_per_ip: 2}
sites: [{upstreams: [{url: "http://%s"}]}]
`, o.addr))
	addr := addrOf(s, 0)
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	refused := 0
	for range 20 {
		c, err := dialFrom(t, "127.0.9.1", addr)
		if err != nil {
			// On loopback the reset can beat connect's return.
			refused++
			continue
		}
		idle = append(idle, c)
		// A refused connection is reset at once; a pending one stays
		// open, waiting for its header.
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
			refused++
			c.Close()
			idle = idle[:len(idle)-1]
		}
	}
	if refused != 15 {
		t.Fatalf("%d of 20 headerless connections refused, want 15 (pending ones hold at most half the global cap of 10)", refused)
	}
	if open := s.Guard().Open(); open != 5 {
		t.Fatalf("guard counts %d open connections, want the 5 pending ones", open)
	}
	// Headers move the pending connections to the clients they name,
	// which are served.
	for i, pc := range idle {
		fmt.Fprintf(pc, "PROXY TCP4 203.0.113.%d 127.0.0.1 40000 80\r\n", 10+i)
		if resp, _, err := get(pc, "/"); err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Seen-Xff") != fmt.Sprintf("203.0.113.%d", 10+i) {
			t.Fatalf("pending connection %d after its header: %v %v", i, err, resp)
		}
		pc.Close()
	}
	idle = nil
	deadline := time.Now().Add(5 * time.Second)
	for s.Guard().Open() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if open := s.Guard().Open(); open != 0 {
		t.Fatalf("%d connections still counted after all closed", open)
	}
	c, err := dialFrom(t, "127.0.9.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PROXY TCP4 203.0.113.9 127.0.0.1 40000 80\r\n")
	if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Seen-Xff") != "203.0.113.9" {
		t.Fatalf("PROXY client after the pending ones: %v %v", err, resp)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
