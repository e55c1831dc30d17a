package cache

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Field is one response header line (a plain value).
type Field struct {
	Name, Value []byte
}

// Response is an origin response offered to the cache. The cache copies what
// it keeps; the caller may reuse the slices after Store returns. The zero
// value is an empty response with status 0, which is never stored. Not safe
// for concurrent modification.
type Response struct {
	Status int
	Header []Field
	Body   []byte

	arena []byte // FromFastHTTP's copy of the header fields
}

// Get returns the first value of the named header (case-insensitive), nil
// if absent.
func (r *Response) Get(name string) []byte {
	for i := range r.Header {
		if equalFold(r.Header[i].Name, name) {
			return r.Header[i].Value
		}
	}
	return nil
}

func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// directives are the Cache-Control response directives the cache uses.
type directives struct {
	noStore, private, noCache, mustRevalidate bool
	maxAge, sMaxAge                           int64 // seconds; -1 if absent
}

// parseCacheControl adds the directives of one Cache-Control value to d.
// Unknown directives are ignored; a malformed number makes the directive
// count as absent, except that it still forbids nothing.
func parseCacheControl(v []byte, d *directives) {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte{','})
		item = bytes.TrimSpace(item)
		name, arg, _ := bytes.Cut(item, []byte{'='})
		name = bytes.TrimSpace(name)
		arg = bytes.Trim(bytes.TrimSpace(arg), `"`)
		switch {
		case equalFold(name, "no-store"):
			d.noStore = true
		case equalFold(name, "private"):
			d.private = true
		case equalFold(name, "no-cache"):
			d.noCache = true
		case equalFold(name, "must-revalidate"), equalFold(name, "proxy-revalidate"):
			d.mustRevalidate = true
		case equalFold(name, "max-age"):
			if n, ok := parseSeconds(arg); ok {
				d.maxAge = n
			}
		case equalFold(name, "s-maxage"):
			if n, ok := parseSeconds(arg); ok {
				d.sMaxAge = n
			}
		}
	}
}

// parseSeconds parses a delta-seconds value, saturating at 2^31 as RFC 9111
// section 1.2.2 allows.
func parseSeconds(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < 1<<31 {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, 1<<31), true
}

// policy is the cache's decision about one response.
type policy struct {
	ttl      time.Duration // fresh for
	staleFor time.Duration // then usable as stale for
	vary     []string      // lower-case header names, sorted
}

// decide returns whether resp may be stored and for how long. Requests with
// credentials never get here (they bypass the cache).
func (c *Cache) decide(now time.Time, resp *Response) (policy, bool) {
	var p policy
	if !c.statuses[statusIndex(resp.Status)] || statusIndex(resp.Status) == 0 {
		return p, false
	}
	d := directives{maxAge: -1, sMaxAge: -1}
	var expires, age, vary []byte
	hasCookie := false
	for i := range resp.Header {
		f := &resp.Header[i]
		switch {
		case equalFold(f.Name, "cache-control"):
			parseCacheControl(f.Value, &d)
		case equalFold(f.Name, "expires"):
			expires = f.Value
		case equalFold(f.Name, "age"):
			age = f.Value
		case equalFold(f.Name, "vary"):
			if len(vary) > 0 {
				vary = append(append(slices.Clip(vary), ','), f.Value...)
			} else {
				vary = f.Value
			}
		case equalFold(f.Name, "set-cookie"):
			hasCookie = true
		}
	}
	if d.noStore || d.private || d.noCache {
		return p, false
	}
	if hasCookie && !c.cfg.CacheSetCookie {
		return p, false
	}
	switch {
	case d.sMaxAge >= 0:
		p.ttl = time.Duration(d.sMaxAge) * time.Second
	case d.maxAge >= 0:
		p.ttl = time.Duration(d.maxAge) * time.Second
	case expires != nil:
		t, err := http.ParseTime(string(expires))
		if err != nil {
			return p, false // RFC 9111: an invalid Expires means already expired
		}
		p.ttl = t.Sub(now)
	default:
		if c.cfg.DefaultTTL < 0 {
			return p, false
		}
		p.ttl = c.cfg.DefaultTTL
	}
	if a, ok := parseSeconds(bytes.TrimSpace(age)); ok {
		p.ttl -= time.Duration(a) * time.Second
	}
	if resp.Status == http.StatusNotFound {
		p.ttl = min(p.ttl, c.cfg.NotFoundTTL)
	}
	p.ttl = min(p.ttl, c.cfg.MaxTTL)
	if !d.mustRevalidate {
		p.staleFor = c.cfg.StaleFor
	}
	if p.ttl <= 0 && p.staleFor <= 0 {
		return p, false
	}
	p.ttl = max(p.ttl, 0)
	if len(vary) > 0 {
		for _, n := range strings.Split(string(vary), ",") {
			n = strings.ToLower(strings.TrimSpace(n))
			if n == "*" {
				return p, false
			}
			if n != "" && !slices.Contains(p.vary, n) {
				p.vary = append(p.vary, n)
			}
		}
		slices.Sort(p.vary)
	}
	return p, true
}

// statusIndex maps an HTTP status to an index into Cache.statuses, 0 for
// out of range.
func statusIndex(s int) int {
	if s < 100 || s > 599 {
		return 0
	}
	return s
}

// hopByHop headers are never stored.
var hopByHop = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding",
	"te", "trailer", "upgrade", "proxy-authenticate", "proxy-authorization"}

// storedHeader reports whether a response header is kept in an entry: not
// hop-by-hop, neither by name nor by being listed in the response's
// Connection header (conn).
func storedHeader(name, conn []byte) bool {
	for _, h := range hopByHop {
		if equalFold(name, h) {
			return false
		}
	}
	if listed(conn, name) {
		return false
	}
	if equalFold(name, "age") || equalFold(name, "content-length") {
		return false // recomputed when served
	}
	if equalFold(name, "set-cookie") {
		return false // never replayed to other clients, even with CacheSetCookie
	}
	return true
}

// listed reports whether name is one of the comma-separated tokens of v
// (case-insensitive, spaces around tokens ignored).
func listed(v, name []byte) bool {
	for len(v) > 0 {
		tok := v
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			v = nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) == len(name) && bytes.EqualFold(tok, name) {
			return true
		}
	}
	return false
}
