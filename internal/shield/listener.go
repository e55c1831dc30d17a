package shield

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/fastconn"
	"github.com/levee-dev/levee/internal/fingerprint"
	"github.com/levee-dev/levee/internal/guard"
	"github.com/levee-dev/levee/internal/proxy"
	"github.com/levee-dev/levee/internal/proxyproto"
	"github.com/levee-dev/levee/internal/rawaccept"
)

// listener is one client-facing socket and the accept loop in front of the
// HTTP servers.
type listener struct {
	s     *Shield
	cfg   config.Listener
	ln    net.Listener
	h1    *connQueue
	certs atomic.Pointer[certStore]

	// rawOK tells whether the raw accept path may be used: not for PROXY
	// protocol listeners (the address to judge comes later), nor where
	// internal/rawaccept is not supported, nor with LEVEE_RAWACCEPT=off.
	rawOK bool
	// raw is the raw accept path while the listener is flooded (see
	// acceptLoop), nil otherwise: its duplicate descriptor would add an
	// event per new connection in normal operation.
	raw      atomic.Pointer[rawaccept.Listener]
	rawAdmit rawaccept.Admit
	flood    floodMeter
	// rawMode is whether the accept loop is on the raw path now.
	rawMode atomic.Bool
	closing atomic.Bool
}

// newListener wraps a bound socket.
func newListener(s *Shield, lc config.Listener, ln net.Listener) *listener {
	l := &listener{s: s, cfg: lc, ln: ln, h1: newConnQueue(ln.Addr())}
	_, tcp := ln.(*net.TCPListener)
	l.rawOK = tcp && !lc.ProxyProtocol && !rawDisabled && rawaccept.Supported
	l.rawAdmit = l.admitRaw
	return l
}

// close closes the listening socket, and the raw path's descriptor of it
// when there is one. (The accept loop closes a raw path it opens after
// this, see startRaw.)
func (l *listener) close() {
	l.closing.Store(true)
	l.ln.Close()
	if r := l.raw.Load(); r != nil {
		r.Close()
	}
}

// startRaw opens the raw accept path; false if it cannot (the listener
// stays on Go's Accept).
func (l *listener) startRaw() bool {
	r, ok := rawaccept.New(l.ln)
	if !ok {
		return false
	}
	l.raw.Store(r)
	if l.closing.Load() { // close ran meanwhile and may have missed r
		r.Close()
	}
	return true
}

// stopRaw closes the raw accept path.
func (l *listener) stopRaw() {
	if r := l.raw.Swap(nil); r != nil {
		r.Close()
	}
}

// rawWait bounds one raw Accept call without connections, so that the
// loop leaves the raw path within about a second once a flood is over even
// when no client comes.
const rawWait = time.Second

// rawDisabled turns the raw accept path off (LEVEE_RAWACCEPT=off at start),
// for A/B measurements and as an escape hatch.
var rawDisabled = os.Getenv("LEVEE_RAWACCEPT") == "off"

// floodRefusals is the number of refusals in a second from which a listener
// accepts with raw calls (internal/rawaccept): a refusal then costs accept4,
// setsockopt and close instead of Go's Accept, netpoller registration,
// setsockopt and close (about 19 against 37 us on the benchmark machine),
// while an admitted connection costs about a dozen system calls more. So
// the raw path is taken only while refusals also outnumber admissions:
// then the saving outweighs the admitted connections' extra cost.
const floodRefusals = 64

// floodMeter counts a listener's refusals and admissions per second. Only
// its accept loop uses it.
type floodMeter struct {
	sec          int64 // the current second (Unix)
	n, prev      int   // refusals in it and in the second before
	adm, prevAdm int   // admissions likewise
}

func (m *floodMeter) roll(sec int64) {
	if sec == m.sec {
		return
	}
	if sec == m.sec+1 {
		m.prev, m.prevAdm = m.n, m.adm
	} else {
		m.prev, m.prevAdm = 0, 0
	}
	m.sec, m.n, m.adm = sec, 0, 0
}

// add counts refused refusals and admitted admissions at second sec.
func (m *floodMeter) add(sec int64, refused, admitted int) {
	m.roll(sec)
	m.n += refused
	m.adm += admitted
}

// flooded reports whether this or the previous second saw floodRefusals
// refusals, and refusals outnumber admissions over both.
func (m *floodMeter) flooded(sec int64) bool {
	m.roll(sec)
	return (m.n >= floodRefusals || m.prev >= floodRefusals) && m.n+m.prev >= m.adm+m.prevAdm
}

// admitRaw is the guard check of the raw accept path: the connection is
// reset by internal/rawaccept when it returns false.
func (l *listener) admitRaw(addr netip.Addr) bool {
	if r := l.s.guard.Admit(time.Now(), addr); r != guard.Admitted {
		l.s.refused(addr, r)
		return false
	}
	return true
}

// rejectKeys are the sampled-log keys of refusals, one per reason, built
// once: a flood of refusals builds no strings.
var rejectKeys = func() (k [8]string) {
	for i := range k {
		k[i] = "reject:" + guard.Reason(i).String()
	}
	return k
}()

// refused logs (sampled) and records a connection refused at accept. A
// suppressed line costs no allocation.
func (s *Shield) refused(addr netip.Addr, r guard.Reason) {
	key := "reject:unknown"
	if int(r) < len(rejectKeys) {
		key = rejectKeys[r]
	}
	if n, ok := s.sampled.due(key); ok {
		s.sampled.emit(n, "connection rejected", "client", addr, "reason", r.String())
	}
	if rec := s.acceptRec.Load(); rec != nil {
		rec.RecordConn(addr)
	}
}

// connQueue is a net.Listener fed by the accept loop, from which fasthttp's
// Serve takes HTTP/1.1 connections that already passed the guard (and TLS).
type connQueue struct {
	ch     chan net.Conn
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{ch: make(chan net.Conn, 1024), addr: addr, closed: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.closed:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.ch <- c:
	case <-q.closed:
		c.Close()
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// acceptLoop admits or rejects each connection at accept time. Plain
// connections go straight to the HTTP/1.1 server; PROXY protocol, TLS and
// h2c sniffing run in a goroutine per connection so a slow client cannot
// stall the loop.
//
// While the listener refuses floodRefusals connections a second or more (a
// connection flood from banned or over-limit sources), it accepts with raw
// system calls instead (internal/rawaccept): refused connections are then
// reset without ever reaching Go's netpoller, about half the CPU per
// refusal (BENCHMARKS.md). The guard's decisions are the same either way.
func (l *listener) acceptLoop() {
	s := l.s
	var backoff time.Duration
	defer func() {
		l.rawMode.Store(false)
		l.stopRaw()
	}()
	for {
		var (
			c    net.Conn
			addr netip.Addr
			err  error
		)
		raw := l.rawOK && l.flood.flooded(time.Now().Unix())
		if raw != l.rawMode.Load() {
			if raw && !l.startRaw() {
				raw = false
			} else {
				l.setRawMode(raw)
			}
		}
		if raw {
			c, addr, err = l.raw.Load().Accept(l.rawAdmit, rawWait)
			admitted := 0
			if c != nil {
				admitted = 1
			}
			l.flood.add(time.Now().Unix(), l.raw.Load().Refused(), admitted)
			if c == nil && err == nil {
				// A batch of refusals, or a quiet second. Let the
				// connections already admitted run before the next batch:
				// with one P a flood would otherwise starve them.
				runtime.Gosched()
				continue
			}
			if err != nil && addr.IsValid() {
				// Admitted, then lost (no descriptor left for it): undo
				// the admission.
				s.guard.Release(addr)
			}
		} else {
			c, err = l.ln.Accept()
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and friends: back off instead of spinning.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.sampled.warn("accept", "accept failed", "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c = fastconn.Wrap(c)
		if l.cfg.ProxyProtocol {
			// Until its header names the client, the connection counts
			// against the global cap, so headerless connections cannot
			// pile up past it.
			if r := s.guard.AdmitPending(); r != guard.Admitted {
				guard.Reject(c)
				s.refused(guard.AddrOf(c.RemoteAddr()), r)
				continue
			}
			go l.proxied(c)
			continue
		}
		var gc *guard.Conn
		if raw {
			gc = s.guard.NewConn(c, addr, nil, nil) // admitted by admitRaw
		} else {
			addr = guard.AddrOf(c.RemoteAddr())
			if gc = l.admit(c, addr, nil, nil); gc == nil {
				l.flood.add(time.Now().Unix(), 1, 0)
				continue
			}
			l.flood.add(time.Now().Unix(), 0, 1)
		}
		if l.cfg.TLS.Enabled() || l.cfg.H2C {
			go l.dispatch(gc, addr)
			continue
		}
		l.h1.push(gc)
	}
}

// setRawMode records a switch of the accept path (metric, log) and closes
// the raw path when leaving it.
func (l *listener) setRawMode(raw bool) {
	s := l.s
	l.rawMode.Store(raw)
	if raw {
		s.log.Warn("connection flood: refusing at accept with raw system calls", "listener", l.ln.Addr().String(),
			"refusals_per_second", max(l.flood.n, l.flood.prev))
		return
	}
	l.stopRaw()
	s.log.Info("connection flood over: back to Go's accept", "listener", l.ln.Addr().String())
}

func (l *listener) admit(c net.Conn, addr netip.Addr, remote, local net.Addr) *guard.Conn {
	s := l.s
	if r := s.guard.Admit(time.Now(), addr); r != guard.Admitted {
		guard.Reject(c)
		s.refused(addr, r)
		return nil
	}
	return s.guard.NewConn(c, addr, remote, local)
}

// proxied reads the PROXY protocol header of c, admitted as pending, then
// admits the client it names.
func (l *listener) proxied(c net.Conn) {
	pc, hdr, err := proxyproto.Accept(c, l.cfg.ProxyProtocolTimeout)
	l.s.guard.ReleasePending()
	if err != nil {
		guard.Reject(c)
		l.s.sampled.warn("proxyproto", "bad PROXY protocol header", "peer", c.RemoteAddr().String(), "err", err)
		return
	}
	addr := guard.AddrOf(c.RemoteAddr())
	if hdr.Proxied() {
		addr = hdr.Source.Addr().Unmap()
	}
	gc := l.admit(pc, addr, pc.RemoteAddr(), pc.LocalAddr())
	if gc == nil {
		return
	}
	if l.cfg.TLS.Enabled() || l.cfg.H2C {
		l.dispatch(gc, addr)
		return
	}
	l.h1.push(gc)
}

var h2Preface = []byte(http2.ClientPreface)

// dispatch completes TLS (choosing HTTP/2 or HTTP/1.1 by ALPN) or sniffs
// an h2c prior-knowledge preface.
func (l *listener) dispatch(gc *guard.Conn, addr netip.Addr) {
	s := l.s
	cfg := s.cfg.Load()
	deadline := time.Now().Add(cfg.Guard.HeaderTimeout)
	if l.cfg.TLS.Enabled() {
		var ja4, stable string
		cfg := l.tlsConfig()
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			// Computed once per connection. Tokens bind to the stable
			// variant: plain JA4 changes on TLS session resumption.
			ja4, stable = fingerprint.JA4(hello), fingerprint.JA4Stable(hello)
			return nil, nil
		}
		tc := tls.Server(gc, cfg)
		_ = gc.SetDeadline(deadline)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			s.sampled.warn("tls", "TLS handshake failed", "client", addr, "err", err)
			tc.Close()
			return
		}
		_ = gc.SetDeadline(time.Time{})
		gc.SetFingerprint(ja4, stable)
		if tc.ConnectionState().NegotiatedProtocol == "h2" {
			s.serveH2(tc, addr)
			return
		}
		l.h1.push(tc)
		return
	}
	// h2c with prior knowledge: peek at the preface.
	_ = gc.SetReadDeadline(deadline)
	buf := make([]byte, len(h2Preface))
	n, err := io.ReadFull(gc, buf)
	_ = gc.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: gc, buf: buf[:n]}
	if err == nil && bytes.Equal(buf, h2Preface) {
		s.serveH2(pc, addr)
		return
	}
	if n == 0 {
		gc.Close()
		return
	}
	l.h1.push(pc)
}

func (l *listener) tlsConfig() *tls.Config {
	cs := l.certs.Load()
	protos := []string{"h2", "http/1.1"}
	if l.cfg.TLS.DisableHTTP2 {
		protos = []string{"http/1.1"}
	}
	minV := uint16(tls.VersionTLS12)
	if l.cfg.TLS.MinVersion == "1.3" {
		minV = tls.VersionTLS13
	}
	return &tls.Config{
		MinVersion:     minV,
		NextProtos:     protos,
		GetCertificate: cs.get,
	}
}

// peekedConn replays bytes read while sniffing the protocol.
type peekedConn struct {
	net.Conn
	buf []byte
}

func (c *peekedConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Addr keeps the client address visible through the wrapper.
func (c *peekedConn) Addr() netip.Addr { return proxy.PeerAddr(c.Conn) }
