package proxy

import (
	"crypto/tls"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/levee-dev/levee/internal/challenge"
	"github.com/levee-dev/levee/internal/coarsetime"
	"github.com/levee-dev/levee/internal/decide"
	"github.com/levee-dev/levee/internal/fingerprint"
	"github.com/levee-dev/levee/internal/telemetry"
)

// Decider is the decision engine as the proxy sees it.
type Decider interface {
	Decide(now int64, r *decide.Request) decide.Decision
}

// reqState is the per-request scratch space: the decision engine's view of
// the request and its telemetry event, pooled.
type reqState struct {
	dr       decide.Request
	ev       telemetry.Event
	filled   bool // ev holds this request's attributes
	allowed  bool // the client is on the allow list (admission class Verified)
	verified bool // the client holds a valid clearance (passed a challenge)
	// the known-client cookie, once checked (see knownCookie)
	cookieChecked, cookieValid, cookieKnown bool
	// for the access log: what decided, and the log-only rule that matched
	by, logged string
}

var reqPool = sync.Pool{New: func() any { return new(reqState) }}

// telemetryVerdict maps the proxy's verdicts to telemetry's.
var telemetryVerdict = [numVerdicts]telemetry.Verdict{
	vPass: telemetry.VerdictPass, vInvalid: telemetry.VerdictInvalid, vError: telemetry.VerdictError,
	vNoSite: telemetry.VerdictInvalid, vBlock: telemetry.VerdictBlocked, vLimit: telemetry.VerdictLimited,
	vDrop: telemetry.VerdictBlocked, vTarpit: telemetry.VerdictBlocked, vChallenge: telemetry.VerdictChallenged,
	vShed: telemetry.VerdictError,
}

// httpFingerprintNeeder is implemented by the decision engine: JA4H is
// computed per request only when a rule matches on it.
type httpFingerprintNeeder interface{ NeedsHTTPFingerprint() bool }

// fingerprinted is implemented by guard.Conn.
type fingerprinted interface {
	Fingerprint() (ja4 string, hash uint64, bind [16]byte)
}

// connFingerprint returns the TLS fingerprint of a client connection.
func connFingerprint(c net.Conn) (string, uint64, challenge.Binding) {
	if tc, ok := c.(*tls.Conn); ok {
		if f, ok := tc.NetConn().(fingerprinted); ok {
			ja4, h, b := f.Fingerprint()
			return ja4, h, challenge.Binding(b)
		}
	}
	return "", 0, challenge.Binding{}
}

// fillEvent fills the request attributes of a telemetry event.
func fillEvent(ev *telemetry.Event, ctx *fasthttp.RequestCtx, client netipAddr, path, query []byte) {
	req := &ctx.Request
	*ev = telemetry.Event{
		Client:    client,
		Path:      path,
		UserAgent: req.Header.UserAgent(),
		NewConn:   ctx.ConnRequestNum() == 1,
	}
	if len(query) > 0 {
		ev.QueryShape = telemetry.QueryShape(query)
	}
	// Header order: the names in wire order, hashed (fasthttp keeps the
	// order of the non-special headers it stores).
	var buf [512]byte
	b := buf[:0]
	for k := range req.Header.All() {
		if len(b)+len(k)+1 > len(buf) {
			break
		}
		b = append(b, k...)
		b = append(b, ',')
	}
	if len(b) > 0 {
		ev.HeaderOrder = telemetry.Hash(b)
	}
}

// tarpit bounds the connections held in the tarpit.
type tarpit struct {
	held atomic.Int64
}

// decideH1 asks the engine about an HTTP/1.1 request and, unless it passes,
// answers it. It reports whether the request may proceed.
func (p *Proxy) decideH1(ctx *fasthttp.RequestCtx, st *State, site *Site, client netipAddr, rs *reqState) verdictIdx {
	if st.Decider == nil {
		return vPass
	}
	req := &ctx.Request
	path, query := req.URI().Path(), req.URI().QueryString()
	ja4, fpHash, bind := connFingerprint(ctx.Conn())
	var httpFP string
	if nf, ok := st.Decider.(httpFingerprintNeeder); ok && nf.NeedsHTTPFingerprint() {
		httpFP = fingerprint.JA4H(req.Header.Method(), req.Header.Protocol(), fingerprint.RawHeaders(req.Header.RawHeaders()))
	}
	rs.dr = decide.Request{
		TLSFingerprint:  ja4,
		HTTPFingerprint: httpFP,
		Client:          client,
		Site:            site.Name,
		Host:            req.Header.Host(),
		Method:          req.Header.Method(),
		Path:            path,
		Query:           query,
		UserAgent:       req.Header.UserAgent(),
		Headers:         &req.Header,
	}
	if site.Rec != nil {
		fillEvent(&rs.ev, ctx, client, path, query)
		rs.ev.Fingerprint = fpHash
		site.Geo.Fill(&rs.ev)
		rs.filled = true
		rs.dr.Event = &rs.ev
	}
	now := time.Unix(0, coarsetime.UnixNano())
	known := false
	if st.NormalMode != nil && !st.NormalMode(now) {
		// Only under escalation does being known change a decision; the
		// history lookup takes a lock and the cookie costs an HMAC, so
		// normal traffic skips them.
		_, known = rs.knownCookie(site, &req.Header, now, client)
		known = known || (site.History != nil && site.History.Known(now, client))
		rs.dr.Known = known
	}
	if st.Challenge != nil {
		_, rs.dr.Verified = st.Challenge.FastClearance(ctx, now, client, bind)
		rs.verified = rs.dr.Verified
	}
	d := st.Decider.Decide(coarsetime.UnixNano(), &rs.dr)
	rs.dr = decide.Request{}
	rs.allowed = d.By == "allow" || rs.verified
	rs.by, rs.logged = d.By, d.Logged
	switch d.Verdict {
	case decide.Pass:
		return vPass
	case decide.Block:
		p.reject(ctx, site.m, vBlock, pageForbidden)
		return vBlock
	case decide.Challenge:
		if st.Challenge != nil && !st.Challenge.FastExempt(ctx, client) {
			mode := "normal"
			if st.ModeName != nil {
				mode = st.ModeName(now)
			}
			st.Challenge.FastChallenge(ctx, now, client, bind, st.Challenge.Difficulty(mode, risk(site, client, now, d, known)))
			site.m.count(vChallenge, ctx.Response.StatusCode())
			return vChallenge
		}
		if st.Challenge != nil {
			return vPass // exempt (health checks, allowlisted integrations)
		}
		writePage(ctx, pageTooMany)
		ctx.Response.Header.Set("Retry-After", retryAfter(d.RetryAfter))
		site.m.count(vLimit, 429)
		return vLimit
	case decide.Limit:
		writePage(ctx, pageTooMany)
		ctx.Response.Header.Set("Retry-After", retryAfter(d.RetryAfter))
		site.m.count(vLimit, 429)
		return vLimit
	case decide.Drop:
		p.drop(ctx)
		site.m.count(vDrop, 0)
		return vDrop
	case decide.Tarpit:
		if p.tarpit.held.Load() >= int64(st.Config.MaxTarpits) {
			p.drop(ctx)
			site.m.count(vDrop, 0)
			return vDrop
		}
		p.tarpit.held.Add(1)
		delay := st.Config.TarpitDelay
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			defer p.tarpit.held.Add(-1)
			time.Sleep(delay)
			resetConn(c)
		})
		site.m.count(vTarpit, 0)
		return vTarpit
	}
	return vBlock
}

// risk grades a challenged client for the challenge difficulty: 0 for a
// client known from normal times (known-client cookie, passed as known, or
// address history), 1 for an unknown one, one more when a rule (rather
// than the mode alone) asked for the challenge: its request matched an
// attack signature or an operator rule.
func risk(site *Site, client netipAddr, now time.Time, d decide.Decision, known bool) int {
	r := 0
	if !known && (site.History == nil || !site.History.Known(now, client)) {
		r++
	}
	if d.By != "mode" {
		r++
	}
	return r
}

// drop closes the connection without an answer (RST).
func (p *Proxy) drop(ctx *fasthttp.RequestCtx) {
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(resetConn)
}

// resetConn makes closing c send a reset (SO_LINGER 0) rather than a FIN.
// It unwraps the connection down to the TCP socket: fasthttp's hijacked
// connection (UnsafeConn), guard.Conn (Unwrap), fastconn.Conn (NetConn).
func resetConn(c net.Conn) {
	for c != nil {
		switch u := c.(type) {
		case interface{ SetLinger(int) error }:
			_ = u.SetLinger(0)
			return
		case interface{ UnsafeConn() net.Conn }:
			c = u.UnsafeConn()
		case interface{ Unwrap() net.Conn }:
			c = u.Unwrap()
		case interface{ NetConn() net.Conn }:
			c = u.NetConn()
		default:
			return
		}
	}
}

// retryAfter formats a Retry-After value in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// httpHeaders adapts net/http headers to decide.Headers (HTTP/2 path).
type httpHeaders struct{ r *http.Request }

func (h httpHeaders) Peek(name string) []byte { return []byte(h.r.Header.Get(name)) }
func (h httpHeaders) Cookie(name string) []byte {
	c, err := h.r.Cookie(name)
	if err != nil {
		return nil
	}
	return []byte(c.Value)
}

// decideH2 is decideH1 for HTTP/2 requests. It reports whether the request
// goes on to the origin, and whether the client is allowlisted or holds a
// challenge clearance (admission class Verified).
func (p *Proxy) decideH2(w http.ResponseWriter, r *http.Request, st *State, site *Site, client netipAddr, now time.Time) (pass, allowed bool) {
	if st.Decider == nil {
		return true, false
	}
	path := r.URL.Path
	rs := reqPool.Get().(*reqState)
	dr := &rs.dr
	ja4, fpHash, bind := connFingerprint(connFrom(r))
	var httpFP string
	if h2, ok := fingerprint.H2FromContext(r.Context()); ok {
		httpFP = h2.Akamai // computed once per connection
	}
	*dr = decide.Request{
		TLSFingerprint:  ja4,
		HTTPFingerprint: httpFP,
		Client:          client,
		Site:            site.Name,
		Host:            []byte(r.Host),
		Method:          []byte(r.Method),
		Path:            []byte(path),
		Query:           []byte(r.URL.RawQuery),
		UserAgent:       []byte(r.UserAgent()),
		Headers:         httpHeaders{r},
	}
	known := false
	if st.NormalMode != nil && !st.NormalMode(now) {
		_, known = httpKnownCookie(site, r, now, client)
		known = known || (site.History != nil && site.History.Known(now, client))
		dr.Known = known
	}
	if st.Challenge != nil {
		_, dr.Verified = st.Challenge.HTTPClearance(r, now, client, bind)
	}
	if site.Rec != nil {
		rs.ev = telemetry.Event{Client: client, Path: dr.Path, UserAgent: dr.UserAgent, Fingerprint: fpHash}
		if dr.Query != nil {
			rs.ev.QueryShape = telemetry.QueryShape(dr.Query)
		}
		dr.Event = &rs.ev
	}
	d := st.Decider.Decide(now.UnixNano(), dr)
	allowed = d.By == "allow" || dr.Verified
	if lw, ok := w.(*h2Log); ok {
		lw.by, lw.logged = d.By, d.Logged
	}
	*dr = decide.Request{}
	if site.Rec != nil {
		rs.ev.Verdict = telemetry.VerdictPass
		switch d.Verdict {
		case decide.Pass:
		case decide.Limit:
			rs.ev.Verdict = telemetry.VerdictLimited
		case decide.Challenge:
			rs.ev.Verdict = telemetry.VerdictChallenged
		default:
			rs.ev.Verdict = telemetry.VerdictBlocked
		}
		if d.Verdict != decide.Pass {
			site.Rec.Record(&rs.ev)
		}
	}
	reqPool.Put(rs)
	switch d.Verdict {
	case decide.Pass:
		return true, allowed
	case decide.Block:
		p.writePageHTTP(w, r, site.m, vBlock, pageForbidden)
	case decide.Challenge:
		if st.Challenge != nil && st.Challenge.HTTPExempt(r, client) {
			return true, allowed
		}
		if st.Challenge != nil {
			mode := "normal"
			if st.ModeName != nil {
				mode = st.ModeName(now)
			}
			st.Challenge.ServeChallenge(w, r, now, client, bind, st.Challenge.Difficulty(mode, risk(site, client, now, d, known)))
			countH2(w, site.m, vChallenge, 403)
			return false, false
		}
		w.Header().Set("Retry-After", retryAfter(d.RetryAfter))
		p.writePageHTTP(w, r, site.m, vLimit, pageTooMany)
	case decide.Limit:
		w.Header().Set("Retry-After", retryAfter(d.RetryAfter))
		p.writePageHTTP(w, r, site.m, vLimit, pageTooMany)
	case decide.Drop, decide.Tarpit:
		if d.Verdict == decide.Tarpit && p.tarpit.held.Load() < int64(st.Config.MaxTarpits) {
			p.tarpit.held.Add(1)
			defer p.tarpit.held.Add(-1)
			countH2(w, site.m, vTarpit, 0)
			select {
			case <-time.After(st.Config.TarpitDelay):
			case <-r.Context().Done():
			}
		} else {
			countH2(w, site.m, vDrop, 0)
		}
		// Resets the stream without a response.
		panic(http.ErrAbortHandler)
	}
	return false, false
}
