package proxy

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/levee-dev/levee/internal/admission"
)

// Known-client cookie (Site.Cookies): checked at most once per request, and
// only where it changes something (under escalation for the decision
// engine, at the admission gate, and before issuing one); issued in normal
// mode with successful HTML responses to clients without a valid one. The
// cookie is passed on to the origin like any other (as the challenge's
// clearance cookie is): removing it would mean rewriting the Cookie header
// of every request.

// knownCookie reports whether the request's known-client cookie is valid
// (authentic, from the client's network, not expired) and known (also
// MinAge old), checking it on first use.
func (rs *reqState) knownCookie(site *Site, h *fasthttp.RequestHeader, now time.Time, client netipAddr) (valid, known bool) {
	if site.Cookies == nil {
		return false, false
	}
	if !rs.cookieChecked {
		rs.cookieChecked = true
		rs.cookieValid, rs.cookieKnown = site.Cookies.Check(now, client, h.Cookie(site.Cookies.Name()))
	}
	return rs.cookieValid, rs.cookieKnown
}

// httpKnownCookie is knownCookie for HTTP/2 requests.
func httpKnownCookie(site *Site, r *http.Request, now time.Time, client netipAddr) (valid, known bool) {
	if site.Cookies == nil {
		return false, false
	}
	c, err := r.Cookie(site.Cookies.Name())
	if err != nil {
		return false, false
	}
	return site.Cookies.Check(now, client, []byte(c.Value))
}

// issuesKnownCookie reports whether a response may carry a new known-client
// cookie: a successful HTML page (what a browser visitor loads first; not
// assets, API answers or errors), in normal mode.
func issuesKnownCookie(status int, contentType []byte, normal bool) bool {
	return normal && status >= 200 && status < 400 && hasPrefixFold(contentType, "text/html")
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// appendKnownSetCookie appends a Set-Cookie value with a new known-client
// cookie for client to dst.
func appendKnownSetCookie(dst []byte, c *admission.Cookies, now time.Time, client netipAddr, secure bool) []byte {
	dst = append(dst, c.Name()...)
	dst = append(dst, '=')
	dst = c.AppendIssue(dst, now, client)
	dst = append(dst, "; Path=/; Max-Age="...)
	dst = strconv.AppendInt(dst, int64(c.MaxAge()/time.Second), 10)
	dst = append(dst, "; HttpOnly; SameSite=Lax"...)
	if secure {
		dst = append(dst, "; Secure"...)
	}
	return dst
}

// issueKnownCookie adds a new known-client cookie to an HTTP/1.1 response.
// It does not allocate.
func issueKnownCookie(resp *fasthttp.Response, c *admission.Cookies, now time.Time, client netipAddr, secure bool) {
	var buf [192]byte
	resp.Header.AddBytesV(fasthttp.HeaderSetCookie, appendKnownSetCookie(buf[:0], c, now, client, secure))
}
