package limit

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzAllow drives a Table key, a Single and the leaky-bucket reference
// model with the same arbitrary limit and sequence of (time step, n) events
// and requires the three to agree on every decision and retry-after.
func FuzzAllow(f *testing.F) {
	f.Add(20.0, 40, []byte{0, 1, 0, 1, 0, 1, 255, 3, 7, 2})
	f.Add(0.5, 1, []byte{1, 1, 200, 1, 0, 5})
	f.Add(1e6, 1000, []byte{9, 9, 9, 9, 9, 9, 9, 9})
	f.Add(0.0, 0, []byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, rate float64, burst int, ops []byte) {
		l := Limit{Rate: rate, Burst: burst}
		if l.Validate() != nil {
			return
		}
		tb := newTable(t, Config{MemoryBytes: MinMemoryBytes})
		var s Single
		key := KeyString(1, "fuzz")
		var m *leakyBucket
		interval, capped := l.gcra()
		if interval != 0 {
			m = &leakyBucket{interval: interval, limit: interval * capped}
		}
		now := epoch
		for len(ops) >= 3 {
			// Time steps up to ~65 s with an exponent byte, so the fuzzer
			// reaches both sub-interval and full-recovery gaps.
			step := int64(binary.LittleEndian.Uint16(ops)) << (ops[2] % 24)
			n := int(ops[2]%5) - 1 // -1..3
			ops = ops[3:]
			now += step
			okT, raT := tb.AllowNAt(now, key, l, n)
			okS, raS := s.AllowNAt(now, l, n)
			if okT != okS || raT != raS {
				t.Fatalf("%v n=%d at +%v: table (%v, %v), single (%v, %v)", l, n, time.Duration(now-epoch), okT, raT, okS, raS)
			}
			if m == nil || n <= 0 {
				if !okT || raT != 0 {
					t.Fatalf("%v n=%d: denied (%v) without a limit or with n <= 0", l, n, raT)
				}
				continue
			}
			okM, raM := m.checkN(now, int64(n), capped)
			if okT != okM || raT != raM {
				t.Fatalf("%v n=%d at +%v: table (%v, %v), model (%v, %v)", l, n, time.Duration(now-epoch), okT, raT, okM, raM)
			}
		}
	})
}

// checkN is leakyBucket.check for n events at once; n above the burst can
// never conform.
func (m *leakyBucket) checkN(now, n, burst int64) (bool, time.Duration) {
	if n > burst {
		return false, Never
	}
	x := int64(0)
	if m.seen {
		x = max(m.level-(now-m.last), 0)
	}
	if x+n*m.interval > m.limit {
		return false, time.Duration(x + n*m.interval - m.limit)
	}
	m.level, m.last, m.seen = x+n*m.interval, now, true
	return true, 0
}
