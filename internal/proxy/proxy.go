// Package proxy is the shield's request path: it routes each request to its
// site by Host, enforces request-level limits (URL length, body size, body
// receive rate), rewrites headers (hop-by-hop removal, X-Forwarded-For,
// X-Forwarded-Proto, Via) and streams the exchange with an origin chosen by
// the site's upstream pool. Per site it applies origin protection: the
// micro-cache, the admission gate, passive health (every answer recorded
// for outlier ejection; an open circuit breaker answers instead of the
// origin) and the known-client cookie (known.go).
//
// HTTP/1.1 is served by fasthttp (ServeFastHTTP); HTTP/2 by x/net/http2
// through ServeHTTP, which converts to the same upstream path. Both read the
// current configuration from one immutable State published atomically, so a
// reload never locks or half-applies on the request path.
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/levee-dev/levee/internal/accesslog"
	"github.com/levee-dev/levee/internal/admission"
	"github.com/levee-dev/levee/internal/cache"
	"github.com/levee-dev/levee/internal/challenge"
	"github.com/levee-dev/levee/internal/clientip"
	"github.com/levee-dev/levee/internal/coarsetime"
	"github.com/levee-dev/levee/internal/guard"
	"github.com/levee-dev/levee/internal/upstream"
)

// Config holds request-level limits and client address resolution.
type Config struct {
	// MaxURLLength bounds the request target (414 beyond).
	MaxURLLength int
	// MaxBodyBytes bounds request bodies (413 beyond); negative: no bound.
	MaxBodyBytes int64
	// BodyTimeout is the longest pause while receiving a request body, and
	// the grace period before MinBodyRate is enforced.
	BodyTimeout time.Duration
	// MinBodyRate is the minimum average body receive rate, bytes/s.
	MinBodyRate int64
	// TunnelIdleTimeout closes Upgrade/WebSocket tunnels idle this long.
	TunnelIdleTimeout time.Duration
	// ConnectTimeout bounds dialing an origin for a tunnel when the site's
	// pool has none (the pool's is the site's connect_timeout).
	ConnectTimeout time.Duration
	// ClientIP resolves the client address behind trusted proxies; nil
	// means the TCP peer is the client.
	ClientIP *clientip.Resolver
	// TarpitDelay and MaxTarpits configure the tarpit verdict.
	TarpitDelay time.Duration
	MaxTarpits  int
}

// State is everything the request path reads, published as one immutable
// snapshot.
type State struct {
	Router *Router
	Config Config
	// Decider is the decision engine; nil passes every request.
	Decider Decider
	// NormalMode reports whether the shield is in normal mode (no attack);
	// clients are learned as known only then. Nil: always.
	NormalMode func(now time.Time) bool
	// Challenge serves and verifies browser challenges; nil: the engine
	// falls back to limit/block for the challenge verdict.
	Challenge *challenge.Service
	// ModeName names the current mode for the challenge difficulty table.
	ModeName func(now time.Time) string
}

// Proxy serves requests. It is safe for concurrent use; create it with New
// and publish a State before serving.
type Proxy struct {
	state    atomic.Pointer[State]
	m        *Metrics
	log      *slog.Logger
	draining atomic.Bool
	tarpit   tarpit
	alog     atomic.Pointer[AccessLog]
}

// SetAccessLog installs (or with nil removes) the JSON access log.
func (p *Proxy) SetAccessLog(l *AccessLog) { p.alog.Store(l) }

type netipAddr = netip.Addr

// New returns a Proxy that records into m (required) and logs to log
// (nil: discard).
func New(m *Metrics, log *slog.Logger) *Proxy {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proxy{m: m, log: log}
}

// NewSite returns a Site bound to this proxy's metrics.
func (p *Proxy) NewSite(name string, pool *upstream.Pool, rewriteHost string) *Site {
	return &Site{Name: name, name: []byte(name), Pool: pool, RewriteHost: rewriteHost, m: p.m.site(name)}
}

// Publish makes st the state seen by new requests.
func (p *Proxy) Publish(st *State) { p.state.Store(st) }

// State returns the current state.
func (p *Proxy) State() *State { return p.state.Load() }

// SetDraining makes every response close its connection (graceful shutdown).
func (p *Proxy) SetDraining(v bool) { p.draining.Store(v) }

// addrConn is implemented by guard.Conn.
type addrConn interface{ Addr() netip.Addr }

// PeerAddr returns the TCP peer of a client connection (after PROXY
// protocol), without allocating for guard connections.
func PeerAddr(c net.Conn) netip.Addr {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if ac, ok := c.(addrConn); ok {
		return ac.Addr()
	}
	if c == nil {
		return netip.Addr{}
	}
	return guard.AddrOf(c.RemoteAddr())
}

// ServeFastHTTP proxies one HTTP/1.1 request.
func (p *Proxy) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	rs := reqPool.Get().(*reqState)
	rs.allowed, rs.verified = false, false
	rs.cookieChecked, rs.cookieValid, rs.cookieKnown = false, false, false
	site, client, v := p.serveH1(ctx, start, rs)
	if site != nil && site.Rec != nil {
		if !rs.filled {
			fillEvent(&rs.ev, ctx, client, ctx.URI().Path(), ctx.URI().QueryString())
			site.Geo.Fill(&rs.ev)
		}
		rs.ev.Verdict = telemetryVerdict[v]
		rs.ev.Status = uint16(ctx.Response.StatusCode())
		if v == vDrop || v == vTarpit {
			rs.ev.Status = 0
		}
		if v == vPass {
			rs.ev.Latency = time.Since(start)
		}
		site.Rec.Record(&rs.ev)
	}
	if l := p.alog.Load(); l != nil {
		p.logH1(l, ctx, start, site, client, v, rs)
	}
	rs.filled = false
	rs.by, rs.logged = "", ""
	reqPool.Put(rs)
}

func (p *Proxy) logH1(l *AccessLog, ctx *fasthttp.RequestCtx, start time.Time, site *Site, client netip.Addr, v verdictIdx, rs *reqState) {
	e := accesslog.Entry{
		Format: accesslog.FormatJSON, Time: start, Client: client, Method: ctx.Method(), Host: ctx.Host(),
		Path: ctx.Path(), Query: ctx.URI().QueryString(), Status: uint16(ctx.Response.StatusCode()),
		Bytes: int64(max(ctx.Response.Header.ContentLength(), 0)), Duration: time.Since(start),
		UserAgent: ctx.UserAgent(), Verdict: telemetryVerdict[v], HasVerdict: true,
	}
	if site != nil {
		e.Site = site.name
	}
	if v == vDrop || v == vTarpit {
		e.Status = 0
	}
	e.By, e.LogRule = readOnlyBytes(rs.by), readOnlyBytes(rs.logged)
	l.Write(&e, refusedVerdict(v))
}

func (p *Proxy) serveH1(ctx *fasthttp.RequestCtx, start time.Time, rs *reqState) (*Site, netip.Addr, verdictIdx) {
	st := p.state.Load()
	req := &ctx.Request
	site := st.Router.Match(req.Header.Host())
	peer := PeerAddr(ctx.Conn())
	if site == nil {
		p.reject(ctx, p.m.noSite, vNoSite, pageNoSite)
		return nil, peer, vNoSite
	}
	cfg := &st.Config
	if len(req.Header.RequestURI()) > cfg.MaxURLLength {
		p.reject(ctx, site.m, vInvalid, pageURITooLong)
		ctx.SetConnectionClose()
		return site, peer, vInvalid
	}
	client, trusted := peer, false
	if cfg.ClientIP != nil && cfg.ClientIP.Trusted(peer) {
		trusted = true
		client = cfg.ClientIP.Resolve(peer, req.Header.Peek("X-Forwarded-For"), req.Header.Peek("Forwarded"))
	}
	if st.Challenge != nil && challenge.IsEndpoint(req.URI().Path()) {
		// /.levee/... : challenge answers, answered by the shield itself.
		_, _, bind := connFingerprint(ctx.Conn())
		st.Challenge.FastEndpoint(ctx, start, client, bind)
		site.m.count(vChallenge, ctx.Response.StatusCode())
		return site, client, vChallenge
	}
	if v := p.decideH1(ctx, st, site, client, rs); v != vPass {
		return site, client, v
	}
	if isUpgrade(&req.Header) {
		p.tunnel(ctx, st, site, peer, trusted)
		return site, client, vPass
	}
	if cl := req.Header.ContentLength(); cfg.MaxBodyBytes >= 0 && int64(cl) > cfg.MaxBodyBytes {
		p.reject(ctx, site.m, vInvalid, pageTooLarge)
		ctx.SetConnectionClose()
		return site, client, vInvalid
	}
	var body *bodyReader
	if req.IsBodyStream() {
		body = newBodyReader(ctx.RequestBodyStream(), ctx.Conn(), cfg)
		req.SetBodyStream(body, req.Header.ContentLength())
	}
	clientClose := req.Header.ConnectionClose()
	isTLS := ctx.IsTLS()
	prepareRequest(&req.Header, peer, trusted, isTLS, site.RewriteHost)
	if isTLS {
		req.URI().SetScheme("http") // the origin speaks plain HTTP
	}

	resp := &ctx.Response
	// Micro-cache: a fresh entry is served without touching the origin; a
	// stale one is kept to answer if the origin fails or is overloaded.
	creq, hit, stale := site.cacheLookup(req, start)
	if hit != nil {
		hit.WriteFastHTTP(start, resp)
		return site, client, vPass
	}
	verified := false
	if site.Gate != nil {
		_, known := rs.knownCookie(site, &req.Header, start, client)
		verified = rs.allowed || known || (site.History != nil && site.History.Known(start, client))
	}
	tk, sent, adm := admit(ctx, site, verified, start)
	if adm != admitted {
		if stale != nil {
			p.serveStale(ctx, site, stale, start)
			return site, client, vPass
		}
		if adm == admitShed {
			p.shed(ctx, site)
		} else {
			p.breakerOpen(ctx, site)
		}
		return site, client, vShed
	}
	err := p.forward(site, req, resp, body, sent, tk)
	if stale != nil && (err != nil || resp.StatusCode() >= 500) {
		_ = resp.CloseBodyStream()
		p.serveStale(ctx, site, stale, start)
		return site, client, vPass
	}
	if err != nil {
		return site, client, p.upstreamError(ctx, site, err, body)
	}
	if site.Cache != nil {
		p.maybeStore(site, &creq, resp, start)
	}
	normal := st.NormalMode == nil || st.NormalMode(start)
	if site.History != nil && resp.StatusCode() < 400 && normal {
		site.History.Good(start, client)
	}
	// After maybeStore: the cookie never enters a cache entry.
	if site.Cookies != nil && issuesKnownCookie(resp.StatusCode(), resp.Header.ContentType(), normal) {
		if valid, _ := rs.knownCookie(site, &req.Header, start, client); !valid {
			issueKnownCookie(resp, site.Cookies, start, client, isTLS)
		}
	}
	prepareResponse(&resp.Header)
	if clientClose || p.draining.Load() {
		ctx.SetConnectionClose()
	}
	site.m.count(vPass, resp.StatusCode())
	site.m.latency.Observe(time.Since(start).Seconds())
	return site, client, vPass
}

// cacheRequest is the micro-cache's view of req (it points into req).
func cacheRequest(req *fasthttp.Request) cache.Request {
	return cache.Request{Method: req.Header.Method(), Host: req.Header.Host(), Path: req.URI().PathOriginal(),
		Query: req.URI().QueryString(), Header: &req.Header}
}

// serveStale answers with an expired cache entry (origin failing or
// overloaded), as nginx's proxy_cache_use_stale does.
func (p *Proxy) serveStale(ctx *fasthttp.RequestCtx, site *Site, e *cache.Entry, now time.Time) {
	ctx.Response.Reset()
	e.WriteFastHTTP(now, &ctx.Response)
	site.Cache.NoteStaleServed()
	site.m.cacheStale.Inc()
	site.m.count(vPass, e.Status)
}

// admitOutcome is what admit decided.
type admitOutcome uint8

const (
	admitted admitOutcome = iota
	admitShed
	admitBreakerOpen
)

// admit passes a request through the site's admission gate (class Verified
// when verified) and circuit breaker. On admitted it returns the gate's
// ticket (zero without a gate) and when the request may leave for the
// origin (after any queue wait); otherwise the caller answers from the
// cache's stale entry or with shed/breakerOpen.
func admit(ctx context.Context, site *Site, verified bool, start time.Time) (admission.Ticket, time.Time, admitOutcome) {
	var tk admission.Ticket
	sent := start
	if site.Gate != nil {
		class := admission.Normal
		if verified {
			class = admission.Verified
		}
		var err error
		if tk, err = site.Gate.Acquire(ctx, time.Now(), class); err != nil {
			return tk, sent, admitShed
		}
		sent = time.Now() // after the queue wait
	}
	if site.Breaker != nil && !site.Breaker.Allow(sent) {
		// The origin is failing: leave it alone until the breaker's trial.
		if site.Gate != nil {
			tk.Cancel(sent)
		}
		return admission.Ticket{}, sent, admitBreakerOpen
	}
	return tk, sent, admitted
}

// forward sends req to one of the site's origins and reads the response
// head into resp (the body is streamed), retrying once on another origin
// when the connection could not be made and no request body was sent. It
// feeds passive health, the admission ticket tk (overload signals only) and
// the circuit breaker.
func (p *Proxy) forward(site *Site, req *fasthttp.Request, resp *fasthttp.Response, body *bodyReader, sent time.Time, tk admission.Ticket) error {
	b := site.Pool.PickAt(sent, nil)
	err := b.Do(req, resp)
	end := time.Now()
	// A request body that was too slow, too large or cut off is the
	// client's fault, not the origin's: it does not count for passive
	// health. With a body, latency counts from the end of the upload (the
	// client's time before it); a body not read to its end (the origin
	// answered first) gives no latency sample.
	judged := body == nil || body.err == nil
	rtt := func(from time.Time) time.Duration {
		if from, timed := body.originStart(from); timed {
			return end.Sub(from)
		}
		return -1 // no latency sample
	}
	if judged {
		b.Observe(end, rtt(sent), upstream.Failed(err, resp.StatusCode()))
	}
	if err != nil && isDialError(err) && (body == nil || body.n == 0) {
		if b2 := site.Pool.PickAt(end, b); b2 != nil {
			site.m.dialErr.Inc()
			retry := end
			err = b2.Do(req, resp)
			end = time.Now()
			judged = body == nil || body.err == nil
			if judged {
				b2.Observe(end, rtt(retry), upstream.Failed(err, resp.StatusCode()))
			}
		}
	}
	if site.Gate != nil {
		if judged {
			// Overload signals feed the limiter; application errors do not.
			// Latency as for passive health above.
			sc := resp.StatusCode()
			ok := !(err != nil && (isTimeout(err) || isDialError(err))) && sc != 503 && sc != 429
			if from, timed := body.originStart(tk.Start()); timed {
				tk.DoneFrom(from, end, ok)
			} else {
				tk.DoneWithoutLatency(end, ok)
			}
		} else {
			// The client failed first (body cut off, too slow or too
			// large): the time says nothing about the origin.
			tk.Cancel(end)
		}
	}
	if site.Breaker != nil {
		if judged {
			site.Breaker.Record(sent, end, !upstream.Failed(err, resp.StatusCode()))
		} else {
			site.Breaker.Release(sent, end)
		}
	}
	return err
}

// cacheLookup looks req up in the site's micro-cache (nothing without one):
// a fresh entry to answer with (counted here as a pass served from the
// cache), or a stale one to keep for when the origin fails or is
// overloaded. creq is the request's cache view, for storing the answer.
func (site *Site) cacheLookup(req *fasthttp.Request, now time.Time) (creq cache.Request, hit, stale *cache.Entry) {
	if site.Cache == nil {
		return creq, nil, nil
	}
	creq = cacheRequest(req)
	e, state := site.Cache.Get(now, &creq)
	switch state {
	case cache.Hit:
		site.m.cacheHit.Inc()
		site.m.count(vPass, e.Status)
		return creq, e, nil
	case cache.Stale:
		return creq, nil, e
	}
	return creq, nil, nil
}

// maybeStore offers a small, complete origin response to the cache. Only
// responses with a known length up to the cache's entry limit are read into
// memory; larger or streamed ones pass through untouched.
func (p *Proxy) maybeStore(site *Site, creq *cache.Request, resp *fasthttp.Response, now time.Time) {
	cl := resp.Header.ContentLength()
	if cl < 0 || int64(cl) > site.CacheMaxEntry {
		return
	}
	var cr cache.Response
	cache.FromFastHTTP(&cr, resp) // reads the (small) streamed body
	if site.Cache.Store(now, creq, &cr) != nil {
		site.m.cacheStore.Inc()
	}
}

// shed answers 503 with Retry-After when the admission gate refuses a
// request (the origin is at capacity).
func (p *Proxy) shed(ctx *fasthttp.RequestCtx, site *Site) {
	ct, body := admission.ShedResponse(ctx.Request.Header.Peek("Accept"))
	ctx.Response.Reset()
	ctx.SetStatusCode(503)
	ctx.Response.Header.Set("Retry-After", site.Gate.RetryAfter())
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.SetContentType(ct)
	ctx.Response.SetBodyRaw(body)
	site.m.count(vShed, 503)
}

// breakerOpen answers 503 with Retry-After while the site's circuit
// breaker keeps requests away from a failing origin.
func (p *Proxy) breakerOpen(ctx *fasthttp.RequestCtx, site *Site) {
	writePage(ctx, pageOriginDown)
	ctx.Response.Header.Set("Retry-After", retryAfter(site.Breaker.RetryAfter(time.Now())))
	site.m.count(vShed, pageOriginDown.status)
}

func (p *Proxy) reject(ctx *fasthttp.RequestCtx, sm *siteMetrics, v verdictIdx, pg page) {
	writePage(ctx, pg)
	sm.count(v, pg.status)
}

func (p *Proxy) upstreamError(ctx *fasthttp.RequestCtx, site *Site, err error, body *bodyReader) verdictIdx {
	if body != nil && body.err != nil {
		// The client, not the origin, failed: too large or too slow.
		pg := pageReqTimeout
		if errors.Is(body.err, errBodyTooLarge) {
			pg = pageTooLarge
		}
		p.reject(ctx, site.m, vInvalid, pg)
		ctx.SetConnectionClose()
		return vInvalid
	}
	pg := pageBadGateway
	switch {
	case isTimeout(err):
		site.m.timeout.Inc()
		pg = pageGatewayTimeout
	case isDialError(err):
		site.m.dialErr.Inc()
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		site.m.otherErr.Inc()
		pg = pageUnavailable
	default:
		site.m.otherErr.Inc()
	}
	if p.log.Enabled(ctx, slog.LevelDebug) {
		// Checked first: a failing origin makes this the path of every
		// request, and building the arguments allocates.
		p.log.Debug("upstream error", "site", site.Name, "err", err)
	}
	writePage(ctx, pg)
	if pg.status == 503 {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	site.m.count(vError, pg.status)
	if body != nil {
		// The request body may be partly unread; the connection cannot be reused.
		ctx.SetConnectionClose()
	}
	return vError
}

func isDialError(err error) bool {
	var de *upstream.DialError
	return errors.As(err, &de)
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var (
	errBodyTooLarge = errors.New("request body too large")
	errBodySlow     = errors.New("request body too slow")
	errBodyAborted  = errors.New("request body aborted by the client")
)

type readDeadliner interface{ SetReadDeadline(time.Time) error }

// bodyReader enforces the body size cap and the minimum receive rate while
// the request body streams to the origin.
type bodyReader struct {
	r       io.Reader
	conn    readDeadliner
	max     int64
	n       int64
	start   int64
	lastDL  int64
	timeout time.Duration
	minRate int64
	err     error
	// eof is when the body was read to its end (with the monotonic
	// clock reading, for latencies), zero before.
	eof time.Time
}

// originStart returns when the origin could start on a request sent at
// start: start itself without a body, else the end of the upload (the
// time before it is the client's). timed is false when the body was not
// read to its end (the origin answered or failed first): the time then
// says nothing about the origin.
func (b *bodyReader) originStart(start time.Time) (from time.Time, timed bool) {
	switch {
	case b == nil:
		return start, true
	case b.eof.IsZero():
		return time.Time{}, false
	}
	return later(start, b.eof), true
}

func newBodyReader(r io.Reader, c net.Conn, cfg *Config) *bodyReader {
	return &bodyReader{r: r, conn: c, max: cfg.MaxBodyBytes, timeout: cfg.BodyTimeout, minRate: cfg.MinBodyRate}
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	now := coarsetime.UnixNano()
	if b.start == 0 {
		b.start = now
	}
	if b.timeout > 0 && now-b.lastDL > int64(b.timeout/4) {
		b.lastDL = now
		_ = b.conn.SetReadDeadline(time.Unix(0, now).Add(b.timeout))
	}
	if el := now - b.start; b.minRate > 0 && el > int64(b.timeout) && b.n*int64(time.Second)/el < b.minRate {
		b.err = errBodySlow
		return 0, b.err
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	if b.max >= 0 && b.n > b.max {
		b.err = errBodyTooLarge
		return n, b.err
	}
	if err != nil && err != io.EOF {
		// The client, not the origin, failed: the request must not count
		// against the origin's health.
		b.err = errBodyAborted
		if isTimeout(err) {
			b.err = errBodySlow
		}
		return n, b.err
	}
	if err == io.EOF && b.eof.IsZero() {
		b.eof = time.Now()
	}
	return n, err
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
