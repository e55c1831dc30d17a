package proxy

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"
)

const viaValue = "1.1 levee"

// prepareRequest turns a client request head into the head sent upstream:
// hop-by-hop headers removed (RFC 9110 7.6.1, including those the client
// named in Connection), X-Forwarded-For / X-Forwarded-Proto set, Via added.
//
// X-Forwarded-For from an untrusted peer is replaced by the peer address, so
// the origin never sees a client-forged chain; from a trusted proxy the peer
// is appended to the chain it sent. The other headers that name a client
// address or the original request (clientIPHeaders) are removed when the
// peer is untrusted: an origin that reads X-Real-IP or Forwarded must not
// get a value the client made up.
func prepareRequest(h *fasthttp.RequestHeader, peer netip.Addr, trusted, isTLS bool, rewriteHost string) {
	// The origin is spoken to in plain HTTP; the shield terminated TLS.
	if conn := h.Peek(fasthttp.HeaderConnection); len(conn) > 0 {
		delConnectionTokens(conn, h.DelBytes)
	}
	h.Del(fasthttp.HeaderConnection) // also resets the close flag: upstream stays keep-alive
	h.Del("Keep-Alive")
	h.Del("Proxy-Connection")
	h.Del("Proxy-Authorization")
	h.Del(fasthttp.HeaderTE)
	h.Del(fasthttp.HeaderUpgrade)

	if !trusted {
		stripClientIPHeaders(h)
	}
	var buf [256]byte
	b := buf[:0]
	if trusted {
		if old := h.Peek(fasthttp.HeaderXForwardedFor); len(old) > 0 {
			b = append(b, old...)
			b = append(b, ", "...)
		}
	}
	b = peer.AppendTo(b)
	h.SetBytesV(fasthttp.HeaderXForwardedFor, b)
	if !trusted || len(h.Peek("X-Forwarded-Proto")) == 0 {
		if isTLS {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if via := h.Peek(fasthttp.HeaderVia); len(via) > 0 {
		b = append(append(append(buf[:0], via...), ", "...), viaValue...)
		h.SetBytesV(fasthttp.HeaderVia, b)
	} else {
		h.Set(fasthttp.HeaderVia, viaValue)
	}
	if rewriteHost != "" {
		h.SetHost(rewriteHost)
	}
}

// prepareResponse removes hop-by-hop headers from an upstream response.
// fasthttp writes Connection and Transfer-Encoding itself.
func prepareResponse(h *fasthttp.ResponseHeader) {
	if conn := h.Peek(fasthttp.HeaderConnection); len(conn) > 0 {
		delConnectionTokens(conn, h.DelBytes)
	}
	if h.ContentLength() != -2 {
		// The body has a length or is chunked: the client connection can
		// stay open even if the origin closes its own.
		h.ResetConnectionClose()
	}
	h.Del(fasthttp.HeaderConnection)
	h.Del("Keep-Alive")
	h.Del("Proxy-Connection")
	h.Del(fasthttp.HeaderUpgrade)
}

// delConnectionTokens deletes each header named in a Connection value,
// except the close / keep-alive / upgrade options handled elsewhere.
func delConnectionTokens(v []byte, del func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == 0 || bytes.EqualFold(tok, []byte("close")) || bytes.EqualFold(tok, []byte("keep-alive")) ||
			bytes.EqualFold(tok, []byte("upgrade")) {
			continue
		}
		del(tok)
	}
}

// isUpgrade reports whether the request asks for a protocol upgrade
// (WebSocket and friends).
func isUpgrade(h *fasthttp.RequestHeader) bool {
	if len(h.Peek(fasthttp.HeaderUpgrade)) == 0 {
		return false
	}
	return hasToken(h.Peek(fasthttp.HeaderConnection), "upgrade")
}

func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(tok)) {
			return true
		}
	}
	return false
}

// clientIPHeaders are the headers, besides X-Forwarded-For and
// X-Forwarded-Proto (which prepareRequest sets), through which proxies and
// CDNs pass on the client's address or the original request. Only a
// trusted proxy may send them on.
var clientIPHeaders = [...]string{"Forwarded", "X-Real-Ip", "X-Forwarded-Host", "X-Forwarded-Port",
	"X-Client-Ip", "True-Client-Ip", "Cf-Connecting-Ip", "Fastly-Client-Ip", "X-Cluster-Client-Ip"}

// stripClientIPHeaders removes clientIPHeaders from h. One pass over the
// header names finds whether any is present (they rarely are), so the
// common request pays no deletion.
func stripClientIPHeaders(h *fasthttp.RequestHeader) {
	var found [len(clientIPHeaders)]bool
	any := false
	for k := range h.All() {
		if len(k) < 9 || len(k) > 19 { // the shortest and longest names
			continue
		}
		for i, name := range clientIPHeaders {
			if len(k) == len(name) && bytes.EqualFold(k, []byte(name)) {
				found[i], any = true, true
			}
		}
	}
	if !any {
		return
	}
	for i, name := range clientIPHeaders {
		if found[i] {
			h.Del(name)
		}
	}
}
