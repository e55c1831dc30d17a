package main

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// isLoopback reports whether a is in 127.0.0.0/8 or is ::1.
func isLoopback(a netip.Addr) bool { return a.Unmap().IsLoopback() }

// parseLoopbackURL accepts http://IP:PORT[/path] with a literal loopback IP
// and returns the URL with the address normalised. Names are refused: a
// name could resolve anywhere.
func parseLoopbackURL(flagName, s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("overload: %s %q: %w", flagName, s, err)
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("overload: %s %q: only http:// URLs are supported", flagName, s)
	}
	if u.Port() == "" {
		return nil, fmt.Errorf("overload: %s %q: give the port explicitly (http://127.0.0.1:PORT/)", flagName, s)
	}
	a, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil, fmt.Errorf("overload: %s %q must name a literal loopback IP (127.0.0.0/8 or [::1]), not a host name", flagName, s)
	}
	if !isLoopback(a) {
		return nil, fmt.Errorf("overload: refusing %s %s: only loopback addresses (127.0.0.0/8, ::1) may be loaded", flagName, a)
	}
	u.Host = net.JoinHostPort(a.Unmap().String(), u.Port())
	if u.Path == "" {
		u.Path = "/"
	}
	return u, nil
}

// parseLoopbackListen accepts IP:PORT with a literal loopback IP (port 0
// picks a free one).
func parseLoopbackListen(flagName, s string) (string, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", fmt.Errorf("overload: %s %q must be a literal loopback IP:PORT such as 127.0.0.1:8080: %w", flagName, s, err)
	}
	if !isLoopback(ap.Addr()) {
		return "", fmt.Errorf("overload: refusing %s %s: the emulator listens on loopback only", flagName, ap.Addr())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), nil
}

// maxSources bounds the number of source addresses one list may expand to.
const maxSources = 1 << 16

// parseSources expands a comma-separated list of loopback IPv4 ranges
// ("127.0.1.1-127.0.8.254"), CIDRs ("127.0.12.0/24") and single addresses
// into addresses. Addresses whose last octet is 0 or 255 are left out, as a
// reader expects of "127.0.1.1..127.0.8.254". IPv6 has a single loopback
// address, so "::1" is the only IPv6 entry accepted.
func parseSources(flagName, s string) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(a netip.Addr) error {
		if !isLoopback(a) {
			return fmt.Errorf("overload: refusing %s address %s: only loopback sources (127.0.0.0/8, ::1) may be used", flagName, a)
		}
		if a.Is4() && (a.As4()[3] == 0 || a.As4()[3] == 255) {
			return nil
		}
		if !seen[a] {
			if len(out) >= maxSources {
				return fmt.Errorf("overload: %s %q expands to more than %d addresses", flagName, s, maxSources)
			}
			seen[a] = true
			out = append(out, a)
		}
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		var lo, hi netip.Addr
		switch {
		case strings.Contains(part, "/"):
			p, err := netip.ParsePrefix(part)
			if err != nil {
				return nil, fmt.Errorf("overload: %s %q: %w", flagName, part, err)
			}
			p = p.Masked()
			if !p.Addr().Is4() {
				return nil, fmt.Errorf("overload: %s %q: use ::1 for IPv6 (it has one loopback address)", flagName, part)
			}
			if p.Bits() < 16 {
				return nil, fmt.Errorf("overload: %s %q: at most a /16 per entry", flagName, part)
			}
			lo = p.Addr()
			hi = lastOf(p)
		case strings.Contains(part, "-"):
			a, b, _ := strings.Cut(part, "-")
			var err1, err2 error
			lo, err1 = netip.ParseAddr(strings.TrimSpace(a))
			hi, err2 = netip.ParseAddr(strings.TrimSpace(b))
			if err1 != nil || err2 != nil || !lo.Is4() || !hi.Is4() || hi.Less(lo) {
				return nil, fmt.Errorf("overload: %s %q: want an IPv4 range LOW-HIGH such as 127.0.1.1-127.0.8.254", flagName, part)
			}
		default:
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("overload: %s %q: %w", flagName, part, err)
			}
			lo, hi = a.Unmap(), a.Unmap()
		}
		if !isLoopback(lo) || !isLoopback(hi) {
			return nil, fmt.Errorf("overload: refusing %s %q: only loopback sources (127.0.0.0/8, ::1) may be used", flagName, part)
		}
		for a := lo; ; a = a.Next() {
			if err := add(a); err != nil {
				return nil, err
			}
			if a == hi {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("overload: %s %q: no usable addresses", flagName, s)
	}
	return out, nil
}

// lastOf returns the highest address of an IPv4 prefix.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
