// Package rawaccept accepts TCP connections with raw accept4 calls, so that
// a connection refused at accept time costs what it costs in HAProxy:
// accept4, one setsockopt (SO_LINGER 0, so close sends RST and keeps no
// TIME_WAIT) and close. Go's net.Listener.Accept also registers every
// accepted socket with the netpoller, sets TCP_NODELAY, allocates a netFD,
// two addresses and a finalizer, and a refusal then deregisters it again:
// work wasted on a connection that is closed at once.
//
// The price is on admitted connections: they become a net.Conn through
// net.FileConn, which duplicates the descriptor, queries it and registers
// the copy, and Go turns TCP keep-alive on for it (switched off again
// here): a dup, its registration, queries of its socket type and both
// addresses, the keep-alive options and their undoing, about a dozen
// system calls more than Go's Accept. A listener therefore uses the raw
// path
// only while it refuses many connections (a connection flood, see
// internal/shield), and Go's Accept otherwise.
//
// Supported on Linux except 386 (which has no accept4 system call of its
// own); elsewhere New reports false and callers keep using Accept.
package rawaccept

import (
	"net"
	"net/netip"
)

// Listener accepts from a *net.TCPListener's socket with raw calls, through
// a duplicate of its descriptor (Go's net package offers no readiness wait
// on a listener's raw connection; an *os.File over the duplicate has one).
// The socket stays open until both the net.Listener and this Listener are
// closed; Close also ends an Accept waiting here. Accept must not be called
// concurrently with itself.
type Listener struct {
	addr net.Addr
	sys
}

// Admit decides for the peer address of a new connection; false refuses it.
type Admit func(addr netip.Addr) bool

// Supported reports whether this platform has the raw path.
const Supported = supported

// New returns a raw Listener over ln, or false when ln is not a
// *net.TCPListener (or is closed) or the platform is not supported.
func New(ln net.Listener) (*Listener, bool) {
	tl, ok := ln.(*net.TCPListener)
	if !ok || !supported {
		return nil, false
	}
	l := &Listener{addr: tl.Addr()}
	if err := l.init(tl); err != nil {
		return nil, false
	}
	return l, true
}
