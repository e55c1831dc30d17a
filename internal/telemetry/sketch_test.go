package telemetry

import (
	"math"
	"math/rand/v2"
	"testing"
)

// checkIndex verifies the Space-Saving invariants: every entry is findable
// through the index, the heap is ordered and pos mirrors heap.
func checkIndex(t *testing.T, s *spaceSaving) {
	t.Helper()
	used := 0
	for _, v := range s.table {
		if v.e != 0 {
			used++
		}
	}
	if used != s.n {
		t.Fatalf("index holds %d entries, summary %d", used, s.n)
	}
	for e := 0; e < s.n; e++ {
		key := s.entries[e].key
		i := key & s.mask
		for s.table[i].e != 0 && s.table[i].key != key {
			i = (i + 1) & s.mask
		}
		if s.table[i].e != int32(e+1) || s.entries[e].key != key {
			t.Fatalf("entry %d (key %x) not reachable from its home slot", e, key)
		}
	}
	for i := 0; i < s.n; i++ {
		if s.pos[s.heap[i]] != int32(i) {
			t.Fatalf("pos[heap[%d]] = %d", i, s.pos[s.heap[i]])
		}
		if i > 0 && s.less(i, (i-1)/4) {
			t.Fatalf("heap order broken at %d", i)
		}
	}
}

// TestSpaceSavingGuarantees checks the classic (exact admission) variant's
// deterministic guarantees.
func TestSpaceSavingGuarantees(t *testing.T) {
	tests := []struct {
		name     string
		k        int
		distinct int
		n        int
		zipf     float64
	}{
		{"skewed", 32, 5000, 200000, 1.3},
		{"flat", 16, 200, 50000, 1.01},
		{"fits", 64, 40, 10000, 1.2},
		{"tiny", 1, 10, 1000, 1.5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			z := rand.NewZipf(r, tc.zipf, 1, uint64(tc.distinct-1))
			s := newSpaceSaving(tc.k, false)
			truth := map[uint64]uint32{}
			for i := 0; i < tc.n; i++ {
				key := mix(z.Uint64() + 1)
				truth[key]++
				s.add(key, nil)
				if i%997 == 0 {
					checkIndex(t, &s)
				}
			}
			checkIndex(t, &s)
			monitored := map[uint64]bool{}
			for e := 0; e < s.n; e++ {
				en := s.entries[e]
				monitored[en.key] = true
				tr := truth[en.key]
				c := s.count(e)
				if c < tr || c-en.err > tr {
					t.Fatalf("key %x: count %d err %d, true %d", en.key, c, en.err, tr)
				}
			}
			// Every value with frequency > n/k must be monitored.
			for key, c := range truth {
				if int(c) > tc.n/tc.k && !monitored[key] {
					t.Fatalf("heavy hitter %x (%d of %d) lost", key, c, tc.n)
				}
				if !monitored[key] && c > s.minCount() {
					t.Fatalf("unmonitored %x count %d above floor %d", key, c, s.minCount())
				}
			}
		})
	}
}

// TestSpaceSavingRAP checks randomized admission: counts never exceed the
// truth plus their error bound, every heavy hitter (over 2n/k) is kept, and
// the largest ones are counted within a few percent.
func TestSpaceSavingRAP(t *testing.T) {
	for _, tc := range []struct {
		name     string
		k        int
		distinct int
		n        int
		zipf     float64
	}{
		{"skewed", 32, 5000, 200000, 1.3},
		{"flat", 16, 200, 50000, 1.01},
		{"flood", 64, 1 << 30, 100000, 0}, // all distinct plus 4 heavy values
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			var z *rand.Zipf
			if tc.zipf > 0 {
				z = rand.NewZipf(r, tc.zipf, 1, uint64(tc.distinct-1))
			}
			s := newSpaceSaving(tc.k, true)
			truth := map[uint64]uint32{}
			for i := 0; i < tc.n; i++ {
				var key uint64
				switch {
				case z != nil:
					key = mix(z.Uint64() + 1)
				case i%10 < 4:
					key = mix(uint64(i%10) + 1) // 4 values with 10 % each
				default:
					key = mix(uint64(i) + 1000)
				}
				truth[key]++
				s.add(key, nil)
			}
			checkIndex(t, &s)
			got := map[uint64]uint32{}
			for e := 0; e < s.n; e++ {
				en := s.entries[e]
				c := s.count(e)
				got[en.key] = c
				if c-en.err > truth[en.key] {
					t.Fatalf("key %x: count %d err %d above true %d", en.key, c, en.err, truth[en.key])
				}
			}
			for key, c := range truth {
				if int(c) > 2*tc.n/tc.k {
					g, ok := got[key]
					if !ok {
						t.Fatalf("heavy hitter %x (%d of %d) lost", key, c, tc.n)
					}
					if diff := math.Abs(float64(g) - float64(c)); diff > 0.05*float64(c)+float64(s.minCount()) {
						t.Errorf("heavy hitter %x: counted %d, true %d", key, g, c)
					}
				}
			}
		})
	}
}

func TestHLLEstimate(t *testing.T) {
	for _, n := range []int{0, 1, 10, 100, 1000, 10000, 100000, 1000000} {
		var h hll
		for i := range n {
			h.add(mix(uint64(i) + 12345))
			h.add(mix(uint64(i) + 12345)) // duplicates change nothing
		}
		got := h.estimate()
		tol := math.Max(2, 0.05*float64(n))
		if math.Abs(float64(got)-float64(n)) > tol {
			t.Errorf("n=%d: estimate %d", n, got)
		}
	}
}

func TestSeenFilter(t *testing.T) {
	f := newSeenFilter(1 << 16)
	const n = 50000
	fresh := 0
	for i := range n {
		if seen, _ := f.checkAdd(mix(uint64(i))); !seen {
			fresh++
		}
	}
	if fresh < n*98/100 {
		t.Fatalf("only %d of %d new keys reported new (false positive rate too high)", fresh, n)
	}
	for i := range n {
		if seen, _ := f.checkAdd(mix(uint64(i))); !seen {
			t.Fatalf("key %d forgotten without rotation", i)
		}
	}
	f.rotate(1) // the filled generation becomes the old one: still seen
	for i := range n {
		if seen, added := f.checkAdd(mix(uint64(i))); !seen || !added {
			t.Fatalf("key %d after one rotation: seen=%v added=%v", i, seen, added)
		}
	}
	f.rotate(2) // refreshed into the current one before the rotation: still seen
	f.rotate(3) // now two rotations without a visit: forgotten
	forgotten := 0
	for i := range n {
		if seen, _ := f.checkAdd(mix(uint64(i))); !seen {
			forgotten++
		}
	}
	if forgotten < n*98/100 {
		t.Fatalf("after two idle rotations only %d of %d keys forgotten", forgotten, n)
	}
}
