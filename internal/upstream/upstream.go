// Package upstream manages a site's origin servers: connection pools (one
// fasthttp.HostClient per origin, with a size limit), load balancing (weighted
// round robin or least connections), active health checks, and connect and
// response timeouts, and passive health: a target whose Outlier (see
// internal/admission) has ejected it is skipped by Pick like an unhealthy
// one.
//
// The response timeout is an inactivity timeout, like nginx's
// proxy_read_timeout: it bounds each wait for data from the origin, so a slow
// but progressing 1 GiB download is not cut while a stalled origin is.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/levee-dev/levee/internal/coarsetime"
	"github.com/levee-dev/levee/internal/fastconn"
)

// Target is one origin server.
type Target struct {
	// Addr is host:port.
	Addr string
	// Weight is the round-robin weight, 1-100. Zero means 1.
	Weight int
}

// Outlier is one target's passive health as the pool uses it (implemented
// by *admission.Outlier): Pick skips a target while Available is false, and
// Backend.Observe feeds it the target's answers. Implementations must be
// safe for concurrent use and should not allocate.
type Outlier interface {
	Available(now time.Time) bool
	Observe(now time.Time, rtt time.Duration, failed bool)
}

// Failed reports whether an exchange with an origin counts as a failure for
// passive health (outlier ejection, circuit breaker): any transport error
// (connect error, timeout, reset, no free pooled connection) or a 502, 503
// or 504 answer. Other 5xx answers are application errors: they depend on
// the request (one broken page, or a client asking for one on purpose), and
// the same request would fail on every target.
func Failed(err error, status int) bool {
	return err != nil || status == 502 || status == 503 || status == 504
}

// Health configures active health checks. A zero Path disables them.
type Health struct {
	Path           string
	Interval       time.Duration
	Timeout        time.Duration
	UnhealthyAfter int
	HealthyAfter   int
	StatusLo       int
	StatusHi       int
}

// Config describes one pool.
type Config struct {
	// Site names the pool in metrics and logs.
	Site    string
	Targets []Target
	// LeastConn selects least-connections balancing instead of weighted
	// round robin.
	LeastConn       bool
	ConnectTimeout  time.Duration // default 5s
	ResponseTimeout time.Duration // default 60s; an inactivity timeout
	IdleConnTimeout time.Duration // default 60s
	MaxConns        int           // per target, default 1024
	Health          Health
}

// Pool balances requests over a site's targets. It is safe for concurrent
// use. Create it with New and stop its health checks with Close.
type Pool struct {
	cfg      Config
	backends []*Backend
	schedule []uint16 // weighted round-robin order of backend indices
	next     atomic.Uint64
	log      *slog.Logger
	cancel   context.CancelFunc
	done     sync.WaitGroup
}

// Backend is one origin server and its connection pool.
type Backend struct {
	Addr     string
	Client   *fasthttp.HostClient
	weight   int
	healthy  atomic.Bool
	inflight atomic.Int64
	outlier  Outlier // nil: no passive health
	// consecutive results of active checks, for hysteresis
	okRun, failRun int
}

// Healthy reports the backend's last known health (active checks).
func (b *Backend) Healthy() bool { return b.healthy.Load() }

// Ejected reports whether passive health has ejected the backend at now.
func (b *Backend) Ejected(now time.Time) bool {
	return b.outlier != nil && !b.outlier.Available(now)
}

// usable reports whether Pick may choose b outside panic mode.
func (b *Backend) usable(now time.Time) bool {
	return b.healthy.Load() && (b.outlier == nil || b.outlier.Available(now))
}

// Observe records one answer of b for passive health: its latency (to the
// response head) and whether it failed (see Failed). It does nothing when
// the pool has no passive health. Do not call it for exchanges that failed
// because of the client (a request body too slow or too large).
func (b *Backend) Observe(now time.Time, rtt time.Duration, failed bool) {
	if b.outlier != nil {
		b.outlier.Observe(now, rtt, failed)
	}
}

// Inflight is the number of requests in progress on this backend.
func (b *Backend) Inflight() int64 { return b.inflight.Load() }

// Open returns the number of open connections in the backend's pool.
func (b *Backend) Open() int { return b.Client.ConnsCount() }

// ErrNoBackend is returned by Pick when the pool has no targets.
var ErrNoBackend = errors.New("upstream: no backend")

// New builds a pool; call Start to begin health checks.
func New(cfg Config, log *slog.Logger) (*Pool, error) {
	if len(cfg.Targets) == 0 {
		return nil, fmt.Errorf("upstream %s: no targets", cfg.Site)
	}
	if len(cfg.Targets) > 1000 {
		return nil, fmt.Errorf("upstream %s: too many targets (%d > 1000)", cfg.Site, len(cfg.Targets))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.ResponseTimeout <= 0 {
		cfg.ResponseTimeout = 60 * time.Second
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = 60 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	p := &Pool{cfg: cfg, log: log}
	for i, t := range cfg.Targets {
		if _, _, err := net.SplitHostPort(t.Addr); err != nil {
			return nil, fmt.Errorf("upstream %s: target %q: want host:port", cfg.Site, t.Addr)
		}
		w := t.Weight
		if w <= 0 {
			w = 1
		}
		b := &Backend{Addr: t.Addr, weight: w, Client: newClient(t.Addr, cfg)}
		b.healthy.Store(true)
		p.backends = append(p.backends, b)
		_ = i
	}
	p.schedule = wrrSchedule(p.backends)
	return p, nil
}

// wrrSchedule spreads each backend over the schedule in proportion to its
// weight (smooth weighted round robin, as nginx does), so weight 3:1 gives
// a a b a rather than a a a b.
func wrrSchedule(bs []*Backend) []uint16 {
	total := 0
	for _, b := range bs {
		total += b.weight
	}
	cur := make([]int, len(bs))
	out := make([]uint16, 0, total)
	for range total {
		best := 0
		for i, b := range bs {
			cur[i] += b.weight
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, uint16(best))
	}
	return out
}

func newClient(addr string, cfg Config) *fasthttp.HostClient {
	d := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	rto := cfg.ResponseTimeout
	return &fasthttp.HostClient{
		Addr: addr,
		Dial: func(a string) (net.Conn, error) {
			c, err := d.Dial("tcp", a)
			if err != nil {
				return nil, &DialError{Addr: a, Err: err}
			}
			return &timeoutConn{Conn: fastconn.WrapDialed(c), rto: rto}, nil
		},
		MaxConns:                      cfg.MaxConns,
		MaxConnWaitTimeout:            cfg.ConnectTimeout,
		MaxIdleConnDuration:           cfg.IdleConnTimeout,
		MaxIdemponentCallAttempts:     1,
		StreamResponseBody:            true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		ReadBufferSize:                16 << 10,
		WriteBufferSize:               16 << 10,
		MaxResponseBodySize:           0,
	}
}

// DialError reports a failure to connect to an origin.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return "dial " + e.Addr + ": " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// timeoutConn bounds every read and write on an upstream connection with a
// rolling deadline, refreshed at most every rto/4.
type timeoutConn struct {
	net.Conn
	rto    time.Duration
	lastRD int64
	lastWD int64
}

func (c *timeoutConn) Read(p []byte) (int, error) {
	now := coarsetime.UnixNano()
	if now-c.lastRD > int64(c.rto/4) {
		c.lastRD = now
		_ = c.Conn.SetReadDeadline(time.Unix(0, now).Add(c.rto))
	}
	return c.Conn.Read(p)
}

func (c *timeoutConn) Write(p []byte) (int, error) {
	now := coarsetime.UnixNano()
	if now-c.lastWD > int64(c.rto/4) {
		c.lastWD = now
		_ = c.Conn.SetWriteDeadline(time.Unix(0, now).Add(c.rto))
	}
	return c.Conn.Write(p)
}

// SetOutliers attaches passive health to the pool's targets: os[i] to the
// i-th target of the Config (nil entries: none). Call it before the pool is
// started and shared; it is not safe concurrently with Pick.
func (p *Pool) SetOutliers(os []Outlier) error {
	if len(os) != len(p.backends) {
		return fmt.Errorf("upstream %s: %d outliers for %d targets", p.cfg.Site, len(os), len(p.backends))
	}
	for i, o := range os {
		p.backends[i].outlier = o
	}
	return nil
}

// Backends returns the pool's backends (read-only).
func (p *Pool) Backends() []*Backend { return p.backends }

// Site returns the site name the pool belongs to.
func (p *Pool) Site() string { return p.cfg.Site }

// ConnectTimeout is the pool's dial timeout (the site's connect_timeout),
// for connections opened outside the pool such as WebSocket tunnels.
func (p *Pool) ConnectTimeout() time.Duration { return p.cfg.ConnectTimeout }

// Pick is PickAt(time.Now(), skip).
func (p *Pool) Pick(skip *Backend) *Backend { return p.PickAt(time.Now(), skip) }

// PickAt selects a backend for a request at now, skipping unhealthy ones
// (active checks), ejected ones (passive health) and skip (a backend that
// just failed, or nil). When none is left it falls back to all backends
// (panic mode): a wrong health verdict must not take a site down on its
// own. A single-target pool always returns its target (nil if it is skip).
// PickAt does not allocate.
func (p *Pool) PickAt(now time.Time, skip *Backend) *Backend {
	n := len(p.backends)
	if n == 1 {
		if p.backends[0] == skip {
			return nil
		}
		return p.backends[0]
	}
	if p.cfg.LeastConn {
		return p.pickLeast(now, skip, true)
	}
	start := p.next.Add(1)
	for _, healthyOnly := range [2]bool{true, false} {
		for i := range p.schedule {
			b := p.backends[p.schedule[(start+uint64(i))%uint64(len(p.schedule))]]
			if b != skip && (!healthyOnly || b.usable(now)) {
				return b
			}
		}
	}
	return nil
}

func (p *Pool) pickLeast(now time.Time, skip *Backend, healthyOnly bool) *Backend {
	var best *Backend
	var bestLoad int64
	off := int(p.next.Add(1) % uint64(len(p.backends)))
	for i := range p.backends {
		b := p.backends[(off+i)%len(p.backends)]
		if b == skip || (healthyOnly && !b.usable(now)) {
			continue
		}
		// Compare inflight/weight without division.
		load := b.inflight.Load()
		if best == nil || load*int64(best.weight) < bestLoad*int64(b.weight) {
			best, bestLoad = b, load
		}
	}
	if best == nil && healthyOnly {
		return p.pickLeast(now, skip, false)
	}
	return best
}

// Do sends req to b and reads the response head into resp (the body is
// streamed). It counts the request as in flight on b while it runs.
func (b *Backend) Do(req *fasthttp.Request, resp *fasthttp.Response) error {
	b.inflight.Add(1)
	err := b.Client.Do(req, resp)
	b.inflight.Add(-1)
	return err
}

// Start launches the active health checks, if configured.
func (p *Pool) Start() {
	if p.cfg.Health.Path == "" {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	for _, b := range p.backends {
		p.done.Add(1)
		go p.healthLoop(ctx, b)
	}
}

// StopHealthChecks ends the pool's health checks without closing it: a
// pool replaced by a reload still serves its requests in flight for a
// while, but its checks (and their log lines) end with the reload. Close
// after it is fine.
func (p *Pool) StopHealthChecks() {
	if p.cancel != nil {
		p.cancel()
	}
}

// Close stops health checks and closes idle pooled connections. Requests in
// flight finish normally.
func (p *Pool) Close() {
	if p.cancel != nil {
		p.cancel()
	}
	p.done.Wait()
	for _, b := range p.backends {
		b.Client.CloseIdleConnections()
	}
}

func (p *Pool) healthLoop(ctx context.Context, b *Backend) {
	defer p.done.Done()
	h := p.cfg.Health
	hc := &fasthttp.HostClient{
		Addr:                     b.Addr,
		MaxConns:                 1,
		NoDefaultUserAgentHeader: true,
		ReadTimeout:              h.Timeout,
		WriteTimeout:             h.Timeout,
		Dial:                     func(a string) (net.Conn, error) { return net.DialTimeout("tcp", a, h.Timeout) },
	}
	defer hc.CloseIdleConnections()
	t := time.NewTicker(h.Interval)
	defer t.Stop()
	for {
		p.checkOnce(hc, b)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Pool) checkOnce(hc *fasthttp.HostClient, b *Backend) {
	h := p.cfg.Health
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + b.Addr + h.Path)
	req.Header.Set("User-Agent", "levee-health-check")
	err := hc.DoTimeout(req, resp, h.Timeout)
	ok := err == nil && resp.StatusCode() >= h.StatusLo && resp.StatusCode() <= h.StatusHi
	p.record(b, ok, err, resp.StatusCode())
}

// record applies one health check result with hysteresis.
func (p *Pool) record(b *Backend, ok bool, err error, status int) {
	h := p.cfg.Health
	if ok {
		b.okRun++
		b.failRun = 0
		if !b.healthy.Load() && b.okRun >= h.HealthyAfter {
			b.healthy.Store(true)
			p.log.Info("upstream healthy again", "site", p.cfg.Site, "upstream", b.Addr)
		}
		return
	}
	b.failRun++
	b.okRun = 0
	if b.healthy.Load() && b.failRun >= h.UnhealthyAfter {
		b.healthy.Store(false)
		reason := fmt.Sprintf("status %d", status)
		if err != nil {
			reason = err.Error()
		}
		p.log.Warn("upstream unhealthy", "site", p.cfg.Site, "upstream", b.Addr, "reason", reason)
	}
}
