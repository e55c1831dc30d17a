package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// loopbackPair returns a connected client/server TCP pair on 127.0.0.1.
func loopbackPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.DialTimeout("tcp", ln.Addr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestAcceptV2WithRequestInSameSegment sends the v2 header and a complete
// HTTP request in one write; the request bytes must reach the HTTP parser.
func TestAcceptV2WithRequestInSameSegment(t *testing.T) {
	client, server := loopbackPair(t)
	hdr := v2(0x21, 0x11, addr4("203.0.113.9", "198.51.100.1", 40000, 443), tlv(0x01, "http/1.1"))
	req := "GET /hello HTTP/1.1\r\nHost: example.test\r\nX-Test: 1\r\n\r\n"
	if _, err := client.Write(append(hdr, req...)); err != nil {
		t.Fatal(err)
	}
	pc, h, err := Accept(server, 2*time.Second)
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if !h.Proxied() || h.Source != ap("203.0.113.9:40000") || h.Dest != ap("198.51.100.1:443") {
		t.Fatalf("header = %+v", h)
	}
	if got := pc.RemoteAddr().String(); got != "203.0.113.9:40000" {
		t.Fatalf("RemoteAddr = %s", got)
	}
	if got := pc.LocalAddr().String(); got != "198.51.100.1:443" {
		t.Fatalf("LocalAddr = %s", got)
	}
	r, err := http.ReadRequest(bufio.NewReader(pc))
	if err != nil {
		t.Fatalf("ReadRequest after header: %v", err)
	}
	if r.URL.Path != "/hello" || r.Host != "example.test" || r.Header.Get("X-Test") != "1" {
		t.Fatalf("request = %s %s %v", r.Host, r.URL.Path, r.Header)
	}
	// The deadline was cleared: a later read waits for the peer, not for
	// the header deadline.
	go func() {
		time.Sleep(50 * time.Millisecond)
		client.Write([]byte("more"))
	}()
	buf := make([]byte, 4)
	if _, err := io.ReadFull(pc, buf); err != nil || string(buf) != "more" {
		t.Fatalf("read after header = %q, %v", buf, err)
	}
}

func TestAcceptV1TrickledAndLocal(t *testing.T) {
	t.Run("v1 split writes", func(t *testing.T) {
		client, server := loopbackPair(t)
		go func() {
			for _, part := range []string{"PROXY TCP6 2001:db8::", "5 ::1 1", "234 443\r", "\nhello"} {
				client.Write([]byte(part))
				time.Sleep(5 * time.Millisecond)
			}
		}()
		pc, h, err := Accept(server, 2*time.Second)
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
		if h.Source != ap("[2001:db8::5]:1234") || pc.RemoteAddr().String() != "[2001:db8::5]:1234" {
			t.Fatalf("header = %+v, RemoteAddr %s", h, pc.RemoteAddr())
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(pc, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("payload = %q, %v", buf, err)
		}
	})
	t.Run("v2 local keeps conn addresses", func(t *testing.T) {
		client, server := loopbackPair(t)
		client.Write(v2(0x20, 0x00, nil, nil))
		pc, h, err := Accept(server, 2*time.Second)
		if err != nil {
			t.Fatalf("Accept: %v", err)
		}
		if h.Command != CmdLocal || h.Proxied() {
			t.Fatalf("header = %+v", h)
		}
		if pc.RemoteAddr().String() != client.LocalAddr().String() || pc.LocalAddr().String() != server.LocalAddr().String() {
			t.Fatalf("addrs = %s %s", pc.RemoteAddr(), pc.LocalAddr())
		}
	})
}

func TestAcceptErrors(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		client, server := loopbackPair(t)
		client.Write([]byte("PROXY TCP4 1.2.3.4")) // never finished
		start := time.Now()
		_, _, err := Accept(server, 100*time.Millisecond)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err = %v, want deadline exceeded", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Accept took %v with a 100ms timeout", d)
		}
	})
	t.Run("no header", func(t *testing.T) {
		client, server := loopbackPair(t)
		client.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		if _, _, err := Accept(server, time.Second); !errors.Is(err, ErrNoHeader) {
			t.Fatalf("err = %v, want ErrNoHeader", err)
		}
	})
	t.Run("short non-header fails fast", func(t *testing.T) {
		for _, in := range []string{"\r\n\r\nX", "PRI * HTTP/2.0"} {
			client, server := loopbackPair(t)
			client.Write([]byte(in)) // and then wait, as a real client would
			start := time.Now()
			if _, _, err := Accept(server, 5*time.Second); !errors.Is(err, ErrNoHeader) {
				t.Fatalf("%q: err = %v, want ErrNoHeader", in, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("%q: took %v: waited for more bytes than needed", in, d)
			}
		}
	})
	t.Run("malformed", func(t *testing.T) {
		client, server := loopbackPair(t)
		client.Write([]byte("PROXY TCP4 1.2.3.4 1.2.3.4 99999 1\r\n"))
		if _, _, err := Accept(server, time.Second); !IsMalformed(err) {
			t.Fatalf("err = %v, want malformed", err)
		}
	})
}

// memConn is an in-memory net.Conn for allocation measurements.
type memConn struct {
	bytes.Reader
	net.Conn // nil: only the methods below are used
}

func (m *memConn) Read(p []byte) (int, error)      { return m.Reader.Read(p) }
func (m *memConn) SetReadDeadline(time.Time) error { return nil }
func (m *memConn) RemoteAddr() net.Addr            { return &net.TCPAddr{} }
func (m *memConn) LocalAddr() net.Addr             { return &net.TCPAddr{} }

func TestAcceptAllocs(t *testing.T) {
	in := append(v2(0x21, 0x21, addr6("2001:db8::1", "2001:db8::2", 1, 443), nil), "GET / HTTP/1.1\r\n\r\n"...)
	mc := &memConn{}
	buf := make([]byte, 64)
	allocs := testing.AllocsPerRun(200, func() {
		mc.Reader.Reset(in)
		pc, _, err := Accept(mc, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := pc.Read(buf); err != nil {
				break
			}
		}
	})
	if allocs > 1 {
		t.Fatalf("Accept: %v allocs per connection, want at most 1 (the wrapper)", allocs)
	}
}

func BenchmarkAccept(b *testing.B) {
	in := append(v2(0x21, 0x11, addr4("192.0.2.1", "192.0.2.2", 1, 443), nil), "GET / HTTP/1.1\r\n\r\n"...)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		mc := &memConn{}
		buf := make([]byte, 64)
		for pb.Next() {
			mc.Reader.Reset(in)
			pc, _, err := Accept(mc, time.Second)
			if err != nil {
				b.Fatal(err)
			}
			pc.Read(buf)
		}
	})
}
