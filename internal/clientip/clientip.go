// Package clientip finds the real client address of an HTTP request that
// reached the shield through trusted reverse proxies (a CDN, a load
// balancer), from the peer address and the X-Forwarded-For or RFC 7239
// Forwarded header.
//
// Headers are only believed when the peer itself is a trusted proxy, and
// the chain is walked from the right (the hop closest to the shield, added
// by the most trusted party) to the left, skipping hops that are themselves
// trusted proxies. The first untrusted hop is the client. Everything left
// of it was supplied by the client and is never used, so a client cannot
// spoof its address by sending its own X-Forwarded-For.
//
// With no trusted prefixes every header is ignored and the peer address is
// the client.
package clientip

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"unsafe"
)

// Header selects which forwarding header a Resolver reads.
type Header uint8

const (
	// XForwardedFor reads X-Forwarded-For (the default).
	XForwardedFor Header = iota
	// Forwarded reads the RFC 7239 Forwarded header.
	Forwarded
)

// String returns the configuration spelling of h.
func (h Header) String() string {
	if h == Forwarded {
		return "forwarded"
	}
	return "x-forwarded-for"
}

// Config is the YAML configuration of a Resolver. The zero value is valid:
// it trusts no proxy and so always returns the peer.
type Config struct {
	// Trusted lists the CIDR prefixes (or single addresses) of the proxies
	// whose forwarding headers are believed. Default: none, which means
	// headers are ignored and the TCP peer is the client.
	Trusted []string `yaml:"trusted"`
	// Header is "x-forwarded-for" (default) or "forwarded". Only the chosen
	// header is read; the other one is ignored entirely, because the proxy
	// in front writes one of them and the other is client-controlled.
	Header string `yaml:"header"`
}

// Resolver resolves client addresses. The zero value trusts nothing and
// returns the peer unchanged. A Resolver is immutable after construction
// and safe for concurrent use.
type Resolver struct {
	trusted []netip.Prefix
	header  Header
}

// New returns a Resolver that believes X-Forwarded-For from peers inside the
// trusted prefixes. IPv4-mapped IPv6 prefixes are unmapped, host bits are
// masked and invalid prefixes are dropped.
func New(trusted []netip.Prefix) *Resolver {
	r := &Resolver{header: XForwardedFor}
	for _, p := range trusted {
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r
}

// NewFromConfig validates cfg and returns a Resolver for it.
func NewFromConfig(cfg Config) (*Resolver, error) {
	var h Header
	switch strings.ToLower(strings.TrimSpace(cfg.Header)) {
	case "", "x-forwarded-for":
		h = XForwardedFor
	case "forwarded":
		h = Forwarded
	default:
		return nil, fmt.Errorf("clientip: header %q: must be \"x-forwarded-for\" or \"forwarded\"", cfg.Header)
	}
	prefixes := make([]netip.Prefix, 0, len(cfg.Trusted))
	for i, s := range cfg.Trusted {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, fmt.Errorf("clientip: trusted[%d] %q: not a CIDR prefix or IP address: %w", i, s, err)
			}
			if a.Zone() != "" {
				return nil, fmt.Errorf("clientip: trusted[%d] %q: zones are not allowed", i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		prefixes = append(prefixes, p)
	}
	r := New(prefixes)
	r.header = h
	return r, nil
}

// Header reports which header r reads.
func (r *Resolver) Header() Header { return r.header }

// Trusted reports whether a is inside one of the trusted prefixes.
func (r *Resolver) Trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Resolve returns the client address for a request received from peer with
// the given X-Forwarded-For and Forwarded header values (nil when absent;
// several header lines joined with ", "). Only the configured header is
// read; see ResolveLines for unjoined header lines.
//
// The result is:
//   - peer, when peer is not trusted or the header is absent;
//   - otherwise the rightmost hop that is not a trusted proxy;
//   - the leftmost hop, when every hop is a trusted proxy;
//   - the last trusted hop seen (possibly peer), when the walk meets a token
//     that is not an IP address (garbage, "unknown", an obfuscated
//     identifier such as "_hidden", a Forwarded element without for=):
//     the chain cannot be followed past it.
//
// The returned address is unmapped (never an IPv4-mapped IPv6 address) and
// carries no zone. Resolve does not allocate.
func (r *Resolver) Resolve(peer netip.Addr, xff []byte, forwarded []byte) netip.Addr {
	if r.header == Forwarded {
		return r.resolve(peer, [][]byte{forwarded})
	}
	return r.resolve(peer, [][]byte{xff})
}

// ResolveLines is Resolve for header values given as separate lines, in the
// order they appeared in the request.
func (r *Resolver) ResolveLines(peer netip.Addr, xff [][]byte, forwarded [][]byte) netip.Addr {
	if r.header == Forwarded {
		return r.resolve(peer, forwarded)
	}
	return r.resolve(peer, xff)
}

// ResolveHeader is Resolve for a net/http request: it reads the configured
// header's lines from h. It does not allocate for up to 8 header lines.
func (r *Resolver) ResolveHeader(peer netip.Addr, h http.Header) netip.Addr {
	key := "X-Forwarded-For"
	if r.header == Forwarded {
		key = "Forwarded"
	}
	vals := h[key]
	var buf [8][]byte
	lines := buf[:0]
	for _, v := range vals {
		// Read-only view of the string: resolve never writes to or keeps it.
		lines = append(lines, unsafe.Slice(unsafe.StringData(v), len(v)))
	}
	return r.resolve(peer, lines)
}

func (r *Resolver) resolve(peer netip.Addr, lines [][]byte) netip.Addr {
	peer = peer.Unmap().WithZone("")
	if len(r.trusted) == 0 || !r.Trusted(peer) {
		return peer
	}
	cur := peer
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for len(line) > 0 {
			var elem []byte
			if r.header == Forwarded {
				line, elem = lastForwardedElement(line)
			} else {
				line, elem = lastListElement(line)
			}
			elem = trimOWS(elem)
			if len(elem) == 0 {
				continue // empty list elements are ignored (RFC 9110 5.6.1)
			}
			var a netip.Addr
			var ok bool
			if r.header == Forwarded {
				a, ok = forwardedFor(elem)
			} else {
				a, ok = parseNode(elem)
			}
			if !ok {
				return cur
			}
			if !r.Trusted(a) {
				return a
			}
			cur = a
		}
	}
	return cur
}

// lastListElement splits b at its last comma.
func lastListElement(b []byte) (rest, elem []byte) {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ',' {
			return b[:i], b[i+1:]
		}
	}
	return nil, b
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
