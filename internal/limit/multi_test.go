package limit

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestAllowAllAt(t *testing.T) {
	tb := newTable(t, Config{MemoryBytes: 64 << 10})
	a := netip.MustParseAddr("127.1.2.3")
	b := netip.MustParseAddr("127.1.2.4")
	addrLimit := Limit{Rate: 1, Burst: 2}
	prefixLimit := Limit{Rate: 1, Burst: 3}
	checks := func(ip netip.Addr) []Check {
		return []Check{
			{KeyAddr(1, ip, 32), addrLimit.Compile()},
			{KeyAddr(2, ip, 24), prefixLimit.Compile()},
			{KeyString(3, "site"), Limit{}.Compile()}, // unlimited: skipped
		}
	}
	steps := []struct {
		name       string
		at         int64
		ip         netip.Addr
		wantOK     bool
		wantFailed int
		wantRA     time.Duration
	}{
		{"a first", epoch, a, true, -1, 0},
		{"a second", epoch, a, true, -1, 0},
		{"b uses the last prefix token", epoch, b, true, -1, 0},
		{"b refused by the prefix", epoch, b, false, 1, time.Second},
		// Were b's address charge of the refused event kept, b would now
		// be refused by its address limit (check 0), not the prefix.
		{"b refused by the prefix again", epoch, b, false, 1, time.Second},
		{"a refused by its address", epoch, a, false, 0, time.Second},
		{"b after the prefix earned a token", epoch + sec, b, true, -1, 0},
		{"a refused by the prefix", epoch + sec, a, false, 1, time.Second},
	}
	for _, s := range steps {
		ok, ra, failed := tb.AllowAllAt(s.at, checks(s.ip))
		if ok != s.wantOK || failed != s.wantFailed || ra != s.wantRA {
			t.Fatalf("%s: (%v, %v, %d), want (%v, %v, %d)", s.name, ok, ra, failed, s.wantOK, s.wantRA, s.wantFailed)
		}
	}
	if st := tb.Stats(); st.Refunded != 3 {
		t.Fatalf("refunded = %d, want 3", st.Refunded)
	}
}

func TestAllowAllAtZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	tb := newTable(t, Config{MemoryBytes: 64 << 10})
	l := Limit{Rate: 1, Burst: 1}
	n := testing.AllocsPerRun(1000, func() {
		checks := [2]Check{{KeyAddr(1, testAddr, 32), Limit{Rate: 1000, Burst: 1000}.Compile()}, {KeyAddr(2, testAddr, 24), l.Compile()}}
		tb.AllowAllAt(epoch, checks[:])
	})
	if n != 0 {
		t.Fatalf("%v allocations per AllowAllAt", n)
	}
}

// TestSingleReferenceModel runs Single through the same reference model and
// arrival patterns as the table.
func TestSingleReferenceModel(t *testing.T) {
	for _, l := range limits {
		for _, p := range patterns {
			t.Run(fmt.Sprintf("%v/%s", l, p.name), func(t *testing.T) {
				var s Single
				m := newLeakyBucket(l)
				r := newRand(l)
				for j, now := range p.gen(l, r) {
					ok, ra := s.AllowAt(now, l)
					wantOK, wantRA := m.check(now)
					if ok != wantOK || ra != wantRA {
						t.Fatalf("event %d at +%v: got (%v, %v), model (%v, %v)",
							j, time.Duration(now-epoch), ok, ra, wantOK, wantRA)
					}
				}
			})
		}
	}
}

func TestSingleConcurrent(t *testing.T) {
	var s Single
	l := Limit{Rate: 100, Burst: 50}
	now := epoch
	for _, ph := range []struct {
		advance time.Duration
		want    int64
	}{{0, 50}, {100 * time.Millisecond, 10}, {time.Hour, 50}} {
		now += int64(ph.advance)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var passed int64
		for range 8 {
			wg.Go(func() {
				n := int64(0)
				for range 200 {
					if ok, _ := s.AllowAt(now, l); ok {
						n++
					}
				}
				mu.Lock()
				passed += n
				mu.Unlock()
			})
		}
		wg.Wait()
		if passed != ph.want {
			t.Fatalf("after +%v: %d passed, want %d", ph.advance, passed, ph.want)
		}
	}
	if ok, ra := s.AllowNAt(now, l, 51); ok || ra != Never {
		t.Fatalf("n > burst: (%v, %v), want (false, Never)", ok, ra)
	}
	if ok, _ := s.AllowAt(now, Limit{}); !ok {
		t.Fatal("unlimited denied")
	}
}

// BenchmarkSingle compares one global limit kept in a Single with the same
// key in a Table, every goroutine hitting it.
func BenchmarkSingle(b *testing.B) {
	l := Limit{Rate: 1e8, Burst: 1e6}
	b.Run("impl=single", func(b *testing.B) {
		var s Single
		runParallel(b, func(pb *testing.PB) {
			c := benchClock{}
			for pb.Next() {
				s.AllowAt(c.tick(), l)
			}
		})
	})
	b.Run("impl=table", func(b *testing.B) {
		tb, err := New(Config{MemoryBytes: 64 << 10}, Deps{})
		if err != nil {
			b.Fatal(err)
		}
		key := KeyString(1, "global")
		runParallel(b, func(pb *testing.PB) {
			c := benchClock{}
			for pb.Next() {
				tb.AllowAt(c.tick(), key, l)
			}
		})
	})
}

// BenchmarkAllowAll checks three limits per event (address, /24, route)
// over 1M live keys per limit, with AllowAllAt (bucket loads overlapped)
// and with three AllowAt calls.
func BenchmarkAllowAll(b *testing.B) {
	const n = 1_000_000
	ls := [3]Limit{{Rate: 100, Burst: 200}, {Rate: 1000, Burst: 2000}, {Rate: 1000, Burst: 2000}}
	keys := func(i int) [3]Check {
		return [3]Check{
			{withID(1, uint64(i)), ls[0].Compile()},
			{withID(2, uint64(i)), ls[1].Compile()},
			{withID(3, uint64(i)), ls[2].Compile()},
		}
	}
	tb, err := New(Config{}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixNano()
	for i := range n {
		c := keys(i)
		tb.AllowAllAt(now, c[:])
	}
	b.Run("api=AllowAllAt", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			p, c := newPicker(n), benchClock{}
			for pb.Next() {
				ch := keys(p.next())
				tb.AllowAllAt(c.tick(), ch[:])
			}
		})
	})
	b.Run("api=3xAllowAt", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			p, c := newPicker(n), benchClock{}
			for pb.Next() {
				ch := keys(p.next())
				now := c.tick()
				for i := range ch {
					if ok, _ := tb.AllowCompiledAt(now, ch[i].Key, ch[i].Limit); !ok {
						break
					}
				}
			}
		})
	})
}

// TestAllowAllAtConcurrent: goroutines with their own address key share one
// prefix key. The prefix admits exactly its burst in total, and every
// refused event's address charge is refunded, so afterwards each address
// key has exactly its burst minus its passed events left. Run with -race:
// it also covers the unlocked bucket pre-load.
func TestAllowAllAtConcurrent(t *testing.T) {
	tb := newTable(t, Config{MemoryBytes: 64 << 10})
	addrLimit := Limit{Rate: 0.001, Burst: 1000}
	prefixLimit := Limit{Rate: 0.001, Burst: 50}
	prefix := KeyString(2, "127.1.2.0/24")
	const workers, tries = 8, 200
	passed := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			checks := []Check{{KeyString(1, fmt.Sprint("addr", w)), addrLimit.Compile()}, {prefix, prefixLimit.Compile()}}
			for range tries {
				ok, _, failed := tb.AllowAllAt(epoch, checks)
				if ok {
					passed[w]++
				} else if failed != 1 {
					t.Errorf("worker %d refused by check %d, want the prefix (1)", w, failed)
					return
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for w := range workers {
		total += passed[w]
		key := KeyString(1, fmt.Sprint("addr", w))
		left := 0
		for {
			if ok, _ := tb.AllowAt(epoch, key, addrLimit); !ok {
				break
			}
			left++
		}
		if left != addrLimit.Burst-passed[w] {
			t.Errorf("worker %d passed %d, address key has %d left, want %d", w, passed[w], left, addrLimit.Burst-passed[w])
		}
	}
	if total != prefixLimit.Burst {
		t.Fatalf("%d events passed in total, want the prefix burst %d", total, prefixLimit.Burst)
	}
}
