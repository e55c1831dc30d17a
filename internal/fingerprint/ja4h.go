package fingerprint

import (
	"bytes"
	"iter"
	"net/http"
	"slices"
	"sort"
	"sync"
)

// Header is one header field as received.
type Header struct {
	Name, Value []byte
}

// RawHeaders iterates over the header fields of an HTTP/1.x header block in
// wire order, names exactly as sent: the bytes after the request line, as
// fasthttp's RequestHeader.RawHeaders returns them (fasthttp's own iterators
// normalise or reorder names). Obsolete line folding is not joined; a
// malformed line ends the iteration. It allocates nothing.
func RawHeaders(raw []byte) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for len(raw) > 0 {
			line := raw
			if i := bytes.IndexByte(raw, '\n'); i >= 0 {
				line, raw = raw[:i], raw[i+1:]
			} else {
				raw = nil
			}
			line = bytes.TrimSuffix(line, []byte("\r"))
			if len(line) == 0 {
				return
			}
			if line[0] == ' ' || line[0] == '\t' {
				continue // folded continuation
			}
			colon := bytes.IndexByte(line, ':')
			if colon <= 0 {
				return
			}
			if !yield(line[:colon], bytes.TrimSpace(line[colon+1:])) {
				return
			}
		}
	}
}

// Slice iterates over header fields kept in a slice (for example the
// first HTTP/2 HEADERS block as recorded by [H2Recorder]).
func Slice(hs []Header) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		for _, h := range hs {
			if !yield(h.Name, h.Value) {
				return
			}
		}
	}
}

// NetHTTP iterates over a net/http Header. net/http keeps no order and
// canonicalises names, so the JA4H b part and HeaderOrder computed from it
// only describe the set of names (sorted), not the client's order; prefer
// the HTTP/2 recorder or raw HTTP/1.1 headers.
func NetHTTP(h http.Header) iter.Seq2[[]byte, []byte] {
	return func(yield func([]byte, []byte) bool) {
		keys := make([]string, 0, len(h))
		for k := range h {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			for _, v := range h[k] {
				if !yield([]byte(k), []byte(v)) {
					return
				}
			}
		}
	}
}

func eqFold(a []byte, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i]|0x20 != b[i] {
			return false
		}
	}
	return true
}

// httpVersion maps "HTTP/1.1", "HTTP/2.0", "HTTP/2", "h2" ... to JA4H's code.
func httpVersion(proto []byte) string {
	switch string(proto) {
	case "HTTP/1.1":
		return "11"
	case "HTTP/1.0":
		return "10"
	case "HTTP/2", "HTTP/2.0", "h2", "h2c":
		return "20"
	case "HTTP/3", "HTTP/3.0", "h3":
		return "30"
	case "HTTP/0.9":
		return "09"
	}
	return "00"
}

const maxCookies = 64

// JA4H is FoxIO's HTTP client fingerprint "a_b_c_d" of one request:
//
//	a: method (2 letters), version, c/n cookie, r/n referer, count of
//	   headers other than Cookie and Referer, first Accept-Language (4 chars)
//	b: hash of the header names in order, without Cookie and Referer
//	c: hash of the cookie names, sorted
//	d: hash of the cookie name=value pairs, sorted
//
// Pseudo-headers (":method" ...) are skipped. Hashes are the first 12 hex
// digits of SHA-256; "000000000000" when there is nothing to hash. Only the
// first 64 cookies count.
func JA4H(method, proto []byte, headers iter.Seq2[[]byte, []byte]) string {
	st := getState()
	defer putState(st)
	for k, v := range headers {
		st.field(k, v)
	}
	out := st.out[:0]
	for i := range 2 {
		c := byte('0')
		if i < len(method) {
			c = method[i] | 0x20
		}
		out = append(out, c)
	}
	out = append(out, httpVersion(proto)...)
	out = append(out, yesNo(st.hasCookie, 'c'), yesNo(st.hasRef, 'r'))
	out = appendCount(out, st.count)
	out = appendLang(out, st.lang)
	out = append(out, '_')
	out = appendHash12(out, st.names)

	cs := st.cookies[:st.nCookies]
	slices.SortFunc(cs, func(a, b []byte) int { return bytes.Compare(cookieName(a), cookieName(b)) })
	buf := st.names[:0]
	for i, c := range cs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, cookieName(c)...)
	}
	out = append(out, '_')
	out = appendHash12(out, buf)
	slices.SortFunc(cs, bytes.Compare)
	buf = buf[:0]
	for i, c := range cs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, c...)
	}
	out = append(out, '_')
	out = appendHash12(out, buf)
	st.names = buf
	return string(out)
}

// ja4hState is the scratch space of one JA4H computation, pooled so that
// the iterator's loop body captures a single pointer.
type ja4hState struct {
	names     []byte
	cookies   [maxCookies][]byte
	nCookies  int
	count     int
	hasCookie bool
	hasRef    bool
	lang      []byte
	out       [64]byte
}

var ja4hPool = sync.Pool{New: func() any { return &ja4hState{names: make([]byte, 0, 512)} }}

func getState() *ja4hState {
	st := ja4hPool.Get().(*ja4hState)
	st.reset()
	return st
}

// putState drops the references into the request's bytes (and an
// oversized buffer) before pooling.
func putState(st *ja4hState) {
	st.reset()
	if cap(st.names) > 8<<10 {
		st.names = make([]byte, 0, 512)
	}
	ja4hPool.Put(st)
}

func (st *ja4hState) reset() {
	clear(st.cookies[:st.nCookies])
	*st = ja4hState{names: st.names[:0]}
}

func (st *ja4hState) field(k, v []byte) {
	switch {
	case len(k) > 0 && k[0] == ':':
		return
	case eqFold(k, "cookie"):
		st.hasCookie = true
		for len(v) > 0 {
			part := v
			if i := bytes.IndexByte(v, ';'); i >= 0 {
				part, v = v[:i], v[i+1:]
			} else {
				v = nil
			}
			part = bytes.TrimSpace(part)
			if len(part) > 0 && st.nCookies < maxCookies {
				st.cookies[st.nCookies] = part
				st.nCookies++
			}
		}
		return
	case eqFold(k, "referer"):
		st.hasRef = true
		return
	case eqFold(k, "accept-language") && st.lang == nil:
		st.lang = v
	}
	if st.count > 0 {
		st.names = append(st.names, ',')
	}
	st.names = append(st.names, k...)
	st.count++
}

func cookieName(c []byte) []byte {
	if i := bytes.IndexByte(c, '='); i >= 0 {
		return c[:i]
	}
	return c
}

func yesNo(b bool, c byte) byte {
	if b {
		return c
	}
	return 'n'
}

// appendLang: the first language of Accept-Language, '-' removed,
// lowercased, cut or padded with '0' to 4 characters.
func appendLang(dst, v []byte) []byte {
	n := 0
	for _, c := range v {
		if c == ',' || c == ';' || n == 4 {
			break
		}
		if c == '-' {
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c |= 0x20
		}
		dst = append(dst, c)
		n++
	}
	for ; n < 4; n++ {
		dst = append(dst, '0')
	}
	return dst
}

// HeaderOrder is a short hash (12 hex digits of SHA-256) of the header
// names of a request exactly as sent, in order, Cookie and Referer
// included: clients differ in order and capitalisation ("user-agent" vs
// "User-Agent") even when they copy a browser's User-Agent. Pseudo-headers
// are skipped.
func HeaderOrder(headers iter.Seq2[[]byte, []byte]) string {
	st := getState()
	defer putState(st)
	for k := range headers {
		if len(k) > 0 && k[0] == ':' {
			continue
		}
		if len(st.names) > 0 {
			st.names = append(st.names, ',')
		}
		st.names = append(st.names, k...)
	}
	return string(appendHash12(st.out[:0], st.names))
}
