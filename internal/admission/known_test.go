package admission

import (
	"bytes"
	"net/netip"
	"testing"
	"time"
)

var testKey = bytes.Repeat([]byte("k"), 32)

func TestCookiesIssueVerify(t *testing.T) {
	c, err := NewCookies(CookieConfig{Key: testKey, MaxAge: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.10")
	tok := c.Issue(t0, a)
	if len(tok) != tokenLen {
		t.Fatalf("token %q: length %d, want %d", tok, len(tok), tokenLen)
	}
	for _, tc := range []struct {
		name string
		at   time.Duration
		addr string
		tok  string
		want bool
	}{
		{"same address", time.Hour, "192.0.2.10", tok, true},
		{"same /24", time.Hour, "192.0.2.200", tok, true},
		{"v4-mapped", time.Hour, "::ffff:192.0.2.7", tok, true},
		{"other /24", time.Hour, "192.0.3.10", tok, false},
		{"expired", 25 * time.Hour, "192.0.2.10", tok, false},
		{"issued in the future", -time.Hour, "192.0.2.10", tok, false},
		{"empty", 0, "192.0.2.10", "", false},
		{"truncated", 0, "192.0.2.10", tok[:len(tok)-1], false},
		{"not base64", 0, "192.0.2.10", "!" + tok[1:], false},
		{"flipped MAC", 0, "192.0.2.10", flip(tok, len(tok)-2), false},
		{"flipped time", 0, "192.0.2.10", flip(tok, 3), false},
	} {
		if got := c.Verify(t0.Add(tc.at), netip.MustParseAddr(tc.addr), []byte(tc.tok)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if at, ok := c.IssuedAt(t0.Add(time.Minute), a, []byte(tok)); !ok || !at.Equal(t0) {
		t.Fatalf("IssuedAt %v %v", at, ok)
	}
	// IPv6: bound to the /64.
	b := netip.MustParseAddr("2001:db8:1:2::5")
	tok6 := c.Issue(t0, b)
	if !c.Verify(t0, netip.MustParseAddr("2001:db8:1:2:ffff::1"), []byte(tok6)) || c.Verify(t0, netip.MustParseAddr("2001:db8:1:3::5"), []byte(tok6)) {
		t.Fatal("IPv6 /64 binding")
	}
	if c.Issue(t0, a) == tok {
		t.Fatal("two tokens equal: no random id")
	}
}

func flip(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestCookiesRotationAndMinAge(t *testing.T) {
	old, _ := NewCookies(CookieConfig{Key: testKey})
	a := netip.MustParseAddr("198.51.100.1")
	tok := []byte(old.Issue(t0, a))
	newKey := bytes.Repeat([]byte("n"), 32)
	rotated, err := NewCookies(CookieConfig{Key: newKey, OldKeys: [][]byte{testKey}, MinAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Verify(t0.Add(30*time.Minute), a, tok) {
		t.Fatal("younger than MinAge accepted")
	}
	if !rotated.Verify(t0.Add(2*time.Hour), a, tok) {
		t.Fatal("old-key token rejected after rotation")
	}
	onlyNew, _ := NewCookies(CookieConfig{Key: newKey})
	if onlyNew.Verify(t0.Add(2*time.Hour), a, tok) {
		t.Fatal("token of a removed key accepted")
	}
	for _, cfg := range []CookieConfig{{Key: []byte("short")}, {Key: testKey, OldKeys: [][]byte{nil}}, {Key: testKey, MinAge: 40 * 24 * time.Hour}} {
		if _, err := NewCookies(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestCookiesVerifyAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	c, _ := NewCookies(CookieConfig{Key: testKey})
	a := netip.MustParseAddr("192.0.2.10")
	tok := []byte(c.Issue(t0, a))
	n := testing.AllocsPerRun(1000, func() {
		if !c.Verify(t0, a, tok) {
			t.Fatal("rejected")
		}
	})
	if n != 0 {
		t.Fatalf("%v allocs per Verify", n)
	}
}

// Check separates a valid cookie (authentic, not expired) from a known one
// (also MinAge old): the proxy keeps a valid young cookie instead of
// replacing it.
func TestCookiesCheck(t *testing.T) {
	c, _ := NewCookies(CookieConfig{Key: testKey, MinAge: 10 * time.Minute, MaxAge: time.Hour})
	a := netip.MustParseAddr("192.0.2.10")
	tok := []byte(c.Issue(t0, a))
	for _, tc := range []struct {
		name         string
		at           time.Duration
		addr         string
		tok          []byte
		valid, known bool
	}{
		{"young", time.Minute, "192.0.2.10", tok, true, false},
		{"old enough", 11 * time.Minute, "192.0.2.99", tok, true, true},
		{"expired", 2 * time.Hour, "192.0.2.10", tok, false, false},
		{"other network", 11 * time.Minute, "192.0.3.10", tok, false, false},
		{"from the future", -time.Minute, "192.0.2.10", tok, false, false},
		{"garbage", 11 * time.Minute, "192.0.2.10", []byte("x"), false, false},
	} {
		valid, known := c.Check(t0.Add(tc.at), netip.MustParseAddr(tc.addr), tc.tok)
		if valid != tc.valid || known != tc.known {
			t.Errorf("%s: valid %v known %v, want %v %v", tc.name, valid, known, tc.valid, tc.known)
		}
		if v := c.Verify(t0.Add(tc.at), netip.MustParseAddr(tc.addr), tc.tok); v != tc.known {
			t.Errorf("%s: Verify %v, want %v", tc.name, v, tc.known)
		}
	}
	if c.MinAge() != 10*time.Minute {
		t.Fatal("MinAge")
	}
	buf := make([]byte, 0, 64)
	out := c.AppendIssue(buf, t0, a)
	if len(out) != tokenLen || &out[0] != &buf[:1][0] {
		t.Fatalf("AppendIssue: %q (len %d), not in the caller's buffer", out, len(out))
	}
	if _, known := c.Check(t0.Add(11*time.Minute), a, out); !known {
		t.Fatal("AppendIssue token rejected")
	}
	if raceEnabled {
		return // sync.Pool drops items at random under the race detector
	}
	if n := testing.AllocsPerRun(1000, func() { out = c.AppendIssue(buf, t0, a) }); n != 0 {
		t.Fatalf("%v allocs per AppendIssue", n)
	}
	if n := testing.AllocsPerRun(1000, func() { c.Check(t0, a, tok) }); n != 0 {
		t.Fatalf("%v allocs per Check", n)
	}
}

func FuzzCookieVerify(f *testing.F) {
	c, _ := NewCookies(CookieConfig{Key: testKey})
	a := netip.MustParseAddr("192.0.2.10")
	// A fixed id: every fuzz worker process computes the same valid token.
	good := c.issue(t0, a, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add(good)
	f.Add("")
	f.Add(good[:20])
	f.Add(flip(good, 30))
	f.Fuzz(func(t *testing.T, s string) {
		ok := c.Verify(t0.Add(time.Second), a, []byte(s))
		// 33 bytes are exactly 44 base64 characters: no padding bits, so
		// no other string decodes to the same token.
		if ok && s != good {
			t.Fatalf("forged token %q verified", s)
		}
	})
}

func BenchmarkCookieVerify(b *testing.B) {
	c, _ := NewCookies(CookieConfig{Key: testKey})
	a := netip.MustParseAddr("192.0.2.10")
	tok := []byte(c.Issue(t0, a))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if !c.Verify(t0, a, tok) {
				b.Fatal("rejected")
			}
		}
	})
}

func BenchmarkCookieIssue(b *testing.B) {
	c, _ := NewCookies(CookieConfig{Key: testKey})
	a := netip.MustParseAddr("192.0.2.10")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 64)
		for pb.Next() {
			buf = c.AppendIssue(buf[:0], t0, a)
		}
	})
}

func TestHistory(t *testing.T) {
	h, err := NewHistory(HistoryConfig{Entries: 64, MinSeen: 3, MinSpan: 10 * time.Minute, TTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("203.0.113.5")
	// Three good requests in the same second count once.
	for range 3 {
		h.Good(t0, a)
	}
	h.Good(t0.Add(5*time.Minute), a)
	if h.Known(t0.Add(20*time.Minute), a) {
		t.Fatal("known after 2 distinct visits")
	}
	h.Good(t0.Add(6*time.Minute), a)
	if h.Known(t0.Add(9*time.Minute), a) {
		t.Fatal("known before MinSpan")
	}
	if !h.Known(t0.Add(20*time.Minute), a) {
		t.Fatal("not known after 3 visits over 10 minutes")
	}
	if !h.Known(t0.Add(20*time.Minute), netip.MustParseAddr("::ffff:203.0.113.5")) {
		t.Fatal("v4-mapped form differs")
	}
	if h.Known(t0.Add(20*time.Minute), netip.MustParseAddr("203.0.113.6")) {
		t.Fatal("neighbour known")
	}
	if h.Known(t0.Add(6*time.Minute+25*time.Hour), a) {
		t.Fatal("known after TTL")
	}
	h.Bad(t0.Add(21*time.Minute), a)
	if h.Known(t0.Add(22*time.Minute), a) {
		t.Fatal("known after a bad verdict")
	}
	// IPv6 by /64.
	v6 := netip.MustParseAddr("2001:db8::1")
	for i := range 3 {
		h.Good(t0.Add(time.Duration(i)*6*time.Minute), v6)
	}
	if !h.Known(t0.Add(time.Hour), netip.MustParseAddr("2001:db8::ffff")) {
		t.Fatal("IPv6 /64 not known")
	}
}

// A flood of new addresses cannot push established visitors out.
func TestHistoryFloodKeepsEstablished(t *testing.T) {
	h, _ := NewHistory(HistoryConfig{Entries: 1024, MinSeen: 3, MinSpan: time.Minute, TTL: 24 * time.Hour})
	var est []netip.Addr
	for i := range 300 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		est = append(est, a)
		for v := range 5 {
			h.Good(t0.Add(time.Duration(v)*time.Minute), a)
		}
	}
	now := t0.Add(10 * time.Minute)
	for i := range 100_000 {
		h.Good(now, netip.AddrFrom4([4]byte{172, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	kept := 0
	for _, a := range est {
		if h.Known(now.Add(time.Minute), a) {
			kept++
		}
	}
	if kept != len(est) {
		t.Fatalf("%d of %d established visitors left after the flood", kept, len(est))
	}
	if n := testing.AllocsPerRun(100, func() { h.Good(now, est[0]); h.Known(now, est[1]) }); n != 0 && !raceEnabled {
		t.Fatalf("%v allocs", n)
	}
}

func TestHistorySnapshot(t *testing.T) {
	h, _ := NewHistory(HistoryConfig{Entries: 4096, MinSeen: 2, MinSpan: time.Minute})
	var addrs []netip.Addr
	for i := range 500 {
		a := netip.AddrFrom4([4]byte{10, 2, byte(i >> 8), byte(i)})
		if i%2 == 1 {
			a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 15: 1})
		}
		addrs = append(addrs, a)
		h.Good(t0, a)
		h.Good(t0.Add(2*time.Minute), a)
		if i%7 == 0 {
			h.Bad(t0.Add(3*time.Minute), a)
		}
	}
	snap := h.AppendSnapshot(nil)
	// Into a table of another size.
	h2, _ := NewHistory(HistoryConfig{Entries: 2048, MinSeen: 2, MinSpan: time.Minute})
	if err := h2.LoadSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	for _, a := range addrs {
		if h.Known(now, a) != h2.Known(now, a) {
			t.Fatalf("%v: known %v before, %v after reload", a, h.Known(now, a), h2.Known(now, a))
		}
	}
	for _, bad := range [][]byte{nil, []byte("LVH1"), []byte("XXXX\x00\x00\x00\x00"), snap[:len(snap)-1],
		append([]byte("LVH1\x00\x00\x00\x01"), make([]byte, 20)...)} {
		if err := h2.LoadSnapshot(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzHistorySnapshot(f *testing.F) {
	h, _ := NewHistory(HistoryConfig{Entries: 64})
	h.Good(t0, netip.MustParseAddr("192.0.2.1"))
	h.Bad(t0, netip.MustParseAddr("2001:db8::1"))
	f.Add(h.AppendSnapshot(nil))
	f.Add([]byte("LVH1\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, _ := NewHistory(HistoryConfig{Entries: 64})
		if err := h.LoadSnapshot(b); err != nil {
			return
		}
		// Whatever loads, snapshots again into something that loads.
		if err := h.LoadSnapshot(h.AppendSnapshot(nil)); err != nil {
			t.Fatalf("re-load: %v", err)
		}
	})
}
