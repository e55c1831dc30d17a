//go:build linux

package rawaccept

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

func listen(t testing.TB, network, addr string) (net.Listener, *Listener) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	l, ok := New(ln)
	if !ok {
		t.Fatal("New: not supported")
	}
	t.Cleanup(func() { l.Close() })
	return ln, l
}

// dialFrom connects to addr from the local address src.
func dialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRefusesAndAdmits: connections from a refused address are reset
// without reaching the caller; the next admitted one is returned with its
// address and works as a net.Conn.
func TestRefusesAndAdmits(t *testing.T) {
	ln, l := listen(t, "tcp", "127.0.0.1:0")
	banned := netip.MustParseAddr("127.0.9.9")
	var refusedConns []net.Conn
	for range 3 {
		refusedConns = append(refusedConns, dialFrom(t, "127.0.9.9", ln.Addr().String()))
	}
	good := dialFrom(t, "127.0.9.10", ln.Addr().String())
	var seen []netip.Addr
	c, addr, err := l.Accept(func(a netip.Addr) bool {
		seen = append(seen, a)
		return a != banned
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if addr != netip.MustParseAddr("127.0.9.10") || l.Refused() != 3 || len(seen) != 4 {
		t.Fatalf("admitted %v after refusing %d, admit saw %v", addr, l.Refused(), seen)
	}
	if ra := c.RemoteAddr().(*net.TCPAddr); ra.String() != good.LocalAddr().String() {
		t.Errorf("RemoteAddr %v, want %v", ra, good.LocalAddr())
	}
	if _, err := good.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("read %q %v", buf, err)
	}
	for i, rc := range refusedConns {
		rc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := rc.Read(buf); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("refused connection %d: read error %v, want a reset", i, err)
		}
	}
}

func TestIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	defer ln.Close()
	l, _ := New(ln)
	defer l.Close()
	dialFrom(t, "::1", ln.Addr().String())
	c, addr, err := l.Accept(func(netip.Addr) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if addr != netip.IPv6Loopback() {
		t.Errorf("address %v", addr)
	}
}

// TestWaitsAndEndsOnClose: Accept waits for a connection; Close ends a
// waiting Accept with net.ErrClosed, and once the net.Listener is closed
// too the port refuses connections.
func TestWaitsAndEndsOnClose(t *testing.T) {
	ln, l := listen(t, "tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() {
		_, _, err := l.Accept(func(netip.Addr) bool { return true })
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Accept returned with no connection: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("after close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waiting after the listener was closed")
	}
	ln.Close()
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after both closes")
	}
}

func TestNotTCP(t *testing.T) {
	ln, err := net.Listen("unix", t.TempDir()+"/s")
	if err != nil {
		t.Skip(err)
	}
	defer ln.Close()
	if _, ok := New(ln); ok {
		t.Error("New accepted a unix listener")
	}
}

// BenchmarkRefuse compares the cost of refusing a connection with Go's
// Accept (then SO_LINGER 0 and Close, as the shield did) and with the raw
// path. The client side (connect, then waiting for the reset) runs in the
// same process and is the same for both; the difference between the two
// is the server's saving per refusal.
func BenchmarkRefuse(b *testing.B) {
	run := func(b *testing.B, refuse func(ln net.Listener, l *Listener)) {
		ln, l := listen(b, "tcp", "127.0.0.1:0")
		addr := ln.Addr().(*net.TCPAddr)
		sa := &syscall.SockaddrInet4{Port: addr.Port, Addr: [4]byte{127, 0, 0, 1}}
		done := make(chan struct{})
		go func() {
			defer close(done)
			refuse(ln, l)
		}()
		b.ResetTimer()
		for b.Loop() {
			fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			// The reset can beat connect's return: ECONNRESET there is
			// the same refusal.
			if err := syscall.Connect(fd, sa); err != nil && err != syscall.ECONNRESET {
				b.Fatal(err)
			}
			var buf [1]byte
			syscall.Read(fd, buf[:]) // returns at the reset
			syscall.Close(fd)
		}
		b.StopTimer()
		ln.Close()
		l.Close()
		<-done
	}
	b.Run("accept=go", func(b *testing.B) {
		run(b, func(ln net.Listener, _ *Listener) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		})
	})
	b.Run("accept=raw", func(b *testing.B) {
		run(b, func(_ net.Listener, l *Listener) {
			for {
				if _, _, err := l.Accept(func(netip.Addr) bool { return false }); err != nil {
					return
				}
			}
		})
	})
}
