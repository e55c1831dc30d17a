package fingerprint

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/net/http2/hpack"
)

// H2 is what the start of an HTTP/2 connection says about the client.
type H2 struct {
	// Akamai is the fingerprint in the widely used Akamai format
	// "SETTINGS|WINDOW_UPDATE|PRIORITY|PSEUDO", e.g. Chrome's
	// "1:65536;2:0;4:6291456;6:262144|15663105|0|m,a,s,p". SETTINGS are
	// id:value in the order sent; WINDOW_UPDATE is the first connection-level
	// increment (0 if none); PRIORITY lists stream:exclusive:dependency:weight
	// of PRIORITY frames before the first HEADERS, weight as 1-256 (0 if
	// none); PSEUDO is the order of the pseudo-headers of the first request.
	Akamai string
	// Headers of the first request, in order, pseudo-headers included
	// (values of cookie and authorization are kept: do not log them).
	Headers []Header
}

// H2Recorder reads the client preface and the first frames of an HTTP/2
// connection as they pass through the wrapped conn: SETTINGS,
// WINDOW_UPDATE, PRIORITY and the first HEADERS block (with CONTINUATION),
// which it decodes with its own HPACK decoder. After the first complete
// HEADERS, or 64 KiB, or anything it does not understand, it stops and
// never looks at (or copies) another byte.
//
// Build one with [WrapH2]. Fingerprint is safe for concurrent use with the
// reads of the connection.
type H2Recorder struct {
	buf   []byte
	state int // 0 preface, 1 frames, 2 done
	done  atomic.Bool
	res   atomic.Pointer[H2]

	settings []byte
	window   uint32
	prio     []byte
	block    []byte
	fired    chan struct{}
	once     sync.Once
}

const (
	h2Preface  = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	h2MaxBytes = 64 << 10
)

type h2Conn struct {
	net.Conn
	rec *H2Recorder
}

func (c *h2Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.rec.done.Load() {
		c.rec.feed(p[:n])
	}
	return n, err
}

// h2TLSConn keeps ConnectionState visible: x/net/http2's server reads it
// from the conn it serves.
type h2TLSConn struct {
	h2Conn
	cs interface{ ConnectionState() tls.ConnectionState }
}

func (c *h2TLSConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

// WrapH2 returns a conn to hand to the HTTP/2 server in place of c, and the
// recorder that fills in as the client's first frames are read. When c
// has ConnectionState (a *tls.Conn), so does the returned conn.
func WrapH2(c net.Conn) (net.Conn, *H2Recorder) {
	rec := &H2Recorder{fired: make(chan struct{})}
	if cs, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return &h2TLSConn{h2Conn: h2Conn{Conn: c, rec: rec}, cs: cs}, rec
	}
	return &h2Conn{Conn: c, rec: rec}, rec
}

// Fingerprint returns the result once the first HEADERS block was read.
func (r *H2Recorder) Fingerprint() (*H2, bool) {
	h := r.res.Load()
	return h, h != nil
}

// Done is closed when the recorder stops, with or without a result.
func (r *H2Recorder) Done() <-chan struct{} { return r.fired }

func (r *H2Recorder) stop() {
	r.done.Store(true)
	r.buf, r.settings, r.prio, r.block = nil, nil, nil, nil
	r.once.Do(func() { close(r.fired) })
}

func (r *H2Recorder) feed(p []byte) {
	if len(r.buf)+len(p) > h2MaxBytes {
		r.stop()
		return
	}
	r.buf = append(r.buf, p...)
	if r.state == 0 {
		if len(r.buf) < len(h2Preface) {
			if !bytes.HasPrefix([]byte(h2Preface), r.buf) {
				r.stop()
			}
			return
		}
		if string(r.buf[:len(h2Preface)]) != h2Preface {
			r.stop()
			return
		}
		r.buf = r.buf[len(h2Preface):]
		r.state = 1
	}
	for len(r.buf) >= 9 {
		length := int(r.buf[0])<<16 | int(r.buf[1])<<8 | int(r.buf[2])
		if len(r.buf) < 9+length {
			return
		}
		typ, flags := r.buf[3], r.buf[4]
		stream := binary.BigEndian.Uint32(r.buf[5:]) & 0x7fffffff
		payload := r.buf[9 : 9+length]
		if r.frame(typ, flags, stream, payload) {
			return
		}
		r.buf = r.buf[9+length:]
	}
}

// frame handles one frame; true when the recorder is finished.
func (r *H2Recorder) frame(typ, flags byte, stream uint32, p []byte) bool {
	switch typ {
	case 0x4: // SETTINGS
		if flags&0x1 != 0 || stream != 0 || len(p)%6 != 0 {
			return false
		}
		for i := 0; i+6 <= len(p); i += 6 {
			if len(r.settings) > 0 {
				r.settings = append(r.settings, ';')
			}
			r.settings = strconv.AppendUint(r.settings, uint64(binary.BigEndian.Uint16(p[i:])), 10)
			r.settings = append(r.settings, ':')
			r.settings = strconv.AppendUint(r.settings, uint64(binary.BigEndian.Uint32(p[i+2:])), 10)
		}
	case 0x8: // WINDOW_UPDATE
		if stream == 0 && r.window == 0 && len(p) == 4 {
			r.window = binary.BigEndian.Uint32(p) & 0x7fffffff
		}
	case 0x2: // PRIORITY
		if len(p) == 5 {
			r.prio = appendPriority(r.prio, stream, p)
		}
	case 0x1: // HEADERS
		if r.block != nil {
			r.stop() // a second HEADERS before the first ended
			return true
		}
		if flags&0x8 != 0 { // PADDED
			if len(p) < 1 || int(p[0]) > len(p)-1 {
				r.stop()
				return true
			}
			p = p[1 : len(p)-int(p[0])]
		}
		if flags&0x20 != 0 { // PRIORITY fields (not part of the Akamai string)
			if len(p) < 5 {
				r.stop()
				return true
			}
			p = p[5:]
		}
		r.block = append(make([]byte, 0, len(p)), p...)
		if flags&0x4 != 0 { // END_HEADERS
			r.finish()
			return true
		}
	case 0x9: // CONTINUATION
		if r.block == nil {
			r.stop()
			return true
		}
		r.block = append(r.block, p...)
		if flags&0x4 != 0 {
			r.finish()
			return true
		}
	}
	return false
}

func appendPriority(dst []byte, stream uint32, p []byte) []byte {
	if len(dst) > 0 {
		dst = append(dst, ',')
	}
	dep := binary.BigEndian.Uint32(p)
	excl := byte('0')
	if dep&0x80000000 != 0 {
		excl = '1'
	}
	dst = strconv.AppendUint(dst, uint64(stream), 10)
	dst = append(dst, ':', excl, ':')
	dst = strconv.AppendUint(dst, uint64(dep&0x7fffffff), 10)
	dst = append(dst, ':')
	return strconv.AppendUint(dst, uint64(p[4])+1, 10)
}

func (r *H2Recorder) finish() {
	h := &H2{}
	var pseudo []byte
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if len(h.Headers) >= 100 {
			return
		}
		h.Headers = append(h.Headers, Header{Name: []byte(f.Name), Value: []byte(f.Value)})
		if len(f.Name) > 1 && f.Name[0] == ':' {
			if len(pseudo) > 0 {
				pseudo = append(pseudo, ',')
			}
			pseudo = append(pseudo, f.Name[1])
		}
	})
	dec.SetMaxStringLength(16 << 10)
	if _, err := dec.Write(r.block); err != nil {
		r.stop()
		return
	}
	out := make([]byte, 0, len(r.settings)+len(r.prio)+len(pseudo)+16)
	out = append(out, r.settings...)
	out = append(out, '|')
	out = strconv.AppendUint(out, uint64(r.window), 10)
	out = append(out, '|')
	if len(r.prio) == 0 {
		out = append(out, '0')
	} else {
		out = append(out, r.prio...)
	}
	out = append(out, '|')
	out = append(out, pseudo...)
	h.Akamai = string(out)
	r.res.Store(h)
	r.stop()
}

type h2Key struct{}

// WithH2 returns ctx carrying the recorder, for x/net/http2's
// ServeConnOpts.Context, so that handlers find it with [H2FromContext].
func WithH2(ctx context.Context, r *H2Recorder) context.Context {
	return context.WithValue(ctx, h2Key{}, r)
}

// H2FromContext returns the connection's fingerprint inside a handler.
func H2FromContext(ctx context.Context) (*H2, bool) {
	r, _ := ctx.Value(h2Key{}).(*H2Recorder)
	if r == nil {
		return nil, false
	}
	return r.Fingerprint()
}
