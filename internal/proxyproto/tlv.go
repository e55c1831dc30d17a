package proxyproto

import (
	"errors"
	"iter"
)

// ErrTLVTooLarge means a v2 header carried more TLV bytes than the buffer
// given to ReadHeaderTLVs or AcceptTLVs holds.
var ErrTLVTooLarge = errors.New("proxyproto: TLVs larger than the buffer")

// Registered v2 TLV types (proxy-protocol.txt section 2.2.x).
const (
	TLVALPN      byte = 0x01 // application protocol, e.g. "h2"
	TLVAuthority byte = 0x02 // host name the client asked for (SNI)
	TLVCRC32C    byte = 0x03 // CRC32c of the header
	TLVNoop      byte = 0x04 // padding
	TLVUniqueID  byte = 0x05 // opaque connection ID, at most 128 bytes
	TLVSSL       byte = 0x20 // TLS information, with sub-TLVs
	TLVNetNS     byte = 0x30 // network namespace name
)

// validTLVs reports whether b is a sequence of complete TLVs
// (type:1, length:2 big-endian, value).
func validTLVs(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 3 {
			return false
		}
		n := 3 + (int(b[1])<<8 | int(b[2]))
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return true
}

// TLVs iterates over the TLV area returned by ReadHeaderTLVs or AcceptTLVs,
// yielding each type and value (a sub-slice of b). It stops at the first
// incomplete entry, which cannot occur for areas those functions returned.
func TLVs(b []byte) iter.Seq2[byte, []byte] {
	return func(yield func(byte, []byte) bool) {
		for len(b) >= 3 {
			n := 3 + (int(b[1])<<8 | int(b[2]))
			if n > len(b) {
				return
			}
			if !yield(b[0], b[3:n]) {
				return
			}
			b = b[n:]
		}
	}
}

// FindTLV returns the value of the first TLV of type t in b.
func FindTLV(b []byte, t byte) ([]byte, bool) {
	for typ, v := range TLVs(b) {
		if typ == t {
			return v, true
		}
	}
	return nil, false
}
