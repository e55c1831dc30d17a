package shield

import (
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// TestProxyProtocolPendingHeadersAreCapped: on a PROXY protocol listener a
// connection counts against its peer's concurrent cap until the header
// names the client, so one peer cannot hold more headerless connections
// than max_connections_per_ip; once headers arrive, the clients they name
// are admitted (here from the same peer) and served.
func TestProxyProtocolPendingHeadersAreCapped(t *testing.T) {
	o := startOrigin(t)
	s := startShield(t, fmt.Sprintf(`
listen: [{address: "127.0.0.1:0", proxy_protocol: true}]
guard: {max_connections_per_ip: 5}
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
		t.Fatalf("%d of 20 headerless connections refused, want 15 (cap 5 per peer)", refused)
	}
	if open := s.Guard().Open(); open != 5 {
		t.Fatalf("guard counts %d open connections, want the 5 pending ones", open)
	}
	// Another peer is not affected, and a header moves the connection to
	// the client it names.
	c, err := dialFrom(t, "127.0.9.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "PROXY TCP4 203.0.113.9 127.0.0.1 40000 80\r\n")
	if resp, _, err := get(c, "/"); err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Seen-Xff") != "203.0.113.9" {
		t.Fatalf("PROXY client from another peer: %v %v", err, resp)
	}
	// The pending connections of the first peer send their headers:
	// the peer's slots are released and the named clients admitted.
	for i, pc := range idle {
		fmt.Fprintf(pc, "PROXY TCP4 203.0.113.%d 127.0.0.1 40000 80\r\n", 10+i)
		if resp, _, err := get(pc, "/"); err != nil || resp.StatusCode != 200 {
			t.Fatalf("pending connection %d after its header: %v", i, err)
		}
	}
	c2, err := dialFrom(t, "127.0.9.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "PROXY TCP4 203.0.113.50 127.0.0.1 40000 80\r\n")
	if resp, _, err := get(c2, "/"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("peer refused after its pending connections sent headers: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
