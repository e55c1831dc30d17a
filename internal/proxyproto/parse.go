package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"unsafe"
)

// MinBufferSize is the smallest bufio.Reader buffer ReadHeader works with.
const MinBufferSize = 256

// ReadHeader reads one PROXY protocol header (v1 or v2) from r and leaves r
// positioned on the first byte after it.
//
// It returns ErrNoHeader (possibly wrapped) when the stream does not start
// with a PROXY protocol signature, an error wrapping ErrMalformed when the
// header is not well formed, and a wrapped read error (for example a
// deadline) when the stream ends or stalls inside the header. After any
// error the connection must be closed: the stream position is undefined.
//
// r must have a buffer of at least MinBufferSize bytes (bufio.NewReader's
// default of 4096 is fine). ReadHeader does not allocate on success.
func ReadHeader(r *bufio.Reader) (Header, error) {
	h, _, err := readHeader(r, nil)
	return h, err
}

// ReadHeaderTLVs is ReadHeader that also copies the TLV area of a v2
// PROXY header into tlvBuf and returns it (tlvBuf[:Header.TLVBytes], nil
// for v1 and LOCAL headers). Iterate over it with TLVs. If the TLV area is
// larger than tlvBuf, the error wraps ErrTLVTooLarge and the header must be
// treated as unusable. ReadHeaderTLVs does not allocate on success.
func ReadHeaderTLVs(r *bufio.Reader, tlvBuf []byte) (Header, []byte, error) {
	if tlvBuf == nil {
		tlvBuf = []byte{}
	}
	return readHeader(r, tlvBuf)
}

// readHeader parses a header. A nil tlvBuf means TLVs are skipped.
func readHeader(r *bufio.Reader, tlvBuf []byte) (Header, []byte, error) {
	if r.Size() < MinBufferSize {
		return Header{}, nil, fmt.Errorf("proxyproto: bufio.Reader buffer is %d bytes, need at least %d", r.Size(), MinBufferSize)
	}
	b, err := r.Peek(1)
	if err != nil {
		return Header{}, nil, fmt.Errorf("proxyproto: read header: %w", err)
	}
	switch b[0] {
	case 'P':
		h, err := readV1(r)
		return h, nil, err
	case v2Sig[0]:
		return readV2(r, tlvBuf)
	}
	return Header{}, nil, ErrNoHeader
}

func malformed(what string) error {
	return fmt.Errorf("%w: %s", ErrMalformed, what)
}

// readV1 reads the text form: "PROXY <proto> <src> <dst> <sport> <dport>\r\n".
func readV1(r *bufio.Reader) (Header, error) {
	var line []byte
	for {
		n := min(r.Buffered(), MaxV1Len)
		b, _ := r.Peek(n)
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
			break
		}
		if !isPrefixOf(b, "PROXY ") {
			return Header{}, ErrNoHeader
		}
		if n >= MaxV1Len {
			return Header{}, malformed("v1 line longer than 107 bytes")
		}
		// Block for at least one more byte.
		if _, err := r.Peek(n + 1); err != nil {
			return Header{}, fmt.Errorf("proxyproto: read v1 header: %w", err)
		}
	}
	h, err := parseV1(line)
	if err != nil {
		return Header{}, err
	}
	_, _ = r.Discard(len(line)) // cannot fail: the bytes are buffered
	return h, nil
}

// isPrefixOf reports whether b is consistent with starting with prefix
// (b may be shorter than prefix).
func isPrefixOf(b []byte, prefix string) bool {
	n := min(len(b), len(prefix))
	return string(b[:n]) == prefix[:n]
}

// parseV1 parses one complete v1 line including its trailing "\n".
func parseV1(line []byte) (Header, error) {
	if !bytes.HasPrefix(line, []byte("PROXY ")) {
		return Header{}, ErrNoHeader
	}
	if len(line) < 8 || line[len(line)-2] != '\r' {
		return Header{}, malformed("v1 line does not end in CRLF")
	}
	rest := line[len("PROXY ") : len(line)-2]
	if bytes.IndexByte(rest, '\r') >= 0 {
		return Header{}, malformed("v1 line contains a stray CR")
	}
	proto, rest, _ := cut(rest)
	h := Header{Version: 1, Command: CmdProxy}
	switch string(proto) {
	case "UNKNOWN":
		// The receiver must ignore everything up to the CRLF.
		h.Protocol = ProtoUnspec
		return h, nil
	case "TCP4":
		h.Protocol = ProtoTCP4
	case "TCP6":
		h.Protocol = ProtoTCP6
	default:
		return Header{}, malformed("v1 protocol is not TCP4, TCP6 or UNKNOWN")
	}
	var f [4][]byte
	for i := range f {
		var ok bool
		f[i], rest, ok = cut(rest)
		if len(f[i]) == 0 || (i < 3) != ok {
			return Header{}, malformed("v1 line needs exactly four single-space separated fields after the protocol")
		}
	}
	src, ok1 := parseIP(f[0])
	dst, ok2 := parseIP(f[1])
	if !ok1 || !ok2 {
		return Header{}, malformed("v1 address is not a valid IP address")
	}
	if want4 := h.Protocol == ProtoTCP4; src.Is4() != want4 || dst.Is4() != want4 {
		return Header{}, malformed("v1 address family does not match the protocol")
	}
	sp, ok1 := parsePort(f[2])
	dp, ok2 := parsePort(f[3])
	if !ok1 || !ok2 {
		return Header{}, malformed("v1 port is not a decimal number in 0..65535")
	}
	h.Source = netip.AddrPortFrom(src.Unmap(), sp)
	h.Dest = netip.AddrPortFrom(dst.Unmap(), dp)
	return h, nil
}

// cut splits b at the first space. ok reports whether a space was found.
func cut(b []byte) (before, after []byte, ok bool) {
	if i := bytes.IndexByte(b, ' '); i >= 0 {
		return b[:i], b[i+1:], true
	}
	return b, nil, false
}

// parseIP parses an IPv4 or IPv6 literal without zone from b without
// allocating. Characters outside [0-9a-fA-F.:] are rejected up front, so
// netip.ParseAddr never sees a zone and never retains the string, which
// makes the unsafe.String view of b safe.
func parseIP(b []byte) (netip.Addr, bool) {
	if len(b) == 0 || len(b) > 45 {
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

// parsePort parses a decimal port without sign or leading zeros.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	var v uint32
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint32(c-'0')
	}
	if v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

// readV2 reads the binary form.
func readV2(r *bufio.Reader, tlvBuf []byte) (Header, []byte, error) {
	// Fail fast on what is already buffered before waiting for 16 bytes.
	if b, _ := r.Peek(r.Buffered()); !isPrefixOf(b, string(v2Sig[:])) {
		return Header{}, nil, ErrNoHeader
	}
	b, err := r.Peek(16)
	if !isPrefixOf(b, string(v2Sig[:])) {
		return Header{}, nil, ErrNoHeader
	}
	if err != nil {
		return Header{}, nil, fmt.Errorf("proxyproto: read v2 header: %w", err)
	}
	verCmd, fam := b[12], b[13]
	length := int(b[14])<<8 | int(b[15])
	if verCmd>>4 != 2 {
		return Header{}, nil, malformed("v2 version nibble is not 2")
	}
	if length > MaxV2Len {
		return Header{}, nil, malformed(fmt.Sprintf("v2 length %d exceeds the limit of %d", length, MaxV2Len))
	}
	h := Header{Version: 2}
	switch verCmd & 0x0F {
	case 0x0:
		// LOCAL: the address block, whatever its family, is ignored.
		h.Command = CmdLocal
		_, _ = r.Discard(16)
		if _, err := r.Discard(length); err != nil {
			return Header{}, nil, fmt.Errorf("proxyproto: read v2 address block: %w", err)
		}
		return h, nil, nil
	case 0x1:
		h.Command = CmdProxy
	default:
		return Header{}, nil, malformed("v2 command is neither LOCAL nor PROXY")
	}
	var addrLen int
	switch fam {
	case 0x00:
		h.Protocol, addrLen = ProtoUnspec, 0
	case 0x11:
		h.Protocol, addrLen = ProtoTCP4, 12
	case 0x12:
		h.Protocol, addrLen = ProtoUDP4, 12
	case 0x21:
		h.Protocol, addrLen = ProtoTCP6, 36
	case 0x22:
		h.Protocol, addrLen = ProtoUDP6, 36
	case 0x31:
		h.Protocol, addrLen = ProtoUnixStream, 216
	case 0x32:
		h.Protocol, addrLen = ProtoUnixDgram, 216
	default:
		return Header{}, nil, malformed(fmt.Sprintf("v2 address family/transport byte 0x%02x is not defined", fam))
	}
	if length < addrLen {
		return Header{}, nil, malformed(fmt.Sprintf("v2 length %d is shorter than the %s address block (%d)", length, h.Protocol, addrLen))
	}
	_, _ = r.Discard(16)
	switch addrLen {
	case 12, 36:
		a, err := r.Peek(addrLen)
		if err != nil {
			return Header{}, nil, fmt.Errorf("proxyproto: read v2 address block: %w", err)
		}
		n := addrLen/2 - 2
		src, _ := netip.AddrFromSlice(a[:n])
		dst, _ := netip.AddrFromSlice(a[n : 2*n])
		sp := uint16(a[2*n])<<8 | uint16(a[2*n+1])
		dp := uint16(a[2*n+2])<<8 | uint16(a[2*n+3])
		h.Source = netip.AddrPortFrom(src.Unmap(), sp)
		h.Dest = netip.AddrPortFrom(dst.Unmap(), dp)
		_, _ = r.Discard(addrLen)
	case 216:
		if _, err := r.Discard(addrLen); err != nil {
			return Header{}, nil, fmt.Errorf("proxyproto: read v2 address block: %w", err)
		}
	}
	n := length - addrLen
	if tlvBuf == nil {
		if err := skipTLVs(r, n); err != nil {
			return Header{}, nil, err
		}
		h.TLVBytes = n
		return h, nil, nil
	}
	if n > len(tlvBuf) {
		return Header{}, nil, fmt.Errorf("%w: %d bytes of TLVs, buffer holds %d", ErrTLVTooLarge, n, len(tlvBuf))
	}
	tlvs := tlvBuf[:n]
	if _, err := io.ReadFull(r, tlvs); err != nil {
		return Header{}, nil, fmt.Errorf("proxyproto: read v2 TLVs: %w", err)
	}
	if !validTLVs(tlvs) {
		return Header{}, nil, malformed("v2 TLVs do not tile the header length")
	}
	h.TLVBytes = n
	if n == 0 {
		tlvs = nil
	}
	return h, tlvs, nil
}

// skipTLVs checks that n bytes form a sequence of complete TLVs
// (type:1, length:2, value) and discards them.
func skipTLVs(r *bufio.Reader, n int) error {
	for n > 0 {
		if n < 3 {
			return malformed("v2 TLV area ends inside a TLV header")
		}
		t, err := r.Peek(3)
		if err != nil {
			return fmt.Errorf("proxyproto: read v2 TLV: %w", err)
		}
		tl := 3 + (int(t[1])<<8 | int(t[2]))
		if tl > n {
			return malformed("v2 TLV runs past the header length")
		}
		if _, err := r.Discard(tl); err != nil {
			return fmt.Errorf("proxyproto: read v2 TLV: %w", err)
		}
		n -= tl
	}
	return nil
}

// IsMalformed reports whether err means the peer sent a bad header (as
// opposed to no header or an I/O error).
func IsMalformed(err error) bool { return errors.Is(err, ErrMalformed) }
