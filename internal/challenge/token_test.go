package challenge

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func mustSigner(t testing.TB, keys ...Key) *Signer {
	t.Helper()
	s, err := NewSigner(keys, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTokenCheck(t *testing.T) {
	s := mustSigner(t, Key{ID: 7, Secret: testSecret(7)})
	a4 := netip.MustParseAddr("192.0.2.10")
	a6 := netip.MustParseAddr("2001:db8:1:2::10")
	tok4 := []byte(s.Issue(t0, a4, bf("t13d1516h2_8daaf6152771_e5627efa2ab1"), MethodPoW, time.Hour))
	tok6 := []byte(s.Issue(t0, a6, bf("fp"), MethodNoJS, time.Hour))
	tampered := append([]byte(nil), tok4...)
	tampered[20] ^= 1
	if tampered[20] == '-' || tampered[20] == '_' { // keep it valid base64url
		tampered[20] = 'A'
	}
	tests := []struct {
		name string
		now  time.Time
		tok  []byte
		addr string
		fp   string
		want Result
	}{
		{"valid", t0, tok4, "192.0.2.10", "t13d1516h2_8daaf6152771_e5627efa2ab1", Valid},
		{"same /24", t0.Add(59 * time.Minute), tok4, "192.0.2.200", "t13d1516h2_8daaf6152771_e5627efa2ab1", Valid},
		{"v4-mapped v6", t0, tok4, "::ffff:192.0.2.99", "t13d1516h2_8daaf6152771_e5627efa2ab1", Valid},
		{"other /24", t0, tok4, "192.0.3.10", "t13d1516h2_8daaf6152771_e5627efa2ab1", WrongNetwork},
		{"other family", t0, tok4, "2001:db8::1", "t13d1516h2_8daaf6152771_e5627efa2ab1", WrongNetwork},
		{"other fingerprint", t0, tok4, "192.0.2.10", "t13d1516h2_8daaf6152771_000000000000", BadSignature},
		{"expired", t0.Add(time.Hour), tok4, "192.0.2.10", "t13d1516h2_8daaf6152771_e5627efa2ab1", Expired},
		{"tampered", t0, tampered, "192.0.2.10", "t13d1516h2_8daaf6152771_e5627efa2ab1", BadSignature},
		{"truncated", t0, tok4[:len(tok4)-1], "192.0.2.10", "", Malformed},
		{"empty", t0, nil, "192.0.2.10", "", Malformed},
		{"not base64", t0, []byte("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"[:tokenLen]), "192.0.2.10", "", Malformed},
		{"v6 same /64", t0, tok6, "2001:db8:1:2:ffff::1", "fp", Valid},
		{"v6 other /64", t0, tok6, "2001:db8:1:3::10", "fp", WrongNetwork},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, r := s.Check(tc.now, tc.tok, netip.MustParseAddr(tc.addr), bf(tc.fp))
			if r != tc.want {
				t.Fatalf("Check = %v, want %v", r, tc.want)
			}
			if r == Valid && (c.KeyID != 7 || c.ID == 0 || c.Expires != t0.Add(time.Hour).Unix()) {
				t.Errorf("claims %+v", c)
			}
		})
	}
	if c, _ := s.Check(t0, tok6, a6, bf("fp")); c.Method != MethodNoJS {
		t.Errorf("method %v, want nojs", c.Method)
	}
	if len(tok4) != tokenLen {
		t.Errorf("token length %d, want %d", len(tok4), tokenLen)
	}
}

func TestKeyRotation(t *testing.T) {
	old := mustSigner(t, Key{ID: 1, Secret: testSecret(1)})
	grace := t0.Add(2 * time.Hour)
	rotated := mustSigner(t, Key{ID: 2, Secret: testSecret(2)}, Key{ID: 1, Secret: testSecret(1), AcceptUntil: grace})
	addr := netip.MustParseAddr("198.51.100.7")
	oldTok := []byte(old.Issue(t0, addr, bf(""), MethodPoW, 24*time.Hour))
	newTok := []byte(rotated.Issue(t0, addr, bf(""), MethodPoW, 24*time.Hour))

	if _, ok := rotated.Verify(t0.Add(time.Hour), oldTok, addr, bf("")); !ok {
		t.Error("old key's token refused during the grace period")
	}
	if _, r := rotated.Check(grace, oldTok, addr, bf("")); r != UnknownKey {
		t.Errorf("old key's token after the grace period: %v, want unknown_key", r)
	}
	if c, ok := rotated.Verify(grace, newTok, addr, bf("")); !ok || c.KeyID != 2 {
		t.Errorf("new key's token: %v %+v", ok, c)
	}
	if _, r := old.Check(t0, newTok, addr, bf("")); r != UnknownKey {
		t.Errorf("node without the new key: %v, want unknown_key", r)
	}
	// Another node with the same ring accepts the token (fleet).
	peer := mustSigner(t, Key{ID: 2, Secret: testSecret(2)}, Key{ID: 1, Secret: testSecret(1), AcceptUntil: grace})
	if _, ok := peer.Verify(t0, newTok, addr, bf("")); !ok {
		t.Error("peer node with the same keys refused the token")
	}
	// Same id, different secret: forged.
	impostor := mustSigner(t, Key{ID: 2, Secret: testSecret(9)})
	if _, r := impostor.Check(t0, newTok, addr, bf("")); r != BadSignature {
		t.Errorf("different secret: %v, want bad_signature", r)
	}
}

func TestNewSignerErrors(t *testing.T) {
	good := Key{ID: 1, Secret: testSecret(1)}
	tests := []struct {
		name string
		keys []Key
	}{
		{"none", nil},
		{"short", []Key{{ID: 1, Secret: "c2hvcnQ="}}},
		{"not base64", []Key{{ID: 1, Secret: "%%%"}}},
		{"duplicate", []Key{good, {ID: 1, Secret: testSecret(2), AcceptUntil: t0}}},
		{"old without grace", []Key{good, {ID: 2, Secret: testSecret(2)}}},
		{"signing with grace", []Key{{ID: 1, Secret: testSecret(1), AcceptUntil: t0}}},
		{"missing file", []Key{{ID: 1, SecretFile: "/nonexistent/levee.key"}}},
	}
	for _, tc := range tests {
		if _, err := NewSigner(tc.keys, 0, 0); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if _, err := NewSigner([]Key{good}, 33, 0); err == nil {
		t.Error("prefix /33 accepted")
	}
}

func TestChallengeOpen(t *testing.T) {
	s := mustSigner(t, Key{ID: 3, Secret: testSecret(3)})
	addr := netip.MustParseAddr("203.0.113.5")
	enc := s.NewChallenge(nil, t0, addr, bf("fp"), 10, 5*time.Minute)
	if len(enc) != chalLen {
		t.Fatalf("challenge length %d, want %d", len(enc), chalLen)
	}
	c, err := s.OpenChallenge(t0.Add(time.Minute), enc, netip.MustParseAddr("203.0.113.77"), bf("fp"))
	if err != nil || c.Difficulty != 10 || c.Issued != t0.Unix() || c.Expires != t0.Add(5*time.Minute).Unix() {
		t.Fatalf("open: %+v %v", c, err)
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		enc  []byte
		addr string
		fp   string
		want error
	}{
		{"other network", t0, enc, "203.0.114.5", "fp", ErrForged},
		{"other fingerprint", t0, enc, "203.0.113.5", "xx", ErrForged},
		{"expired", t0.Add(5 * time.Minute), enc, "203.0.113.5", "fp", ErrExpired},
		{"short", t0, enc[:10], "203.0.113.5", "fp", ErrMalformed},
		{"token as challenge", t0, []byte(s.Issue(t0, addr, bf("fp"), MethodPoW, time.Hour))[:chalLen], "203.0.113.5", "fp", ErrMalformed},
	} {
		if _, err := s.OpenChallenge(tc.now, tc.enc, netip.MustParseAddr(tc.addr), bf(tc.fp)); err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func solve(chal []byte, d int) []byte {
	for i := 0; ; i++ {
		n := strconv.AppendInt(nil, int64(i), 10)
		if LeadingZeroBits(chal, n) >= d {
			return n
		}
	}
}

func TestLeadingZeroBits(t *testing.T) {
	// SHA-256("abc") = ba7816bf... : no leading zero bit.
	if n := LeadingZeroBits([]byte("ab"), []byte("c")); n != 0 {
		t.Errorf("abc: %d", n)
	}
	chal := []byte("c2VlZA")
	n := solve(chal, 12)
	if LeadingZeroBits(chal, n) < 12 {
		t.Fatal("solve")
	}
	long := make([]byte, 200) // past the stack buffer
	if a, b := LeadingZeroBits(long[:150], long[150:]), LeadingZeroBits(long[:100], long[100:]); a != b {
		t.Errorf("split changes the hash: %d %d", a, b)
	}
}

func TestVerifyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under -race")
	}
	s := mustSigner(t, Key{ID: 1, Secret: testSecret(1)})
	addr := netip.MustParseAddr("192.0.2.1")
	fp := bf("t13d1516h2_8daaf6152771_e5627efa2ab1")
	tok := []byte(s.Issue(t0, addr, fp, MethodPoW, time.Hour))
	if n := testing.AllocsPerRun(200, func() {
		if _, ok := s.Verify(t0, tok, addr, fp); !ok {
			t.Fatal("not valid")
		}
	}); n != 0 {
		t.Errorf("Verify allocates %v times per call", n)
	}
	svc, err := New(testConfig(), Deps{})
	if err != nil {
		t.Fatal(err)
	}
	tok = []byte(svc.Signer().Issue(t0, addr, fp, MethodPoW, time.Hour))
	if n := testing.AllocsPerRun(200, func() {
		if _, ok := svc.Clearance(t0, tok, addr, fp); !ok {
			t.Fatal("not cleared")
		}
	}); n != 0 {
		t.Errorf("Clearance allocates %v times per call", n)
	}
}
