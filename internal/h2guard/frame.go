package h2guard

// HTTP/2 frame types and flags this package looks at (RFC 9113 section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePing         = 0x6
	frameContinuation = 0x9

	flagEndStream  = 0x1 // DATA, HEADERS
	flagACK        = 0x1 // SETTINGS, PING
	flagEndHeaders = 0x4 // HEADERS, CONTINUATION
)

// clientPreface is the connection preface every HTTP/2 client sends first.
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

const frameHeaderLen = 9

// frameHeader is the fixed 9-byte header of an HTTP/2 frame. For a
// RST_STREAM frame with the valid 4-byte payload, ErrCode holds its error
// code (the only payload bytes the scanner keeps).
type frameHeader struct {
	Length   uint32
	Type     uint8
	Flags    uint8
	StreamID uint32
	ErrCode  uint32
}

func parseFrameHeader(b []byte) frameHeader {
	_ = b[8]
	return frameHeader{
		Length:   uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		Type:     b[3],
		Flags:    b[4],
		StreamID: (uint32(b[5])<<24 | uint32(b[6])<<16 | uint32(b[7])<<8 | uint32(b[8])) & (1<<31 - 1),
	}
}

// scanner follows the frame structure of one direction of an HTTP/2
// connection incrementally: bytes may arrive split anywhere and many frames
// may arrive at once. It copies nothing but partial 9-byte frame headers
// and skips payloads by counting.
//
// The zero value scans a server-to-client stream (no preface). A scanner
// is not safe for concurrent use.
type scanner struct {
	preface  int  // bytes of the client preface still expected
	prefOff  int  // bytes of the client preface matched so far
	broken   bool // the stream is not HTTP/2: scanning stopped
	hdrN     int  // bytes of hdr filled
	hdr      [frameHeaderLen]byte
	skip     uint32 // payload bytes of the current frame still to pass
	consumed uint64 // total bytes seen, for tests

	// A RST_STREAM frame is reported once its 4-byte error code is in.
	pending bool
	pend    frameHeader
	pay     [4]byte
	payN    int
}

// newClientScanner returns a scanner for the client-to-server direction,
// which starts with the 24-byte connection preface.
func newClientScanner() scanner { return scanner{preface: len(clientPreface)} }

// next consumes a prefix of p (at least one byte if p is not empty) and
// reports the header of a frame whose 9-byte header completed within it.
// Callers loop until p is empty.
func (s *scanner) next(p []byte) (n int, fh frameHeader, ok bool) {
	if len(p) == 0 {
		return 0, fh, false
	}
	if s.broken {
		s.consumed += uint64(len(p))
		return len(p), fh, false
	}
	if s.preface > 0 {
		k := min(len(p), s.preface)
		if string(p[:k]) != clientPreface[s.prefOff:s.prefOff+k] {
			s.broken = true
			s.consumed += uint64(len(p))
			return len(p), fh, false
		}
		s.preface -= k
		s.prefOff += k
		s.consumed += uint64(k)
		return k, fh, false
	}
	if s.pending {
		k := copy(s.pay[s.payN:], p)
		s.payN += k
		s.skip -= uint32(k)
		s.consumed += uint64(k)
		if s.payN < len(s.pay) {
			return k, fh, false
		}
		s.pending = false
		fh = s.pend
		fh.ErrCode = uint32(s.pay[0])<<24 | uint32(s.pay[1])<<16 | uint32(s.pay[2])<<8 | uint32(s.pay[3])
		return k, fh, true
	}
	if s.skip > 0 {
		k := uint32(len(p))
		if k > s.skip {
			k = s.skip
		}
		s.skip -= k
		s.consumed += uint64(k)
		return int(k), fh, false
	}
	var k int
	if s.hdrN == 0 && len(p) >= frameHeaderLen {
		fh = parseFrameHeader(p)
		k = frameHeaderLen
	} else {
		k = copy(s.hdr[s.hdrN:], p)
		s.hdrN += k
		if s.hdrN < frameHeaderLen {
			s.consumed += uint64(k)
			return k, fh, false
		}
		s.hdrN = 0
		fh = parseFrameHeader(s.hdr[:])
	}
	s.consumed += uint64(k)
	s.skip = fh.Length
	if fh.Type == frameRSTStream && fh.Length == 4 {
		s.pending, s.pend, s.payN = true, fh, 0
		return k, frameHeader{}, false
	}
	return k, fh, true
}
