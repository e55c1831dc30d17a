package clientip

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func TestResolveXFF(t *testing.T) {
	// 10.0.0.0/8: our load balancers. 2001:db8:ffff::/48: our IPv6 LBs.
	// 198.51.100.0/24: a CDN in front of them.
	r := New(prefixes("10.0.0.0/8", "2001:db8:ffff::/48", "198.51.100.0/24"))
	cases := []struct {
		name, peer, xff, want string
	}{
		{"untrusted peer, no header", "203.0.113.5", "", "203.0.113.5"},
		{"untrusted peer spoofing XFF is ignored", "203.0.113.5", "1.2.3.4", "203.0.113.5"},
		{"untrusted peer spoofing trusted XFF is ignored", "203.0.113.5", "10.0.0.1", "203.0.113.5"},
		{"trusted peer, no header", "10.0.0.1", "", "10.0.0.1"},
		{"trusted peer, one hop", "10.0.0.1", "203.0.113.7", "203.0.113.7"},
		{"spoofed leftmost is not used", "10.0.0.1", "6.6.6.6, 203.0.113.7", "203.0.113.7"},
		{"spoofed chain of trusted-looking hops is not used", "10.0.0.1", "10.9.9.9, 1.1.1.1, 203.0.113.7", "203.0.113.7"},
		{"CDN then LB", "10.0.0.1", "6.6.6.6, 203.0.113.7, 198.51.100.9", "203.0.113.7"},
		{"all trusted returns leftmost", "10.0.0.1", "10.0.0.3, 198.51.100.9", "10.0.0.3"},
		{"garbage stops the walk at the last trusted hop", "10.0.0.1", "203.0.113.7, garbage, 198.51.100.9", "198.51.100.9"},
		{"garbage right away returns peer", "10.0.0.1", "203.0.113.7, not-an-ip", "10.0.0.1"},
		{"unknown stops the walk", "10.0.0.1", "203.0.113.7, unknown", "10.0.0.1"},
		{"empty elements ignored", "10.0.0.1", "6.6.6.6, , 203.0.113.7,,", "203.0.113.7"},
		{"no spaces, tabs", "10.0.0.1", "6.6.6.6,\t203.0.113.7\t", "203.0.113.7"},
		{"ipv4 with port", "10.0.0.1", "203.0.113.7:4711", "203.0.113.7"},
		{"ipv6 plain", "10.0.0.1", "2001:db8::1", "2001:db8::1"},
		{"ipv6 bracketed with port", "10.0.0.1", "[2001:db8::1]:4711", "2001:db8::1"},
		{"ipv6 bracketed", "10.0.0.1", "[2001:db8::1]", "2001:db8::1"},
		{"ipv6 trusted peer", "2001:db8:ffff::2", "2001:db8:1::9", "2001:db8:1::9"},
		{"v4-mapped hop is unmapped", "10.0.0.1", "::ffff:203.0.113.7", "203.0.113.7"},
		{"v4-mapped trusted hop is skipped", "10.0.0.1", "203.0.113.7, ::ffff:10.1.1.1", "203.0.113.7"},
		{"v4-mapped peer is unmapped and trusted", "::ffff:10.0.0.1", "203.0.113.7", "203.0.113.7"},
		{"zone in hop stops", "10.0.0.1", "fe80::1%eth0", "10.0.0.1"},
		{"hostname stops", "10.0.0.1", "evil.example", "10.0.0.1"},
		{"bad port stops", "10.0.0.1", "203.0.113.7:http", "10.0.0.1"},
		{"bracketed v4 stops", "10.0.0.1", "[203.0.113.7]", "10.0.0.1"},
		{"out of range octet stops", "10.0.0.1", "203.0.113.256", "10.0.0.1"},
		{"only commas", "10.0.0.1", ",,, ,", "10.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Resolve(netip.MustParseAddr(tc.peer), []byte(tc.xff), []byte("for=9.9.9.9"))
			if got != netip.MustParseAddr(tc.want) {
				t.Fatalf("Resolve(%s, %q) = %s, want %s", tc.peer, tc.xff, got, tc.want)
			}
		})
	}
}

func TestResolveForwarded(t *testing.T) {
	r, err := NewFromConfig(Config{Trusted: []string{"10.0.0.0/8", "2001:db8:ffff::/48", "192.0.2.200"}, Header: "Forwarded"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, peer, fwd, want string
	}{
		{"untrusted peer ignored", "203.0.113.5", "for=1.2.3.4", "203.0.113.5"},
		{"rfc example", "10.0.0.1", `for=192.0.2.60;proto=http;by=203.0.113.43`, "192.0.2.60"},
		{"quoted ipv6 with port", "10.0.0.1", `for="[2001:db8:cafe::17]:4711"`, "2001:db8:cafe::17"},
		{"two elements", "10.0.0.1", `for=192.0.2.43, for="[2001:db8:cafe::17]"`, "2001:db8:cafe::17"},
		{"spoofed leftmost not used", "10.0.0.1", `for=6.6.6.6, for=192.0.2.43`, "192.0.2.43"},
		{"trusted hop skipped", "10.0.0.1", `for=192.0.2.43, for=192.0.2.200;proto=https`, "192.0.2.43"},
		{"case insensitive key", "10.0.0.1", `For=192.0.2.43`, "192.0.2.43"},
		{"quoted v4 with port", "10.0.0.1", `for="192.0.2.43:47011"`, "192.0.2.43"},
		{"params before for", "10.0.0.1", `proto=https; by=10.0.0.9 ;for=192.0.2.43`, "192.0.2.43"},
		{"obfuscated stops the walk", "10.0.0.1", `for=192.0.2.43, for=_hidden`, "10.0.0.1"},
		{"obfuscated after trusted", "10.0.0.1", `for=_hidden, for=192.0.2.200`, "192.0.2.200"},
		{"unknown stops the walk", "10.0.0.1", `for=192.0.2.43, for=unknown`, "10.0.0.1"},
		{"element without for stops", "10.0.0.1", `for=192.0.2.43, proto=https`, "10.0.0.1"},
		{"double for is ambiguous", "10.0.0.1", `for=192.0.2.43;for=192.0.2.44`, "10.0.0.1"},
		{"comma inside quotes", "10.0.0.1", `for=192.0.2.43, for="_a,b"`, "10.0.0.1"},
		{"escape stops", "10.0.0.1", `for="192.0.2.4\3"`, "10.0.0.1"},
		{"unbalanced quote stops", "10.0.0.1", `for="192.0.2.43`, "10.0.0.1"},
		{"empty elements ignored", "10.0.0.1", `for=192.0.2.43, ,`, "192.0.2.43"},
		{"xff is ignored in forwarded mode", "10.0.0.1", ``, "10.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := r.Resolve(netip.MustParseAddr(tc.peer), []byte("9.9.9.9"), []byte(tc.fwd))
			if got != netip.MustParseAddr(tc.want) {
				t.Fatalf("Resolve(%s, %q) = %s, want %s", tc.peer, tc.fwd, got, tc.want)
			}
		})
	}
}

func TestResolveLines(t *testing.T) {
	r := New(prefixes("10.0.0.0/8"))
	peer := netip.MustParseAddr("10.0.0.1")
	lines := [][]byte{[]byte("6.6.6.6, 10.7.7.7"), []byte("203.0.113.7, 10.0.0.2"), []byte("10.0.0.3")}
	if got := r.ResolveLines(peer, lines, nil); got != netip.MustParseAddr("203.0.113.7") {
		t.Fatalf("ResolveLines = %s", got)
	}
	joined := []byte("6.6.6.6, 10.7.7.7, 203.0.113.7, 10.0.0.2, 10.0.0.3")
	if got := r.Resolve(peer, joined, nil); got != netip.MustParseAddr("203.0.113.7") {
		t.Fatalf("Resolve joined = %s", got)
	}
}

func TestResolveHeader(t *testing.T) {
	rx := New(prefixes("10.0.0.0/8"))
	rf, _ := NewFromConfig(Config{Trusted: []string{"10.0.0.0/8"}, Header: "forwarded"})
	peer := netip.MustParseAddr("10.0.0.1")
	h := http.Header{}
	h.Add("X-Forwarded-For", "6.6.6.6, 203.0.113.7")
	h.Add("X-Forwarded-For", "10.0.0.9")
	h.Add("Forwarded", "for=6.6.6.6")
	h.Add("Forwarded", `for="[2001:db8::5]:1", for=10.2.2.2`)
	if got := rx.ResolveHeader(peer, h); got != netip.MustParseAddr("203.0.113.7") {
		t.Fatalf("XFF: %s", got)
	}
	if got := rf.ResolveHeader(peer, h); got != netip.MustParseAddr("2001:db8::5") {
		t.Fatalf("Forwarded: %s", got)
	}
	if got := rx.ResolveHeader(netip.MustParseAddr("192.0.2.1"), h); got != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("untrusted peer: %s", got)
	}
	if n := testing.AllocsPerRun(100, func() { rx.ResolveHeader(peer, h) }); n != 0 {
		t.Fatalf("ResolveHeader allocates %v times", n)
	}
	// More lines than the stack buffer still work.
	many := http.Header{}
	many.Add("X-Forwarded-For", "203.0.113.99")
	for range 20 {
		many.Add("X-Forwarded-For", "10.1.1.1")
	}
	if got := rx.ResolveHeader(peer, many); got != netip.MustParseAddr("203.0.113.99") {
		t.Fatalf("21 lines: %s", got)
	}
}

func TestNoTrustIgnoresHeaders(t *testing.T) {
	for _, r := range []*Resolver{New(nil), {}, New([]netip.Prefix{{}})} {
		peer := netip.MustParseAddr("10.0.0.1")
		if got := r.Resolve(peer, []byte("1.2.3.4"), []byte("for=1.2.3.4")); got != peer {
			t.Fatalf("Resolve without trusted prefixes = %s, want peer", got)
		}
	}
}

func TestNewFromConfig(t *testing.T) {
	bad := []Config{
		{Header: "x-real-ip"},
		{Trusted: []string{"10.0.0.0/33"}},
		{Trusted: []string{"not an address"}},
		{Trusted: []string{"fe80::1%eth0"}},
	}
	for _, c := range bad {
		if _, err := NewFromConfig(c); err == nil {
			t.Errorf("NewFromConfig(%+v) accepted", c)
		}
	}
	r, err := NewFromConfig(Config{Trusted: []string{" 10.1.2.3/8 ", "::ffff:192.0.2.0/120", "2001:db8::1"}})
	if err != nil {
		t.Fatal(err)
	}
	if r.Header() != XForwardedFor {
		t.Fatalf("default header = %s", r.Header())
	}
	for _, a := range []string{"10.200.0.1", "192.0.2.77", "::ffff:192.0.2.77", "2001:db8::1"} {
		if !r.Trusted(netip.MustParseAddr(a)) {
			t.Errorf("Trusted(%s) = false", a)
		}
	}
	for _, a := range []string{"11.0.0.1", "192.0.3.1", "2001:db8::2"} {
		if r.Trusted(netip.MustParseAddr(a)) {
			t.Errorf("Trusted(%s) = true", a)
		}
	}
}

func TestResolveAllocs(t *testing.T) {
	rx := New(prefixes("10.0.0.0/8", "198.51.100.0/24"))
	rf, _ := NewFromConfig(Config{Trusted: []string{"10.0.0.0/8"}, Header: "forwarded"})
	peer := netip.MustParseAddr("10.0.0.1")
	xff := []byte("6.6.6.6, [2001:db8::7]:443, 198.51.100.9, 10.1.1.1")
	fwd := []byte(`for=6.6.6.6, for="[2001:db8::7]:443";proto=https, for=10.1.1.1`)
	if n := testing.AllocsPerRun(100, func() { rx.Resolve(peer, xff, nil) }); n != 0 {
		t.Errorf("Resolve(XFF) allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { rf.Resolve(peer, nil, fwd) }); n != 0 {
		t.Errorf("Resolve(Forwarded) allocates %v times", n)
	}
	lines := [][]byte{xff, xff}
	if n := testing.AllocsPerRun(100, func() { rx.ResolveLines(peer, lines, nil) }); n != 0 {
		t.Errorf("ResolveLines allocates %v times", n)
	}
}

// TestParseIPDoesNotRetain checks that the unsafe.String view in parseIP is
// not kept by the returned address.
func TestParseIPDoesNotRetain(t *testing.T) {
	for _, s := range []string{"2001:db8::1", "192.0.2.1", "::ffff:1.2.3.4"} {
		b := []byte(s)
		a, ok := parseIP(b)
		for i := range b {
			b[i] = 'x'
		}
		if !ok || a != netip.MustParseAddr(s) || a.String() != netip.MustParseAddr(s).String() {
			t.Fatalf("parseIP(%q) = %v, %v", s, a, ok)
		}
	}
}

func FuzzResolve(f *testing.F) {
	f.Add("10.0.0.1", []byte("6.6.6.6, 203.0.113.7, 198.51.100.9"), []byte(`for=192.0.2.43, for="[2001:db8:cafe::17]:4711"`))
	f.Add("10.0.0.1", []byte("[2001:db8::1]:80,,unknown"), []byte(`for=_hidden;proto=http, for=unknown`))
	f.Add("::ffff:10.0.0.1", []byte("fe80::1%eth0, 1.2.3.4:5"), []byte(`for="a,b";for=1.2.3.4, proto=x`))
	f.Add("203.0.113.1", []byte("1.2.3.4"), []byte(`for=1.2.3.4`))
	rx := New(prefixes("10.0.0.0/8", "198.51.100.0/24", "2001:db8::/32"))
	rf := &Resolver{trusted: rx.trusted, header: Forwarded}
	f.Fuzz(func(t *testing.T, peerS string, xff, fwd []byte) {
		peer, err := netip.ParseAddr(peerS)
		if err != nil {
			return
		}
		for _, r := range []*Resolver{rx, rf} {
			got := r.Resolve(peer, xff, fwd)
			if !got.IsValid() || got.Is4In6() || got.Zone() != "" {
				t.Fatalf("Resolve(%s, %q, %q) = %v: not a canonical address", peer, xff, fwd, got)
			}
			if !r.Trusted(peer) && got != peer.Unmap().WithZone("") {
				t.Fatalf("untrusted peer %s: headers were believed: %s", peer, got)
			}
			hdr := xff
			if r.header == Forwarded {
				hdr = fwd
			}
			// The result is the peer or an address literally present in
			// the header (never something made up).
			if got != peer.Unmap().WithZone("") && !containsAddr(hdr, got) {
				t.Fatalf("Resolve(%s, %q) = %s, not in the header", peer, hdr, got)
			}
			// Prepending client-controlled junk never changes the result
			// once an untrusted hop has been found to its right.
			if got != peer.Unmap() && !r.Trusted(got) {
				spoofed := append([]byte("6.6.6.6, for=6.6.6.6, "), hdr...)
				x, fw := xff, fwd
				if r.header == Forwarded {
					fw = spoofed
				} else {
					x = spoofed
				}
				if again := r.Resolve(peer, x, fw); again != got {
					t.Fatalf("prefix junk changed the result: %s -> %s (%q)", got, again, spoofed)
				}
			}
		}
	})
}

// containsAddr reports whether some token of b parses (leniently) to a.
func containsAddr(b []byte, a netip.Addr) bool {
	for _, tok := range strings.FieldsFunc(string(b), func(r rune) bool {
		return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '"' || r == '=' || r == '[' || r == ']'
	}) {
		if x, err := netip.ParseAddr(tok); err == nil && x.Unmap() == a {
			return true
		}
		if x, err := netip.ParseAddrPort(tok); err == nil && x.Addr().Unmap() == a {
			return true
		}
		if i := strings.LastIndexByte(tok, ':'); i > 0 {
			if x, err := netip.ParseAddr(tok[:i]); err == nil && x.Unmap() == a {
				return true
			}
		}
	}
	return false
}

func BenchmarkResolve(b *testing.B) {
	rx := New(prefixes("10.0.0.0/8", "198.51.100.0/24", "2001:db8:ffff::/48"))
	rf := &Resolver{trusted: rx.trusted, header: Forwarded}
	peer := netip.MustParseAddr("10.0.0.1")
	bench := []struct {
		name string
		r    *Resolver
		xff  []byte
		fwd  []byte
	}{
		{"xff_1hop", rx, []byte("203.0.113.7"), nil},
		{"xff_4hops", rx, []byte("6.6.6.6, 203.0.113.7, 198.51.100.9, 10.1.1.1"), nil},
		{"xff_ipv6", rx, []byte("[2001:db8::7]:443, 2001:db8:ffff::1"), nil},
		{"forwarded_2hops", rf, nil, []byte(`for=192.0.2.43;proto=https, for="[2001:db8:ffff::17]:4711"`)},
		{"untrusted_peer", rx, []byte("1.2.3.4"), nil},
	}
	for _, bc := range bench {
		p := peer
		if bc.name == "untrusted_peer" {
			p = netip.MustParseAddr("203.0.113.1")
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !bc.r.Resolve(p, bc.xff, bc.fwd).IsValid() {
						b.Fatal("invalid")
					}
				}
			})
		})
	}
}
