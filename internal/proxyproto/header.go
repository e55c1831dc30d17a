// Package proxyproto parses the PROXY protocol (versions 1 and 2) that a
// load balancer in front of the shield uses to pass on the real client and
// destination address of a TCP connection.
//
// The wire formats are the ones specified by HAProxy in proxy-protocol.txt:
// version 1 is a single text line ("PROXY TCP4 192.0.2.1 198.51.100.1 56324
// 443\r\n", at most 107 bytes), version 2 a binary header starting with a
// fixed 12-byte signature followed by a length-prefixed address block and
// optional TLVs.
//
// ReadHeader parses a header from a bufio.Reader. Accept wraps a freshly
// accepted net.Conn: it reads the header under a deadline and returns a
// net.Conn whose RemoteAddr and LocalAddr report the addresses from the
// header and whose Read first returns any bytes that arrived after the
// header. A malformed header is always an error: the receiver must close the
// connection and never guess.
package proxyproto

import (
	"errors"
	"net/netip"
)

// Command is the PROXY protocol command of a header.
type Command uint8

const (
	// CmdLocal means the connection was opened by the proxy itself (for
	// example a health check); the connection's own addresses apply. Only
	// version 2 headers carry it.
	CmdLocal Command = 0
	// CmdProxy means the connection was relayed on behalf of a client.
	CmdProxy Command = 1
)

// String returns "LOCAL" or "PROXY".
func (c Command) String() string {
	if c == CmdLocal {
		return "LOCAL"
	}
	return "PROXY"
}

// Protocol is the transport protocol and address family a header announces.
type Protocol uint8

const (
	// ProtoUnspec is v1 "UNKNOWN" or a v2 header with an unspecified family
	// or transport: the receiver uses the connection's own addresses.
	ProtoUnspec Protocol = iota
	// ProtoTCP4 is TCP over IPv4.
	ProtoTCP4
	// ProtoTCP6 is TCP over IPv6.
	ProtoTCP6
	// ProtoUDP4 is UDP over IPv4 (v2 only).
	ProtoUDP4
	// ProtoUDP6 is UDP over IPv6 (v2 only).
	ProtoUDP6
	// ProtoUnixStream is a UNIX stream socket (v2 only); addresses are not
	// reported.
	ProtoUnixStream
	// ProtoUnixDgram is a UNIX datagram socket (v2 only); addresses are not
	// reported.
	ProtoUnixDgram
)

var protoNames = [...]string{"UNKNOWN", "TCP4", "TCP6", "UDP4", "UDP6", "UNIX_STREAM", "UNIX_DGRAM"}

// String returns the protocol name as used in v1 headers ("TCP4", "UNKNOWN", ...).
func (p Protocol) String() string {
	if int(p) < len(protoNames) {
		return protoNames[p]
	}
	return "INVALID"
}

// Header is a parsed PROXY protocol header.
//
// The zero value is a v0 LOCAL header with no addresses, which Proxied
// reports as false. Header is a plain value and safe to copy and share.
type Header struct {
	// Version is 1 (text) or 2 (binary).
	Version int
	// Command is CmdProxy for relayed connections and CmdLocal for
	// connections opened by the proxy itself (v2 only).
	Command Command
	// Protocol is the announced transport and family.
	Protocol Protocol
	// Source is the client address. It is valid only when Proxied is true.
	Source netip.AddrPort
	// Dest is the address the client connected to on the proxy. It is valid
	// only when Proxied is true.
	Dest netip.AddrPort
	// TLVBytes is the number of v2 TLV bytes that followed the address
	// block. TLVs are validated for structure and skipped.
	TLVBytes int
}

// Proxied reports whether the header carries usable IP addresses. When it is
// false (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC or UNIX) the connection's own
// addresses must be used.
func (h Header) Proxied() bool {
	return h.Command == CmdProxy && h.Source.IsValid() && h.Dest.IsValid()
}

// Limits of the wire format.
const (
	// MaxV1Len is the longest valid v1 header line including "\r\n".
	MaxV1Len = 107
	// MaxV2Len is the largest v2 length field (address block plus TLVs)
	// this package accepts. The spec allows up to 65535; real proxies send a
	// few hundred bytes at most, so anything larger is treated as malformed.
	MaxV2Len = 2048
)

// Errors returned by ReadHeader. Parse errors wrap ErrMalformed so callers
// can test with errors.Is.
var (
	// ErrNoHeader means the connection did not start with a PROXY protocol
	// signature.
	ErrNoHeader = errors.New("proxyproto: no PROXY protocol header")
	// ErrMalformed means the header started with a valid signature but was
	// not well formed.
	ErrMalformed = errors.New("proxyproto: malformed header")
)

var v2Sig = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}
