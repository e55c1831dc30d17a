package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds on what one run may do; the flags are checked against them.
const (
	maxDuration = 10 * time.Minute
	maxWorkers  = 4096
	maxRequests = 100_000_000
)

// Config is one flood run. The zero value is not usable; fill it and call
// Validate.
type Config struct {
	// Target is the loopback address and port to connect to.
	Target netip.AddrPort
	// Src, when valid, is the local address every connection binds to.
	Src netip.Addr
	// Host is the Host header sent. Default: the target address.
	Host string
	// Duration bounds the run in time (at most 10 minutes).
	Duration time.Duration
	// Workers is the number of connections in flight at once (at most 4096).
	Workers int
	// MaxRequests bounds the number of connection attempts (at most 1e8).
	MaxRequests int64
	// Timeout bounds each connect and each response wait. Default 2s.
	Timeout time.Duration
}

// ParseTarget accepts "IP:PORT" or "http://IP:PORT/..." and returns the
// address, refusing anything that is not a literal loopback IP.
func ParseTarget(s string) (netip.AddrPort, error) {
	hostport := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("connflood: target %q: %w", s, err)
		}
		if u.Scheme != "http" {
			return netip.AddrPort{}, fmt.Errorf("connflood: target %q: only http:// is supported", s)
		}
		hostport = u.Host
		if u.Port() == "" {
			hostport = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("connflood: target %q must be a literal loopback IP:PORT (127.0.0.0/8 or [::1]): %w", s, err)
	}
	if !isLoopback(ap.Addr()) {
		return netip.AddrPort{}, fmt.Errorf("connflood: refusing target %s: only loopback addresses (127.0.0.0/8, ::1) may be flooded", ap.Addr())
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("connflood: target %q has no port", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// ParseSrc parses the -src flag: empty, or a loopback IP of the same family
// as the target.
func ParseSrc(s string, target netip.AddrPort) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("connflood: -src %q: %w", s, err)
	}
	a = a.Unmap()
	if !isLoopback(a) {
		return netip.Addr{}, fmt.Errorf("connflood: refusing -src %s: only loopback source addresses may be used", a)
	}
	if a.Is4() != target.Addr().Is4() {
		return netip.Addr{}, fmt.Errorf("connflood: -src %s and target %s are of different address families", a, target.Addr())
	}
	return a, nil
}

func isLoopback(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() // 127.0.0.0/8 and ::1
}

// Validate checks the bounds and fills defaults.
func (c *Config) Validate() error {
	if !isLoopback(c.Target.Addr()) {
		return fmt.Errorf("connflood: refusing target %s: not loopback", c.Target)
	}
	if c.Src.IsValid() && !isLoopback(c.Src) {
		return fmt.Errorf("connflood: refusing source %s: not loopback", c.Src)
	}
	if c.Duration <= 0 || c.Duration > maxDuration {
		return fmt.Errorf("connflood: -duration %s out of range (0, %s]", c.Duration, maxDuration)
	}
	if c.Workers < 1 || c.Workers > maxWorkers {
		return fmt.Errorf("connflood: -conns %d out of range [1, %d]", c.Workers, maxWorkers)
	}
	if c.MaxRequests < 1 || c.MaxRequests > maxRequests {
		return fmt.Errorf("connflood: -max-requests %d out of range [1, %d]", c.MaxRequests, maxRequests)
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.Host == "" {
		c.Host = c.Target.String()
	}
	return nil
}

// Result counts how the connection attempts of one run ended. Every attempt
// is counted in exactly one field (Status counts answered attempts).
type Result struct {
	Attempts int64
	Elapsed  time.Duration
	// Status counts answers by HTTP status code (index 0: unparsable).
	Status [600]int64
	// Reset: the connection was reset (ECONNRESET, EPIPE) before an answer.
	Reset int64
	// Closed: the server closed the connection cleanly without answering.
	Closed int64
	// ConnRefused: connect failed with ECONNREFUSED (nothing listening or
	// the SYN was answered with RST).
	ConnRefused int64
	// ConnTimeout: connect did not complete within the timeout (SYN dropped,
	// for example on a full accept queue).
	ConnTimeout int64
	// Timeout: connected but no answer within the timeout.
	Timeout int64
	// Other: any other error (local port exhaustion, for example).
	Other int64
	// Interrupted: attempts cut short by the end of the run.
	Interrupted int64
	// LastOther is one example of an Other error, for diagnosis.
	LastOther string
}

// Answered returns the number of attempts that got an HTTP answer.
func (r *Result) Answered() int64 {
	var n int64
	for _, v := range r.Status {
		n += v
	}
	return n
}

// Refused returns the attempts the server turned away without an HTTP
// answer: resets, clean closes and refused connects.
func (r *Result) Refused() int64 { return r.Reset + r.Closed + r.ConnRefused }

func (r *Result) add(o *Result) {
	r.Attempts += o.Attempts
	for i, v := range o.Status {
		r.Status[i] += v
	}
	r.Reset += o.Reset
	r.Closed += o.Closed
	r.ConnRefused += o.ConnRefused
	r.ConnTimeout += o.ConnTimeout
	r.Timeout += o.Timeout
	r.Other += o.Other
	r.Interrupted += o.Interrupted
	if o.LastOther != "" {
		r.LastOther = o.LastOther
	}
}

// Run floods c.Target until c.Duration passes, c.MaxRequests attempts were
// made, or ctx is done, and returns the counts.
func Run(ctx context.Context, c Config) (*Result, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	end, _ := ctx.Deadline()
	req := []byte("GET / HTTP/1.1\r\nHost: " + c.Host + "\r\nUser-Agent: levee-bench-connflood\r\nAccept: */*\r\n\r\n")
	d := &net.Dialer{Timeout: c.Timeout}
	if c.Src.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: c.Src.AsSlice()}
		// Let the kernel pick the local port at connect time, per 4-tuple,
		// so one source address can have more connections than there are
		// ephemeral ports.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	var (
		issued atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		total  Result
	)
	start := time.Now()
	for range c.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var r Result
			br := bufio.NewReaderSize(nil, 512)
			for !over(ctx, end) && issued.Add(1) <= c.MaxRequests {
				r.Attempts++
				once(ctx, end, d, c, req, br, &r)
			}
			mu.Lock()
			total.add(&r)
			mu.Unlock()
		}()
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	return &total, nil
}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (Linux 4.2+), absent from
// package syscall.
const ipBindAddressNoPort = 24

// once makes one attempt: connect, send one request, read the status line,
// then close with RST so neither side keeps TIME_WAIT state.
func once(ctx context.Context, end time.Time, d *net.Dialer, c Config, req []byte, br *bufio.Reader, r *Result) {
	conn, err := d.DialContext(ctx, "tcp", c.Target.String())
	if err != nil {
		switch {
		case over(ctx, end):
			r.Interrupted++
		case errors.Is(err, syscall.ECONNREFUSED):
			r.ConnRefused++
		case errors.Is(err, syscall.ECONNRESET):
			// Accepted and reset so fast that connect saw the RST.
			r.Reset++
		case isTimeout(err):
			r.ConnTimeout++
		default:
			r.Other++
			r.LastOther = err.Error()
		}
		return
	}
	tc := conn.(*net.TCPConn)
	defer func() {
		_ = tc.SetLinger(0)
		_ = tc.Close()
	}()
	deadline := time.Now().Add(c.Timeout)
	if end.Before(deadline) {
		deadline = end
	}
	_ = tc.SetDeadline(deadline)
	if _, err := tc.Write(req); err != nil {
		classify(ctx, end, err, r)
		return
	}
	br.Reset(tc)
	line, err := br.ReadSlice('\n')
	if err != nil {
		classify(ctx, end, err, r)
		return
	}
	r.Status[parseStatus(line)]++
}

// over reports whether the run has ended. The deadline is checked directly:
// a context's timer may fire a little after its deadline on a busy machine.
func over(ctx context.Context, end time.Time) bool {
	return ctx.Err() != nil || !time.Now().Before(end)
}

func classify(ctx context.Context, end time.Time, err error, r *Result) {
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		r.Reset++
	case errors.Is(err, io.EOF):
		r.Closed++
	case isTimeout(err) && over(ctx, end):
		r.Interrupted++
	case isTimeout(err):
		r.Timeout++
	default:
		r.Other++
		r.LastOther = err.Error()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// parseStatus returns the status code of an HTTP/1.x status line, or 0.
func parseStatus(line []byte) int {
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || string(line[:5]) != "HTTP/" || line[8] != ' ' {
		return 0
	}
	n := 0
	for _, b := range line[9:12] {
		if b < '0' || b > '9' {
			return 0
		}
		n = n*10 + int(b-'0')
	}
	if n < 100 || n >= 600 {
		return 0
	}
	return n
}
