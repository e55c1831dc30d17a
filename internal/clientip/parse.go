package clientip

import (
	"net/netip"
	"unsafe"
)

// parseNode parses one hop: an IP literal, "IPv4:port", "[IPv6]" or
// "[IPv6]:port". Zones, hostnames and anything else are rejected.
func parseNode(b []byte) (netip.Addr, bool) {
	if len(b) == 0 {
		return netip.Addr{}, false
	}
	if b[0] == '[' {
		end := -1
		for i := 1; i < len(b); i++ {
			if b[i] == ']' {
				end = i
				break
			}
		}
		if end < 0 || !validPort(b[end+1:]) {
			return netip.Addr{}, false
		}
		a, ok := parseIP(b[1:end])
		if !ok || !a.Is6() {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	colons, last := 0, -1
	for i, c := range b {
		if c == ':' {
			colons++
			last = i
		}
	}
	if colons == 1 { // IPv4 with port
		if !validPort(b[last:]) {
			return netip.Addr{}, false
		}
		a, ok := parseIP(b[:last])
		if !ok || !a.Is4() {
			return netip.Addr{}, false
		}
		return a, true
	}
	a, ok := parseIP(b)
	if !ok {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

// validPort reports whether b is empty or ":" followed by 1-5 digits.
func validPort(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	if b[0] != ':' || len(b) < 2 || len(b) > 6 {
		return false
	}
	for _, c := range b[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseIP parses an IP literal without zone from b without allocating.
// Characters outside [0-9a-fA-F.:] are rejected first, so netip.ParseAddr
// never sees a zone and does not retain the string on success, which makes
// the unsafe.String view of b safe. (Invalid literals that pass the
// character check make ParseAddr allocate its error value.)
func parseIP(b []byte) (netip.Addr, bool) {
	if len(b) < 2 || len(b) > 45 {
		return netip.Addr{}, false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':') {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(unsafe.String(&b[0], len(b)))
	return a, err == nil
}

// lastForwardedElement splits a Forwarded header value at its last comma
// outside a quoted string.
func lastForwardedElement(b []byte) (rest, elem []byte) {
	inQuote := false
	for i := len(b) - 1; i >= 0; i-- {
		switch b[i] {
		case '"':
			inQuote = !inQuote
		case ',':
			if !inQuote {
				return b[:i], b[i+1:]
			}
		}
	}
	return nil, b
}

// forwardedFor extracts the node of the single for= parameter of one
// Forwarded element ("for=192.0.2.60;proto=http;by=203.0.113.43"). It
// fails for an element without for=, with several for= parameters, with an
// obfuscated or "unknown" node, or with a malformed quoted string.
func forwardedFor(elem []byte) (netip.Addr, bool) {
	var node []byte
	found := false
	for len(elem) > 0 {
		// Split off one pair, honouring quotes.
		end, inQuote := len(elem), false
		for i, c := range elem {
			if c == '"' {
				inQuote = !inQuote
			} else if c == ';' && !inQuote {
				end = i
				break
			}
		}
		pair := trimOWS(elem[:end])
		if end < len(elem) {
			elem = elem[end+1:]
		} else {
			elem = nil
		}
		if len(pair) < 4 || !isFor(pair[:4]) {
			continue
		}
		if found {
			return netip.Addr{}, false // ambiguous: several for= in one element
		}
		found = true
		node = pair[4:]
	}
	if !found {
		return netip.Addr{}, false
	}
	if len(node) >= 2 && node[0] == '"' && node[len(node)-1] == '"' {
		node = node[1 : len(node)-1]
	}
	for _, c := range node {
		if c == '"' || c == '\\' {
			return netip.Addr{}, false
		}
	}
	// "unknown" and obfuscated identifiers ("_hidden") fail to parse.
	return parseNode(node)
}

// isFor reports whether b is "for=" in any letter case.
func isFor(b []byte) bool {
	return (b[0]|0x20) == 'f' && (b[1]|0x20) == 'o' && (b[2]|0x20) == 'r' && b[3] == '='
}
