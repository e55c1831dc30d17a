package iplist

import (
	"math/bits"
	"net/netip"
)

// Table is an immutable longest-prefix-match table from IPv4 and IPv6
// prefixes to uint32 values. It is built by a Builder and never changes
// afterwards, so any number of goroutines may call its methods concurrently
// without locks; publish a new Table through an atomic.Pointer to change
// what readers see.
//
// Internally the prefixes are flattened into sorted, non-overlapping address
// ranges (a nested prefix splits its parent into more specific ranges). The
// range starts are searched through an implicit static B+tree whose nodes
// are 64 or 128 bytes wide, so a lookup in a table of a million
// prefixes touches about six nodes, the upper ones cached. Lookups allocate
// nothing.
//
// The zero value and a nil *Table are valid empty tables.
type Table struct {
	v4     rangeTable4
	v6     rangeTable6
	count4 int
	count6 int
}

// fan4 and fan6 are the node widths of the search trees: 16 IPv4 keys fill
// 64 bytes, the high halves of 16 IPv6 keys 128 bytes.
const (
	fan4 = 16
	fan6 = 16
)

// rangeTable4 holds IPv4 ranges. levels[0][i] is the first address of range
// i; range i ends just before levels[0][i+1]. levels[0][0] is always 0 when
// the table is non-empty, so every address falls in exactly one range.
// levels[k+1][j] = levels[k][j*fan4]: the upper levels form a B+tree over the
// starts, and the last level has at most fan4 keys.
type rangeTable4 struct {
	levels  [][]uint32
	vals    []uint32
	present []uint64 // bit i set: range i is covered by a prefix
}

// u128 is an IPv6 address as two big-endian halves.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

// rangeTable6 is rangeTable4 for IPv6, with each level split into the high
// and low halves of the keys: a node is searched on the high halves alone
// (8 bytes per key), and the low halves are read only for keys whose high
// half equals the address's.
type rangeTable6 struct {
	hi      [][]uint64
	lo      [][]uint64
	vals    []uint32
	present []uint64
}

// Lookup returns the value of the longest prefix containing addr.
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are matched as IPv4.
// An invalid addr matches nothing.
func (t *Table) Lookup(addr netip.Addr) (value uint32, ok bool) {
	if t == nil {
		return 0, false
	}
	if addr.Is4() || addr.Is4In6() {
		a4 := addr.Unmap().As4()
		return t.v4.lookup(uint32(a4[0])<<24 | uint32(a4[1])<<16 | uint32(a4[2])<<8 | uint32(a4[3]))
	}
	if !addr.Is6() {
		return 0, false
	}
	return t.v6.lookup(addrTo128(addr))
}

// Contains reports whether any prefix in the table contains addr.
func (t *Table) Contains(addr netip.Addr) bool {
	_, ok := t.Lookup(addr)
	return ok
}

// Len returns the number of distinct prefixes in the table.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return t.count4 + t.count6
}

// Len4 and Len6 return the number of distinct IPv4 and IPv6 prefixes.
func (t *Table) Len4() int {
	if t == nil {
		return 0
	}
	return t.count4
}

// Len6 returns the number of distinct IPv6 prefixes.
func (t *Table) Len6() int {
	if t == nil {
		return 0
	}
	return t.count6
}

// SizeBytes returns the approximate memory held by the table's arrays.
func (t *Table) SizeBytes() int {
	if t == nil {
		return 0
	}
	n := cap(t.v4.vals)*4 + cap(t.v4.present)*8 + cap(t.v6.vals)*4 + cap(t.v6.present)*8
	for _, l := range t.v4.levels {
		n += cap(l) * 4
	}
	for _, l := range t.v6.hi {
		n += cap(l) * 8
	}
	for _, l := range t.v6.lo {
		n += cap(l) * 8
	}
	return n
}

func (r *rangeTable4) lookup(a uint32) (uint32, bool) {
	if len(r.levels) == 0 {
		return 0, false
	}
	// Invariant: keys[pos] <= a. Each level narrows pos to the last key <= a
	// among the children of the node chosen on the level above.
	pos := 0
	for l := len(r.levels) - 1; l >= 0; l-- {
		keys := r.levels[l]
		base := pos * fan4
		end := min(base+fan4, len(keys))
		// Branch-free count of the keys <= a (the node is sorted and its
		// first key is <= a): the sign bit of key-a-1 computed in 64 bits.
		n := uint64(0)
		for _, k := range keys[base+1 : end] {
			n += (uint64(k) - uint64(a) - 1) >> 63
		}
		pos = base + int(n)
	}
	if r.present[pos>>6]&(1<<(uint(pos)&63)) == 0 {
		return 0, false
	}
	return r.vals[pos], true
}

func (r *rangeTable6) lookup(a u128) (uint32, bool) {
	if len(r.hi) == 0 {
		return 0, false
	}
	pos := 0
	for l := len(r.hi) - 1; l >= 0; l-- {
		his := r.hi[l]
		base := pos * fan6
		end := min(base+fan6, len(his))
		// Branch-free count of the keys whose high half is below the
		// address's, then a short walk over the keys whose high half is
		// equal (sorted by low half; usually none).
		var lt uint64
		for _, h := range his[base:end] {
			_, b := bits.Sub64(h, a.hi, 0)
			lt += b
		}
		n := int(lt)
		for j := base + n; j < end && his[j] == a.hi && r.lo[l][j] <= a.lo; j++ {
			n++
		}
		pos = base + n - 1 // n >= 1: the node's first key is <= a
	}
	if r.present[pos>>6]&(1<<(uint(pos)&63)) == 0 {
		return 0, false
	}
	return r.vals[pos], true
}

func addrTo128(a netip.Addr) u128 {
	b := a.As16()
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

func addrTo32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// last128 returns the last address of the prefix starting at s with the given length.
func last128(s u128, bitLen int) u128 {
	switch {
	case bitLen >= 128:
		return s
	case bitLen >= 64:
		return u128{s.hi, s.lo | (^uint64(0) >> uint(bitLen-64))}
	default:
		return u128{s.hi | (^uint64(0) >> uint(bitLen)), ^uint64(0)}
	}
}

// next128 returns a+1 and whether it overflowed.
func next128(a u128) (u128, bool) {
	lo, c := bits.Add64(a.lo, 1, 0)
	hi, c2 := bits.Add64(a.hi, 0, c)
	return u128{hi, lo}, c2 != 0
}
