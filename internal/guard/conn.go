package guard

import (
	"crypto/sha256"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/levee-dev/levee/internal/coarsetime"
)

// Conn is an admitted client connection. It carries the client address
// (possibly taken from a PROXY protocol header), releases its guard slot
// exactly once on Close, and bounds each Write with WriteTimeout.
//
// Conn is safe for the concurrent use net.Conn allows (one reader and one
// writer at a time, Close from anywhere).
type Conn struct {
	net.Conn
	g      *Guard
	addr   netip.Addr
	remote net.Addr // overrides Conn.RemoteAddr when non-nil (PROXY protocol)
	local  net.Addr
	wto    time.Duration
	// lastWD is when the write deadline was last pushed forward (unix nanos).
	// Refreshing it at most every wto/4 keeps Write cheap: a write that
	// blocks is cut off after between 3/4 and all of wto.
	lastWD atomic.Int64
	closed atomic.Bool
	// fp is the connection's TLS fingerprint (JA4), set once after the
	// handshake, before the connection is served.
	fp     string
	fpHash uint64
	fpBind [16]byte
}

// SetFingerprint records the connection's TLS fingerprint (JA4) and its
// 64-bit hash (telemetry.Hash-compatible xxHash64), and the binding for
// clearance tokens, derived from stable, the JA4 variant that does not
// change when the client resumes a TLS session. Call it before the
// connection is served; it is not synchronized with readers.
func (c *Conn) SetFingerprint(ja4, stable string) {
	c.fp = ja4
	if ja4 != "" {
		c.fpHash = xxhash.Sum64String(ja4)
	}
	if stable != "" {
		sum := sha256.Sum256([]byte(stable))
		copy(c.fpBind[:], sum[:16])
	}
}

// Fingerprint returns the TLS fingerprint, its 64-bit hash and its 16-byte
// binding (the first 16 bytes of its SHA-256, as challenge.BindFingerprint
// computes); zero values for plain connections.
func (c *Conn) Fingerprint() (ja4 string, hash uint64, bind [16]byte) {
	return c.fp, c.fpHash, c.fpBind
}

// NewConn wraps an admitted connection. addr must be the address passed to
// Admit. remote and local may be nil to keep the connection's own addresses.
func (g *Guard) NewConn(c net.Conn, addr netip.Addr, remote, local net.Addr) *Conn {
	return &Conn{Conn: c, g: g, addr: addr.Unmap(), remote: remote, local: local, wto: g.cfg.Load().WriteTimeout}
}

// Addr is the client's address.
func (c *Conn) Addr() netip.Addr { return c.addr }

// RemoteAddr returns the client address (from the PROXY header if any).
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr returns the address the client connected to.
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

// Write writes with a rolling deadline so a client that stops reading is
// disconnected after WriteTimeout instead of holding a goroutine forever.
func (c *Conn) Write(p []byte) (int, error) {
	if c.wto > 0 {
		now := coarsetime.UnixNano()
		if now-c.lastWD.Load() > int64(c.wto/4) {
			c.lastWD.Store(now)
			_ = c.Conn.SetWriteDeadline(time.Unix(0, now).Add(c.wto))
		}
	}
	return c.Conn.Write(p)
}

// SetWriteDeadline sets an explicit deadline; the rolling deadline resumes
// after it (callers such as the TLS handshake rely on their own deadlines).
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.lastWD.Store(coarsetime.UnixNano())
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	c.lastWD.Store(coarsetime.UnixNano())
	return c.Conn.SetDeadline(t)
}

// Close closes the connection and releases its guard slot once.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.g.Release(c.addr)
		c.g.m.closed.Inc()
	}
	return err
}

// CloseWrite half-closes the connection when the underlying one supports it
// (used by Upgrade/WebSocket tunnels).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Unwrap returns the underlying connection.
func (c *Conn) Unwrap() net.Conn { return c.Conn }
