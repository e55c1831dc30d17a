package fingerprint

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// readConn is a net.Conn whose reads come from r, chunk bytes at a time.
type readConn struct {
	net.Conn
	r     io.Reader
	chunk int
}

func (c *readConn) Read(p []byte) (int, error) {
	if c.chunk > 0 && len(p) > c.chunk {
		p = p[:c.chunk]
	}
	return c.r.Read(p)
}

type clientStart struct {
	settings []http2.Setting
	window   uint32
	prios    []struct {
		stream uint32
		p      http2.PriorityParam
	}
	headers   [][2]string
	padded    bool
	split     bool // send the block as HEADERS + CONTINUATION
	afterward []byte
}

func (cs clientStart) bytes(t testing.TB) []byte {
	var buf bytes.Buffer
	buf.WriteString(http2.ClientPreface)
	fr := http2.NewFramer(&buf, nil)
	fr.WriteSettings(cs.settings...)
	if cs.window > 0 {
		fr.WriteWindowUpdate(0, cs.window)
	}
	for _, p := range cs.prios {
		fr.WritePriority(p.stream, p.p)
	}
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, h := range cs.headers {
		enc.WriteField(hpack.HeaderField{Name: h[0], Value: h[1]})
	}
	block := hb.Bytes()
	hp := http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: !cs.split,
		Priority: http2.PriorityParam{StreamDep: 0, Exclusive: true, Weight: 255}}
	if cs.padded {
		hp.PadLength = 7
	}
	if cs.split {
		hp.BlockFragment = block[:len(block)/2]
		if err := fr.WriteHeaders(hp); err != nil {
			t.Fatal(err)
		}
		fr.WriteContinuation(1, true, block[len(block)/2:])
	} else {
		hp.BlockFragment = block
		if err := fr.WriteHeaders(hp); err != nil {
			t.Fatal(err)
		}
	}
	buf.Write(cs.afterward)
	return buf.Bytes()
}

var chromeHeaders = [][2]string{{":method", "GET"}, {":authority", "example.com"}, {":scheme", "https"}, {":path", "/"},
	{"sec-ch-ua", `"Chromium";v="156"`}, {"user-agent", "Mozilla/5.0"}, {"accept-language", "en-US,en;q=0.9"}}

func TestH2Recorder(t *testing.T) {
	chrome := clientStart{
		settings: []http2.Setting{{ID: 1, Val: 65536}, {ID: 2, Val: 0}, {ID: 4, Val: 6291456}, {ID: 6, Val: 262144}},
		window:   15663105, headers: chromeHeaders,
	}
	firefox := clientStart{
		settings: []http2.Setting{{ID: 1, Val: 65536}, {ID: 4, Val: 131072}, {ID: 5, Val: 16384}},
		window:   12517377,
		prios: []struct {
			stream uint32
			p      http2.PriorityParam
		}{{3, http2.PriorityParam{Weight: 200}}, {5, http2.PriorityParam{Weight: 100}}, {7, http2.PriorityParam{Weight: 0}},
			{9, http2.PriorityParam{StreamDep: 7, Weight: 0}}, {11, http2.PriorityParam{StreamDep: 3, Weight: 0}}, {13, http2.PriorityParam{Weight: 240}}},
		headers: [][2]string{{":method", "GET"}, {":path", "/"}, {":authority", "example.com"}, {":scheme", "https"}},
		padded:  true,
	}
	tests := []struct {
		name  string
		cs    clientStart
		chunk int
		want  string
	}{
		// The Chrome string is the one published for Chrome 143 by browserleaks.
		{"chrome", chrome, 0, "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"},
		{"chrome one byte at a time", chrome, 1, "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p"},
		{"firefox-style priorities, padded", firefox, 0, "1:65536;4:131072;5:16384|12517377|3:0:0:201,5:0:0:101,7:0:0:1,9:0:7:1,11:0:3:1,13:0:0:241|m,p,a,s"},
		{"continuation, no window update", clientStart{settings: []http2.Setting{{ID: 3, Val: 100}}, headers: chromeHeaders, split: true}, 5, "3:100|0|0|m,a,s,p"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cs.afterward = bytes.Repeat([]byte{0}, 100) // DATA the recorder must not read
			raw := tc.cs.bytes(t)
			c, rec := WrapH2(&readConn{r: bytes.NewReader(raw), chunk: tc.chunk})
			got, err := io.ReadAll(c)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("the wrapper changed the stream: %v", err)
			}
			h, ok := rec.Fingerprint()
			if !ok {
				t.Fatal("no fingerprint")
			}
			if h.Akamai != tc.want {
				t.Errorf("Akamai = %s\nwant     %s", h.Akamai, tc.want)
			}
			if rec.buf != nil || !rec.done.Load() {
				t.Error("recorder still buffering after the first HEADERS")
			}
			if string(h.Headers[0].Name) != ":method" {
				t.Errorf("headers %q", h.Headers)
			}
			select {
			case <-rec.Done():
			default:
				t.Error("Done not closed")
			}
		})
	}
	t.Run("not HTTP/2", func(t *testing.T) {
		c, rec := WrapH2(&readConn{r: bytes.NewReader([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))})
		io.ReadAll(c)
		if _, ok := rec.Fingerprint(); ok || !rec.done.Load() {
			t.Error("fingerprint from HTTP/1.1 bytes")
		}
	})
	t.Run("context", func(t *testing.T) {
		_, rec := WrapH2(&readConn{r: bytes.NewReader(nil)})
		rec.res.Store(&H2{Akamai: "x"})
		if h, ok := H2FromContext(WithH2(context.Background(), rec)); !ok || h.Akamai != "x" {
			t.Error("H2FromContext")
		}
		if _, ok := H2FromContext(context.Background()); ok {
			t.Error("H2FromContext without recorder")
		}
	})
}

func FuzzH2Recorder(f *testing.F) {
	f.Add(clientStart{settings: []http2.Setting{{ID: 1, Val: 1}}, headers: chromeHeaders}.bytes(f))
	f.Add([]byte(http2.ClientPreface + "\x00\x00\x06\x04\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, rec := WrapH2(&readConn{r: bytes.NewReader(raw), chunk: 7})
		got, _ := io.ReadAll(c)
		if !bytes.Equal(got, raw) {
			t.Fatal("stream changed")
		}
		if h, ok := rec.Fingerprint(); ok && h.Akamai == "" {
			t.Fatal("empty fingerprint")
		}
	})
}

func BenchmarkH2Recorder(b *testing.B) {
	raw := clientStart{
		settings: []http2.Setting{{ID: 1, Val: 65536}, {ID: 2, Val: 0}, {ID: 4, Val: 6291456}, {ID: 6, Val: 262144}},
		window:   15663105, headers: chromeHeaders,
	}.bytes(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, rec := WrapH2(&readConn{r: bytes.NewReader(raw)})
			io.Copy(io.Discard, c)
			if _, ok := rec.Fingerprint(); !ok {
				b.Fatal("no fingerprint")
			}
		}
	})
}
