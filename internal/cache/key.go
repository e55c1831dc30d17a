package cache

import (
	"bytes"
	"slices"
)

// HeaderPeeker reads one request header by name (case-insensitive), nil if
// absent. *fasthttp.RequestHeader implements it; NetHTTPHeader adapts an
// http.Header.
type HeaderPeeker interface {
	Peek(name string) []byte
}

// Request is what the cache needs to know about a request. The slices are
// only read during the call that receives the Request. The zero value is a
// request without method, which bypasses the cache. A Request must not be
// shared between goroutines while in use (its HeaderPeeker may not be safe
// for concurrent use).
type Request struct {
	Method []byte // "GET" or "HEAD"; other methods bypass the cache
	Host   []byte // lower-case host, without default port
	Path   []byte // raw path, without the query
	Query  []byte // raw query, without '?'
	Header HeaderPeeker
}

// paramMatcher matches query parameter names: exact names, or prefixes
// written with a trailing '*' ("utm_*").
type paramMatcher struct {
	exact    [][]byte
	prefixes [][]byte
}

func newParamMatcher(names []string) paramMatcher {
	var m paramMatcher
	for _, n := range names {
		if p, ok := bytes.CutSuffix([]byte(n), []byte("*")); ok {
			m.prefixes = append(m.prefixes, p)
		} else {
			m.exact = append(m.exact, []byte(n))
		}
	}
	return m
}

func (m *paramMatcher) empty() bool { return len(m.exact) == 0 && len(m.prefixes) == 0 }

func (m *paramMatcher) match(name []byte) bool {
	for _, e := range m.exact {
		if bytes.Equal(e, name) {
			return true
		}
	}
	for _, p := range m.prefixes {
		if bytes.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// queryFilter decides which query parameters are part of a cache key.
type queryFilter struct {
	ignore paramMatcher // removed
	keep   paramMatcher // if not empty: only these are kept
}

func (f *queryFilter) keepParam(name []byte) bool {
	if !f.keep.empty() {
		return f.keep.match(name)
	}
	return !f.ignore.match(name)
}

// appendNormalizedQuery appends the query's kept parameters to dst, sorted
// and joined by '&'. Empty parameters ("a&&b") vanish. Names and values are
// compared as raw bytes (no percent-decoding). parts is scratch space.
func (f *queryFilter) appendNormalizedQuery(dst, query []byte, parts [][]byte) ([]byte, [][]byte) {
	parts = parts[:0]
	for len(query) > 0 {
		var p []byte
		p, query, _ = bytes.Cut(query, []byte{'&'})
		if len(p) == 0 {
			continue
		}
		name, _, _ := bytes.Cut(p, []byte{'='})
		if f.keepParam(name) {
			parts = append(parts, p)
		}
	}
	slices.SortFunc(parts, bytes.Compare)
	for i, p := range parts {
		if i > 0 {
			dst = append(dst, '&')
		}
		dst = append(dst, p...)
	}
	return dst, parts
}

// appendPrimaryKey appends method, host, path and normalized query,
// separated by NUL bytes.
func (f *queryFilter) appendPrimaryKey(dst []byte, r *Request, parts [][]byte) ([]byte, [][]byte) {
	dst = append(dst, r.Method...)
	dst = append(dst, 0)
	dst = append(dst, r.Host...)
	dst = append(dst, 0)
	dst = append(dst, r.Path...)
	dst = append(dst, 0)
	return f.appendNormalizedQuery(dst, r.Query, parts)
}

// appendVary appends, for each Vary'd header name, its request value.
// Accept-Encoding is reduced to the set of known codings it accepts.
func appendVary(dst []byte, names []string, h HeaderPeeker) []byte {
	for _, n := range names {
		dst = append(dst, 0)
		dst = append(dst, n...)
		dst = append(dst, ':')
		if h == nil {
			continue
		}
		if n == "accept-encoding" {
			dst = append(dst, acceptedCodings(h.Peek(n)))
		} else {
			dst = append(dst, h.Peek(n)...)
		}
	}
	return dst
}

var codings = [...]string{"br", "compress", "deflate", "gzip", "zstd"}

// acceptedCodings returns the set of known content codings an
// Accept-Encoding value accepts, as a bit set offset to a printable byte.
// Order, spacing, case and non-zero q-values do not matter; "q=0" excludes
// a coding; "*" accepts all.
func acceptedCodings(v []byte) byte {
	var set byte
	for len(v) > 0 {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte{','})
		name, params, _ := bytes.Cut(tok, []byte{';'})
		name = bytes.TrimSpace(name)
		if qZero(params) {
			continue
		}
		if len(name) == 1 && name[0] == '*' {
			set |= 1<<len(codings) - 1
			continue
		}
		for i, c := range codings {
			if equalFold(name, c) {
				set |= 1 << i
			}
		}
	}
	return '@' + set
}

// qZero reports whether parameters contain q=0 (0, 0., 0.0, 0.00, 0.000).
func qZero(params []byte) bool {
	for len(params) > 0 {
		var p []byte
		p, params, _ = bytes.Cut(params, []byte{';'})
		k, val, ok := bytes.Cut(bytes.TrimSpace(p), []byte{'='})
		if !ok || !equalFold(bytes.TrimSpace(k), "q") {
			continue
		}
		val = bytes.TrimSpace(val)
		if len(val) == 0 || val[0] != '0' {
			return false
		}
		for _, c := range val[1:] {
			if c != '0' && c != '.' {
				return false
			}
		}
		return true
	}
	return false
}

// hasCookie reports whether a Cookie header value carries a cookie whose
// name the matcher matches.
func hasCookie(header []byte, m *paramMatcher) bool {
	for len(header) > 0 {
		var c []byte
		c, header, _ = bytes.Cut(header, []byte{';'})
		c = bytes.TrimLeft(c, " ")
		name, _, _ := bytes.Cut(c, []byte{'='})
		if len(name) > 0 && m.match(name) {
			return true
		}
	}
	return false
}
