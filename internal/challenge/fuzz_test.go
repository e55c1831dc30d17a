package challenge

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// FuzzVerifyToken: no input panics, and only the issued token (or one that
// decodes to the same bytes) verifies.
func FuzzVerifyToken(f *testing.F) {
	s := mustSigner(f, Key{ID: 1, Secret: testSecret(1)})
	addr := netip.MustParseAddr("192.0.2.1")
	// A fixed id: fuzz workers rebuild this and must get the same token.
	good := b64.EncodeToString(s.appendToken(make([]byte, tokenRaw), t0, addr, bf("fp"), MethodPoW, time.Hour, 12345))
	f.Add([]byte(good))
	f.Add([]byte(good[:tokenLen-1] + "A"))
	f.Add([]byte(""))
	f.Add(bytes.Repeat([]byte("A"), tokenLen))
	f.Fuzz(func(t *testing.T, tok []byte) {
		c, r := s.Check(t0, tok, addr, bf("fp"))
		if r == Valid {
			var a, b [tokenRaw + 2]byte
			na, _ := b64.Decode(a[:], tok)
			nb, _ := b64.Decode(b[:], []byte(good))
			if na != nb || a != b {
				t.Fatalf("forged token %q verified: %+v", tok, c)
			}
		}
	})
}

// FuzzOpenChallenge: no input panics; a challenge that opens has the
// difficulty it was issued with.
func FuzzOpenChallenge(f *testing.F) {
	s := mustSigner(f, Key{ID: 1, Secret: testSecret(1)})
	addr := netip.MustParseAddr("2001:db8::1")
	good := s.NewChallenge(nil, t0, addr, bf(""), 17, time.Minute)
	f.Add(good, []byte("123"))
	f.Add([]byte("C"), []byte(""))
	f.Fuzz(func(t *testing.T, enc, nonce []byte) {
		c, err := s.OpenChallenge(t0, enc, addr, bf(""))
		if err == nil && c.Difficulty != 17 {
			t.Fatalf("opened a challenge that was never issued: %+v", c)
		}
		LeadingZeroBits(enc, nonce)
	})
}

// FuzzCookieHeader: a raw Cookie header goes through fasthttp's cookie
// parsing and Clearance without panicking, and without clearing anyone.
func FuzzCookieHeader(f *testing.F) {
	svc, err := New(testConfig(), Deps{})
	if err != nil {
		f.Fatal(err)
	}
	addr := netip.MustParseAddr("192.0.2.1")
	good := svc.Signer().Issue(t0, netip.MustParseAddr("198.51.100.1"), bf(""), MethodPoW, time.Hour)
	f.Add("levee_clearance=" + good)
	f.Add("a=b; levee_clearance=" + good + "; c")
	f.Add("levee_clearance=;;;=")
	f.Fuzz(func(t *testing.T, header string) {
		var h fasthttp.RequestHeader
		h.Set("Cookie", header)
		if _, ok := svc.Clearance(t0, h.Cookie(svc.CookieName()), addr, bf("")); ok {
			t.Fatalf("cleared by a token of another network: %q", header)
		}
	})
}

// FuzzEndpoint: arbitrary form values never panic and never earn a cookie
// without a valid answer.
func FuzzEndpoint(f *testing.F) {
	svc, err := New(testConfig(), Deps{})
	if err != nil {
		f.Fatal(err)
	}
	addr := netip.MustParseAddr("192.0.2.1")
	f.Add([]byte(PathVerify), true, []byte("x"), []byte("1"), []byte("/"))
	f.Add([]byte(PathNoJS), false, svc.Signer().NewChallenge(nil, t0, addr, bf(""), 20, time.Minute), []byte(""), []byte("//x"))
	f.Fuzz(func(t *testing.T, path []byte, post bool, c, n, ret []byte) {
		r := svc.Endpoint(nil, t0, addr, bf(""), &EndpointRequest{Path: path, Post: post, Challenge: c, Nonce: n, Return: ret})
		if r.Cookie != "" {
			t.Fatalf("cookie issued for %q %q at the time of issue", c, n)
		}
	})
}
