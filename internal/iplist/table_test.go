package iplist

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// refEntry is one prefix of the brute-force reference.
type refEntry struct {
	p netip.Prefix
	v uint32
}

// refLookup is the obviously correct longest-prefix match: scan everything,
// keep the longest containing prefix; among equal prefixes the last added wins.
func refLookup(es []refEntry, a netip.Addr) (uint32, bool) {
	a = a.Unmap()
	best, bestBits, ok := uint32(0), -1, false
	for _, e := range es {
		p := normalize(e.p)
		if p.Contains(a) && p.Bits() >= bestBits {
			best, bestBits, ok = e.v, p.Bits(), true
		}
	}
	return best, ok
}

// refMap is a second obviously correct reference for large tests: try
// every prefix length from longest to shortest in a map.
type refMap map[netip.Prefix]uint32

func (m refMap) lookup(a netip.Addr) (uint32, bool) {
	a = a.Unmap()
	for bits := a.BitLen(); bits >= 0; bits-- {
		p, _ := a.Prefix(bits)
		if v, ok := m[p]; ok {
			return v, true
		}
	}
	return 0, false
}

func TestTableLargeAgainstMap(t *testing.T) {
	for _, tc := range []struct {
		name string
		v6   bool
		n    int
	}{{"v4-200k", false, 200_000}, {"v6-100k", true, 100_000}} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, uint64(tc.n)))
			var b Builder
			ref := refMap{}
			var added []netip.Prefix
			for i := 0; i < tc.n; i++ {
				p := randPrefix(r, tc.v6)
				v := uint32(r.IntN(MaxValue + 1))
				b.Add(p, v)
				ref[p] = v // last Add wins in both
				added = append(added, p)
			}
			tb := b.Build()
			if tb.Len() != len(ref) {
				t.Fatalf("Len = %d; want %d distinct", tb.Len(), len(ref))
			}
			probe := func(a netip.Addr) {
				gv, gok := tb.Lookup(a)
				wv, wok := ref.lookup(a)
				if gv != wv || gok != wok {
					t.Fatalf("Lookup(%v) = %d,%v; reference %d,%v", a, gv, gok, wv, wok)
				}
			}
			for i := 0; i < 50_000; i++ {
				probe(randAddr(r, tc.v6))
			}
			for _, p := range added[:20_000] {
				first, last := p.Addr(), lastAddr(p)
				probe(first)
				probe(last)
				if a := first.Prev(); a.IsValid() {
					probe(a)
				}
				if a := last.Next(); a.IsValid() {
					probe(a)
				}
			}
		})
	}
}

func randAddr(r *rand.Rand, v6 bool) netip.Addr {
	if v6 {
		var b [16]byte
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		// Concentrate in a small region so prefixes nest and collide.
		b[0], b[1] = 0x20, 0x01
		if r.IntN(4) == 0 {
			b[2], b[3] = 0x0d, 0xb8
		}
		return netip.AddrFrom16(b)
	}
	var b [4]byte
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if r.IntN(2) == 0 {
		b[0] = 10 // dense region
	}
	return netip.AddrFrom4(b)
}

func randPrefix(r *rand.Rand, v6 bool) netip.Prefix {
	a := randAddr(r, v6)
	if v6 {
		return netip.PrefixFrom(a, 16+r.IntN(113)).Masked()
	}
	return netip.PrefixFrom(a, 4+r.IntN(29)).Masked()
}

func TestTableAgainstReference(t *testing.T) {
	for _, tc := range []struct {
		name    string
		n       int
		v6      bool
		queries int
	}{
		{"v4-small", 20, false, 3000},
		{"v4-nested", 600, false, 3000}, // >= indexMin ranges: exercises the index
		{"v6-small", 20, true, 3000},
		{"v6-nested", 600, true, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.n)))
			var b Builder
			var ref []refEntry
			for i := 0; i < tc.n; i++ {
				p := randPrefix(r, tc.v6)
				// Sometimes add a nested child or an exact duplicate.
				switch r.IntN(5) {
				case 0:
					if p.Bits() < p.Addr().BitLen() {
						p = netip.PrefixFrom(p.Addr(), p.Bits()+1+r.IntN(p.Addr().BitLen()-p.Bits())).Masked()
					}
				case 1:
					if len(ref) > 0 {
						p = ref[r.IntN(len(ref))].p
					}
				}
				v := uint32(r.IntN(4)) // few values: exercises range merging
				if err := b.Add(p, v); err != nil {
					t.Fatal(err)
				}
				ref = append(ref, refEntry{p, v})
			}
			tb := b.Build()
			probe := func(a netip.Addr) {
				gv, gok := tb.Lookup(a)
				wv, wok := refLookup(ref, a)
				if gv != wv || gok != wok {
					t.Fatalf("Lookup(%v) = %d,%v; reference %d,%v", a, gv, gok, wv, wok)
				}
				if tb.Contains(a) != wok {
					t.Fatalf("Contains(%v) = %v; want %v", a, !wok, wok)
				}
			}
			for i := 0; i < tc.queries; i++ {
				probe(randAddr(r, tc.v6))
			}
			// Probe every prefix boundary: first, last, one before, one after.
			for _, e := range ref {
				first := e.p.Masked().Addr()
				last := lastAddr(e.p)
				probe(first)
				probe(last)
				if p := first.Prev(); p.IsValid() {
					probe(p)
				}
				if n := last.Next(); n.IsValid() {
					probe(n)
				}
			}
		})
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestTableEdges(t *testing.T) {
	mp := netip.MustParsePrefix
	ma := netip.MustParseAddr
	var b Builder
	for _, e := range []struct {
		p string
		v uint32
	}{
		{"0.0.0.0/0", 1},
		{"255.255.255.255/32", 2},
		{"1.2.3.0/24", 3},
		{"1.2.3.4/30", 4}, // host bits are masked: 1.2.3.4/30
		{"1.2.3.0/24", 5}, // duplicate: last Add wins
		{"::/0", 6},       // default route, v6
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 7},
		{"2001:db8::/32", 8},
		{"::ffff:9.9.9.0/120", 9}, // mapped prefix stored as 9.9.9.0/24
	} {
		if err := b.Add(mp(e.p), e.v); err != nil {
			t.Fatal(err)
		}
	}
	tb := b.Build()
	for _, c := range []struct {
		a  string
		v  uint32
		ok bool
	}{
		{"0.0.0.0", 1, true},
		{"8.8.8.8", 1, true},
		{"255.255.255.255", 2, true},
		{"255.255.255.254", 1, true},
		{"1.2.3.1", 5, true},
		{"1.2.3.5", 4, true},
		{"1.2.3.8", 5, true},
		{"::ffff:1.2.3.7", 4, true}, // mapped address matched as IPv4
		{"9.9.9.9", 9, true},
		{"::", 6, true},
		{"2001:db8::1", 8, true},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 7, true},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 6, true},
	} {
		v, ok := tb.Lookup(ma(c.a))
		if v != c.v || ok != c.ok {
			t.Errorf("Lookup(%s) = %d,%v; want %d,%v", c.a, v, ok, c.v, c.ok)
		}
	}
	if got := tb.Len(); got != 8 {
		t.Errorf("Len() = %d; want 8 (9 adds, one duplicate)", got)
	}
	if _, ok := tb.Lookup(netip.Addr{}); ok {
		t.Error("zero Addr matched")
	}
	if err := b.Add(netip.Prefix{}, 1); err == nil {
		t.Error("Add(zero Prefix) = nil error")
	}
	if err := b.Add(mp("192.0.2.0/24"), MaxValue+1); err == nil {
		t.Error("Add(value above MaxValue) = nil error")
	}
	var bm Builder
	bm.Add(mp("192.0.2.0/24"), MaxValue)
	bm.Add(mp("192.0.2.0/25"), 0)
	if v, ok := bm.Build().Lookup(ma("192.0.2.200")); v != MaxValue || !ok {
		t.Errorf("MaxValue round trip = %d, %v", v, ok)
	}
	if v, ok := bm.Build().Lookup(ma("192.0.2.1")); v != 0 || !ok {
		t.Errorf("value 0 round trip = %d, %v", v, ok)
	}
	var nilT *Table
	if nilT.Contains(ma("1.1.1.1")) || nilT.Len() != 0 || (&Table{}).Contains(ma("::1")) {
		t.Error("nil/zero Table is not empty")
	}
}

func TestLookupAllocs(t *testing.T) {
	tb := buildRandom(t, 5000, 5000)
	a4, a6 := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(1000, func() {
		tb.Lookup(a4)
		tb.Lookup(a6)
		tb.Contains(netip.MustParseAddr("::ffff:10.0.0.1"))
	}); n != 0 {
		t.Fatalf("Lookup allocates %v times per run; want 0", n)
	}
}

func buildRandom(tb testing.TB, n4, n6 int) *Table {
	tb.Helper()
	r := rand.New(rand.NewPCG(42, 42))
	var b Builder
	b.Grow(n4, n6)
	for i := 0; i < n4; i++ {
		a := randAddr(r, false)
		if err := b.Add(netip.PrefixFrom(a, 8+r.IntN(25)), uint32(i)); err != nil {
			tb.Fatal(err)
		}
	}
	for i := 0; i < n6; i++ {
		a := randAddr(r, true)
		if err := b.Add(netip.PrefixFrom(a, 24+r.IntN(105)), uint32(i)); err != nil {
			tb.Fatal(err)
		}
	}
	return b.Build()
}

// threadCPU returns the CPU time consumed by the calling OS thread.
func threadCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		tb.Skipf("getrusage(RUSAGE_THREAD): %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func queryAddrs(n int, v6 bool) []netip.Addr {
	r := rand.New(rand.NewPCG(7, 7))
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = randAddr(r, v6)
	}
	return out
}

// BenchmarkLookup measures lookups of random addresses in tables of random
// prefixes of one family: 10k (cache-resident) and 1M.
func BenchmarkLookup(b *testing.B) {
	for _, fam := range []struct {
		name   string
		n4, n6 int
		v6     bool
	}{
		{"v4-10k", 10_000, 0, false},
		{"v4-1M", 1_000_000, 0, false},
		{"v6-10k", 0, 10_000, true},
		{"v6-1M", 0, 1_000_000, true},
	} {
		// The table is built inside the family's sub-benchmark, so -bench
		// filters skip the builds they do not need.
		b.Run(fam.name, func(b *testing.B) {
			tb := buildRandom(b, fam.n4, fam.n6)
			qs := queryAddrs(1<<16, fam.v6)
			// serial runs on one locked thread and also reports the
			// thread's CPU time per lookup, which, unlike wall time, does
			// not count the time other processes held the core on a shared
			// machine.
			b.Run("serial", func(b *testing.B) {
				b.ReportAllocs()
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				hits := 0
				cpu0 := threadCPU(b)
				for i := 0; b.Loop(); i++ {
					if tb.Contains(qs[i&(len(qs)-1)]) {
						hits++
					}
				}
				b.ReportMetric(float64(threadCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
				_ = hits
			})
			b.Run("parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.ReportMetric(float64(tb.SizeBytes())/float64(tb.Len()), "table-B/prefix")
				b.RunParallel(func(pb *testing.PB) {
					i, hits := 0, 0
					for pb.Next() {
						if tb.Contains(qs[i&(len(qs)-1)]) {
							hits++
						}
						i++
					}
					_ = hits
				})
			})
		})
	}
}

// BenchmarkBuild measures compiling 1M random prefixes of one family.
func BenchmarkBuild(b *testing.B) {
	for _, fam := range []struct {
		name string
		v6   bool
	}{{"v4-1M", false}, {"v6-1M", true}} {
		r := rand.New(rand.NewPCG(42, 42))
		var bd Builder
		for i := 0; i < 1_000_000; i++ {
			a := randAddr(r, fam.v6)
			bits := 8 + r.IntN(25)
			if fam.v6 {
				bits = 24 + r.IntN(105)
			}
			_ = bd.Add(netip.PrefixFrom(a, bits), uint32(i))
		}
		b.Run(fam.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				bd.Build()
			}
		})
	}
}

func ExampleBuilder() {
	var b Builder
	_ = b.Add(netip.MustParsePrefix("192.0.2.0/24"), 1)
	_ = b.Add(netip.MustParsePrefix("192.0.2.128/25"), 2)
	_ = b.Add(netip.MustParsePrefix("2001:db8::/32"), 3)
	t := b.Build()
	for _, a := range []string{"192.0.2.1", "192.0.2.200", "::ffff:192.0.2.7", "2001:db8::1", "198.51.100.1"} {
		v, ok := t.Lookup(netip.MustParseAddr(a))
		fmt.Println(a, v, ok)
	}
	// Output:
	// 192.0.2.1 1 true
	// 192.0.2.200 2 true
	// ::ffff:192.0.2.7 1 true
	// 2001:db8::1 3 true
	// 198.51.100.1 0 false
}

// FuzzTable builds a table from fuzzed prefixes and compares lookups of
// fuzzed addresses, and of every prefix boundary, with the brute-force
// reference. Input: records of 17 bytes (16 address bytes, 1 length byte);
// the length byte's top bit selects IPv4.
func FuzzTable(f *testing.F) {
	f.Add([]byte("\x0a\x00\x00\x00............\x88\x0a\x01\x00\x00............\x90"))
	f.Add(make([]byte, 17*3))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Builder
		var ref []refEntry
		var addrs []netip.Addr
		for i := 0; i+17 <= len(data) && i < 17*64; i += 17 {
			rec := data[i : i+17]
			var a netip.Addr
			var bits int
			if rec[16]&0x80 != 0 {
				a = netip.AddrFrom4([4]byte(rec[:4]))
				bits = int(rec[16]&0x7f) % 33
			} else {
				a = netip.AddrFrom16([16]byte(rec[:16]))
				bits = int(rec[16]) % 129
			}
			p := netip.PrefixFrom(a, bits)
			if err := b.Add(p, uint32(i)); err != nil {
				t.Fatal(err)
			}
			ref = append(ref, refEntry{p, uint32(i)})
			addrs = append(addrs, a, lastAddr(p), p.Masked().Addr().Prev(), lastAddr(p).Next())
		}
		tb := b.Build()
		for _, a := range addrs {
			if !a.IsValid() {
				continue
			}
			gv, gok := tb.Lookup(a)
			wv, wok := refLookup(ref, a)
			if gv != wv || gok != wok {
				t.Fatalf("Lookup(%v) = %d,%v; reference %d,%v", a, gv, gok, wv, wok)
			}
		}
	})
}
