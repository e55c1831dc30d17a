package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

// v2 builds a v2 header: verCmd, fam, address block and extra (TLV) bytes.
func v2(verCmd, fam byte, addr []byte, extra []byte) []byte {
	b := append([]byte{}, v2Sig[:]...)
	b = append(b, verCmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(addr)+len(extra)))
	b = append(b, addr...)
	return append(b, extra...)
}

func addr4(src, dst string, sp, dp uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sp), dp)
}

func addr6(src, dst string, sp, dp uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sp), dp)
}

func tlv(t byte, v string) []byte {
	return append([]byte{t, byte(len(v) >> 8), byte(len(v))}, v...)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

var validCases = []struct {
	name string
	in   []byte
	want Header
}{
	{"v1 tcp4", []byte("PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"),
		Header{Version: 1, Command: CmdProxy, Protocol: ProtoTCP4, Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.7:443")}},
	{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 0\r\n"),
		Header{Version: 1, Command: CmdProxy, Protocol: ProtoTCP6, Source: ap("[2001:db8::1]:65535"), Dest: ap("[2001:db8::2]:0")}},
	{"v1 tcp6 mapped is unmapped", []byte("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n"),
		Header{Version: 1, Command: CmdProxy, Protocol: ProtoTCP6, Source: ap("192.0.2.1:1"), Dest: ap("[::1]:2")}},
	{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		Header{Version: 1, Command: CmdProxy, Protocol: ProtoTCP6,
			Source: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"), Dest: ap("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")}},
	{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Command: CmdProxy, Protocol: ProtoUnspec}},
	{"v1 unknown with junk", []byte("PROXY UNKNOWN ffff:f::1 whatever 1 2\r\n"), Header{Version: 1, Command: CmdProxy, Protocol: ProtoUnspec}},
	{"v2 tcp4", v2(0x21, 0x11, addr4("192.0.2.1", "198.51.100.7", 56324, 443), nil),
		Header{Version: 2, Command: CmdProxy, Protocol: ProtoTCP4, Source: ap("192.0.2.1:56324"), Dest: ap("198.51.100.7:443")}},
	{"v2 udp4", v2(0x21, 0x12, addr4("192.0.2.1", "198.51.100.7", 53, 53), nil),
		Header{Version: 2, Command: CmdProxy, Protocol: ProtoUDP4, Source: ap("192.0.2.1:53"), Dest: ap("198.51.100.7:53")}},
	{"v2 tcp6 with tlvs", v2(0x21, 0x21, addr6("2001:db8::1", "2001:db8::2", 1234, 443), append(tlv(0x01, "h2"), tlv(0x02, "example.com")...)),
		Header{Version: 2, Command: CmdProxy, Protocol: ProtoTCP6, Source: ap("[2001:db8::1]:1234"), Dest: ap("[2001:db8::2]:443"), TLVBytes: 5 + 14}},
	{"v2 tcp6 empty tlv", v2(0x21, 0x21, addr6("::1", "::1", 1, 2), tlv(0x04, "")),
		Header{Version: 2, Command: CmdProxy, Protocol: ProtoTCP6, Source: ap("[::1]:1"), Dest: ap("[::1]:2"), TLVBytes: 3}},
	{"v2 local", v2(0x20, 0x00, nil, nil), Header{Version: 2, Command: CmdLocal}},
	{"v2 local ignores block", v2(0x20, 0x11, addr4("192.0.2.1", "192.0.2.2", 1, 2), nil), Header{Version: 2, Command: CmdLocal}},
	{"v2 local odd family", v2(0x20, 0xFF, []byte{1, 2, 3}, nil), Header{Version: 2, Command: CmdLocal}},
	{"v2 proxy unspec", v2(0x21, 0x00, nil, nil), Header{Version: 2, Command: CmdProxy, Protocol: ProtoUnspec}},
	{"v2 unix", v2(0x21, 0x31, make([]byte, 216), nil), Header{Version: 2, Command: CmdProxy, Protocol: ProtoUnixStream}},
	{"v2 tcp4 trailing tlv", v2(0x21, 0x11, addr4("10.0.0.1", "10.0.0.2", 80, 81), tlv(0xEE, strings.Repeat("x", 300))),
		Header{Version: 2, Command: CmdProxy, Protocol: ProtoTCP4, Source: ap("10.0.0.1:80"), Dest: ap("10.0.0.2:81"), TLVBytes: 303}},
}

func TestReadHeaderValid(t *testing.T) {
	const trailer = "GET / HTTP/1.1\r\n\r\n"
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReaderSize(bytes.NewReader(append(append([]byte{}, tc.in...), trailer...)), MinBufferSize)
			h, err := ReadHeader(r)
			if err != nil {
				t.Fatalf("ReadHeader: %v", err)
			}
			if h != tc.want {
				t.Fatalf("header = %+v, want %+v", h, tc.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != trailer {
				t.Fatalf("bytes after header = %q, want %q", rest, trailer)
			}
			wantProxied := tc.want.Source.IsValid()
			if h.Proxied() != wantProxied {
				t.Fatalf("Proxied() = %v, want %v", h.Proxied(), wantProxied)
			}
		})
	}
}

func TestReadHeaderInvalid(t *testing.T) {
	tcp4 := addr4("192.0.2.1", "192.0.2.2", 1, 2)
	cases := []struct {
		name      string
		in        []byte
		malformed bool // else ErrNoHeader or an I/O error
		noHeader  bool
	}{
		{"http request", []byte("GET / HTTP/1.1\r\n\r\n"), false, true},
		{"post starts with P", []byte("POST / HTTP/1.1\r\n\r\n"), false, true},
		{"tls hello", []byte{0x16, 0x03, 0x01, 0x00, 0x10}, false, true},
		{"lowercase proxy", []byte("proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n"), false, true},
		{"v1 LF only", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n"), true, false},
		{"v1 no CRLF within 107", []byte("PROXY UNKNOWN " + strings.Repeat("a", 120) + "\r\n"), true, false},
		{"v1 108 bytes", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n"), true, false},
		{"v1 bad proto", []byte("PROXY TCP5 1.2.3.4 1.2.3.5 1 2\r\n"), true, false},
		{"v1 UDP4 not in v1", []byte("PROXY UDP4 1.2.3.4 1.2.3.5 1 2\r\n"), true, false},
		{"v1 double space", []byte("PROXY TCP4  1.2.3.4 1.2.3.5 1 2\r\n"), true, false},
		{"v1 missing port", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 1\r\n"), true, false},
		{"v1 extra field", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 1 2 3\r\n"), true, false},
		{"v1 trailing space", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 1 2 \r\n"), true, false},
		{"v1 port too big", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 65536 2\r\n"), true, false},
		{"v1 port leading zero", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 080 2\r\n"), true, false},
		{"v1 port sign", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 +80 2\r\n"), true, false},
		{"v1 bad ipv4", []byte("PROXY TCP4 1.2.3.256 1.2.3.5 80 2\r\n"), true, false},
		{"v1 v6 in tcp4", []byte("PROXY TCP4 ::1 ::1 80 2\r\n"), true, false},
		{"v1 v4 in tcp6", []byte("PROXY TCP6 1.2.3.4 1.2.3.4 80 2\r\n"), true, false},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 80 2\r\n"), true, false},
		{"v1 hostname", []byte("PROXY TCP4 localhost 1.2.3.4 80 2\r\n"), true, false},
		{"v1 stray CR", []byte("PROXY TCP4 1.2.3.4\r1.2.3.5 1 2\r\n"), true, false},
		{"v1 NUL", []byte("PROXY TCP4 1.2.3.4\x001.2.3.5 1 2\r\n"), true, false},
		{"v1 truncated", []byte("PROXY TCP4 1.2.3.4"), false, false},
		{"v2 bad version", v2(0x11, 0x11, tcp4, nil), true, false},
		{"v2 bad command", v2(0x22, 0x11, tcp4, nil), true, false},
		{"v2 bad family", v2(0x21, 0x41, tcp4, nil), true, false},
		{"v2 inet unspec transport", v2(0x21, 0x10, tcp4, nil), true, false},
		{"v2 short inet block", v2(0x21, 0x11, tcp4[:11], nil), true, false},
		{"v2 short inet6 block", v2(0x21, 0x21, tcp4, nil), true, false},
		{"v2 length over limit", func() []byte {
			b := v2(0x21, 0x11, tcp4, nil)
			binary.BigEndian.PutUint16(b[14:], MaxV2Len+1)
			return b
		}(), true, false},
		{"v2 tlv past length", v2(0x21, 0x11, tcp4, []byte{0x01, 0x00, 0x05, 'a'}), true, false},
		{"v2 tlv fragment", v2(0x21, 0x11, tcp4, []byte{0x01, 0x00}), true, false},
		{"v2 truncated block", v2(0x21, 0x11, tcp4, nil)[:20], false, false},
		{"v2 truncated fixed part", append(v2Sig[:], 0x21), false, false},
		{"v2 bad signature", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 0), false, true},
		{"empty", nil, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReaderSize(bytes.NewReader(tc.in), MinBufferSize)
			h, err := ReadHeader(r)
			if err == nil {
				t.Fatalf("ReadHeader accepted %q as %+v", tc.in, h)
			}
			if got := IsMalformed(err); got != tc.malformed {
				t.Fatalf("IsMalformed(%v) = %v, want %v", err, got, tc.malformed)
			}
			if got := errors.Is(err, ErrNoHeader); got != tc.noHeader {
				t.Fatalf("errors.Is(%v, ErrNoHeader) = %v, want %v", err, got, tc.noHeader)
			}
			if h != (Header{}) {
				t.Fatalf("header on error = %+v, want zero", h)
			}
		})
	}
}

func TestReadHeaderSmallBuffer(t *testing.T) {
	r := bufio.NewReaderSize(strings.NewReader("PROXY UNKNOWN\r\n"), 16)
	if _, err := ReadHeader(r); err == nil {
		t.Fatal("ReadHeader accepted a 16-byte bufio.Reader")
	}
}

// oneByteReader delivers one byte per Read, like a peer trickling a header.
type oneByteReader struct{ b []byte }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(o.b) == 0 {
		return 0, io.EOF
	}
	p[0] = o.b[0]
	o.b = o.b[1:]
	return 1, nil
}

func TestReadHeaderTrickled(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			in := append(append([]byte{}, tc.in...), "XY"...)
			r := bufio.NewReaderSize(&oneByteReader{b: in}, MinBufferSize)
			h, err := ReadHeader(r)
			if err != nil || h != tc.want {
				t.Fatalf("ReadHeader = %+v, %v; want %+v", h, err, tc.want)
			}
			rest, _ := io.ReadAll(r)
			if string(rest) != "XY" {
				t.Fatalf("rest = %q", rest)
			}
		})
	}
}

func TestReadHeaderAllocs(t *testing.T) {
	for _, tc := range validCases {
		br := bufio.NewReaderSize(nil, MinBufferSize)
		rd := bytes.NewReader(tc.in)
		allocs := testing.AllocsPerRun(100, func() {
			rd.Reset(tc.in)
			br.Reset(rd)
			if _, err := ReadHeader(br); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per ReadHeader, want 0", tc.name, allocs)
		}
	}
}

func FuzzReadHeader(f *testing.F) {
	for _, tc := range validCases {
		f.Add(tc.in)
	}
	f.Add([]byte("PROXY TCP4 1.2.3.4 1.2.3.5 1 2\n"))
	f.Add(v2(0x21, 0x11, addr4("1.2.3.4", "1.2.3.5", 1, 2), []byte{0x01, 0x00}))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(in), MinBufferSize)
		h, err := ReadHeader(r)
		if err != nil {
			if h != (Header{}) {
				t.Fatalf("non-zero header with error: %+v", h)
			}
			return
		}
		consumed := len(in) - r.Buffered()
		rest, _ := io.ReadAll(r)
		consumed = len(in) - len(rest)
		switch h.Version {
		case 1:
			if consumed > MaxV1Len || !bytes.HasSuffix(in[:consumed], []byte("\r\n")) {
				t.Fatalf("v1 consumed %d bytes %q", consumed, in[:consumed])
			}
		case 2:
			if consumed != 16+int(binary.BigEndian.Uint16(in[14:16])) {
				t.Fatalf("v2 consumed %d bytes, length field says %d", consumed, 16+int(binary.BigEndian.Uint16(in[14:16])))
			}
		default:
			t.Fatalf("version %d", h.Version)
		}
		if h.Source.IsValid() != h.Dest.IsValid() {
			t.Fatalf("half-valid addresses: %+v", h)
		}
		// ReadHeaderTLVs agrees with ReadHeader and returns a valid area.
		h2, tlvs, err := ReadHeaderTLVs(bufio.NewReaderSize(bytes.NewReader(in), MinBufferSize), make([]byte, MaxV2Len))
		if err != nil || h2 != h || len(tlvs) != h.TLVBytes || !validTLVs(tlvs) {
			t.Fatalf("ReadHeaderTLVs = %+v, %d TLV bytes, %v; ReadHeader = %+v", h2, len(tlvs), err, h)
		}
		total := 0
		for _, v := range TLVs(tlvs) {
			total += 3 + len(v)
		}
		if total != len(tlvs) {
			t.Fatalf("TLVs iterated %d of %d bytes", total, len(tlvs))
		}
		if h.Proxied() {
			if h.Source.Addr().Is4In6() || h.Dest.Addr().Is4In6() || h.Source.Addr().Zone() != "" {
				t.Fatalf("non-canonical address: %+v", h)
			}
			// A v1 header re-encoded from the result must parse to the same header.
			if h.Version == 1 {
				line := "PROXY " + h.Protocol.String() + " " + h.Source.Addr().String() + " " + h.Dest.Addr().String() + " " +
					itoa(h.Source.Port()) + " " + itoa(h.Dest.Port()) + "\r\n"
				h2, err := ReadHeader(bufio.NewReaderSize(strings.NewReader(line), MinBufferSize))
				if err != nil || h2 != h {
					// TCP6 with an IPv4-mapped source is unmapped on parse and
					// re-encodes as TCP6 with a v4 literal, which is invalid.
					if !(h.Protocol == ProtoTCP6 && (h.Source.Addr().Is4() || h.Dest.Addr().Is4())) {
						t.Fatalf("round trip of %q: %+v, %v; want %+v", line, h2, err, h)
					}
				}
			}
		}
	})
}

func itoa(v uint16) string {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}

func BenchmarkReadHeader(b *testing.B) {
	for _, name := range []string{"v1 tcp4", "v2 tcp6 with tlvs"} {
		var in []byte
		for _, tc := range validCases {
			if tc.name == name {
				in = tc.in
			}
		}
		b.Run(strings.ReplaceAll(name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				br := bufio.NewReaderSize(nil, MinBufferSize)
				rd := bytes.NewReader(in)
				for pb.Next() {
					rd.Reset(in)
					br.Reset(rd)
					if _, err := ReadHeader(br); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
