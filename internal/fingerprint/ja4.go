// Package fingerprint computes client fingerprints that rules, telemetry
// and signature extraction can key on, once per connection (TLS, HTTP/2) or
// per request (HTTP):
//
//   - JA4, FoxIO's TLS ClientHello fingerprint, from crypto/tls's
//     ClientHelloInfo (capture it in GetConfigForClient);
//   - JA4H, FoxIO's HTTP request fingerprint, from the header fields in wire
//     order (fasthttp's RawHeaders, or the first HTTP/2 HEADERS block);
//   - HeaderOrder, a hash of the header names exactly as sent (HTTP/1.1);
//   - the Akamai HTTP/2 fingerprint (SETTINGS, WINDOW_UPDATE, PRIORITY,
//     pseudo-header order) from a net.Conn wrapper that reads the start of an
//     HTTP/2 connection and then gets out of the way.
//
// The package depends on nothing in Levee and nothing depends on it but the
// data plane.
package fingerprint

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"slices"
)

// IsGREASE reports whether v is a GREASE value (RFC 8701): 0x?a?a with both
// bytes equal. JA4 ignores them everywhere.
func IsGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// ClientHello is the part of a TLS ClientHello that JA4 reads. Values may
// include GREASE; JA4 drops it.
//
// The zero value is an empty hello (JA4 t00i000000_000000000000_000000000000).
type ClientHello struct {
	// Protocol is 't' (TLS over TCP, the default when 0), 'q' (QUIC) or
	// 'd' (DTLS).
	Protocol byte
	// Version is the legacy handshake version, used when the hello has no
	// supported_versions extension.
	Version uint16
	// SupportedVersions from the supported_versions extension (0x002b).
	SupportedVersions []uint16
	CipherSuites      []uint16
	// Extensions in the order sent.
	Extensions []uint16
	// ALPN protocols in the order sent.
	ALPN []string
	// SignatureAlgorithms in the order sent.
	SignatureAlgorithms []uint16
}

// FromClientHelloInfo converts what crypto/tls exposes. Go gives the
// extension ids (Go 1.24+), cipher suites, ALPN list, signature schemes and
// supported versions, with GREASE kept. It does not give the record-layer or
// legacy handshake version when supported_versions is present (JA4 does not
// need them), nor the order of values inside other extensions; and it only
// calls GetConfigForClient for hellos that parse.
func FromClientHelloInfo(h *tls.ClientHelloInfo) ClientHello {
	ch := ClientHello{
		Protocol:          't',
		SupportedVersions: h.SupportedVersions,
		CipherSuites:      h.CipherSuites,
		Extensions:        h.Extensions,
		ALPN:              h.SupportedProtos,
	}
	if !slices.Contains(h.Extensions, 0x002b) && len(h.SupportedVersions) > 0 {
		// Without the extension Go lists versions up to the legacy one.
		ch.Version = slices.Max(h.SupportedVersions)
		ch.SupportedVersions = nil
	}
	if len(h.SignatureSchemes) > 0 {
		ch.SignatureAlgorithms = make([]uint16, len(h.SignatureSchemes))
		for i, s := range h.SignatureSchemes {
			ch.SignatureAlgorithms[i] = uint16(s)
		}
	}
	return ch
}

// JA4 of a ClientHello as crypto/tls reports it, e.g.
// "t13d1516h2_8daaf6152771_e5627efa2ab1".
func JA4(h *tls.ClientHelloInfo) string {
	ch := FromClientHelloInfo(h)
	return ch.JA4()
}

func versionCode(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0200:
		return "s2"
	case 0x0100:
		return "s1"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// ja4a appends the readable first part: protocol, version, SNI, counts, ALPN.
func (h *ClientHello) ja4a(dst []byte) []byte {
	p := h.Protocol
	if p == 0 {
		p = 't'
	}
	dst = append(dst, p)
	v := uint16(0)
	if slices.Contains(h.Extensions, 0x002b) {
		for _, x := range h.SupportedVersions {
			if !IsGREASE(x) && x > v && versionCode(x) != "00" {
				v = x
			}
		}
	}
	if v == 0 {
		v = h.Version
	}
	dst = append(dst, versionCode(v)...)
	if slices.Contains(h.Extensions, 0x0000) {
		dst = append(dst, 'd')
	} else {
		dst = append(dst, 'i')
	}
	dst = appendCount(dst, countNonGREASE(h.CipherSuites))
	dst = appendCount(dst, countNonGREASE(h.Extensions))
	alpn := ""
	if len(h.ALPN) > 0 {
		alpn = h.ALPN[0]
	}
	switch {
	case alpn == "":
		dst = append(dst, "00"...)
	case isAlnum(alpn[0]) && isAlnum(alpn[len(alpn)-1]):
		dst = append(dst, alpn[0], alpn[len(alpn)-1])
	default:
		const hx = "0123456789abcdef"
		dst = append(dst, hx[alpn[0]>>4], hx[alpn[len(alpn)-1]&15])
	}
	return dst
}

func countNonGREASE(vs []uint16) int {
	n := 0
	for _, v := range vs {
		if !IsGREASE(v) {
			n++
		}
	}
	return n
}

func appendCount(dst []byte, n int) []byte {
	n = min(n, 99)
	return append(dst, byte('0'+n/10), byte('0'+n%10))
}

func appendHex16(dst []byte, v uint16) []byte {
	const hx = "0123456789abcdef"
	return append(dst, hx[v>>12], hx[v>>8&15], hx[v>>4&15], hx[v&15])
}

// appendList appends the values as 4-digit hex, comma separated, skipping
// GREASE and the values for which skip is true.
func appendList(dst []byte, vs []uint16, skip func(uint16) bool) []byte {
	first := true
	for _, v := range vs {
		if IsGREASE(v) || (skip != nil && skip(v)) {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendHex16(dst, v)
	}
	return dst
}

func sorted(vs []uint16, buf []uint16) []uint16 {
	buf = append(buf[:0], vs...)
	slices.Sort(buf)
	return buf
}

func skipSNIALPN(v uint16) bool { return v == 0x0000 || v == 0x0010 }

// parts returns the raw strings of JA4 parts b and c (sorted lists).
func (h *ClientHello) parts(dst []byte) (b, c []byte) {
	var tmp [128]uint16
	dst = appendList(dst[:0], sorted(h.CipherSuites, tmp[:0]), nil)
	nb := len(dst)
	dst = appendList(dst, sorted(h.Extensions, tmp[:0]), skipSNIALPN)
	if len(h.SignatureAlgorithms) > 0 {
		dst = append(dst, '_')
		dst = appendList(dst, h.SignatureAlgorithms, nil)
	}
	return dst[:nb], dst[nb:]
}

func appendHash12(dst, s []byte) []byte {
	if len(s) == 0 {
		return append(dst, "000000000000"...)
	}
	sum := sha256.Sum256(s)
	return hex.AppendEncode(dst, sum[:6])
}

// JA4 returns the fingerprint "a_b_c".
func (h *ClientHello) JA4() string {
	var buf [1024]byte
	b, c := h.parts(buf[:0])
	var out [64]byte
	o := h.ja4a(out[:0])
	o = append(o, '_')
	o = appendHash12(o, b)
	o = append(o, '_')
	o = appendHash12(o, c) // zeros when there is nothing to hash
	return string(o)
}

// JA4Raw returns the unhashed form (FoxIO's ja4_r): the sorted cipher and
// extension lists and the signature algorithms.
func (h *ClientHello) JA4Raw() string {
	var buf [1024]byte
	b, c := h.parts(buf[:0])
	var out []byte
	out = h.ja4a(out)
	out = append(out, '_')
	out = append(out, b...)
	out = append(out, '_')
	out = append(out, c...)
	return string(out)
}

// String is JA4.
func (h *ClientHello) String() string { return h.JA4() }
