package iplist

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Builder collects prefixes and compiles them into an immutable Table.
//
// When the same prefix is added more than once, the value of the last Add
// wins. Host bits of a prefix are ignored (1.2.3.4/24 is 1.2.3.0/24), and an
// IPv4-mapped IPv6 prefix of length 96 or more (::ffff:1.2.3.0/120) is
// stored as the IPv4 prefix it maps (1.2.3.0/24). Because lookups unmap
// IPv4-mapped addresses, an IPv6 prefix shorter than /96 (such as ::/0)
// never matches an IPv4 client.
//
// The zero value is an empty Builder ready to use. A Builder is not safe for
// concurrent use; the Tables it builds are.
type Builder struct {
	v4  []entry4
	v6  []entry6
	seq uint32
}

type entry4 struct {
	start uint32
	val   uint32
	seq   uint32
	bits  uint8
}

type entry6 struct {
	start u128
	val   uint32
	seq   uint32
	bits  uint8
}

// ErrInvalidPrefix is returned by Builder.Add for the zero or an otherwise
// invalid netip.Prefix.
var ErrInvalidPrefix = errors.New("invalid prefix")

// Add records prefix p with value v, which must not exceed MaxValue.
func (b *Builder) Add(p netip.Prefix, v uint32) error {
	if !p.IsValid() {
		return fmt.Errorf("iplist: add %v: %w", p, ErrInvalidPrefix)
	}
	if v > MaxValue {
		return fmt.Errorf("iplist: add %v: value %d is above MaxValue %d", p, v, uint32(MaxValue))
	}
	p = normalize(p)
	b.seq++
	if p.Addr().Is4() {
		b.v4 = append(b.v4, entry4{start: addrTo32(p.Addr()), val: v, seq: b.seq, bits: uint8(p.Bits())})
		return nil
	}
	b.v6 = append(b.v6, entry6{start: addrTo128(p.Addr()), val: v, seq: b.seq, bits: uint8(p.Bits())})
	return nil
}

// Grow reserves room for n more prefixes of each family, avoiding
// reallocation while adding a list of known size.
func (b *Builder) Grow(n4, n6 int) {
	b.v4 = slices.Grow(b.v4, n4)
	b.v6 = slices.Grow(b.v6, n6)
}

// Len returns the number of Add calls since the Builder was created or reset,
// counting duplicates.
func (b *Builder) Len() int { return len(b.v4) + len(b.v6) }

// Reset empties the Builder, keeping its memory.
func (b *Builder) Reset() {
	b.v4, b.v6, b.seq = b.v4[:0], b.v6[:0], 0
}

// normalize masks host bits and turns IPv4-mapped prefixes into IPv4 ones.
func normalize(p netip.Prefix) netip.Prefix {
	a := p.Addr()
	if a.Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(a.Unmap(), p.Bits()-96).Masked()
	}
	return p.Masked()
}

// Build compiles the prefixes added so far into a new Table. The Builder
// keeps its contents and may be extended and built again.
func (b *Builder) Build() *Table {
	t := &Table{}
	t.v4, t.count4 = build4(b.v4)
	t.v6, t.count6 = build6(b.v6)
	return t
}

// flat accumulates the flattened ranges of one address family.
type flat[K comparable] struct {
	starts []K
	vals   []uint32
	has    []bool
}

// emit records that from pos on the covering value is (has, val).
func (f *flat[K]) emit(pos K, has bool, val uint32) {
	n := len(f.starts)
	if n > 0 && f.starts[n-1] == pos {
		f.has[n-1], f.vals[n-1] = has, val
		if n >= 2 && f.has[n-2] == has && (!has || f.vals[n-2] == val) {
			f.starts, f.vals, f.has = f.starts[:n-1], f.vals[:n-1], f.has[:n-1]
		}
		return
	}
	if n > 0 && f.has[n-1] == has && (!has || f.vals[n-1] == val) {
		return
	}
	f.starts = append(f.starts, pos)
	f.vals = append(f.vals, val)
	f.has = append(f.has, has)
}

// stored encodes a range's value for the leaf: the value with presentBit
// set if a prefix covers the range, 0 if none does.
func stored(has bool, v uint32) uint32 {
	if !has {
		return 0
	}
	return v | presentBit
}

type open4 struct{ last, val uint32 }

func build4(in []entry4) (rangeTable4, int) {
	if len(in) == 0 {
		return rangeTable4{}, 0
	}
	es := slices.Clone(in)
	slices.SortFunc(es, func(a, b entry4) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		if c := cmp.Compare(a.bits, b.bits); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	// Keep the last Add of each distinct prefix.
	w := 0
	for i := range es {
		if w > 0 && es[w-1].start == es[i].start && es[w-1].bits == es[i].bits {
			es[w-1] = es[i]
			continue
		}
		es[w] = es[i]
		w++
	}
	es = es[:w]

	f := flat[uint32]{
		starts: make([]uint32, 0, 2*len(es)+1),
		vals:   make([]uint32, 0, 2*len(es)+1),
		has:    make([]bool, 0, 2*len(es)+1),
	}
	var st []open4
	top := func() (bool, uint32) {
		if len(st) == 0 {
			return false, 0
		}
		return true, st[len(st)-1].val
	}
	f.emit(0, false, 0)
	for _, e := range es {
		for len(st) > 0 && st[len(st)-1].last < e.start {
			t := st[len(st)-1]
			st = st[:len(st)-1]
			h, v := top()
			f.emit(t.last+1, h, v)
		}
		f.emit(e.start, true, e.val)
		last := e.start
		if e.bits < 32 {
			last |= ^uint32(0) >> e.bits
		}
		st = append(st, open4{last, e.val})
	}
	for len(st) > 0 {
		t := st[len(st)-1]
		st = st[:len(st)-1]
		if t.last == ^uint32(0) {
			break // every remaining open prefix ends at the top of the space too
		}
		h, v := top()
		f.emit(t.last+1, h, v)
	}

	n := len(f.starts)
	r := rangeTable4{
		upper: treeLevels(f.starts, fan4)[1:],
		leaf:  make([]uint32, (n+fan4-1)/fan4*leafStride4),
		n:     n,
	}
	for i, k := range f.starts {
		base := i / fan4 * leafStride4
		r.leaf[base+i%fan4] = k
		r.leaf[base+fan4+i%fan4] = stored(f.has[i], f.vals[i])
	}
	return r, len(es)
}

type open6 struct {
	last u128
	val  uint32
}

func build6(in []entry6) (rangeTable6, int) {
	if len(in) == 0 {
		return rangeTable6{}, 0
	}
	es := slices.Clone(in)
	slices.SortFunc(es, func(a, b entry6) int {
		if c := cmp.Compare(a.start.hi, b.start.hi); c != 0 {
			return c
		}
		if c := cmp.Compare(a.start.lo, b.start.lo); c != 0 {
			return c
		}
		if c := cmp.Compare(a.bits, b.bits); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	w := 0
	for i := range es {
		if w > 0 && es[w-1].start == es[i].start && es[w-1].bits == es[i].bits {
			es[w-1] = es[i]
			continue
		}
		es[w] = es[i]
		w++
	}
	es = es[:w]

	f := flat[u128]{
		starts: make([]u128, 0, 2*len(es)+1),
		vals:   make([]uint32, 0, 2*len(es)+1),
		has:    make([]bool, 0, 2*len(es)+1),
	}
	var st []open6
	top := func() (bool, uint32) {
		if len(st) == 0 {
			return false, 0
		}
		return true, st[len(st)-1].val
	}
	f.emit(u128{}, false, 0)
	for _, e := range es {
		for len(st) > 0 && st[len(st)-1].last.less(e.start) {
			t := st[len(st)-1]
			st = st[:len(st)-1]
			h, v := top()
			n, _ := next128(t.last) // cannot overflow: t.last < e.start
			f.emit(n, h, v)
		}
		f.emit(e.start, true, e.val)
		st = append(st, open6{last128(e.start, int(e.bits)), e.val})
	}
	for len(st) > 0 {
		t := st[len(st)-1]
		st = st[:len(st)-1]
		n, overflow := next128(t.last)
		if overflow {
			break
		}
		h, v := top()
		f.emit(n, h, v)
	}

	n := len(f.starts)
	his := make([]uint64, n)
	los := make([]uint64, n)
	for i, k := range f.starts {
		his[i], los[i] = k.hi, k.lo
	}
	r := rangeTable6{
		hiUp: treeLevels(his, fan6)[1:],
		loUp: treeLevels(los, fan6)[1:],
		leaf: make([]uint64, (n+fan6-1)/fan6*leafStride6),
		n:    n,
	}
	for i, k := range f.starts {
		base, j := i/fan6*leafStride6, i%fan6
		r.leaf[base+j] = k.hi
		r.leaf[base+fan6+j/2] |= uint64(stored(f.has[i], f.vals[i])) << (32 * (uint(j) & 1))
		r.leaf[base+fan6+fan6/2+j] = k.lo
	}
	return r, len(es)
}

// treeLevels builds the implicit B+tree over sorted keys: level 0 is keys,
// each next level holds every fan-th key of the one below, up to a root
// level of at most fan keys. The caller keeps levels[1:] and lays level 0
// out as leaf nodes.
func treeLevels[K any](keys []K, fan int) [][]K {
	levels := [][]K{keys}
	for l := keys; len(l) > fan; {
		up := make([]K, (len(l)+fan-1)/fan)
		for i := range up {
			up[i] = l[i*fan]
		}
		levels = append(levels, up)
		l = up
	}
	return levels
}
