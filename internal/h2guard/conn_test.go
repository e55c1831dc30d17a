package h2guard

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// serverRSTs returns n RST_STREAM frames as the server would write them.
func serverRSTs(n int) []byte {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	for i := range n {
		fr.WriteRSTStream(uint32(2*i+1), http2.ErrCodeProtocol)
	}
	return buf.Bytes()
}

// TestWriteTripWakesBlockedRead: a budget exceeded on the write side makes a
// Read that is blocked waiting for the client return ENHANCE_YOUR_CALM,
// and the backstop closes the connection after CloseGrace.
func TestWriteTripWakesBlockedRead(t *testing.T) {
	var got []Reason
	g, err := New(Config{CloseGrace: 100 * time.Millisecond}, Deps{OnAbuse: func(_ *Conn, r Reason) { got = append(got, r) }})
	if err != nil {
		t.Fatal(err)
	}
	server, client := net.Pipe()
	defer client.Close()
	gc := g.Wrap(server)
	defer gc.Close()

	readErr := make(chan error, 1)
	go func() {
		_, err := gc.Read(make([]byte, 64))
		readErr <- err
	}()
	// The client side drains what the server writes.
	drained := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, client)
		drained <- err
	}()

	if _, err := gc.Write(serverRSTs(100)); err != nil {
		t.Fatal(err)
	}
	if c, _ := AsConn(gc); func() bool { _, ok := c.Tripped(); return ok }() {
		t.Fatal("tripped at 100 server resets, budget is 100")
	}
	// The 101st reset, split inside its header and inside its error code.
	last := serverRSTs(101)[100*13:]
	gc.Write(last[:5])
	gc.Write(last[5:11])
	if c, _ := AsConn(gc); func() bool { _, ok := c.Tripped(); return ok }() {
		t.Fatal("tripped before the error code was complete")
	}
	gc.Write(last[11:])

	select {
	case err := <-readErr:
		if !IsEnhanceYourCalm(err) {
			t.Fatalf("blocked Read returned %v, want ENHANCE_YOUR_CALM", err)
		}
		var ce http2.ConnectionError
		if !errors.As(err, &ce) || http2.ErrCode(ce) != http2.ErrCodeEnhanceYourCalm {
			t.Fatalf("error %T %v is not http2.ConnectionError(ENHANCE_YOUR_CALM)", err, err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("blocked Read was not woken")
	}
	if len(got) != 1 || got[0] != ReasonServerResets {
		t.Fatalf("OnAbuse = %v", got)
	}
	// Every later Read fails the same way without touching the network.
	if _, err := gc.Read(make([]byte, 1)); !IsEnhanceYourCalm(err) {
		t.Fatalf("later Read = %v", err)
	}
	select {
	case <-drained: // the backstop closed the conn
	case <-time.After(2 * time.Second):
		t.Fatal("connection not closed after CloseGrace")
	}
}

func TestReadTripDropsOffendingBytes(t *testing.T) {
	g, err := New(Config{MaxPings: 2}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	server, client := net.Pipe()
	defer client.Close()
	gc := g.Wrap(server)
	defer gc.Close()
	var buf bytes.Buffer
	buf.WriteString(clientPreface)
	fr := http2.NewFramer(&buf, nil)
	for range 3 {
		fr.WritePing(false, [8]byte{})
	}
	go client.Write(buf.Bytes())
	var read []byte
	p := make([]byte, 17) // the h2 framer reads in small pieces too
	for {
		n, err := gc.Read(p)
		read = append(read, p[:n]...)
		if err != nil {
			if !IsEnhanceYourCalm(err) {
				t.Fatalf("Read error %v", err)
			}
			break
		}
	}
	// Preface and two PINGs (17 bytes each) may pass; the third PING's
	// header completes in the Read that trips, which returns no bytes.
	if len(read) > len(clientPreface)+2*17+17 || len(read) < len(clientPreface)+17 {
		t.Fatalf("%d bytes passed before the trip", len(read))
	}
	r, ok := func() (Reason, bool) { c, _ := AsConn(gc); return c.Tripped() }()
	if !ok || r != ReasonPingFlood {
		t.Fatalf("Tripped = %q, %v", r, ok)
	}
}

func TestWrapKeepsTLSState(t *testing.T) {
	g, _ := New(Config{}, Deps{})
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, ok := g.Wrap(a).(connectionStater); ok {
		t.Fatal("plain conn gained ConnectionState: the http2 server would treat it as TLS")
	}
	if _, ok := AsConn(g.Wrap(a)); !ok {
		t.Fatal("AsConn failed on plain wrap")
	}
	// The TLS case is covered end to end by the server tests, whose
	// handler fails without r.TLS.
}

// memConn replays a fixed byte stream forever and discards writes.
type memConn struct {
	net.Conn
	data []byte
	off  int
}

func (m *memConn) Read(p []byte) (int, error) {
	if m.off == len(m.data) {
		m.off = len(clientPreface) // loop over the frames, not the preface
	}
	n := copy(p, m.data[m.off:])
	m.off += n
	return n, nil
}
func (m *memConn) Write(p []byte) (int, error)     { return len(p), nil }
func (m *memConn) SetReadDeadline(time.Time) error { return nil }
func (m *memConn) Close() error                    { return nil }

// benchStream is a realistic client stream: requests with small bodies.
func benchStream() (data []byte, frames int) {
	var buf bytes.Buffer
	buf.WriteString(clientPreface)
	fr := http2.NewFramer(&buf, nil)
	for i := range 100 {
		id := uint32(2*i + 1)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: bytes.Repeat([]byte{0x82}, 40), EndHeaders: true})
		fr.WriteData(id, true, bytes.Repeat([]byte("x"), 512))
		fr.WriteWindowUpdate(0, 512)
		frames += 3
	}
	return buf.Bytes(), frames
}

func TestConnReadAllocs(t *testing.T) {
	data, _ := benchStream()
	g, _ := New(Config{}, Deps{})
	gc := g.Wrap(&memConn{data: data})
	p := make([]byte, 9)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := gc.Read(p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Read allocates %v times", allocs)
	}
	w := serverRSTs(1)
	allocs = testing.AllocsPerRun(50, func() { gc.Write(w) })
	if allocs != 0 {
		t.Fatalf("Write allocates %v times", allocs)
	}
}

// BenchmarkConnRead measures the accounting cost per Read of 16 KiB
// (about 16 frames) on an in-memory stream, i.e. the overhead the wrapper
// adds to the HTTP/2 server's reads.
func BenchmarkConnRead(b *testing.B) {
	data, frames := benchStream()
	g, _ := New(Config{MaxClientResets: -1}, Deps{})
	b.ReportAllocs()
	b.SetBytes(16 << 10)
	b.RunParallel(func(pb *testing.PB) {
		gc := g.Wrap(&memConn{data: data})
		p := make([]byte, 16<<10)
		for pb.Next() {
			if _, err := gc.Read(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	_ = frames
}

// BenchmarkConnReadFrameSized reads 9-byte frame headers and payloads
// separately, the way the x/net framer reads through crypto/tls; "raw" is
// the same loop on the unwrapped conn, so the difference is the wrapper's
// cost per Read.
func BenchmarkConnReadFrameSized(b *testing.B) {
	data, _ := benchStream()
	g, _ := New(Config{}, Deps{})
	for _, wrapped := range []bool{false, true} {
		name := "raw"
		if wrapped {
			name = "guarded"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var c net.Conn = &memConn{data: data}
				if wrapped {
					c = g.Wrap(c)
				}
				p := make([]byte, 9)
				for pb.Next() {
					if _, err := c.Read(p); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
