package limit

import (
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
)

var (
	testAddr  = netip.MustParseAddr("127.1.2.3")
	testBytes = []byte("session=0123456789abcdef")
	sinkKey   uint64
)

func TestKeyAddr(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		name   string
		a, b   netip.Addr
		bitsA  int
		bitsB  int
		idA    uint32
		idB    uint32
		wantEq bool
	}{
		{"v4 /24 groups", ip("127.1.2.3"), ip("127.1.2.200"), 24, 24, 1, 1, true},
		{"v4 /32 separates", ip("127.1.2.3"), ip("127.1.2.200"), 32, 32, 1, 1, false},
		{"v4 /24 separates next /24", ip("127.1.2.3"), ip("127.1.3.3"), 24, 24, 1, 1, false},
		{"v4 /32 same address", ip("127.1.2.3"), ip("127.1.2.3"), 32, 32, 1, 1, true},
		{"v4 /16 groups", ip("127.1.2.3"), ip("127.1.250.9"), 16, 16, 1, 1, true},
		{"v4 /0 groups everything", ip("127.1.2.3"), ip("10.9.8.7"), 0, 0, 1, 1, true},
		{"v6 /64 groups", ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64, 64, 1, 1, true},
		{"v6 /64 separates", ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"), 64, 64, 1, 1, false},
		{"v6 /48 groups", ip("2001:db8:1:2::1"), ip("2001:db8:1:ffff::1"), 48, 48, 1, 1, true},
		{"v6 /48 separates", ip("2001:db8:1::1"), ip("2001:db8:2::1"), 48, 48, 1, 1, false},
		{"v6 /128 separates", ip("::1"), ip("::2"), 128, 128, 1, 1, false},
		{"v6 /56 odd boundary groups", ip("2001:db8:1:2a00::"), ip("2001:db8:1:2aff::"), 56, 56, 1, 1, true},
		{"v6 /56 odd boundary separates", ip("2001:db8:1:2a00::"), ip("2001:db8:1:2b00::"), 56, 56, 1, 1, false},
		{"limit ids separate", ip("127.1.2.3"), ip("127.1.2.3"), 32, 32, 1, 2, false},
		{"prefix lengths separate", ip("127.1.2.0"), ip("127.1.2.0"), 24, 32, 1, 1, false},
		{"families separate", ip("0.0.0.1"), ip("::1"), 0, 0, 1, 1, false},
		{"v4 vs v4-compatible v6", ip("1.2.3.4"), ip("::1.2.3.4"), 32, 128, 1, 1, false},
		{"4in6 is v4", ip("127.1.2.3"), ip("::ffff:127.1.2.3"), 32, 32, 1, 1, true},
		{"zone ignored", ip("fe80::1"), ip("fe80::1%eth0"), 128, 128, 1, 1, true},
		{"bits clamp high", ip("127.1.2.3"), ip("127.1.2.3"), 32, 99, 1, 1, true},
		{"bits clamp low", ip("127.1.2.3"), ip("127.1.2.3"), 0, -7, 1, 1, true},
		{"v6 bits clamp", ip("::1"), ip("::1"), 128, 1000, 1, 1, true},
		{"invalid addr is one key", netip.Addr{}, netip.Addr{}, 0, 24, 1, 1, true},
		{"invalid differs from v6 ::", netip.Addr{}, ip("::"), 0, 0, 1, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka := KeyAddr(tt.idA, tt.a, tt.bitsA)
			kb := KeyAddr(tt.idB, tt.b, tt.bitsB)
			if (ka == kb) != tt.wantEq {
				t.Fatalf("KeyAddr(%d, %v, %d) = %#x, KeyAddr(%d, %v, %d) = %#x, want equal %v",
					tt.idA, tt.a, tt.bitsA, ka, tt.idB, tt.b, tt.bitsB, kb, tt.wantEq)
			}
		})
	}
}

func TestKeyBytes(t *testing.T) {
	tests := []struct {
		name   string
		idA    uint32
		a      string
		idB    uint32
		b      string
		wantEq bool
	}{
		{"same value", 1, "GET /login", 1, "GET /login", true},
		{"different value", 1, "GET /login", 1, "GET /logout", false},
		{"different limit", 1, "GET /login", 2, "GET /login", false},
		{"empty values", 1, "", 1, "", true},
		{"empty vs nul", 1, "", 1, "\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka, kb := KeyBytes(tt.idA, []byte(tt.a)), KeyBytes(tt.idB, []byte(tt.b))
			if (ka == kb) != tt.wantEq {
				t.Fatalf("KeyBytes: %#x vs %#x, want equal %v", ka, kb, tt.wantEq)
			}
			if KeyString(tt.idA, tt.a) != ka {
				t.Fatal("KeyString differs from KeyBytes for the same value")
			}
		})
	}
	a, r := KeyAddr(1, testAddr, 32), KeyString(1, "/login")
	if KeyCombine(1, a, r) != KeyCombine(1, a, r) {
		t.Fatal("KeyCombine is not deterministic")
	}
	if KeyCombine(1, a, r) == KeyCombine(1, r, a) || KeyCombine(1, a, r) == KeyCombine(2, a, r) {
		t.Fatal("KeyCombine ignores order or limit id")
	}
}

// FuzzKeyAddr checks KeyAddr against netip's own prefix masking: the bits
// after the prefix never change the key, and the last bit of the prefix
// always does.
func FuzzKeyAddr(f *testing.F) {
	f.Add([]byte{127, 1, 2, 3}, 24, uint32(1))
	f.Add([]byte{0x20, 1, 0xd, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1}, 64, uint32(7))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1}, 120, uint32(0))
	f.Add([]byte{}, -3, uint32(9))
	f.Fuzz(func(t *testing.T, raw []byte, bits int, id uint32) {
		a, ok := netip.AddrFromSlice(raw)
		if !ok {
			KeyAddr(id, a, bits) // invalid addresses must not panic
			return
		}
		a = a.Unmap()
		width := a.BitLen()
		n := min(max(bits, 0), width)
		k := KeyAddr(id, a, bits)
		p, err := a.Prefix(n)
		if err != nil {
			t.Fatalf("Prefix(%d): %v", n, err)
		}
		if got := KeyAddr(id, p.Addr(), bits); got != k {
			t.Fatalf("%v/%d: masked address %v gives another key", a, n, p.Addr())
		}
		b16 := a.As16()
		off := 128 - width // bit offset of the address in its 16-byte form
		flip := func(bit int) netip.Addr {
			c := b16
			c[(off+bit)/8] ^= 0x80 >> ((off + bit) % 8)
			if a.Is4() {
				return netip.AddrFrom16(c).Unmap()
			}
			return netip.AddrFrom16(c)
		}
		// KeyAddr treats IPv4-mapped IPv6 addresses as IPv4, so a flip that
		// turns an IPv6 address into one is a change of family.
		if n < width && !flip(n).Is4In6() {
			if got := KeyAddr(id, flip(n), bits); got != k {
				t.Fatalf("%v/%d: flipping host bit %d changed the key", a, n, n)
			}
		}
		if n > 0 && !flip(n-1).Is4In6() {
			if got := KeyAddr(id, flip(n-1), bits); got == k {
				t.Fatalf("%v/%d: flipping prefix bit %d kept the key", a, n, n-1)
			}
		}
	})
}

func FuzzKeyBytes(f *testing.F) {
	f.Add([]byte("GET /login"), uint32(1))
	f.Add([]byte{}, uint32(0))
	f.Fuzz(func(t *testing.T, b []byte, id uint32) {
		k := KeyBytes(id, b)
		if KeyString(id, string(b)) != k || KeyBytes(id, append([]byte(nil), b...)) != k {
			t.Fatal("key depends on more than the bytes and the limit id")
		}
		if KeyBytes(id^1, b) == k {
			t.Fatal("limit id not mixed in")
		}
	})
}

// slogTo returns a logger writing text lines to w under mu.
func slogTo(mu *sync.Mutex, w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(lockedWriter{mu, w}, nil))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
