package challenge

import (
	"net/netip"
	"time"

	"github.com/valyala/fasthttp"
)

// fasthttp adapter. A shield handler calls, in this order:
//
//	if challenge.IsEndpoint(ctx.Path()) { svc.FastEndpoint(ctx, now, addr, bind); return }
//	claims, ok := svc.FastClearance(ctx, now, addr, bind)   // ok => request is verified
//	... decision engine ... verdict Challenge and !svc.FastExempt(ctx, addr):
//	svc.FastChallenge(ctx, now, addr, bind, svc.Difficulty(mode, risk))

// FastClearance checks the clearance cookie of a fasthttp request.
func (s *Service) FastClearance(ctx *fasthttp.RequestCtx, now time.Time, addr netip.Addr, fp Binding) (Claims, bool) {
	return s.Clearance(now, ctx.Request.Header.Cookie(s.cfg.CookieName), addr, fp)
}

// FastExempt reports whether the request is on the allowlist.
func (s *Service) FastExempt(ctx *fasthttp.RequestCtx, addr netip.Addr) bool {
	return s.Exempt(ctx.Path(), addr, ctx.Request.Header.UserAgent())
}

func setPageHeaders(set func(k, v string)) {
	for _, kv := range PageHeaders {
		set(kv[0], kv[1])
	}
}

// FastChallenge answers ctx with the challenge: the page with a freshly
// signed challenge (403), or the static JSON answer for API clients. The
// page is written into the response's own body buffer.
func (s *Service) FastChallenge(ctx *fasthttp.RequestCtx, now time.Time, addr netip.Addr, fp Binding, difficulty uint8) {
	h := &ctx.Response.Header
	setPageHeaders(h.Set)
	if WantsJSON(ctx.Request.Header.Peek("Accept")) {
		ctx.SetStatusCode(s.cfg.APIStatus)
		ctx.SetContentType("application/json")
		ctx.SetBody(s.JSONBody())
		return
	}
	ctx.SetStatusCode(fasthttp.StatusForbidden)
	ctx.SetContentType("text/html; charset=utf-8")
	old := ctx.Response.SwapBody(nil)
	ctx.Response.SwapBody(s.AppendPage(old[:0], now, addr, fp, difficulty,
		ctx.Request.Header.Peek("Accept-Language"), ctx.Request.Header.RequestURI()))
}

// FastEndpoint answers a request for /.levee/challenge/verify (POST, form
// fields c, n, r) or /.levee/nojs (GET, query c, r). On success it sets the
// clearance cookie and redirects (303) to the return path.
func (s *Service) FastEndpoint(ctx *fasthttp.RequestCtx, now time.Time, addr netip.Addr, fp Binding) {
	req := EndpointRequest{
		Path:           ctx.Path(),
		Post:           ctx.IsPost(),
		AcceptLanguage: ctx.Request.Header.Peek("Accept-Language"),
		Accept:         ctx.Request.Header.Peek("Accept"),
	}
	if req.Post {
		args := ctx.PostArgs()
		req.Challenge, req.Nonce, req.Return = args.Peek("c"), args.Peek("n"), args.Peek("r")
	} else {
		args := ctx.QueryArgs()
		req.Challenge, req.Return = args.Peek("c"), args.Peek("r")
	}
	h := &ctx.Response.Header
	setPageHeaders(h.Set)
	old := ctx.Response.SwapBody(nil)
	rep := s.Endpoint(old[:0], now, addr, fp, &req)
	ctx.Response.SwapBody(rep.Body)
	ctx.SetStatusCode(rep.Status)
	switch {
	case rep.JSON:
		ctx.SetContentType("application/json")
	case rep.Status != 303:
		ctx.SetContentType("text/html; charset=utf-8")
	}
	if rep.Cookie != "" {
		h.Set("Set-Cookie", rep.Cookie)
	}
	if rep.Location != nil {
		h.SetBytesV("Location", rep.Location)
	}
}
