package proxyproto

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"time"
)

// readerSize is the buffer size of the pooled readers Accept parses with.
// It holds the largest header this package reads in one Peek (a v1 line or
// a v2 fixed part plus IPv6 block) with room to spare.
const readerSize = 512

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

// Accept reads a PROXY protocol header from the freshly accepted c, allowing
// at most timeout for it (0 means no deadline), and returns a wrapper that
// reports the header's addresses and serves any bytes that arrived after the
// header before reading from c again.
//
// The read deadline is cleared again on success. On error the caller must
// close c; Accept does not. The returned *Conn (as net.Conn) is the only
// per-connection allocation on success.
func Accept(c net.Conn, timeout time.Duration) (net.Conn, Header, error) {
	pc, h, _, err := accept(c, timeout, nil)
	return pc, h, err
}

// AcceptTLVs is Accept that also copies the v2 TLV area into tlvBuf and
// returns it (see ReadHeaderTLVs); the result aliases tlvBuf. A header with
// more TLV bytes than tlvBuf holds is an error wrapping ErrTLVTooLarge.
func AcceptTLVs(c net.Conn, timeout time.Duration, tlvBuf []byte) (net.Conn, Header, []byte, error) {
	if tlvBuf == nil {
		tlvBuf = []byte{}
	}
	return accept(c, timeout, tlvBuf)
}

func accept(c net.Conn, timeout time.Duration, tlvBuf []byte) (net.Conn, Header, []byte, error) {
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return nil, Header{}, nil, fmt.Errorf("proxyproto: set header deadline: %w", err)
		}
	}
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(c)
	h, tlvs, err := readHeader(br, tlvBuf)
	if err != nil {
		br.Reset(nil)
		readerPool.Put(br)
		return nil, Header{}, nil, err
	}
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			br.Reset(nil)
			readerPool.Put(br)
			return nil, Header{}, nil, fmt.Errorf("proxyproto: clear header deadline: %w", err)
		}
	}
	pc := &Conn{Conn: c, hdr: h}
	if br.Buffered() > 0 {
		pc.br = br
	} else {
		br.Reset(nil)
		readerPool.Put(br)
	}
	return pc, h, tlvs, nil
}

// Conn is a net.Conn that was preceded by a PROXY protocol header. It is
// returned by Accept.
//
// RemoteAddr and LocalAddr report the header's source and destination when
// Header().Proxied() is true and the underlying connection's addresses
// otherwise. Read first returns bytes that were read past the header.
//
// The zero value is not usable. A Conn is safe for concurrent use to the
// extent the underlying net.Conn is, except that Read must not be called
// from more than one goroutine at a time while header leftovers are being
// served (a single reader, as every HTTP server has, is always fine).
type Conn struct {
	net.Conn
	hdr Header
	br  *bufio.Reader // leftover bytes after the header; nil once drained

	addrOnce      sync.Once
	remote, local net.Addr
}

var _ net.Conn = (*Conn)(nil)

// Header returns the PROXY protocol header the connection started with.
func (c *Conn) Header() Header { return c.hdr }

// NetConn returns the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Read serves bytes buffered past the header first, then reads from the
// underlying connection.
func (c *Conn) Read(p []byte) (int, error) {
	if c.br != nil {
		if len(p) == 0 {
			return 0, nil
		}
		n, _ := c.br.Read(p) // only buffered bytes: never touches the conn
		if c.br.Buffered() == 0 {
			c.br.Reset(nil)
			readerPool.Put(c.br)
			c.br = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

func (c *Conn) addrs() {
	c.addrOnce.Do(func() {
		if c.hdr.Proxied() {
			c.remote = net.TCPAddrFromAddrPort(c.hdr.Source)
			c.local = net.TCPAddrFromAddrPort(c.hdr.Dest)
			if c.hdr.Protocol == ProtoUDP4 || c.hdr.Protocol == ProtoUDP6 {
				c.remote = net.UDPAddrFromAddrPort(c.hdr.Source)
				c.local = net.UDPAddrFromAddrPort(c.hdr.Dest)
			}
			return
		}
		c.remote = c.Conn.RemoteAddr()
		c.local = c.Conn.LocalAddr()
	})
}

// RemoteAddr returns the client address from the header, or the underlying
// connection's remote address when the header carries none.
func (c *Conn) RemoteAddr() net.Addr {
	c.addrs()
	return c.remote
}

// LocalAddr returns the destination address from the header, or the
// underlying connection's local address when the header carries none.
func (c *Conn) LocalAddr() net.Addr {
	c.addrs()
	return c.local
}
