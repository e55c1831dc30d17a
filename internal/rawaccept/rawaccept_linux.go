//go:build linux

package rawaccept

import (
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const supported = true

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
// socket itself closes once the net.Listener is closed too.
func (l *Listener) Close() error {
	l.closed.Store(true)
	return l.f.Close()
}

// Accept returns the next connection that admit accepts, with its peer
// address. Connections admit refuses are reset and closed here, without
// reaching the netpoller; Refused reports how many since the last Accept
// returned. Accept waits for connections like net.Listener.Accept, and
// returns net.ErrClosed (wrapped) once the listener is closed.
func (l *Listener) Accept(admit Admit) (net.Conn, netip.Addr, error) {
	l.admit, l.fd, l.errno, l.refused = admit, -1, 0, 0
	err := l.rc.Read(l.fn)
	l.admit = nil
	if err != nil {
		if l.closed.Load() {
			err = net.ErrClosed // rather than the os package's "use of closed file"
		}
		return nil, netip.Addr{}, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: err}
	}
	if l.errno != 0 {
		return nil, netip.Addr{}, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: os.NewSyscallError("accept4", l.errno)}
	}
	f := os.NewFile(uintptr(l.fd), "")
	c, err := net.FileConn(f) // a duplicate registered with the netpoller
	f.Close()
	if err != nil {
		return nil, netip.Addr{}, err
	}
	return c, l.got, nil
}

// Refused returns how many connections the last Accept refused.
func (l *Listener) Refused() int { return l.refused }

// acceptReady runs in rc.Read with the listening socket's descriptor: it
// accepts until a connection is admitted (true), an error other than
// EAGAIN/EINTR/ECONNABORTED ends it (true, errno set), or no connection is
// ready (false: the netpoller waits for the next one).
func (l *Listener) acceptReady(lfd uintptr) bool {
	for {
		var rsa syscall.RawSockaddrAny
		alen := uint32(syscall.SizeofSockaddrAny)
		// The new socket stays blocking: os.NewFile then leaves it out of
		// the netpoller (net.FileConn registers its non-blocking
		// duplicate), which saves an epoll_ctl pair per admitted
		// connection. A refused one is reset at once either way.
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

// reset closes fd with RST.
func reset(fd int) {
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_LINGER,
		uintptr(unsafe.Pointer(&lingerZero)), unsafe.Sizeof(lingerZero), 0)
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}
