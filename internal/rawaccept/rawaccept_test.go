//go:build linux && !386

package rawaccept

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
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
	}, 0)
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
	c, addr, err := l.Accept(func(netip.Addr) bool { return true }, 0)
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
		_, _, err := l.Accept(func(netip.Addr) bool { return true }, 0)
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
				if _, _, err := l.Accept(func(netip.Addr) bool { return false }, 0); err != nil {
					return
				}
			}
		})
	})
}

// TestWaitTimeout: with no connection within wait, Accept returns nothing
// and no error, so the caller can reconsider.
func TestWaitTimeout(t *testing.T) {
	_, l := listen(t, "tcp", "127.0.0.1:0")
	start := time.Now()
	c, addr, err := l.Accept(func(netip.Addr) bool { return true }, 50*time.Millisecond)
	if c != nil || addr.IsValid() || err != nil {
		t.Fatalf("Accept with nothing to accept: %v %v %v", c, addr, err)
	}
	if el := time.Since(start); el < 40*time.Millisecond || el > 2*time.Second {
		t.Errorf("returned after %v, want about 50 ms", el)
	}
}

// TestCloseDuringFlood: refusals come in batches, so neither a flood that
// keeps the backlog full nor a Close issued meanwhile keeps Accept from
// returning.
func TestCloseDuringFlood(t *testing.T) {
	ln, l := listen(t, "tcp", "127.0.0.1:0")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
					c.Close()
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()
	refuse := func(netip.Addr) bool { time.Sleep(100 * time.Microsecond); return false }
	batches := 0
	for batches < 2 {
		c, _, err := l.Accept(refuse, 0)
		if err != nil || c != nil {
			t.Fatalf("Accept during the flood: %v %v", c, err)
		}
		if l.Refused() > 0 {
			batches++
		}
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, _, err := l.Accept(refuse, 0); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(20 * time.Millisecond)
	closed := make(chan struct{})
	go func() { l.Close(); close(closed) }()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Accept still running 3 s after Close during a flood")
	}
	<-closed
}

// TestAdmittedButNotWrapped: when the admitted connection cannot become a
// net.Conn (no descriptor left for net.FileConn's duplicate), Accept says
// which address it had admitted, so the caller can undo the admission, and
// resets the connection.
func TestAdmittedButNotWrapped(t *testing.T) {
	ln, l := listen(t, "tcp", "127.0.0.1:0")
	client := dialFrom(t, "127.0.9.11", ln.Addr().String())
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Skip(err)
	}
	// Leave exactly one free descriptor, for the accepted socket: lower the
	// limit a little above what is open, fill every free slot, then free
	// one.
	fds, _ := os.ReadDir("/proc/self/fd")
	lim := old
	lim.Cur = uint64(len(fds) + 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	var fillers []int
	for {
		fd, err := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		fillers = append(fillers, fd)
	}
	if len(fillers) == 0 {
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
		t.Skip("could not fill the descriptor table")
	}
	syscall.Close(fillers[len(fillers)-1])
	fillers = fillers[:len(fillers)-1]
	defer func() {
		for _, fd := range fillers {
			syscall.Close(fd)
		}
	}()
	c, addr, err := l.Accept(func(netip.Addr) bool { return true }, 0)
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old)
	if c != nil {
		c.Close()
		t.Skip("the descriptor limit left room for the duplicate")
	}
	if err == nil || addr != netip.MustParseAddr("127.0.9.11") {
		t.Fatalf("Accept at the descriptor limit: %v %v, want an error and the admitted address", addr, err)
	}
	client.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client of the dropped connection: %v, want a reset", err)
	}
}
