package proxyproto

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestReadHeaderTLVs(t *testing.T) {
	tlvArea := append(append(tlv(TLVALPN, "h2"), tlv(TLVAuthority, "example.com")...), tlv(TLVNoop, "")...)
	in := v2(0x21, 0x11, addr4("192.0.2.1", "192.0.2.2", 1, 443), tlvArea)
	buf := make([]byte, 64)
	r := bufio.NewReaderSize(bytes.NewReader(append(in, "REST"...)), MinBufferSize)
	h, tlvs, err := ReadHeaderTLVs(r, buf)
	if err != nil {
		t.Fatal(err)
	}
	if h.TLVBytes != len(tlvArea) || !bytes.Equal(tlvs, tlvArea) || &tlvs[0] != &buf[0] {
		t.Fatalf("TLVs = %q (TLVBytes %d), want %q in buf", tlvs, h.TLVBytes, tlvArea)
	}
	var got []string
	for typ, v := range TLVs(tlvs) {
		got = append(got, string(rune('0'+typ))+"="+string(v))
	}
	if strings.Join(got, ",") != "1=h2,2=example.com,4=" {
		t.Fatalf("TLVs iterate as %v", got)
	}
	if v, ok := FindTLV(tlvs, TLVAuthority); !ok || string(v) != "example.com" {
		t.Fatalf("FindTLV(authority) = %q, %v", v, ok)
	}
	if _, ok := FindTLV(tlvs, TLVUniqueID); ok {
		t.Fatal("FindTLV found an absent type")
	}
	if rest, _ := io.ReadAll(r); string(rest) != "REST" {
		t.Fatalf("rest = %q", rest)
	}

	cases := []struct {
		name    string
		in      []byte
		bufLen  int
		wantErr error
		wantNil bool
	}{
		{"too large for buffer", in, len(tlvArea) - 1, ErrTLVTooLarge, false},
		{"exact fit", in, len(tlvArea), nil, false},
		{"no tlvs", v2(0x21, 0x11, addr4("192.0.2.1", "192.0.2.2", 1, 443), nil), 0, nil, true},
		{"v1 has none", []byte("PROXY TCP4 1.2.3.4 1.2.3.5 1 2\r\n"), 8, nil, true},
		{"local has none", v2(0x20, 0x00, nil, tlv(TLVNoop, "xx")), 8, nil, true},
		{"broken tlv", v2(0x21, 0x11, addr4("192.0.2.1", "192.0.2.2", 1, 443), []byte{1, 0, 9, 'a'}), 64, ErrMalformed, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := bufio.NewReaderSize(bytes.NewReader(tc.in), MinBufferSize)
			_, tlvs, err := ReadHeaderTLVs(r, make([]byte, tc.bufLen))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tlvs == nil) != tc.wantNil {
				t.Fatalf("tlvs = %q, want nil: %v", tlvs, tc.wantNil)
			}
		})
	}
}

func TestAcceptTLVs(t *testing.T) {
	client, server := loopbackPair(t)
	hdr := v2(0x21, 0x21, addr6("2001:db8::1", "2001:db8::2", 5000, 443), append(tlv(TLVUniqueID, "conn-42"), tlv(TLVALPN, "http/1.1")...))
	client.Write(append(hdr, "GET / HTTP/1.1\r\n\r\n"...))
	var buf [256]byte
	pc, h, tlvs, err := AcceptTLVs(server, 2*time.Second, buf[:])
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := FindTLV(tlvs, TLVUniqueID); !ok || string(id) != "conn-42" || h.Source != ap("[2001:db8::1]:5000") {
		t.Fatalf("unique id %q %v, header %+v", id, ok, h)
	}
	line, err := bufio.NewReader(pc).ReadString('\n')
	if err != nil || line != "GET / HTTP/1.1\r\n" {
		t.Fatalf("first line after header = %q, %v", line, err)
	}
}

func TestReadHeaderTLVsAllocs(t *testing.T) {
	in := v2(0x21, 0x11, addr4("192.0.2.1", "192.0.2.2", 1, 443), append(tlv(TLVALPN, "h2"), tlv(TLVAuthority, "example.com")...))
	br := bufio.NewReaderSize(nil, MinBufferSize)
	rd := bytes.NewReader(in)
	buf := make([]byte, 128)
	n := testing.AllocsPerRun(100, func() {
		rd.Reset(in)
		br.Reset(rd)
		_, tlvs, err := ReadHeaderTLVs(br, buf)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := FindTLV(tlvs, TLVAuthority); !ok {
			t.Fatal("authority missing")
		}
	})
	if n != 0 {
		t.Fatalf("ReadHeaderTLVs + FindTLV allocate %v times", n)
	}
}
