package h2guard

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// errEnhanceYourCalm is what Read returns once a budget was exceeded. The
// x/net/http2 server answers it with GOAWAY(ENHANCE_YOUR_CALM) and closes.
var errEnhanceYourCalm error = http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)

// aLongTimeAgo is a read deadline in the past, used to wake a blocked Read.
var aLongTimeAgo = time.Unix(1, 0)

type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// Conn is a net.Conn carrying HTTP/2 that accounts the frames flowing
// through it. Create it with Guard.Wrap.
//
// Read and Write may be called concurrently with each other (the HTTP/2
// server reads and writes from different goroutines); concurrent Reads are
// serialized, as are concurrent Writes. The zero value is not usable.
type Conn struct {
	net.Conn
	g     *Guard
	start time.Time

	rmu sync.Mutex
	rd  scanner
	ca  clientAcct

	wmu sync.Mutex
	wr  scanner
	sa  serverAcct

	reason     atomic.Pointer[Reason]
	closeTimer *time.Timer // set once under trip; read in Close
	timerMu    sync.Mutex
	closed     bool
}

var _ net.Conn = (*Conn)(nil)

// tlsConn adds ConnectionState so that the HTTP/2 server sees the TLS
// state of a wrapped *tls.Conn.
type tlsConn struct {
	*Conn
	cs connectionStater
}

// ConnectionState returns the TLS state of the wrapped connection.
func (c *tlsConn) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

// NetConn returns the connection that was wrapped.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Tripped reports whether the connection exceeded a budget, and which.
func (c *Conn) Tripped() (Reason, bool) {
	if r := c.reason.Load(); r != nil {
		return *r, true
	}
	return "", false
}

// Stats are the frame counts of one connection since it was wrapped. It is
// a plain value; the zero value means nothing was counted.
type Stats struct {
	Streams       uint64 // client streams opened with HEADERS
	ClientResets  uint64 // client RST_STREAM for streams it opened
	Continuations uint64 // client CONTINUATION frames
	ServerResets  uint64 // server RST_STREAM other than NO_ERROR
}

// Stats returns the connection's counts. It does not block and is safe
// to call at any time, including from OnAbuse.
func (c *Conn) Stats() Stats {
	return Stats{
		Streams:       c.ca.streams.Load(),
		ClientResets:  c.ca.clientResets.Load(),
		Continuations: c.ca.continuations.Load(),
		ServerResets:  c.sa.totalResets.Load(),
	}
}

// Read reads from the client and accounts the frames read. Once a budget
// is exceeded, Read discards what it read and returns
// http2.ConnectionError(http2.ErrCodeEnhanceYourCalm), now and on every
// later call.
func (c *Conn) Read(p []byte) (int, error) {
	if c.reason.Load() != nil {
		return 0, errEnhanceYourCalm
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n, err := c.Conn.Read(p)
	if n > 0 {
		clk := clock{start: c.start}
		b := p[:n]
		for len(b) > 0 {
			k, fh, ok := c.rd.next(b)
			b = b[k:]
			if !ok {
				continue
			}
			if fh.Type == frameRSTStream {
				c.g.m.clientRST.Inc()
			}
			if r := c.ca.frame(&c.g.cfg, &clk, fh); r != "" {
				c.trip(r)
				break
			}
		}
	}
	if c.reason.Load() != nil {
		// The bytes of the offending frame never reach the server. Any
		// other error (a timeout set by trip) is replaced as well.
		return 0, errEnhanceYourCalm
	}
	return n, err
}

// Write writes to the client and accounts the frames written. It never
// fails because of accounting; a server-side budget makes the next Read
// fail instead.
func (c *Conn) Write(p []byte) (int, error) {
	// Held across the write so that concurrent writers are accounted in
	// the order their bytes go out.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	clk := clock{start: c.start}
	b := p
	for len(b) > 0 {
		k, fh, ok := c.wr.next(b)
		b = b[k:]
		if !ok {
			continue
		}
		if fh.Type == frameRSTStream {
			c.g.m.serverRST.Inc()
			if r := c.sa.frame(&c.g.cfg, &clk, fh); r != "" {
				c.trip(r)
			}
		}
	}
	return c.Conn.Write(p)
}

// trip records the first exceeded budget: the next Read fails, a Read
// blocked in the underlying connection is woken, and the underlying
// connection is closed after CloseGrace whatever the server does.
func (c *Conn) trip(r Reason) {
	if !c.reason.CompareAndSwap(nil, &r) {
		return
	}
	c.g.tripped(c, r)
	// Wake a Read blocked on the network (trip from the Write side). The
	// HTTP/2 server may clear read deadlines when it starts a handler; the
	// close timer below bounds that case.
	_ = c.Conn.SetReadDeadline(aLongTimeAgo)
	c.timerMu.Lock()
	if !c.closed {
		c.closeTimer = time.AfterFunc(c.g.cfg.CloseGrace, func() { _ = c.Conn.Close() })
	}
	c.timerMu.Unlock()
}

// Close closes the underlying connection and stops the close timer.
func (c *Conn) Close() error {
	c.timerMu.Lock()
	c.closed = true
	if c.closeTimer != nil {
		c.closeTimer.Stop()
	}
	c.timerMu.Unlock()
	return c.Conn.Close()
}
