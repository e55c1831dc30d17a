//go:build linux && !386

package rawaccept

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const supported = true

// maxBatch bounds the refusals of one Accept call, so that a flood that
// keeps the backlog full cannot keep Accept (and a Close waiting on it)
// from returning, and so that the caller can let other work run between
// batches (HAProxy's tune.maxaccept is 64 too).
const maxBatch = 64

type sys struct {
	f      *os.File // the duplicate of the listening socket
	closed atomic.Bool
	rc     syscall.RawConn
	// State of one Accept call, set by the callback given to rc.Read
	// (allocated once: a closure per call would allocate).
	admit   Admit
	fd      int
	got     netip.Addr
	errno   syscall.Errno
	refused int
	fn      func(uintptr) bool
}

func (l *Listener) init(tl *net.TCPListener) error {
	lrc, err := tl.SyscallConn()
	if err != nil {
		return err
	}
	dup := -1
	var derr error
	if err := lrc.Control(func(fd uintptr) {
		dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	// Non-blocking, so os.NewFile registers it with the netpoller.
	if err := syscall.SetNonblock(dup, true); err != nil {
		syscall.Close(dup)
		return err
	}
	l.f = os.NewFile(uintptr(dup), "rawaccept")
	if l.rc, err = l.f.SyscallConn(); err != nil {
		l.f.Close()
		return err
	}
	l.fn = l.acceptReady
	return nil
}

// Close closes this Listener's descriptor and ends a waiting Accept. The
// socket itself closes once the net.Listener is closed too. Closing twice
// is harmless.
func (l *Listener) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	return l.f.Close()
}

// Accept accepts connections and asks admit about each. It returns:
//
//   - the first admitted connection, with its peer address;
//   - nil, a valid address and an error when a connection was admitted
//     but could not be made a net.Conn (for example at the descriptor
//     limit): it has been reset, and the caller must undo what admit
//     counted for it;
//   - nil, the zero address and a nil error when no connection was
//     admitted within wait (0: no limit) or within a batch of refusals:
//     call again (the caller may change its mind about the raw path);
//   - an error wrapping net.ErrClosed once the Listener is closed.
//
// Refused connections are reset and closed here, without reaching the
// netpoller; Refused reports how many the call refused.
func (l *Listener) Accept(admit Admit, wait time.Duration) (net.Conn, netip.Addr, error) {
	l.admit, l.fd, l.errno, l.refused = admit, -1, 0, 0
	if wait > 0 {
		l.f.SetReadDeadline(time.Now().Add(wait))
	} else {
		l.f.SetReadDeadline(time.Time{})
	}
	err := l.rc.Read(l.fn)
	l.admit = nil
	switch {
	case l.closed.Load():
		if l.fd >= 0 {
			reset(l.fd)
			return nil, l.got, l.closedErr()
		}
		return nil, netip.Addr{}, l.closedErr()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil, netip.Addr{}, nil
	case err != nil:
		return nil, netip.Addr{}, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: err}
	case l.errno != 0:
		return nil, netip.Addr{}, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: os.NewSyscallError("accept4", l.errno)}
	case l.fd < 0:
		return nil, netip.Addr{}, nil // a batch of refusals
	}
	// The accepted socket is blocking: os.NewFile leaves it out of the
	// netpoller, and net.FileConn registers a non-blocking duplicate.
	f := os.NewFile(uintptr(l.fd), "")
	c, err := net.FileConn(f)
	if err != nil {
		setLinger0(l.fd)
		f.Close()
		return nil, l.got, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: err}
	}
	f.Close()
	// net.FileConn turns TCP keep-alive on; accepted client sockets have
	// none otherwise (idle and header timeouts end dead connections).
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAlive(false)
	}
	return c, l.got, nil
}

func (l *Listener) closedErr() error {
	return &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
}

// Refused returns how many connections the last Accept refused.
func (l *Listener) Refused() int { return l.refused }

// acceptReady runs in rc.Read with the listening socket's descriptor: it
// accepts until a connection is admitted, maxBatch have been refused, the
// Listener is closed, or an error other than EAGAIN/EINTR/ECONNABORTED
// occurs (true: Accept returns), or until no connection is ready (false:
// the netpoller waits for the next one, up to Accept's wait).
func (l *Listener) acceptReady(lfd uintptr) bool {
	for l.refused < maxBatch && !l.closed.Load() {
		var rsa syscall.RawSockaddrAny
		alen := uint32(syscall.SizeofSockaddrAny)
		r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, lfd, uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&alen)),
			syscall.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
		case syscall.EAGAIN:
			return false
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		default:
			l.errno = e
			return true
		}
		fd := int(r)
		addr := peer(&rsa)
		if l.admit(addr) {
			l.fd, l.got = fd, addr
			return true
		}
		reset(fd)
		l.refused++
	}
	return true
}

// peer decodes the address accept4 filled in, IPv4-mapped IPv6 unmapped;
// the zero Addr for other families.
func peer(rsa *syscall.RawSockaddrAny) netip.Addr {
	switch rsa.Addr.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(rsa))
		return netip.AddrFrom4(sa.Addr)
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(rsa))
		return netip.AddrFrom16(sa.Addr).Unmap()
	}
	return netip.Addr{}
}

// lingerZero is SO_LINGER {on, 0 s}: close sends RST and skips TIME_WAIT.
var lingerZero = syscall.Linger{Onoff: 1, Linger: 0}

func setLinger0(fd int) {
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_LINGER,
		uintptr(unsafe.Pointer(&lingerZero)), unsafe.Sizeof(lingerZero), 0)
}

// reset closes fd with RST.
func reset(fd int) {
	setLinger0(fd)
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}
