package limit

import (
	"context"
	"fmt"
	"math/bits"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/sethvargo/go-limiter/memorystore"
	"golang.org/x/time/rate"
)

// benchLimit is loose enough that a uniformly chosen key among 100k or more
// is rarely denied: every implementation does the same allow path.
var benchLimit = Limit{Rate: 100, Burst: 200}

// benchCompiled is benchLimit compiled, as the decision engine compiles its
// limits at configuration load: the request path's form of a check.
var benchCompiled = benchLimit.Compile()

// keyPicker draws uniformly distributed indexes in [0, n) from a per
// goroutine generator (wyrand), so the key choice costs a few nanoseconds
// and no shared state.
type keyPicker struct {
	s uint64
	n uint64
}

var pickerSeq atomic.Uint64

func newPicker(n int) keyPicker {
	return keyPicker{s: pickerSeq.Add(1) * 0x9e3779b97f4a7c15, n: uint64(n)}
}

func (p *keyPicker) next() int {
	p.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(p.s, p.s^0xe7037ed1a0b428db)
	r := hi ^ lo
	hi, _ = bits.Mul64(r, p.n)
	return int(hi)
}

// benchClock reads the wall clock once every 64 checks, as a proxy that
// stamps a request once and checks several limits would.
type benchClock struct {
	i   int
	now int64
}

func (c *benchClock) tick() int64 {
	if c.i&63 == 0 {
		c.read()
	}
	c.i++
	return c.now
}

// read is tick's clock read, kept out of line so that tick inlines into the
// benchmark loops (the harness should cost the loop as little as possible).
//
//go:noinline
func (c *benchClock) read() { c.now = time.Now().UnixNano() }

// benchKey is the key of client i. It is computed, not loaded from a key
// array, so that the benchmarks measure the table's memory accesses and not
// those of a million-entry key array (a proxy computes the key from the
// request in hand, which is in cache).
func benchKey(i int) uint64 { return withID(1, uint64(i)) }

func newBenchTable(b *testing.B, n int) *Table {
	t, err := New(Config{Name: "bench"}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixNano()
	for i := range n {
		t.AllowAt(now, benchKey(i), benchLimit)
	}
	return t
}

// BenchmarkTable measures one check (AllowCompiledAt, the request path's
// form) on a table (default 64 MiB budget)
// holding the given number of live keys, keys chosen uniformly.
func BenchmarkTable(b *testing.B) {
	for _, n := range []int{1_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("keys=%s", count(n)), func(b *testing.B) {
			t := newBenchTable(b, n)
			runParallel(b, func(pb *testing.PB) {
				p, c := newPicker(n), benchClock{}
				for pb.Next() {
					t.AllowCompiledAt(c.tick(), benchKey(p.next()), benchCompiled)
				}
			})
		})
	}
}

// BenchmarkTableAddr measures the full per-request cost for an address
// limit: KeyAddr (/32) plus AllowCompiledAt, 1M distinct addresses.
func BenchmarkTableAddr(b *testing.B) {
	const n = 1_000_000
	addr := func(i int) netip.Addr {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	t, err := New(Config{Name: "bench"}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixNano()
	for i := range n {
		t.AllowAt(now, KeyAddr(1, addr(i), 32), benchLimit)
	}
	runParallel(b, func(pb *testing.PB) {
		p, c := newPicker(n), benchClock{}
		for pb.Next() {
			t.AllowCompiledAt(c.tick(), KeyAddr(1, addr(p.next()), 32), benchCompiled)
		}
	})
}

// BenchmarkKey measures the key builders alone.
func BenchmarkKey(b *testing.B) {
	a := netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1234:5678")
	v := []byte("session=0123456789abcdef0123456789abcdef")
	b.Run("addr6/64", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			var s uint64
			for pb.Next() {
				s += KeyAddr(2, a, 64)
			}
			sink.Add(s)
		})
	})
	a4 := netip.MustParseAddr("127.1.2.3")
	b.Run("addr4/24", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			var s uint64
			for pb.Next() {
				s += KeyAddr(2, a4, 24)
			}
			sink.Add(s)
		})
	})
	b.Run("bytes40", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			var s uint64
			for pb.Next() {
				s += KeyBytes(3, v)
			}
			sink.Add(s)
		})
	})
}

var sink atomic.Uint64

// BenchmarkCompare runs the same workload (uniform keys, same number of
// live keys, limit 100/s burst 200, clock read every 64 checks) against
// levee's Table, github.com/sethvargo/go-limiter's memorystore and a sharded
// map of golang.org/x/time/rate limiters.
func BenchmarkCompare(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("impl=levee/keys=%s", count(n)), func(b *testing.B) {
			t := newBenchTable(b, n)
			runParallel(b, func(pb *testing.PB) {
				p, c := newPicker(n), benchClock{}
				for pb.Next() {
					t.AllowCompiledAt(c.tick(), benchKey(p.next()), benchCompiled)
				}
			})
		})
		b.Run(fmt.Sprintf("impl=golimiter/keys=%s", count(n)), func(b *testing.B) {
			// go-limiter limits Tokens per Interval; 200 per 2 s is the
			// closest match to 100/s burst 200.
			st, err := memorystore.New(&memorystore.Config{
				Tokens: uint64(benchLimit.Burst), Interval: 2 * time.Second, InitialAlloc: n,
			})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close(context.Background())
			ctx := context.Background()
			for i := range n {
				st.Take(ctx, strconv.Itoa(i))
			}
			runParallel(b, func(pb *testing.PB) {
				p := newPicker(n)
				// go-limiter keys are strings. Format them into a
				// per-goroutine buffer and pass it without copying: every
				// key already exists, so the store never retains it.
				buf := make([]byte, 0, 24)
				for pb.Next() {
					buf = strconv.AppendInt(buf[:0], int64(p.next()), 10)
					st.Take(ctx, unsafe.String(unsafe.SliceData(buf), len(buf)))
				}
			})
		})
		b.Run(fmt.Sprintf("impl=xrate/keys=%s", count(n)), func(b *testing.B) {
			m := newRateMap(256, n)
			now := time.Now()
			for i := range n {
				m.allow(now, benchKey(i))
			}
			runParallel(b, func(pb *testing.PB) {
				p, c := newPicker(n), benchClock{}
				for pb.Next() {
					m.allow(time.Unix(0, c.tick()), benchKey(p.next()))
				}
			})
		})
	}
}

// rateMap is the usual way to keep per-key x/time/rate limiters: a sharded
// map guarded by mutexes. It has no eviction, so its memory grows with the
// number of keys.
type rateMap struct {
	shards []rateShard
}

type rateShard struct {
	mu sync.Mutex
	m  map[uint64]*rate.Limiter
	_  [48]byte
}

func newRateMap(nshards, n int) *rateMap {
	rm := &rateMap{shards: make([]rateShard, nshards)}
	for i := range rm.shards {
		rm.shards[i].m = make(map[uint64]*rate.Limiter, n/nshards)
	}
	return rm
}

func (rm *rateMap) allow(now time.Time, key uint64) bool {
	sh := &rm.shards[key%uint64(len(rm.shards))]
	sh.mu.Lock()
	l, ok := sh.m[key]
	if !ok {
		l = rate.NewLimiter(rate.Limit(benchLimit.Rate), benchLimit.Burst)
		sh.m[key] = l
	}
	sh.mu.Unlock()
	return l.AllowN(now, 1)
}

// runParallel is b.RunParallel that also reports the process CPU time per
// operation ("cpu-ns/op"). On a machine shared with other work, wall-clock
// ns/op includes the time our goroutines wait for a CPU; CPU time does not.
// On an idle machine with GOMAXPROCS cores busy, ns/op is about cpu-ns/op
// divided by GOMAXPROCS.
func runParallel(b *testing.B, body func(*testing.PB)) {
	b.ReportAllocs()
	b.ResetTimer()
	start := processCPU()
	b.RunParallel(body)
	if cpu := processCPU() - start; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return strconv.Itoa(n/1_000_000) + "M"
	case n >= 1_000 && n%1_000 == 0:
		return strconv.Itoa(n/1_000) + "k"
	}
	return strconv.Itoa(n)
}

// BenchmarkFlood streams distinct one-shot keys (each seen once, keeping
// state for a minute) into a default 64 MiB table: the path a flood of
// spoofed or botnet sources takes, insert plus CLOCK eviction once the table
// is full. It reports the heap growth over the whole run, which must stay
// within the budget however many keys pass.
func BenchmarkFlood(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t, err := New(Config{Name: "flood"}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	oneShot := Limit{Rate: 1.0 / 60, Burst: 1}
	var goroutine atomic.Uint64
	runParallel(b, func(pb *testing.PB) {
		base := goroutine.Add(1) << 40
		c := benchClock{}
		for i := uint64(0); pb.Next(); i++ {
			t.AllowAt(c.tick(), withID(5, base+i), oneShot)
		}
	})
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := t.Stats()
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/(1<<20), "heap-MiB")
	b.ReportMetric(float64(st.EvictionsActive+st.EvictionsRecovered)/float64(b.N), "evictions/op")
}

// BenchmarkAllowAtOverhead compares a check at 1M keys through AllowAt
// (converting the Limit to an interval and a tolerance on every call) with
// one through AllowCompiledAt (the limit compiled once).
func BenchmarkAllowAtOverhead(b *testing.B) {
	const n = 1_000_000
	t := newBenchTable(b, n)
	b.Run("api=AllowAt", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			p, c := newPicker(n), benchClock{}
			for pb.Next() {
				t.AllowAt(c.tick(), benchKey(p.next()), benchLimit)
			}
		})
	})
	b.Run("api=AllowCompiledAt", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			p, c := newPicker(n), benchClock{}
			for pb.Next() {
				t.AllowCompiledAt(c.tick(), benchKey(p.next()), benchCompiled)
			}
		})
	})
}

// BenchmarkMemoryFloor measures what no table design can go below on this
// machine: one atomic read-modify-write (op=add) of a 16-byte slot chosen
// uniformly among n, the least an exact per-key limiter does per check
// once its live keys outgrow the caches. The array is n slots (16 MiB for
// 1M keys, the smallest any table holding them could be, with no probing
// and no free space) or the default 64 MiB budget. op=load reads instead
// of writing, which lets the CPU overlap the misses of consecutive checks;
// an atomic write cannot be overlapped with the next check's read on x86.
// Compare with BenchmarkTable/keys=1M in the same run.
func BenchmarkMemoryFloor(b *testing.B) {
	const n = 1_000_000
	for _, size := range []struct {
		name  string
		slots int
	}{{"16MiB", n}, {"64MiB", 64 << 20 / int(unsafe.Sizeof(slot{}))}} {
		arr := make([]slot, size.slots)
		for i := range arr {
			arr[i].tat = int64(i)
		}
		stride := size.slots / n // keys spread over the whole array
		b.Run("size="+size.name+"/op=add", func(b *testing.B) {
			runParallel(b, func(pb *testing.PB) {
				p := newPicker(n)
				for pb.Next() {
					atomic.AddInt64(&arr[p.next()*stride].tat, 1)
				}
			})
		})
		b.Run("size="+size.name+"/op=load", func(b *testing.B) {
			var sink atomic.Int64
			runParallel(b, func(pb *testing.PB) {
				p := newPicker(n)
				var sum int64
				for pb.Next() {
					sum += atomic.LoadInt64(&arr[p.next()*stride].tat)
				}
				sink.Add(sum)
			})
		})
	}
}

// BenchmarkCheckParts takes a check at 1M keys apart, each part adding to
// the one before: part=hash (the harness's key and the table's bucket,
// then an atomic add on the bucket's first slot), part=find (the bucket
// scan for the key, then an atomic add on its slot), part=check (the
// whole check, allow, with the limit precompiled). BenchmarkMemoryFloor is
// the memory access alone.
func BenchmarkCheckParts(b *testing.B) {
	const n = 1_000_000
	t := newBenchTable(b, n)
	b.Run("part=hash", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			p := newPicker(n)
			for pb.Next() {
				atomic.AddInt64(&t.buckets[t.bucketOf(normKey(benchKey(p.next())))][0].tat, 0)
			}
		})
	})
	b.Run("part=find", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			p := newPicker(n)
			for pb.Next() {
				k := normKey(benchKey(p.next()))
				if s := t.buckets[t.bucketOf(k)].find(k); s != nil {
					atomic.AddInt64(&s.tat, 0)
				}
			}
		})
	})
	b.Run("part=check", func(b *testing.B) {
		runParallel(b, func(pb *testing.PB) {
			p, c := newPicker(n), benchClock{}
			for pb.Next() {
				t.AllowCompiledAt(c.tick(), benchKey(p.next()), benchCompiled)
			}
		})
	})
}
