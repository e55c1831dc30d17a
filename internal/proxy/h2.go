package proxy

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/levee-dev/levee/internal/admission"
	"github.com/levee-dev/levee/internal/cache"
	"github.com/levee-dev/levee/internal/challenge"
	"github.com/levee-dev/levee/internal/telemetry"
)

type peerKey struct{}

type connInfo struct {
	peer netip.Addr
	conn net.Conn
}

// WithPeer returns a context carrying the TCP peer address and the client
// connection of an HTTP/2 connection, for ServeHTTP.
func WithPeer(ctx context.Context, peer netip.Addr, conn net.Conn) context.Context {
	return context.WithValue(ctx, peerKey{}, connInfo{peer, conn})
}

func peerFrom(r *http.Request) netip.Addr {
	if ci, ok := r.Context().Value(peerKey{}).(connInfo); ok {
		return ci.peer
	}
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return ap.Addr().Unmap()
}

func connFrom(r *http.Request) net.Conn {
	if ci, ok := r.Context().Value(peerKey{}).(connInfo); ok {
		return ci.conn
	}
	return nil
}

// hopByHop lists headers never forwarded in either direction.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Proxy-Authorization": true,
	"Te": true, "Transfer-Encoding": true, "Upgrade": true, "Trailer": true,
}

// ServeHTTP proxies one HTTP/2 request through the same upstream pools as
// HTTP/1.1.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if p.alog.Load() != nil {
		lw := &h2Log{ResponseWriter: w}
		// Deferred: a dropped or tarpitted stream ends in a panic
		// (http.ErrAbortHandler) and is logged too. The log is loaded
		// again at the end: a reload meanwhile (log rotation) closed the
		// one in use at the start.
		defer func() {
			if l := p.alog.Load(); l != nil {
				p.logH2(l, lw, r, start)
			}
		}()
		w = lw
	}
	p.serveHTTP(w, r, start)
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, r *http.Request, start time.Time) {
	st := p.state.Load()
	site := st.Router.Match([]byte(r.Host))
	if site == nil {
		p.writePageHTTP(w, r, p.m.noSite, vNoSite, pageNoSite)
		return
	}
	cfg := &st.Config
	if len(r.RequestURI) > cfg.MaxURLLength {
		p.writePageHTTP(w, r, site.m, vInvalid, pageURITooLong)
		return
	}
	if cfg.MaxBodyBytes >= 0 && r.ContentLength > cfg.MaxBodyBytes {
		p.writePageHTTP(w, r, site.m, vInvalid, pageTooLarge)
		return
	}
	peer := peerFrom(r)
	trusted := cfg.ClientIP != nil && cfg.ClientIP.Trusted(peer)
	client := peer
	if trusted {
		client = cfg.ClientIP.Resolve(peer, []byte(r.Header.Get("X-Forwarded-For")), []byte(r.Header.Get("Forwarded")))
	}
	if lw, ok := w.(*h2Log); ok {
		lw.site, lw.client = site, client
	}
	if st.Challenge != nil && challenge.IsEndpoint([]byte(r.URL.Path)) {
		_, _, bind := connFingerprint(connFrom(r))
		st.Challenge.ServeEndpoint(w, r, start, client, bind)
		countH2(w, site.m, vChallenge, 200)
		return
	}
	pass, allowed := p.decideH2(w, r, st, site, client, start)
	if !pass {
		return
	}

	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(r.Method)
	req.SetRequestURI(r.RequestURI)
	req.Header.SetHost(r.Host)
	for k, vs := range r.Header {
		if hopByHop[k] {
			continue
		}
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	var body *bodyReader
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		rc := http.NewResponseController(w)
		body = &bodyReader{r: r.Body, conn: deadlineConn{rc}, max: cfg.MaxBodyBytes, timeout: cfg.BodyTimeout, minRate: cfg.MinBodyRate}
		req.SetBodyStream(body, int(r.ContentLength))
	}
	prepareRequest(&req.Header, peer, trusted, true, site.RewriteHost)

	// Micro-cache, admission gate and circuit breaker, as on HTTP/1.1.
	creq, hit, stale := site.cacheLookup(req, start)
	if hit != nil {
		writeEntryHTTP(w, r, hit, start)
		return
	}
	verified := false
	if site.Gate != nil {
		_, known := httpKnownCookie(site, r, start, client)
		verified = allowed || known || (site.History != nil && site.History.Known(start, client))
	}
	tk, sent, adm := admit(r.Context(), site, verified, start)
	if adm != admitted {
		if stale != nil {
			p.serveStaleHTTP(w, r, site, stale, start)
			return
		}
		if adm == admitShed {
			ct, body := admission.ShedResponse([]byte(r.Header.Get("Accept")))
			h := w.Header()
			h.Set("Retry-After", site.Gate.RetryAfter())
			h.Set("Cache-Control", "no-store")
			h.Set("Content-Type", ct)
			w.WriteHeader(503)
			_, _ = w.Write(body)
			countH2(w, site.m, vShed, 503)
			return
		}
		w.Header().Set("Retry-After", retryAfter(site.Breaker.RetryAfter(time.Now())))
		p.writePageHTTP(w, r, site.m, vShed, pageOriginDown)
		return
	}
	err := p.forward(site, req, resp, body, sent, tk)
	if stale != nil && (err != nil || resp.StatusCode() >= 500) {
		_ = resp.CloseBodyStream()
		p.serveStaleHTTP(w, r, site, stale, start)
		return
	}
	if err != nil {
		pg := pageBadGateway
		switch {
		case body != nil && body.err != nil:
			pg = pageReqTimeout
			if body.err == errBodyTooLarge {
				pg = pageTooLarge
			}
			p.writePageHTTP(w, r, site.m, vInvalid, pg)
			return
		case isTimeout(err):
			site.m.timeout.Inc()
			pg = pageGatewayTimeout
		case isDialError(err):
			site.m.dialErr.Inc()
		default:
			site.m.otherErr.Inc()
		}
		p.writePageHTTP(w, r, site.m, vError, pg)
		return
	}
	if site.Cache != nil {
		p.maybeStore(site, &creq, resp, start)
	}
	conn := resp.Header.Peek(fasthttp.HeaderConnection)
	hdr := w.Header()
	for k, v := range resp.Header.All() {
		ks := string(k)
		if hopByHop[ks] || (len(conn) > 0 && hasToken(conn, ks)) {
			continue
		}
		hdr.Add(ks, string(v))
	}
	hdr.Add("Via", "2 levee")
	status := resp.StatusCode()
	normal := st.NormalMode == nil || st.NormalMode(start)
	if site.History != nil && status < 400 && normal {
		site.History.Good(start, client)
	}
	if site.Cookies != nil && issuesKnownCookie(status, resp.Header.ContentType(), normal) {
		if valid, _ := httpKnownCookie(site, r, start, client); !valid {
			var buf [192]byte
			hdr.Add("Set-Cookie", string(appendKnownSetCookie(buf[:0], site.Cookies, start, client, r.TLS != nil)))
		}
	}
	w.WriteHeader(status)
	site.m.count(vPass, status)
	lat := time.Since(start)
	site.m.latency.Observe(lat.Seconds())
	if site.Rec != nil {
		ev := telemetry.Event{Client: client, Path: []byte(r.URL.Path), UserAgent: []byte(r.UserAgent()),
			Status: uint16(status), Latency: lat}
		if r.URL.RawQuery != "" {
			ev.QueryShape = telemetry.QueryShape([]byte(r.URL.RawQuery))
		}
		site.Rec.Record(&ev)
	}
	if r.Method != http.MethodHead {
		_ = resp.BodyWriteTo(flushWriter{w})
	} else {
		_ = resp.CloseBodyStream()
	}
}

// writeEntryHTTP answers with a cached entry, with its Age.
func writeEntryHTTP(w http.ResponseWriter, r *http.Request, e *cache.Entry, now time.Time) {
	h := w.Header()
	for _, f := range e.Header {
		h.Add(string(f.Name), string(f.Value))
	}
	h.Set("Age", strconv.FormatInt(e.Age(now), 10))
	h.Add("Via", "2 levee")
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.Body)
	}
}

// serveStaleHTTP answers with an expired cache entry (origin failing or
// overloaded), as serveStale does on HTTP/1.1.
func (p *Proxy) serveStaleHTTP(w http.ResponseWriter, r *http.Request, site *Site, e *cache.Entry, now time.Time) {
	writeEntryHTTP(w, r, e, now)
	site.Cache.NoteStaleServed()
	site.m.cacheStale.Inc()
	site.m.count(vPass, e.Status)
}

// flushWriter flushes after each write so streamed responses (server-sent
// events, long downloads) reach the client as they arrive.
type flushWriter struct{ w http.ResponseWriter }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// deadlineConn adapts an http.ResponseController to the SetReadDeadline the
// body reader needs.
type deadlineConn struct{ rc *http.ResponseController }

func (d deadlineConn) SetReadDeadline(t time.Time) error { return d.rc.SetReadDeadline(t) }

func (p *Proxy) writePageHTTP(w http.ResponseWriter, r *http.Request, sm *siteMetrics, v verdictIdx, pg page) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	body := pg.html
	if wantsJSON([]byte(r.Header.Get("Accept"))) {
		h.Set("Content-Type", "application/json")
		body = pg.json
	} else {
		h.Set("Content-Type", "text/html; charset=utf-8")
	}
	w.WriteHeader(pg.status)
	_, _ = w.Write(body)
	countH2(w, sm, v, pg.status)
}
