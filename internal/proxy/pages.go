package proxy

import (
	"strconv"

	"github.com/valyala/fasthttp"
)

// page is a precomputed error response: the same bytes for every request,
// so serving one under flood costs no formatting. Pages never reveal
// upstream addresses or error details.
type page struct {
	status int
	html   []byte
	json   []byte
}

func newPage(status int, title, text string) page {
	html := "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + strconv.Itoa(status) + " " + title +
		"</title><meta name=\"viewport\" content=\"width=device-width\"></head>\n<body style=\"font-family:sans-serif;max-width:40em;margin:4em auto;padding:0 1em\">" +
		"<h1>" + title + "</h1>\n<p>" + text + "</p>\n<p><small>levee</small></p></body></html>\n"
	json := `{"status":` + strconv.Itoa(status) + `,"error":"` + title + `","message":"` + text + `"}` + "\n"
	return page{status: status, html: []byte(html), json: []byte(json)}
}

var (
	pageBadGateway     = newPage(502, "Bad Gateway", "The site could not be reached right now. Please try again in a moment.")
	pageGatewayTimeout = newPage(504, "Gateway Timeout", "The site took too long to answer. Please try again in a moment.")
	pageNoSite         = newPage(421, "Misdirected Request", "This server does not serve the requested host name.")
	pageURITooLong     = newPage(414, "URI Too Long", "The requested address is too long.")
	pageTooLarge       = newPage(413, "Content Too Large", "The request body is larger than this site accepts.")
	pageBadRequest     = newPage(400, "Bad Request", "The request could not be understood.")
	pageReqTimeout     = newPage(408, "Request Timeout", "The request was not received in time.")
	pageHeaderTooLarge = newPage(431, "Request Header Fields Too Large", "The request headers are too large.")
	pageForbidden      = newPage(403, "Forbidden", "Access to this site is blocked for your network.")
	pageTooMany        = newPage(429, "Too Many Requests", "You are sending requests too fast. Please slow down and try again shortly.")
	pageUnavailable    = newPage(503, "Service Unavailable", "The site is shutting down or overloaded. Please try again in a moment.")
	pageOriginDown     = newPage(503, "Service Unavailable", "The site is failing right now and is given a moment to recover. Please try again shortly.")
)

// wantsJSON reports whether the client prefers a JSON error (API clients).
func wantsJSON(accept []byte) bool {
	// Cheap check: "application/json" anywhere before any text/html.
	for i := 0; i+16 <= len(accept); i++ {
		if accept[i] == 't' && i+9 <= len(accept) && string(accept[i:i+9]) == "text/html" {
			return false
		}
		if accept[i] == 'a' && string(accept[i:i+16]) == "application/json" {
			return true
		}
	}
	return false
}

// writePage writes p as the response, choosing HTML or JSON by Accept.
func writePage(ctx *fasthttp.RequestCtx, p page) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(p.status)
	resp.Header.Set("Cache-Control", "no-store")
	if wantsJSON(ctx.Request.Header.Peek("Accept")) {
		resp.Header.SetContentType("application/json")
		resp.SetBodyRaw(p.json)
		return
	}
	resp.Header.SetContentType("text/html; charset=utf-8")
	resp.SetBodyRaw(p.html)
}
