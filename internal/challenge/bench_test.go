package challenge

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

var benchBinding = BindFingerprint("t13d1516h2_8daaf6152771_e5627efa2ab1")

func BenchmarkVerify(b *testing.B) {
	s := mustSigner(b, Key{ID: 1, Secret: testSecret(1)})
	addr := netip.MustParseAddr("192.0.2.1")
	tok := []byte(s.Issue(t0, addr, benchBinding, MethodPoW, time.Hour))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, ok := s.Verify(t0, tok, addr, benchBinding); !ok {
				b.Fatal("invalid")
			}
		}
	})
}

func BenchmarkVerifySerial(b *testing.B) {
	s := mustSigner(b, Key{ID: 1, Secret: testSecret(1)})
	addr := netip.MustParseAddr("192.0.2.1")
	tok := []byte(s.Issue(t0, addr, benchBinding, MethodPoW, time.Hour))
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := threadCPU()
	for b.Loop() {
		if _, ok := s.Verify(t0, tok, addr, benchBinding); !ok {
			b.Fatal("invalid")
		}
	}
	if c := threadCPU() - cpu; c > 0 {
		b.ReportMetric(float64(c.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkClearance: Verify plus revocation bookkeeping, many tokens.
func BenchmarkClearance(b *testing.B) {
	s := newService(b, func(c *Config) { c.Revoke.MaxRequests = 1 << 30 })
	addr := netip.MustParseAddr("192.0.2.1")
	toks := make([][]byte, 1024)
	for i := range toks {
		toks[i] = []byte(s.Signer().Issue(t0, addr, benchBinding, MethodPoW, time.Hour))
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, ok := s.Clearance(t0, toks[i&1023], addr, benchBinding); !ok {
				b.Fatal("not cleared")
			}
			i++
		}
	})
}

func BenchmarkAppendPage(b *testing.B) {
	s := newService(b, nil)
	addr := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 0, 16<<10)
		for pb.Next() {
			buf = s.AppendPage(buf[:0], t0, addr, benchBinding, 18, []byte("de-DE,de;q=0.9"), []byte("/index.html?x=1"))
		}
		b.SetBytes(int64(len(buf)))
	})
}

func BenchmarkIssue(b *testing.B) {
	s := mustSigner(b, Key{ID: 1, Secret: testSecret(1)})
	addr := netip.MustParseAddr("192.0.2.1")
	b.ReportAllocs()
	for b.Loop() {
		s.Issue(t0, addr, benchBinding, MethodPoW, time.Hour)
	}
}

// serialCPU runs f b.N times on one locked thread and reports its CPU time
// per call besides the wall time.
func serialCPU(b *testing.B, f func()) {
	b.ReportAllocs()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := threadCPU()
	for b.Loop() {
		f()
	}
	if c := threadCPU() - cpu; c > 0 {
		b.ReportMetric(float64(c.Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkClearanceSerial(b *testing.B) {
	s := newService(b, func(c *Config) { c.Revoke.MaxRequests = 1 << 30 })
	addr := netip.MustParseAddr("192.0.2.1")
	tok := []byte(s.Signer().Issue(t0, addr, benchBinding, MethodPoW, time.Hour))
	serialCPU(b, func() {
		if _, ok := s.Clearance(t0, tok, addr, benchBinding); !ok {
			b.Fatal("not cleared")
		}
	})
}
