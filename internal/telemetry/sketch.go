package telemetry

import (
	"math"
	"math/bits"
	"sync/atomic"
)

// sampleCap is how many bytes of a value a top-k entry keeps (paths and user
// agents longer than this are truncated and marked so).
const sampleCap = 96

// ssEntry is one monitored value of a Space-Saving summary.
type ssEntry struct {
	key   uint64
	err   uint32 // overestimation bound: the count the evicted value had
	n     uint8  // sample length
	trunc bool
}

// ssSlot is one slot of the key index: the key beside its entry, so that
// probing touches only the index.
type ssSlot struct {
	key uint64
	e   int32 // entry index + 1; 0 = empty
}

// spaceSaving is the Space-Saving top-k algorithm (Metwally, Agrawal, El
// Abbadi 2005) with a 4-ary min-heap over the k monitored entries and a
// linear-probing index from key to entry. Every update is O(log k) and does
// not allocate. Not safe for concurrent use.
type spaceSaving struct {
	entries []ssEntry
	samples [][sampleCap]byte
	heap    []int32  // entry indices, min-heap by count
	hc      []uint32 // count of the entry at each heap position (kept beside the heap for locality)
	pos     []int32  // entry index -> heap position
	table   []ssSlot
	mask    uint64
	n       int
	rap     bool   // randomized admission of new values when full
	rng     uint64 // xorshift64 state for rap
}

func newSpaceSaving(k int, rap bool) spaceSaving {
	size := 1
	for size < 2*k {
		size <<= 1
	}
	return spaceSaving{
		entries: make([]ssEntry, k),
		samples: make([][sampleCap]byte, k),
		heap:    make([]int32, k),
		hc:      make([]uint32, k),
		pos:     make([]int32, k),
		table:   make([]ssSlot, size),
		mask:    uint64(size - 1),
		rap:     rap,
		rng:     0x9e3779b97f4a7c15 ^ uint64(k),
	}
}

func (s *spaceSaving) reset() {
	s.n = 0
	clear(s.table)
}

// add counts one occurrence of key. sample is copied only when the key
// enters the summary.
func (s *spaceSaving) add(key uint64, sample []byte) {
	i := key & s.mask
	for {
		sl := &s.table[i]
		if sl.e == 0 {
			break
		}
		if sl.key == key {
			p := int(s.pos[sl.e-1])
			s.hc[p]++
			s.down(p)
			return
		}
		i = (i + 1) & s.mask
	}
	var e int
	if s.n < len(s.entries) {
		e = s.n
		s.n++
		s.hc[e] = 1
		s.entries[e].err = 0
		s.heap[e] = int32(e)
		s.pos[e] = int32(e)
		s.fill(e, key, sample)
		s.table[i] = ssSlot{key: key, e: int32(e + 1)}
		s.up(e)
		return
	}
	// Full: a new value replaces the minimum. With randomized admission
	// (RAP, Ben Basat et al. 2017) it does so only with probability
	// 1/(min+1): a flood of distinct values then mostly costs a random
	// draw instead of a replacement, while a frequent value is admitted
	// after about min+1 occurrences and counted exactly from then on.
	if s.rap {
		s.rng ^= s.rng << 13
		s.rng ^= s.rng >> 7
		s.rng ^= s.rng << 17
		if s.rng%(uint64(s.hc[0])+1) != 0 {
			return
		}
	}
	e = int(s.heap[0])
	s.del(s.entries[e].key)
	s.entries[e].err = s.hc[0]
	s.hc[0]++
	s.fill(e, key, sample)
	// The slot found above may have moved during deletion: probe again.
	j := key & s.mask
	for s.table[j].e != 0 {
		j = (j + 1) & s.mask
	}
	s.table[j] = ssSlot{key: key, e: int32(e + 1)}
	s.down(0)
}

func (s *spaceSaving) fill(e int, key uint64, sample []byte) {
	en := &s.entries[e]
	en.key = key
	en.trunc = len(sample) > sampleCap
	en.n = uint8(copy(s.samples[e][:], sample))
}

// sample returns entry e's stored value bytes.
func (s *spaceSaving) sample(e int) []byte { return s.samples[e][:s.entries[e].n] }

// del removes key from the index with backward-shift deletion.
func (s *spaceSaving) del(key uint64) {
	i := key & s.mask
	for s.table[i].key != key || s.table[i].e == 0 {
		i = (i + 1) & s.mask
	}
	for {
		s.table[i] = ssSlot{}
		j := i
		for {
			j = (j + 1) & s.mask
			if s.table[j].e == 0 {
				return
			}
			h := s.table[j].key & s.mask
			var stays bool
			if i <= j {
				stays = i < h && h <= j
			} else {
				stays = i < h || h <= j
			}
			if !stays {
				break
			}
		}
		s.table[i] = s.table[j]
		i = j
	}
}

func (s *spaceSaving) less(a, b int) bool { return s.hc[a] < s.hc[b] }

// count returns the count of entry e.
func (s *spaceSaving) count(e int) uint32 { return s.hc[s.pos[e]] }

func (s *spaceSaving) swap(a, b int) {
	s.heap[a], s.heap[b] = s.heap[b], s.heap[a]
	s.hc[a], s.hc[b] = s.hc[b], s.hc[a]
	s.pos[s.heap[a]] = int32(a)
	s.pos[s.heap[b]] = int32(b)
}

// The heap is 4-ary: the four children of i are 4i+1..4i+4, next to each
// other in hc (one cache line), which halves the depth of a sift.
func (s *spaceSaving) up(i int) {
	for i > 0 {
		p := (i - 1) / 4
		if !s.less(i, p) {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *spaceSaving) down(i int) {
	n := s.n
	for {
		c := 4*i + 1
		if c >= n {
			return
		}
		m := c
		mc := s.hc[c]
		end := min(c+4, n)
		for j := c + 1; j < end; j++ {
			if s.hc[j] < mc {
				m, mc = j, s.hc[j]
			}
		}
		if mc >= s.hc[i] {
			return
		}
		s.swap(i, m)
		i = m
	}
}

// minCount returns the smallest monitored count when the summary is full
// (an upper bound on the count of any unmonitored value), else 0.
func (s *spaceSaving) minCount() uint32 {
	if s.n < len(s.entries) {
		return 0
	}
	return s.hc[0]
}

// hllP is the HyperLogLog precision: 2^12 registers, standard error
// 1.04/sqrt(4096) = 1.6 %.
const (
	hllP = 12
	hllM = 1 << hllP
)

type hll [hllM]uint8

func (h *hll) add(x uint64) {
	idx := x >> (64 - hllP)
	w := x<<hllP | 1<<(hllP-1)
	r := uint8(bits.LeadingZeros64(w)) + 1
	if r > h[idx] {
		h[idx] = r
	}
}

func (h *hll) merge(o *hll) {
	for i := range h {
		if o[i] > h[i] {
			h[i] = o[i]
		}
	}
}

// estimate is the HyperLogLog estimate with the linear-counting correction
// for small cardinalities (Flajolet et al. 2007, Heule et al. 2013).
func (h *hll) estimate() uint64 {
	sum := 0.0
	zeros := 0
	for _, r := range h {
		sum += 1 / float64(uint64(1)<<r)
		if r == 0 {
			zeros++
		}
	}
	m := float64(hllM)
	est := 0.7213 / (1 + 1.079/m) * m * m / sum
	if zeros > 0 {
		lc := m * math.Log(m/float64(zeros))
		if lc <= 2.5*m || est <= 5*m {
			est = lc
		}
	}
	return uint64(est + 0.5)
}

// seenFilter remembers which client addresses were seen recently: two
// generations of a blocked Bloom filter (each key sets 8 bits inside one
// 512-bit block, one per 64-bit word, so a check touches one cache line). An
// address is "seen" when either generation holds it; new addresses go into
// the current generation. When the current generation has taken its
// capacity or has been current for longer than the period, the older
// generation is cleared and becomes current. So an address is remembered for
// at least one period (or one capacity's worth of other new addresses) and
// at most two. All operations are atomic; safe for concurrent use.
type seenFilter struct {
	gens     [2][]atomic.Uint64
	cur      atomic.Uint32
	mask     uint64 // block count - 1
	inserted uint64 // into the current generation; Tick only
	since    int64  // when the current generation became current; Tick only
}

func newSeenFilter(capacity int) *seenFilter {
	// ~10 bits per address: capacity*10/512 blocks, rounded up to a power of 2.
	blocks := 1
	for blocks*512 < capacity*10 {
		blocks <<= 1
	}
	f := &seenFilter{mask: uint64(blocks - 1)}
	f.gens[0] = make([]atomic.Uint64, blocks*8)
	f.gens[1] = make([]atomic.Uint64, blocks*8)
	return f
}

func (f *seenFilter) bytes() int { return 2 * len(f.gens[0]) * 8 }

// checkAdd reports whether key was already seen and records it; added
// reports that it was written into the current generation.
func (f *seenFilter) checkAdd(key uint64) (seen, added bool) {
	base := (key & f.mask) * 8
	h := mix(key ^ 0x2545f4914f6cdd1d)
	c := f.cur.Load() & 1
	cur, old := f.gens[c], f.gens[c^1]
	inCur := true
	for w := range uint64(8) {
		bit := uint64(1) << ((h >> (w * 6)) & 63)
		if cur[base+w].Load()&bit == 0 {
			inCur = false
			break
		}
	}
	if inCur {
		return true, false
	}
	inOld := true
	for w := range uint64(8) {
		bit := uint64(1) << ((h >> (w * 6)) & 63)
		if old[base+w].Load()&bit == 0 {
			inOld = false
			break
		}
	}
	for w := range uint64(8) {
		bit := uint64(1) << ((h >> (w * 6)) & 63)
		cur[base+w].Or(bit)
	}
	return inOld, true
}

// rotate clears the older generation and makes it current.
func (f *seenFilter) rotate(now int64) {
	c := f.cur.Load() & 1
	old := f.gens[c^1]
	for i := range old {
		old[i].Store(0)
	}
	f.cur.Store(c ^ 1)
	f.inserted = 0
	f.since = now
}
