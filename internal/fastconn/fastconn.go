// Package fastconn issues a proxy's socket reads and writes as raw
// non-blocking system calls, for a process that runs with few Go Ps
// (GOMAXPROCS=1 in the benchmarks).
//
// A plain net.TCPConn enters and leaves the scheduler's "syscall" state on
// every read and write (entersyscall/exitsyscall). Under load the runtime's
// monitor thread (sysmon) then keeps waking every 20µs and regularly hands
// the P to another thread while a loopback write is in the kernel, which
// costs futex wake-ups and thread switches (seen in per-thread CPU times
// on a heavily loaded machine; on a quiet one the A/B with
// LEVEE_FASTCONN=off shows no difference, see BENCHMARKS.md). The sockets
// are non-blocking, so those syscalls never
// block; Conn issues them with syscall.RawSyscall through syscall.RawConn,
// keeping Go's netpoller for readiness and deadlines.
//
// Wrap returns the connection unchanged on other platforms or for
// connections it cannot handle (not a *net.TCPConn), and everywhere when
// the environment variable LEVEE_FASTCONN=off is set at start (for A/B
// measurements and as an escape hatch). LEVEE_FASTCONN_YIELD=off keeps the
// raw syscalls but drops the yield of WrapDialed connections (see
// Conn.Read).
package fastconn

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
)

var disabled = os.Getenv("LEVEE_FASTCONN") == "off"

var noYield = os.Getenv("LEVEE_FASTCONN_YIELD") == "off"

// Conn is a *net.TCPConn whose Read and Write use raw non-blocking
// syscalls. Deadlines, Close and addresses behave as on the TCPConn.
//
// As with any net.Conn, at most one Read and one Write may run at a time
// (each keeps its own state), concurrently with each other and with Close.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn

	rbuf []byte
	rn   int
	rerr syscall.Errno

	wbuf []byte
	wn   int
	werr syscall.Errno

	readFn  func(uintptr) bool
	writeFn func(uintptr) bool

	// yield makes a Read that follows a Write yield first (WrapDialed).
	yield bool
	// wrote is set by Write and cleared by the next Read. Read and Write
	// may run concurrently.
	wrote atomic.Bool
}

// Wrap returns a raw-syscall connection for c when c is a *net.TCPConn on a
// supported platform, otherwise c itself.
func Wrap(c net.Conn) net.Conn { return wrap(c, false) }

// WrapDialed is Wrap for a connection on which this side sends a request
// and then waits for the answer (a proxy's connection to its origin): a
// Read that follows a Write yields to other goroutines first, see
// Conn.Read.
func WrapDialed(c net.Conn) net.Conn { return wrap(c, !noYield) }

func wrap(c net.Conn, yield bool) net.Conn {
	if !supported || disabled {
		return c
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	fc := &Conn{TCPConn: tc, rc: rc, yield: yield}
	fc.readFn = fc.doRead
	fc.writeFn = fc.doWrite
	return fc
}

// Read reads like net.Conn.Read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.yield && c.wrote.Load() {
		// A read right after a write on an origin connection (the request
		// just sent) nearly always finds no data: the origin has not
		// answered yet. That read costs a system call returning EAGAIN
		// before the goroutine parks on the poller. Yielding first lets
		// the other runnable goroutines work while the origin answers, so
		// the read that follows usually finds data. Go's poller clears
		// readiness before every read, so a read cannot safely wait
		// first; this is the safe way to skip most of those reads.
		//
		// Measured (BENCHMARKS.md): on origin connections EAGAIN reads
		// per proxied request 0.7 to about 0.1, 8-10% more requests per
		// second on one CPU, the same p99. Yielding on client connections
		// too (after each response) saved a little more CPU but doubled
		// the p99: a yielded goroutine waits in the global run queue
		// behind all the others.
		c.wrote.Store(false)
		runtime.Gosched()
	}
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	if err != nil {
		return 0, wrapErr("read", c, err)
	}
	if c.rerr != 0 {
		return 0, wrapErr("read", c, c.rerr)
	}
	if c.rn == 0 {
		return 0, io.EOF
	}
	return c.rn, nil
}

func (c *Conn) doRead(fd uintptr) bool {
	for {
		n, errno := rawRead(fd, c.rbuf)
		switch errno {
		case 0:
			c.rn = n
			return true
		case syscall.EAGAIN:
			return false
		case syscall.EINTR:
			continue
		default:
			c.rerr = errno
			return true
		}
	}
}

// Write writes all of p like net.Conn.Write, waiting for the socket to
// drain as needed.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.yield && !c.wrote.Load() {
		c.wrote.Store(true)
	}
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n := c.wn
	c.wbuf = nil
	if err != nil {
		return n, wrapErr("write", c, err)
	}
	if c.werr != 0 {
		return n, wrapErr("write", c, c.werr)
	}
	return n, nil
}

func (c *Conn) doWrite(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, errno := rawWrite(fd, c.wbuf[c.wn:])
		switch errno {
		case 0:
			c.wn += n
		case syscall.EAGAIN:
			return false
		case syscall.EINTR:
		default:
			c.werr = errno
			return true
		}
	}
	return true
}

// NetConn returns the wrapped TCP connection.
func (c *Conn) NetConn() net.Conn { return c.TCPConn }

func wrapErr(op string, c *Conn, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		oe.Op = op
		return oe
	}
	// Errno values (ECONNRESET, EPIPE, ...), deadline and closed-connection
	// errors from the poller are wrapped like the net package does, so
	// errors.Is(err, os.ErrDeadlineExceeded), net.ErrClosed and
	// syscall.ECONNRESET keep working.
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
