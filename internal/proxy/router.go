package proxy

import (
	"strings"

	"github.com/levee-dev/levee/internal/admission"
	"github.com/levee-dev/levee/internal/cache"
	"github.com/levee-dev/levee/internal/telemetry"

	"github.com/levee-dev/levee/internal/upstream"
)

// Site is one protected website as the request path sees it. It is
// immutable once published in a State.
type Site struct {
	Name string
	name []byte // Name, for the access log
	Pool *upstream.Pool
	// RewriteHost replaces the Host header sent upstream when non-empty.
	RewriteHost string
	// Rec records the site's traffic for the detector; nil disables it.
	Rec *telemetry.Recorder
	// Geo adds ASN and country to recorded events; nil: none.
	Geo *GeoCache
	// Gate is the origin's admission gate (adaptive concurrency and
	// priority queue); nil: requests go straight to the origin.
	Gate *admission.Gate
	// History remembers clients seen in normal times (known clients get
	// priority at the gate); nil: none.
	History *admission.History
	// Cookies issues and checks the known-client cookie, which makes its
	// holder known like History does; nil: no cookie.
	Cookies *admission.Cookies
	// Breaker is the origin's circuit breaker (passive health); nil: none.
	// While it is open the origin is not contacted: a stale cache entry is
	// served if there is one, else 503 with Retry-After (the time until
	// the breaker's next trial).
	Breaker *admission.Breaker
	// Cache is the site's micro-cache; nil: off. CacheMaxEntry is the
	// largest response it stores (bytes).
	Cache         *cache.Cache
	CacheMaxEntry int64
	m             *siteMetrics
}

// Router maps a Host header to a Site: exact names first, then wildcards
// ("*.example.com" matches a.example.com and a.b.example.com), then the
// default site. It is immutable and safe for concurrent use.
type Router struct {
	exact    map[string]*Site
	wildcard map[string]*Site // key: ".example.com"
	def      *Site
	maxWild  int // longest wildcard suffix, bounds the search
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{exact: map[string]*Site{}, wildcard: map[string]*Site{}}
}

// Add registers s for hosts; with no hosts s becomes the default site.
// Hosts must already be normalized (lower case, no port).
func (r *Router) Add(s *Site, hosts []string) {
	if len(hosts) == 0 {
		r.def = s
		return
	}
	for _, h := range hosts {
		if strings.HasPrefix(h, "*.") {
			suf := h[1:]
			r.wildcard[suf] = s
			r.maxWild = max(r.maxWild, len(suf))
			continue
		}
		r.exact[h] = s
	}
}

// Sites returns every distinct site.
func (r *Router) Sites() []*Site {
	seen := map[*Site]bool{}
	var out []*Site
	add := func(s *Site) {
		if s != nil && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, s := range r.exact {
		add(s)
	}
	for _, s := range r.wildcard {
		add(s)
	}
	add(r.def)
	return out
}

// Match returns the site for a raw Host header value, or nil. It does not
// allocate for hosts up to 253 bytes.
func (r *Router) Match(host []byte) *Site {
	if len(r.exact) == 0 && len(r.wildcard) == 0 {
		return r.def
	}
	var buf [256]byte
	h := normalize(buf[:0], host)
	if h == nil {
		return r.def
	}
	if s, ok := r.exact[string(h)]; ok {
		return s
	}
	if len(r.wildcard) > 0 {
		for i := 0; i < len(h); i++ {
			if h[i] == '.' && len(h)-i <= r.maxWild {
				if s, ok := r.wildcard[string(h[i:])]; ok {
					return s
				}
			}
		}
	}
	return r.def
}

// normalize lowercases host, strips the port and a trailing dot into dst.
// It returns nil when host does not fit.
func normalize(dst, host []byte) []byte {
	if len(host) > 0 && host[0] == '[' {
		// IPv6 literal: keep up to and including ']'.
		for i, c := range host {
			if c == ']' {
				host = host[:i+1]
				break
			}
		}
	} else {
		for i := len(host) - 1; i >= 0; i-- {
			if host[i] == ':' {
				host = host[:i]
				break
			}
			if host[i] < '0' || host[i] > '9' {
				break
			}
		}
	}
	if n := len(host); n > 0 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) > cap(dst) {
		return nil
	}
	for _, c := range host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}
