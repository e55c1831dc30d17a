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
// are 64 or 128 bytes of keys, so a lookup in a table of a million prefixes
// touches about six nodes, the upper ones cached; each leaf node carries its
// values next to its keys. Lookups allocate nothing.
//
// The zero value and a nil *Table are valid empty tables.
type Table struct {
	v4     rangeTable4
	v6     rangeTable6
	count4 int
	count6 int
}

// MaxValue is the largest value a Table holds. The top bit of a stored value
// marks the ranges covered by a prefix, so a lookup reads one word in the
// leaf node and nothing else.
const MaxValue = 1<<31 - 1

const presentBit = 1 << 31

// fan4 and fan6 are the node widths of the search trees: 16 IPv4 keys fill
// 64 bytes, the high halves of 16 IPv6 keys 128 bytes.
const (
	fan4 = 16
	fan6 = 16
)

// rangeTable4 holds n IPv4 ranges. Range i starts at key i and ends just
// before key i+1; key 0 is always 0 when n > 0, so every address falls in
// exactly one range.
//
// The leaf level is node-major: node k holds the keys of ranges
// [k*fan4, k*fan4+fan4) followed by their values, so the value sits on the
// cache line next to the keys that selected it. upper[0][k] is the first key
// of leaf node k, upper[l+1][j] = upper[l][j*fan4], and the last upper level
// has at most fan4 keys: together an implicit static B+tree.
type rangeTable4 struct {
	upper [][]uint32
	leaf  []uint32
	n     int
}

// leafStride4 is the length of one IPv4 leaf node: fan4 keys, fan4 values.
const leafStride4 = 2 * fan4

// u128 is an IPv6 address as two big-endian halves.
type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

// rangeTable6 is rangeTable4 for IPv6. The upper levels are split into the
// high and low halves of the keys: a node is searched on the high halves
// alone (8 bytes per key), and the low halves are read only for keys whose
// high half equals the address's. A leaf node is fan6 high halves, fan6
// values packed two per word, then fan6 low halves.
type rangeTable6 struct {
	hiUp [][]uint64
	loUp [][]uint64
	leaf []uint64
	n    int
}

// leafStride6 is the length of one IPv6 leaf node in words.
const leafStride6 = fan6 + fan6/2 + fan6

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
	n := cap(t.v4.leaf)*4 + cap(t.v6.leaf)*8
	for _, l := range t.v4.upper {
		n += cap(l) * 4
	}
	for _, l := range t.v6.hiUp {
		n += cap(l) * 8
	}
	for _, l := range t.v6.loUp {
		n += cap(l) * 8
	}
	return n
}

func (r *rangeTable4) lookup(a uint32) (uint32, bool) {
	if r.n == 0 {
		return 0, false
	}
	// Invariant: the first key of the node searched on each level is <= a;
	// pos becomes the last key <= a in it, which selects the child node.
	pos := 0
	for l := len(r.upper) - 1; l >= 0; l-- {
		keys := r.upper[l]
		base := pos * fan4
		pos = base + countLE4(keys[base:min(base+fan4, len(keys))], a) - 1
	}
	base := pos * leafStride4
	j := countLE4(r.leaf[base:base+min(fan4, r.n-pos*fan4)], a) - 1
	v := r.leaf[base+fan4+j]
	return v &^ presentBit, v&presentBit != 0
}

// countLE4 returns the number of keys <= a without branching: the sign bit
// of key-a-1 computed in 64 bits.
func countLE4(keys []uint32, a uint32) int {
	n := uint64(0)
	for _, k := range keys {
		n += (uint64(k) - uint64(a) - 1) >> 63
	}
	return int(n)
}

// countLE6 returns the number of keys <= a in a node given as the high
// halves his and the low halves los (same length):
// a branch-free count of the high halves below a.hi, then a short walk over
// the keys whose high half equals a.hi (sorted by low half; usually none).
func countLE6(his, los []uint64, a u128) int {
	var lt uint64
	for _, h := range his {
		_, b := bits.Sub64(h, a.hi, 0)
		lt += b
	}
	n := int(lt)
	for n < len(his) && his[n] == a.hi && los[n] <= a.lo {
		n++
	}
	return n
}

func (r *rangeTable6) lookup(a u128) (uint32, bool) {
	if r.n == 0 {
		return 0, false
	}
	pos := 0
	for l := len(r.hiUp) - 1; l >= 0; l-- {
		his, los := r.hiUp[l], r.loUp[l]
		base := pos * fan6
		end := min(base+fan6, len(his))
		pos = base + countLE6(his[base:end], los[base:end], a) - 1
	}
	base := pos * leafStride6
	cnt := min(fan6, r.n-pos*fan6)
	j := countLE6(r.leaf[base:base+cnt], r.leaf[base+fan6+fan6/2:base+fan6+fan6/2+cnt], a) - 1
	v := uint32(r.leaf[base+fan6+j/2] >> (32 * (uint(j) & 1)))
	return v &^ presentBit, v&presentBit != 0
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
