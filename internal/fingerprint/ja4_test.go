package fingerprint

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
)

func hexList(t testing.TB, s string) []uint16 {
	t.Helper()
	if s == "" {
		return nil
	}
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(f, 16, 16)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, uint16(v))
	}
	return out
}

// Vectors: FoxIO's JA4 spec (technical_details/JA4.md, v0.18.2) gives the
// Chrome example with its original-order lists; browserleaks' published
// capture of Chrome 143 gives ja4_ro and ja4.
func TestJA4Vectors(t *testing.T) {
	specSig := "0403,0804,0401,0503,0805,0501,0806,0601"
	tests := []struct {
		name                  string
		ciphers, exts, sigalg string
		alpn                  []string
		want, wantRaw         string
	}{{
		name:    "FoxIO spec example",
		ciphers: "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
		exts:    "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015",
		sigalg:  specSig, alpn: []string{"h2", "http/1.1"},
		want:    "t13d1516h2_8daaf6152771_e5627efa2ab1",
		wantRaw: "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
	}, {
		name:    "FoxIO spec example with GREASE",
		ciphers: "0a0a,1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
		exts:    "2a2a,001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015,fafa",
		sigalg:  specSig, alpn: []string{"h2", "http/1.1"},
		want: "t13d1516h2_8daaf6152771_e5627efa2ab1",
	}, {
		name:    "FoxIO spec: no signature algorithms",
		ciphers: "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
		exts:    "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015",
		alpn:    []string{"h2"},
		want:    "t13d1516h2_8daaf6152771_6d807ffa2a79",
	}, {
		name:    "browserleaks Chrome 143",
		ciphers: "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035",
		exts:    "002d,0033,0010,fe0d,0017,44cd,0000,000b,000a,002b,ff01,0023,0012,0005,000d,001b",
		sigalg:  specSig, alpn: []string{"h2", "http/1.1"},
		want: "t13d1516h2_8daaf6152771_d8a2da3f94cd",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := ClientHello{
				Version:             0x0303,
				SupportedVersions:   []uint16{0x3a3a, 0x0304, 0x0303},
				CipherSuites:        hexList(t, tc.ciphers),
				Extensions:          hexList(t, tc.exts),
				SignatureAlgorithms: hexList(t, tc.sigalg),
				ALPN:                tc.alpn,
			}
			if got := h.JA4(); got != tc.want {
				t.Errorf("JA4 = %s, want %s", got, tc.want)
			}
			if tc.wantRaw != "" && h.JA4Raw() != tc.wantRaw {
				t.Errorf("JA4_r = %s\nwant    %s", h.JA4Raw(), tc.wantRaw)
			}
		})
	}
}

func TestJA4Parts(t *testing.T) {
	hash := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:6]) }
	tests := []struct {
		name string
		h    ClientHello
		want string
	}{
		{"empty", ClientHello{}, "t00i000000_000000000000_000000000000"},
		{"TLS 1.2, no SNI, no ALPN", ClientHello{Version: 0x0303, CipherSuites: []uint16{0xc02f, 0x009c}, Extensions: []uint16{0x000a, 0x000b}},
			"t12i020200_" + hash("009c,c02f") + "_" + hash("000a,000b")},
		{"supported_versions wins over legacy", ClientHello{Version: 0x0303, SupportedVersions: []uint16{0x0304}, Extensions: []uint16{0x002b}},
			"t13i000100_000000000000_" + hash("002b")},
		{"ALPN not alphanumeric", ClientHello{Version: 0x0303, ALPN: []string{"\xabx\xcd"}}, "t12i0000ad_000000000000_000000000000"},
		{"ALPN http/1.1", ClientHello{Version: 0x0303, ALPN: []string{"http/1.1"}}, "t12i0000h1_000000000000_000000000000"},
		{"QUIC", ClientHello{Protocol: 'q', Version: 0x0303, Extensions: []uint16{0x0000, 0x0010}}, "q12d0002" + "00_000000000000_000000000000"},
	}
	for _, tc := range tests {
		if got := tc.h.JA4(); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	many := ClientHello{Version: 0x0303}
	for i := range 120 {
		many.CipherSuites = append(many.CipherSuites, uint16(0x1000+i))
	}
	if got := many.JA4()[4:6]; got != "99" {
		t.Errorf("cipher count capped: %s", got)
	}
	if !IsGREASE(0x0a0a) || !IsGREASE(0xfafa) || IsGREASE(0x0a1a) || IsGREASE(0x1301) {
		t.Error("IsGREASE")
	}
}

func TestFromClientHelloInfo(t *testing.T) {
	info := &tls.ClientHelloInfo{
		CipherSuites:      []uint16{0x1301},
		SupportedVersions: []uint16{0x0303, 0x0302}, // extrapolated by Go: no 0x002b
		Extensions:        []uint16{0x0000, 0x000d},
		SignatureSchemes:  []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
		SupportedProtos:   []string{"h2"},
	}
	want := "t12d0102h2_" + func() string { s := sha256.Sum256([]byte("1301")); return hex.EncodeToString(s[:6]) }() + "_" +
		func() string { s := sha256.Sum256([]byte("000d_0403")); return hex.EncodeToString(s[:6]) }()
	if got := JA4(info); got != want {
		t.Errorf("JA4 = %s, want %s", got, want)
	}
}

func BenchmarkJA4(b *testing.B) {
	h := ClientHello{
		SupportedVersions:   []uint16{0x0304, 0x0303},
		CipherSuites:        hexList(b, "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035"),
		Extensions:          hexList(b, "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015"),
		SignatureAlgorithms: hexList(b, "0403,0804,0401,0503,0805,0501,0806,0601"),
		ALPN:                []string{"h2"},
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = h.JA4()
		}
	})
}
