// Command evproxy is a measurement tool, not part of Levee: the smallest
// HTTP/1.1 reverse proxy on one epoll event loop (no goroutine per
// connection), headers parsed and rewritten by fasthttp's header types. It
// answers one question with numbers: would Levee's HTTP/1.1 path beat
// HAProxy on this machine if it left Go's goroutine-per-connection model
// (net + fasthttp) for an event loop? bench/run.sh runs it beside the others
// with BENCH_EV=1 (bench/README.md, BENCHMARKS.md has the results).
//
// It handles what the benchmark sends and nothing more: requests without a
// body, responses with a Content-Length, IPv4 loopback. Anything else closes
// the connection. Options switch the design choices measured:
//
//	-defer      write after each batch of ready events instead of at once
//	            (HAProxy's batching)
//	-rawpoll    epoll_pwait as a raw system call with a 1 ms timeout, so the
//	            loop keeps its P (no entersyscall, no hand-off by sysmon)
//	-noheaders  forward the request as parsed, without X-Forwarded-For,
//	            X-Forwarded-Proto and Via
//	-spin N     make up to N empty non-blocking polls before blocking, so
//	            that the origin's and the client's writes find the loop
//	            awake (no wake-up to pay)
//
// Safety: it listens and forwards on loopback addresses only.
//
//	evproxy -listen 127.0.0.1:8001 -upstream 127.0.0.1:8080
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// options are the design choices under measurement.
type options struct {
	deferWrites, rawPoll, noHeaders bool
	// spin is how many empty non-blocking polls the loop makes before
	// it blocks in epoll_pwait (0: block at once).
	spin int
}

func main() {
	if err := run(os.Args[1:], os.Stderr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// run parses args, opens the listener and runs the loop on this goroutine
// (locked to its thread) until an error. ready, if not nil, receives the
// listening address once the socket accepts connections.
func run(args []string, stderr io.Writer, ready chan<- string) error {
	fs := flag.NewFlagSet("evproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8001", "loopback IPv4:PORT to listen on (port 0: any)")
	up := fs.String("upstream", "", "loopback IPv4:PORT of the origin (required)")
	var o options
	fs.BoolVar(&o.deferWrites, "defer", false, "write after each batch of events instead of at once")
	fs.BoolVar(&o.rawPoll, "rawpoll", false, "raw epoll_pwait (keeps the P) with a 1 ms timeout")
	fs.IntVar(&o.spin, "spin", 0, "empty non-blocking polls before blocking (stay awake for the peers' answers)")
	fs.BoolVar(&o.noHeaders, "noheaders", false, "do not add X-Forwarded-For, X-Forwarded-Proto and Via")
	if err := fs.Parse(args); err != nil {
		return err
	}
	la, err := loopback4(*listen)
	if err != nil {
		return err
	}
	ua, err := loopback4(*up)
	if err != nil {
		return err
	}
	runtime.LockOSThread()
	l, err := newLoop(la, ua, o)
	if err != nil {
		return err
	}
	if ready != nil {
		ready <- l.addr
	}
	return l.run()
}

// loopback4 accepts IPv4:PORT with a loopback address only.
func loopback4(hostport string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return ap, fmt.Errorf("%q: want a loopback IPv4:PORT: %v", hostport, err)
	}
	if !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
		return ap, fmt.Errorf("%q: not an IPv4 loopback address (127.0.0.0/8): refused", hostport)
	}
	return ap, nil
}

const (
	kindClient = iota
	kindUpstream
)

type conn struct {
	fd   int
	kind int
	in   []byte // in[r:w] unread
	r, w int
	out  []byte // pending write
	peer *conn
	// upstream: response state
	hdrDone bool
	remain  int64
	// client
	xff     []byte
	wantOut bool
	dirty   bool
}

type loop struct {
	epfd, lfd int
	ua        unix.SockaddrInet4
	conns     []*conn
	idle      []*conn
	events    [256]unix.EpollEvent
	reqH      fasthttp.RequestHeader
	respH     fasthttp.ResponseHeader
	br        *bufio.Reader
	rd        bytes.Reader
	dirty     []*conn
	opt       options
	addr      string
}

// later queues c's output to be written after the current batch of events.
func (l *loop) later(c *conn) {
	if !l.opt.deferWrites {
		l.flush(c)
		return
	}
	if !c.dirty {
		c.dirty = true
		l.dirty = append(l.dirty, c)
	}
}

func newLoop(la, ua netip.AddrPort, o options) (*loop, error) {
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: int(la.Port()), Addr: la.Addr().As4()}); err != nil {
		return nil, err
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		return nil, err
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return nil, err
	}
	sa, err := unix.Getsockname(lfd)
	if err != nil {
		return nil, err
	}
	bound := sa.(*unix.SockaddrInet4)
	l := &loop{epfd: epfd, lfd: lfd, ua: unix.SockaddrInet4{Port: int(ua.Port()), Addr: ua.Addr().As4()}, opt: o,
		addr: netip.AddrPortFrom(netip.AddrFrom4(bound.Addr), uint16(bound.Port)).String()}
	l.br = bufio.NewReaderSize(&l.rd, 8192)
	return l, nil
}

func (l *loop) add(c *conn, ev uint32) error {
	for len(l.conns) <= c.fd {
		l.conns = append(l.conns, nil)
	}
	l.conns[c.fd] = c
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: ev, Fd: int32(c.fd)})
}

func (l *loop) close(c *conn) {
	if c == nil || l.conns[c.fd] != c {
		return
	}
	l.conns[c.fd] = nil
	unix.Close(c.fd)
	if p := c.peer; p != nil {
		c.peer = nil
		p.peer = nil
		l.close(p)
	}
}

func (l *loop) run() error {
	for {
		// A raw epoll_wait keeps the P: no entersyscall, no hand-off of
		// the P to another thread by sysmon while the loop waits. It
		// waits at most 1 ms, and the loop yields between batches, so
		// the process's other goroutines still run.
		var r uintptr
		var e syscall.Errno
		for i := 0; i < l.opt.spin; i++ {
			r, _, e = syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 0, 0, 0)
			if r != 0 || e != 0 {
				break
			}
		}
		if r != 0 || e != 0 {
			// events (or an error) from the spin
		} else if l.opt.rawPoll {
			r, _, e = syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), 1, 0, 0)
			runtime.Gosched()
		} else {
			r, _, e = syscall.Syscall6(syscall.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.events[0])), uintptr(len(l.events)), ^uintptr(0), 0, 0)
		}
		if e != 0 {
			if e == syscall.EINTR {
				continue
			}
			return e
		}
		n := int(r)
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			if fd == l.lfd {
				l.accept()
				continue
			}
			if fd >= len(l.conns) || l.conns[fd] == nil {
				continue
			}
			c := l.conns[fd]
			if ev.Events&unix.EPOLLOUT != 0 {
				l.flush(c)
				if l.conns[fd] != c {
					continue
				}
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				l.readable(c)
			}
		}
		for i, c := range l.dirty {
			c.dirty = false
			l.dirty[i] = nil
			if l.conns[c.fd] == c {
				l.flush(c)
			}
		}
		l.dirty = l.dirty[:0]
	}
}

func (l *loop) accept() {
	for i := 0; i < 64; i++ {
		nfd, sa, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		unix.SetsockoptInt(nfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := &conn{fd: nfd, kind: kindClient, in: make([]byte, 16384)}
		if a, ok := sa.(*unix.SockaddrInet4); ok {
			c.xff = netip.AddrFrom4(a.Addr).AppendTo(nil)
		}
		if err := l.add(c, unix.EPOLLIN|unix.EPOLLRDHUP); err != nil {
			unix.Close(nfd)
		}
	}
}

func rawRead(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptrOf(p), uintptr(len(p)), 0, 0, 0)
	return int(n), e
}

func rawWrite(fd int, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptrOf(p), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}

func (l *loop) readable(c *conn) {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.in) && c.r > 0 {
		c.w = copy(c.in, c.in[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.in) {
		l.close(c)
		return
	}
	n, e := rawRead(c.fd, c.in[c.w:])
	if e == syscall.EAGAIN {
		return
	}
	if e != 0 || n == 0 {
		l.close(c)
		return
	}
	c.w += n
	if c.kind == kindClient {
		l.clientData(c)
	} else {
		l.upstreamData(c)
	}
}

// parse reads a complete header block at the start of c's unread input
// into h (a fasthttp request or response header): its length, or 0 while
// the block is incomplete.
func (l *loop) parse(c *conn, h interface {
	Reset()
	Read(*bufio.Reader) error
}) (int, error) {
	data := c.in[c.r:c.w]
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, nil
	}
	hlen := end + 4
	l.rd.Reset(data[:hlen])
	l.br.Reset(&l.rd)
	h.Reset()
	return hlen, h.Read(l.br)
}

func (l *loop) clientData(c *conn) {
	if c.peer != nil {
		return // a request is in flight; pipelined data waits
	}
	h := &l.reqH
	hlen, err := l.parse(c, h)
	if hlen == 0 && err == nil {
		return // headers incomplete
	}
	if err != nil || h.ContentLength() > 0 || h.ContentLength() == -1 {
		l.close(c)
		return
	}
	c.r += hlen
	h.Del("Connection")
	h.Del("Keep-Alive")
	h.Del("Proxy-Connection")
	h.Del("Upgrade")
	h.Del("Te")
	h.Del("Trailer")
	if !l.opt.noHeaders {
		h.SetBytesV("X-Forwarded-For", c.xff)
		h.Set("X-Forwarded-Proto", "http")
		h.Set("Via", "1.1 levee")
	}
	u := l.upstream()
	if u == nil {
		l.close(c)
		return
	}
	u.out = h.AppendBytes(u.out[:0])
	u.peer, c.peer = c, u
	u.hdrDone, u.remain = false, 0
	l.later(u)
}

func (l *loop) upstream() *conn {
	if n := len(l.idle); n > 0 {
		u := l.idle[n-1]
		l.idle = l.idle[:n-1]
		return u
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.Connect(fd, &l.ua); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil
	}
	u := &conn{fd: fd, kind: kindUpstream, in: make([]byte, 16384), wantOut: true}
	if err := l.add(u, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLOUT); err != nil {
		unix.Close(fd)
		return nil
	}
	return u
}

func (l *loop) flush(c *conn) {
	for len(c.out) > 0 {
		n, e := rawWrite(c.fd, c.out)
		if e == syscall.EAGAIN || e == syscall.ENOTCONN {
			if !c.wantOut {
				c.wantOut = true
				unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLOUT, Fd: int32(c.fd)})
			}
			return // EPOLLOUT reports when writable
		}
		if e != 0 {
			l.close(c)
			return
		}
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	if c.wantOut {
		c.wantOut = false
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)})
	}
}

func (l *loop) upstreamData(u *conn) {
	c := u.peer
	if c == nil {
		l.close(u)
		return
	}
	if !u.hdrDone {
		h := &l.respH
		hlen, err := l.parse(u, h)
		if hlen == 0 && err == nil {
			return // headers incomplete
		}
		if err != nil || h.ContentLength() < 0 {
			l.close(u)
			return
		}
		u.r += hlen
		u.remain = int64(h.ContentLength())
		u.hdrDone = true
		h.Del("Connection")
		h.Del("Keep-Alive")
		h.Set("Via", "1.1 levee")
		c.out = h.AppendBytes(c.out)
	}
	avail := int64(u.w - u.r)
	if avail > u.remain {
		avail = u.remain
	}
	c.out = append(c.out, u.in[u.r:u.r+int(avail)]...)
	u.r += int(avail)
	u.remain -= avail
	if u.remain == 0 {
		u.peer, c.peer = nil, nil
		if u.r != u.w {
			l.close(u)
		} else {
			u.r, u.w = 0, 0
			l.idle = append(l.idle, u)
		}
	}
	l.later(c)
	if c.peer == nil && l.conns[c.fd] == c && c.r < c.w {
		l.clientData(c)
	}
}

func uintptrOf(p []byte) uintptr {
	if len(p) == 0 {
		return 0
	}
	return uintptr(unsafe.Pointer(&p[0]))
}
