package fastconn

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

func pair(t *testing.T) (client net.Conn, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-ch
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return WrapDialed(c), Wrap(s)
}

func TestWrapTypes(t *testing.T) {
	c, _ := pair(t)
	if _, ok := c.(*Conn); !ok && supported {
		t.Fatalf("Wrap returned %T", c)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Wrap(p1) != p1 {
		t.Fatal("non-TCP conn must be returned unchanged")
	}
}

func TestLargeTransferAndEOF(t *testing.T) {
	c, s := pair(t)
	data := make([]byte, 8<<20) // larger than socket buffers: exercises EAGAIN waits
	rand.Read(data)
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		c.(interface{ CloseWrite() error }).CloseWrite()
		done <- err
	}()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("received %d bytes, differ from the %d sent", len(got), len(data))
	}
}

func TestReadDeadline(t *testing.T) {
	_, s := pair(t)
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := s.Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err %v is not a net.Error timeout", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("deadline took %v", el)
	}
}

func TestWriteDeadlineWhenPeerDoesNotRead(t *testing.T) {
	c, _ := pair(t)
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	buf := make([]byte, 1<<20)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = c.Write(buf)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	_, s := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	s.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("err = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read not unblocked by Close")
	}
}

func TestResetIsReported(t *testing.T) {
	c, s := pair(t)
	s.(*Conn).TCPConn.SetLinger(0)
	s.Close()
	time.Sleep(20 * time.Millisecond)
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err = %v, want ECONNRESET", err)
	}
}

func BenchmarkPingPong(b *testing.B) {
	for _, wrap := range []bool{false, true} {
		name := "net"
		if wrap {
			name = "fastconn"
		}
		b.Run(name, func(b *testing.B) {
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			defer ln.Close()
			go func() {
				s, err := ln.Accept()
				if err != nil {
					return
				}
				if wrap {
					s = Wrap(s)
				}
				buf := make([]byte, 64)
				for {
					n, err := s.Read(buf)
					if err != nil {
						return
					}
					s.Write(buf[:n])
				}
			}()
			c, _ := net.Dial("tcp", ln.Addr().String())
			if wrap {
				c = Wrap(c)
			}
			defer c.Close()
			msg := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				c.Write(msg)
				io.ReadFull(c, msg)
			}
		})
	}
}

// TestConcurrentReadWrite runs a reader and a writer on each end at once,
// as an HTTP/2 connection does (under -race this checks the read-after-write
// state Read and Write share), and checks every byte arrives in order.
func TestConcurrentReadWrite(t *testing.T) {
	c, s := pair(t)
	const msgs, size = 2000, 700
	echo := func(conn net.Conn, errc chan<- error) {
		buf := make([]byte, size)
		for range msgs {
			if _, err := io.ReadFull(conn, buf); err != nil {
				errc <- err
				return
			}
			if _, err := conn.Write(buf); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}
	errc := make(chan error, 2)
	go echo(s, errc)
	// The client writes from one goroutine and reads from another.
	want := make([]byte, msgs*size)
	rand.Read(want)
	go func() {
		for i := range msgs {
			if _, err := c.Write(want[i*size : (i+1)*size]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echoed bytes differ")
	}
}
