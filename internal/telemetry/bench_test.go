package telemetry

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// benchEvents is a pool of realistic events: 10k sources, 200 paths, 20 user
// agents, a few header orders.
func benchEvents(n int) []Event {
	r := rand.New(rand.NewPCG(7, 8))
	uas := make([][]byte, 20)
	for i := range uas {
		uas[i] = []byte("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/12" + string(rune('0'+i%10)) + ".0 Safari/537.36")
	}
	paths := make([][]byte, 200)
	for i := range paths {
		paths[i] = []byte("/static/app/" + string(rune('a'+i%26)) + "/" + string(rune('a'+i/26)) + ".js")
	}
	evs := make([]Event, n)
	for i := range evs {
		src := r.IntN(10000)
		evs[i] = Event{
			Client:      netip.AddrFrom4([4]byte{10, byte(src >> 8), byte(src), 1}),
			Path:        paths[r.IntN(len(paths))],
			UserAgent:   uas[r.IntN(len(uas))],
			HeaderOrder: uint64(r.IntN(4) + 1),
			Status:      200,
			Latency:     time.Duration(r.IntN(50000)) * time.Microsecond,
			NewConn:     r.IntN(10) == 0,
		}
	}
	return evs
}

// typicalEvents draws sources (100k addresses in 2k /24s) and paths (2000)
// from Zipf distributions, like real traffic where a minority of clients
// and pages make most requests.
func typicalEvents(n int) []Event {
	evs := benchEvents(n)
	r := rand.New(rand.NewPCG(9, 10))
	src := rand.NewZipf(r, 1.1, 1, 100000-1)
	pth := rand.NewZipf(r, 1.1, 1, 2000-1)
	paths := make([][]byte, 2000)
	for i := range paths {
		paths[i] = fmt.Appendf(nil, "/articles/%d/%d", i%40, i)
	}
	for i := range evs {
		s := src.Uint64()
		evs[i].Client = netip.AddrFrom4([4]byte{100, 64 + byte(s/50/256), byte(s / 50), byte(s%50 + 1)})
		evs[i].Path = paths[pth.Uint64()]
	}
	return evs
}

// BenchmarkRecord is the per-request cost on the data plane with typical
// (Zipf) traffic.
func BenchmarkRecord(b *testing.B) {
	benchRecordParallel(b, typicalEvents(1<<14))
}

// BenchmarkRecordFlood is the worst case: 10k sources in 10k distinct /24s
// and 200 paths, all uniformly drawn, so the source, prefix and path top-k
// lists miss on most requests.
func BenchmarkRecordFlood(b *testing.B) {
	benchRecordParallel(b, benchEvents(1<<14))
}

func benchRecordParallel(b *testing.B, evs []Event) {
	r, err := New(Config{}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1) * 7919)
		for pb.Next() {
			r.Record(&evs[i&(len(evs)-1)])
			i++
		}
	})
	reportCPU(b, cpu)
}

// BenchmarkRecordSerial is Record from one goroutine (no contention).
func BenchmarkRecordSerial(b *testing.B) {
	r, err := New(Config{}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	evs := benchEvents(1 << 14)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for i := 0; i < b.N; i++ {
		r.Record(&evs[i&(len(evs)-1)])
	}
	reportCPU(b, cpu)
}

// BenchmarkTick is the once-per-second merge with full top-k summaries.
func BenchmarkTick(b *testing.B) {
	r, err := New(Config{}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	evs := benchEvents(1 << 14)
	now := time.Unix(1e9, 0)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range evs {
			r.Record(&evs[j])
		}
		b.StartTimer()
		now = now.Add(time.Second)
		r.Tick(now)
	}
}

// BenchmarkSpaceSavingMiss is the worst case of one top-k update: every
// value is new and replaces the minimum.
func BenchmarkSpaceSavingMiss(b *testing.B) {
	for _, rap := range []bool{false, true} {
		b.Run(fmt.Sprintf("rap=%v", rap), func(b *testing.B) {
			s := newSpaceSaving(128, rap)
			sample := []byte("0123456789abcdef")
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.add(mix(uint64(i)), sample)
			}
		})
	}
}

// BenchmarkSpaceSavingHit is one top-k update of a monitored value.
func BenchmarkSpaceSavingHit(b *testing.B) {
	s := newSpaceSaving(128, true)
	sample := []byte("0123456789abcdef")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.add(mix(uint64(i&63)), sample)
	}
}

// BenchmarkRecordShards is Record from GOMAXPROCS goroutines with fewer
// or more shards (a smaller working set against less contention).
func BenchmarkRecordShards(b *testing.B) {
	for _, shards := range []int{1, 2, 4, 8, 16} {
		b.Run(fmt.Sprint(shards), func(b *testing.B) {
			r, err := New(Config{Shards: shards}, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			evs := benchEvents(1 << 14)
			var seq atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seq.Add(1) * 7919)
				for pb.Next() {
					r.Record(&evs[i&(len(evs)-1)])
					i++
				}
			})
			reportCPU(b, cpu)
		})
	}
}
