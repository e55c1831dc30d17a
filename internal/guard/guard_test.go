package guard

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/levee-dev/levee/internal/challenge"
)

var (
	a1 = netip.MustParseAddr("127.0.0.1")
	a2 = netip.MustParseAddr("127.0.0.2")
)

func mustNew(t testing.TB, cfg Config) *Guard {
	t.Helper()
	g, err := New(cfg, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestPerIPCap(t *testing.T) {
	g := mustNew(t, Config{MaxConnsPerIP: 3})
	now := time.Unix(1000, 0)
	for i := 0; i < 3; i++ {
		if r := g.Admit(now, a1); r != Admitted {
			t.Fatalf("conn %d: %v", i, r)
		}
	}
	if r := g.Admit(now, a1); r != PerIPCap {
		t.Fatalf("4th conn from a1 = %v, want per_ip_cap", r)
	}
	if r := g.Admit(now, a2); r != Admitted {
		t.Fatalf("other address refused: %v", r)
	}
	g.Release(a1)
	if r := g.Admit(now, a1); r != Admitted {
		t.Fatalf("after release: %v", r)
	}
	// IPv4-mapped IPv6 is the same client.
	if r := g.Admit(now, netip.MustParseAddr("::ffff:127.0.0.1")); r != PerIPCap {
		t.Fatalf("mapped address bypassed the cap: %v", r)
	}
	if got := testutil.ToFloat64(g.m.refused[PerIPCap]); got != 2 {
		t.Errorf("refused metric = %v, want 2", got)
	}
}

func TestGlobalCap(t *testing.T) {
	g := mustNew(t, Config{MaxConns: 2})
	now := time.Unix(1000, 0)
	g.Admit(now, a1)
	g.Admit(now, a2)
	if r := g.Admit(now, netip.MustParseAddr("127.0.0.3")); r != GlobalCap {
		t.Fatalf("got %v, want global_cap", r)
	}
	g.Release(a1)
	if g.Open() != 1 {
		t.Fatalf("open = %d", g.Open())
	}
}

func TestNewConnRate(t *testing.T) {
	// 10/s with burst 5: 5 at once, then one per 100ms.
	g := mustNew(t, Config{NewConnRate: 10, NewConnBurst: 5})
	now := time.Unix(1000, 0)
	ok := 0
	for i := 0; i < 20; i++ {
		if g.Admit(now, a1) == Admitted {
			ok++
			g.ReleaseAt(now, a1)
		}
	}
	if ok != 5 {
		t.Fatalf("burst admitted %d, want 5", ok)
	}
	// Over 10 simulated seconds at 100 attempts/s, exactly rate*time admitted (+-1).
	ok = 0
	for i := 1; i <= 1000; i++ {
		if t := now.Add(time.Duration(i) * 10 * time.Millisecond); g.Admit(t, a1) == Admitted {
			ok++
			g.ReleaseAt(t, a1)
		}
	}
	if ok < 99 || ok > 101 {
		t.Fatalf("admitted %d in 10s at 10/s, want ~100", ok)
	}
}

type banSet map[netip.Addr]bool

func (b banSet) Banned(a netip.Addr, _ time.Time) bool { return b[a] }

func TestBans(t *testing.T) {
	g := mustNew(t, Config{})
	g.SetBanChecker(banSet{a1: true})
	if r := g.Admit(time.Now(), a1); r != Banned {
		t.Fatalf("got %v, want banned", r)
	}
	if r := g.Admit(time.Now(), a2); r != Admitted {
		t.Fatalf("got %v", r)
	}
	g.SetBanChecker(nil)
	if r := g.Admit(time.Now(), a1); r != Admitted {
		t.Fatalf("after unban: %v", r)
	}
}

func TestTableBoundedAndSwept(t *testing.T) {
	g := mustNew(t, Config{NewConnRate: 1, NewConnBurst: 1, MaxTracked: 64 * 16})
	now := time.Unix(1000, 0)
	refusedFull := 0
	for i := 0; i < 100000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		switch g.Admit(now, a) {
		case Admitted:
			g.ReleaseAt(now, a)
		case TableFull:
			refusedFull++
		}
	}
	if n := g.Tracked(); n > 64*16 {
		t.Fatalf("tracked %d > bound", n)
	}
	if refusedFull == 0 {
		t.Fatal("expected table_full refusals while every entry holds fresh rate state")
	}
	// Once the rate state has recovered, the sweep empties the table and new
	// addresses are admitted again.
	later := now.Add(2 * time.Second)
	g.Sweep(later)
	if n := g.Tracked(); n != 0 {
		t.Fatalf("after sweep tracked = %d", n)
	}
	if r := g.Admit(later, netip.MustParseAddr("10.9.9.9")); r != Admitted {
		t.Fatalf("after sweep: %v", r)
	}
}

func TestConcurrentAdmitRelease(t *testing.T) {
	g := mustNew(t, Config{MaxConnsPerIP: 1000, NewConnRate: 1e9, NewConnBurst: 1000})
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			a := netip.AddrFrom4([4]byte{127, 0, 0, byte(w % 3)})
			for i := 0; i < 2000; i++ {
				if g.Admit(time.Now(), a) == Admitted {
					g.Release(a)
				}
			}
		}(w)
	}
	wg.Wait()
	if g.Open() != 0 {
		t.Fatalf("open = %d after balanced admit/release", g.Open())
	}
}

func TestConnReleasesOnceAndWriteDeadline(t *testing.T) {
	g := mustNew(t, Config{MaxConnsPerIP: 1, WriteTimeout: 200 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			// Never read: the server's writes must time out.
			time.Sleep(3 * time.Second)
			c.Close()
		}
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	addr := AddrOf(raw.RemoteAddr())
	if g.Admit(time.Now(), addr) != Admitted {
		t.Fatal("not admitted")
	}
	c := g.NewConn(raw, addr, nil, nil)
	buf := make([]byte, 1<<20)
	start := time.Now()
	var werr error
	for time.Since(start) < 2*time.Second {
		if _, werr = c.Write(buf); werr != nil {
			break
		}
	}
	if werr == nil {
		t.Fatal("write to a non-reading client never timed out")
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("write timeout took %v, want about 200ms", el)
	}
	c.Close()
	c.Close()
	if g.Open() != 0 {
		t.Fatalf("open = %d after double close", g.Open())
	}
}

func BenchmarkAdmitRelease(b *testing.B) {
	g := mustNew(b, Config{MaxConns: 1 << 30, MaxConnsPerIP: 1 << 20, NewConnRate: 1e12, NewConnBurst: 1 << 20})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		now := time.Now()
		for pb.Next() {
			a := netip.AddrFrom4([4]byte{127, 0, byte(i >> 8), byte(i)})
			i++
			if g.Admit(now, a) == Admitted {
				g.Release(a)
			}
		}
	})
}

func TestFingerprintBindingMatchesChallengeBinding(t *testing.T) {
	g := mustNew(t, Config{})
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	c := g.NewConn(p1, a1, nil, nil)
	c.SetFingerprint("t13d1516h2_8daaf6152771_e5627efa2ab1", "t13d1516h2_stable")
	ja4, h, bind := c.Fingerprint()
	if ja4 != "t13d1516h2_8daaf6152771_e5627efa2ab1" || h == 0 {
		t.Fatalf("fingerprint %q hash %d", ja4, h)
	}
	if want := challenge.BindFingerprint("t13d1516h2_stable"); bind != want {
		t.Fatalf("binding %x, want challenge.BindFingerprint of the stable JA4 %x", bind, want)
	}
}
