package fingerprint

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
)

func h12(s string) string {
	if s == "" {
		return "000000000000"
	}
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

func TestRawHeaders(t *testing.T) {
	raw := []byte("Host: example.com\r\nuser-agent: curl/7.88.1\r\nAccept:*/*\r\nX-Fold: a\r\n  b\r\nbroken line\r\nAfter: x\r\n\r\n")
	var got []string
	for k, v := range RawHeaders(raw) {
		got = append(got, string(k)+"="+string(v))
	}
	want := []string{"Host=example.com", "user-agent=curl/7.88.1", "Accept=*/*", "X-Fold=a"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// TestJA4H checks each part against the spec's definition, computed here
// from the expected input strings.
func TestJA4H(t *testing.T) {
	tests := []struct {
		name, method, proto, raw string
		want                     string
	}{{
		name: "browser-like GET with cookies and referer", method: "GET", proto: "HTTP/1.1",
		raw: "Host: example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\nAccept-Language: en-US,en;q=0.9\r\n" +
			"Referer: https://example.com/\r\nCookie: _ga=GA1.2; sid=abc; _gid=xyz\r\nAccept-Encoding: gzip\r\n\r\n",
		want: "ge11cr05enus_" + h12("Host,User-Agent,Accept,Accept-Language,Accept-Encoding") + "_" +
			h12("_ga,_gid,sid") + "_" + h12("_ga=GA1.2,_gid=xyz,sid=abc"),
	}, {
		name: "curl", method: "GET", proto: "HTTP/1.1",
		raw:  "Host: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n",
		want: "ge11nn030000_" + h12("Host,User-Agent,Accept") + "_000000000000_000000000000",
	}, {
		name: "POST HTTP/1.0 short language", method: "POST", proto: "HTTP/1.0",
		raw:  "Accept-Language: de\r\nContent-Length: 0\r\n\r\n",
		want: "po10nn02de00_" + h12("Accept-Language,Content-Length") + "_000000000000_000000000000",
	}, {
		name: "HTTP/2 pseudo-headers skipped", method: "GET", proto: "HTTP/2.0",
		raw:  "accept-language: fr-CH, fr;q=0.9\r\ncookie: b=2\r\ncookie: a=1\r\n\r\n",
		want: "ge20cn01frch_" + h12("accept-language") + "_" + h12("a,b") + "_" + h12("a=1,b=2"),
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hs []Header
			for k, v := range RawHeaders([]byte(tc.raw)) {
				hs = append(hs, Header{Name: bytes.Clone(k), Value: bytes.Clone(v)})
			}
			if tc.proto == "HTTP/2.0" { // as the HTTP/2 recorder reports them
				hs = append([]Header{{Name: []byte(":method"), Value: []byte("GET")}, {Name: []byte(":authority"), Value: []byte("a")}}, hs...)
			}
			got := JA4H([]byte(tc.method), []byte(tc.proto), Slice(hs))
			if got != tc.want {
				t.Errorf("JA4H = %s\nwant   %s", got, tc.want)
			}
		})
	}
}

func TestHeaderOrder(t *testing.T) {
	a := HeaderOrder(RawHeaders([]byte("Host: x\r\nUser-Agent: y\r\nAccept: */*\r\n\r\n")))
	b := HeaderOrder(RawHeaders([]byte("Host: x\r\nAccept: */*\r\nUser-Agent: y\r\n\r\n")))
	c := HeaderOrder(RawHeaders([]byte("host: x\r\nuser-agent: y\r\naccept: */*\r\n\r\n")))
	if a == b || a == c || b == c {
		t.Errorf("order and case must change the hash: %s %s %s", a, b, c)
	}
	if a != h12("Host,User-Agent,Accept") {
		t.Errorf("HeaderOrder = %s", a)
	}
	h := http.Header{"B": {"1"}, "A": {"2"}}
	if got := HeaderOrder(NetHTTP(h)); got != h12("A,B") {
		t.Errorf("net/http names sorted: %s", got)
	}
}

func FuzzJA4H(f *testing.F) {
	f.Add([]byte("GET"), []byte("HTTP/1.1"), []byte("Host: a\r\nCookie: a=1;b\r\nAccept-Language: en-US\r\n\r\n"))
	f.Add([]byte(""), []byte(""), []byte(":\r\n\n\n"))
	f.Fuzz(func(t *testing.T, method, proto, raw []byte) {
		s := JA4H(method, proto, RawHeaders(raw))
		if len(s) != 51 || s[12] != '_' || s[25] != '_' || s[38] != '_' {
			t.Fatalf("malformed JA4H %q", s)
		}
		if o := HeaderOrder(RawHeaders(raw)); len(o) != 12 {
			t.Fatalf("HeaderOrder %q", o)
		}
	})
}

func BenchmarkJA4H(b *testing.B) {
	raw := []byte("Host: example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nAccept: text/html,application/xhtml+xml\r\n" +
		"Accept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate, br\r\nCookie: _ga=GA1.2; sid=abc\r\nConnection: keep-alive\r\n\r\n")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = JA4H([]byte("GET"), []byte("HTTP/1.1"), RawHeaders(raw))
		}
	})
}

func BenchmarkHeaderOrder(b *testing.B) {
	raw := []byte("Host: example.com\r\nUser-Agent: Mozilla/5.0\r\nAccept: text/html\r\nAccept-Language: en-US\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = HeaderOrder(RawHeaders(raw))
		}
	})
}
