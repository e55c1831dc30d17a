package iplist

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)

// memStore is an in-memory BanStore with failure injection.
type memStore struct {
	mu   sync.Mutex
	bans map[netip.Prefix]Ban
	fail error
}

func newMemStore() *memStore { return &memStore{bans: map[netip.Prefix]Ban{}} }

func (m *memStore) AddBan(_ context.Context, b Ban) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return m.fail
	}
	m.bans[b.Prefix] = b
	return nil
}

func (m *memStore) RemoveBan(_ context.Context, p netip.Prefix) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return false, m.fail
	}
	_, ok := m.bans[p]
	delete(m.bans, p)
	return ok, nil
}

func (m *memStore) ListBans(_ context.Context, now time.Time) ([]Ban, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var out []Ban
	for _, b := range m.bans {
		if b.ActiveAt(now) {
			out = append(out, b)
		}
	}
	return out, nil
}

func newTestBans(t *testing.T, st BanStore, reg prometheus.Registerer) *Bans {
	t.Helper()
	b, err := NewBans(context.Background(), BansConfig{MaxBans: 100}, BansDeps{Store: st, Registerer: reg, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBansLookup(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	b := newTestBans(t, nil, reg)
	mp, ma := netip.MustParsePrefix, netip.MustParseAddr
	err := b.Add(ctx,
		Ban{Prefix: mp("10.0.0.0/8"), Reason: "outer", Source: "cli", Expires: t0.Add(time.Hour)},
		Ban{Prefix: mp("10.1.0.0/16"), Reason: "middle", Source: "api"},                                   // never expires
		Ban{Prefix: mp("10.1.2.3/32"), Reason: "inner", Source: "detector", Expires: t0.Add(time.Minute)}, // expires first
		Ban{Prefix: mp("2001:db8::/32"), Reason: "v6", Source: "cli", Expires: t0.Add(time.Minute)},
	)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		addr string
		at   time.Duration
		want string // reason, "" = not banned
	}{
		{"10.1.2.3", 0, "inner"},
		{"::ffff:10.1.2.3", 0, "inner"},
		{"10.1.2.4", 0, "middle"},
		{"10.9.9.9", 0, "outer"},
		{"11.0.0.1", 0, ""},
		{"2001:db8::1", 0, "v6"},
		// The inner ban expired but is still in the table: the containing
		// ban answers.
		{"10.1.2.3", time.Minute, "middle"},
		{"10.9.9.9", time.Minute, "outer"},
		{"2001:db8::1", time.Minute, ""},
		{"10.9.9.9", 2 * time.Hour, ""},
		{"10.1.2.3", 2 * time.Hour, "middle"},
	} {
		ban, ok := b.Lookup(ma(c.addr), t0.Add(c.at))
		if got := ban.Reason; got != c.want || ok != (c.want != "") {
			t.Errorf("Lookup(%s, t0+%v) = %q,%v; want %q", c.addr, c.at, got, ok, c.want)
		}
	}
	if got := len(b.List(t0.Add(time.Minute))); got != 2 {
		t.Errorf("List at t0+1m has %d bans; want 2", got)
	}
	if n := b.Expire(t0.Add(30 * time.Second)); n != 0 {
		t.Errorf("Expire before the first expiry dropped %d", n)
	}
	if n := b.Expire(t0.Add(time.Minute)); n != 2 || b.Len() != 2 {
		t.Errorf("Expire dropped %d, %d left; want 2, 2", n, b.Len())
	}
	if ok, err := b.Remove(ctx, mp("10.1.0.0/16")); !ok || err != nil {
		t.Errorf("Remove = %v, %v", ok, err)
	}
	if b.Banned(ma("10.1.2.3"), t0.Add(time.Minute)) != true { // outer still holds
		t.Error("10.1.2.3 not banned by 10.0.0.0/8 after removing 10.1.0.0/16")
	}
	if ok, _ := b.Remove(ctx, mp("10.1.0.0/16")); ok {
		t.Error("second Remove reported a ban")
	}
	if got := testutil.ToFloat64(b.m.expired); got != 2 {
		t.Errorf("expired metric %v; want 2", got)
	}
	if got := testutil.ToFloat64(b.m.active); got != 1 {
		t.Errorf("active metric %v; want 1", got)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n == 0 {
		t.Errorf("gathered %d metrics, err %v", n, err)
	}
}

func TestBansWriteThrough(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	st.bans[netip.MustParsePrefix("192.0.2.0/24")] = Ban{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Reason: "stored"}
	st.bans[netip.MustParsePrefix("198.51.100.0/24")] = Ban{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Expires: t0.Add(-time.Second)}
	b := newTestBans(t, st, nil)
	if b.Len() != 1 || !b.Banned(netip.MustParseAddr("192.0.2.1"), t0) {
		t.Fatalf("loaded %d bans; want the one active stored ban", b.Len())
	}
	// Host bits are masked before storing.
	if err := b.Add(ctx, Ban{Prefix: netip.MustParsePrefix("203.0.113.9/24"), Source: "api"}); err != nil {
		t.Fatal(err)
	}
	if got, ok := st.bans[netip.MustParsePrefix("203.0.113.0/24")]; !ok || !got.Created.Equal(t0) {
		t.Errorf("store holds %+v, %v; want the masked prefix created at t0", got, ok)
	}
	// A failing store does not stop the ban.
	st.fail = errors.New("disk full")
	err := b.Add(ctx, Ban{Prefix: netip.MustParsePrefix("203.0.114.0/24")})
	if !errors.Is(err, ErrNotPersisted) || !b.Banned(netip.MustParseAddr("203.0.114.1"), t0) {
		t.Errorf("Add with failing store: err %v, banned %v; want ErrNotPersisted and banned", err, b.Banned(netip.MustParseAddr("203.0.114.1"), t0))
	}
	ok, err := b.Remove(ctx, netip.MustParsePrefix("192.0.2.0/24"))
	if !ok || !errors.Is(err, ErrNotPersisted) || b.Banned(netip.MustParseAddr("192.0.2.1"), t0) {
		t.Errorf("Remove with failing store: %v, %v", ok, err)
	}
	if testutil.ToFloat64(b.m.storeErrors) != 2 {
		t.Errorf("store error metric %v; want 2", testutil.ToFloat64(b.m.storeErrors))
	}
	// A failing store at start is an error.
	if _, err := NewBans(ctx, BansConfig{}, BansDeps{Store: st}); err == nil {
		t.Error("NewBans with failing store succeeded")
	}
}

func TestBansLimits(t *testing.T) {
	ctx := context.Background()
	b := newTestBans(t, nil, nil) // MaxBans 100
	bans := make([]Ban, 100)
	for i := range bans {
		bans[i] = Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 0}), 24)}
	}
	if err := b.Add(ctx, bans...); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, bans[0]); err != nil {
		t.Errorf("replacing a ban at the limit failed: %v", err)
	}
	if err := b.Add(ctx, Ban{Prefix: netip.MustParsePrefix("11.0.0.0/8")}); err == nil {
		t.Error("Add beyond max_bans succeeded")
	}
	if err := b.Add(ctx, Ban{}); !errors.Is(err, ErrInvalidPrefix) {
		t.Errorf("Add(zero prefix) err = %v", err)
	}
	if _, err := NewBans(ctx, BansConfig{MaxBans: -1}, BansDeps{}); err == nil {
		t.Error("negative max_bans accepted")
	}
	// Two instances on one registry are a clear error.
	reg := prometheus.NewRegistry()
	newTestBans(t, nil, reg)
	if _, err := NewBans(ctx, BansConfig{}, BansDeps{Registerer: reg}); err == nil {
		t.Error("second registration succeeded")
	}
}

func TestBansRun(t *testing.T) {
	var mu sync.Mutex
	now := t0
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b, err := NewBans(context.Background(), BansConfig{ExpireInterval: time.Millisecond}, BansDeps{Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	b.Add(context.Background(), Ban{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Expires: t0.Add(time.Second)})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { b.Run(ctx); close(done) }()
	mu.Lock()
	now = t0.Add(2 * time.Second)
	mu.Unlock()
	for b.Len() != 0 && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if b.Len() != 0 {
		t.Fatal("Run did not expire the ban within 5s")
	}
}

func TestBansConcurrent(t *testing.T) {
	ctx := context.Background()
	b, err := NewBans(ctx, BansConfig{}, BansDeps{Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := netip.MustParseAddr("10.0.0.1")
			for {
				select {
				case <-stop:
					return
				default:
					b.Lookup(a, t0)
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 1}), 32)
		if err := b.Add(ctx, Ban{Prefix: p}); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			b.Remove(ctx, p)
		}
	}
	close(stop)
	wg.Wait()
	if b.Len() != 100 {
		t.Errorf("Len = %d; want 100", b.Len())
	}
}

func TestBansLookupAllocs(t *testing.T) {
	b := newTestBans(t, nil, nil)
	for i := 0; i < 50; i++ {
		b.Add(context.Background(), Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16), Reason: fmt.Sprint(i), Expires: t0.Add(time.Minute)})
	}
	a := netip.MustParseAddr("10.7.1.1")
	if n := testing.AllocsPerRun(1000, func() { b.Lookup(a, t0.Add(2*time.Minute)); b.Lookup(a, t0) }); n != 0 {
		t.Fatalf("Bans.Lookup allocates %v times; want 0", n)
	}
}

func BenchmarkBansLookup(b *testing.B) {
	bans, err := NewBans(context.Background(), BansConfig{}, BansDeps{})
	if err != nil {
		b.Fatal(err)
	}
	list := make([]Ban, 10_000)
	for i := range list {
		list[i] = Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24), Reason: "bench"}
	}
	if err := bans.Add(context.Background(), list...); err != nil {
		b.Fatal(err)
	}
	qs := queryAddrs(1<<12, false)
	now := time.Now()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		cpu0 := threadCPU(b)
		for i := 0; b.Loop(); i++ {
			bans.Banned(qs[i&(len(qs)-1)], now)
		}
		b.ReportMetric(float64(threadCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				bans.Banned(qs[i&(len(qs)-1)], now)
				i++
			}
		})
	})
}

// BenchmarkBansAdd measures adding one ban at a time to sets of 10k and 1M
// bans: each change rebuilds only the small delta layer, and a full rebuild
// happens about every sqrt(n) changes, so ns/op is the amortized cost.
func BenchmarkBansAdd(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		bans, err := NewBans(context.Background(), BansConfig{MaxBans: 2 * n}, BansDeps{})
		if err != nil {
			b.Fatal(err)
		}
		list := make([]Ban, n)
		for i := range list {
			list[i] = Ban{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), Expires: t0.Add(time.Hour)}
		}
		if err := bans.Add(context.Background(), list...); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p := netip.PrefixFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
				if err := bans.Add(context.Background(), Ban{Prefix: p, Expires: t0.Add(time.Minute)}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBansAgainstModel runs random adds, replacements, removals and expiries
// through Bans, across many delta rebuilds and compactions, and compares
// every answer with a map-based model.
func TestBansAgainstModel(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(11, 12))
	now := t0
	b, err := NewBans(ctx, BansConfig{}, BansDeps{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	model := map[netip.Prefix]Ban{}
	randPrefix := func() netip.Prefix {
		if r.IntN(3) == 0 {
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(r.IntN(4)), 15: byte(r.Uint32())})
			return netip.PrefixFrom(a, 112+r.IntN(17)).Masked()
		}
		a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.Uint32())})
		return netip.PrefixFrom(a, 16+r.IntN(17)).Masked()
	}
	randAddr := func() netip.Addr { return lastAddr(randPrefix()) }
	want := func(a netip.Addr) (Ban, bool) {
		for bits := a.BitLen(); bits >= 0; bits-- {
			p, _ := a.Prefix(bits)
			if ban, ok := model[p]; ok && ban.ActiveAt(now) {
				return ban, true
			}
		}
		return Ban{}, false
	}
	for step := 0; step < 3000; step++ {
		switch op := r.IntN(10); {
		case op < 6: // add or replace
			ban := Ban{Prefix: randPrefix(), Reason: fmt.Sprint("step ", step), Created: now}
			if r.IntN(2) == 0 {
				ban.Expires = now.Add(time.Duration(1+r.IntN(60)) * time.Second)
			}
			if err := b.Add(ctx, ban); err != nil {
				t.Fatal(err)
			}
			model[ban.Prefix] = ban
		case op < 8: // remove, usually an existing ban
			p := randPrefix()
			if len(model) > 0 && r.IntN(4) != 0 {
				for q := range model {
					p = q
					break
				}
			}
			_, inModel := model[p]
			had, err := b.Remove(ctx, p)
			if err != nil || had != inModel {
				t.Fatalf("step %d: Remove(%v) = %v, %v; model has it: %v", step, p, had, err, inModel)
			}
			delete(model, p)
		case op < 9: // time passes
			now = now.Add(time.Duration(r.IntN(5)) * time.Second)
		default:
			b.Expire(now)
			for p, ban := range model {
				if !ban.ActiveAt(now) {
					delete(model, p)
				}
			}
			if b.Len() != len(model) {
				t.Fatalf("step %d: Len = %d after Expire; model %d", step, b.Len(), len(model))
			}
		}
		for i := 0; i < 20; i++ {
			a := randAddr()
			got, gok := b.Lookup(a, now)
			w, wok := want(a)
			if gok != wok || got.Prefix != w.Prefix || got.Reason != w.Reason {
				t.Fatalf("step %d: Lookup(%v) = %v %q %v; model %v %q %v", step, a, got.Prefix, got.Reason, gok, w.Prefix, w.Reason, wok)
			}
		}
	}
	if len(b.List(now)) == 0 {
		t.Error("model test ended with no bans; the mix of operations is off")
	}
}

func TestBansSourceLabelCap(t *testing.T) {
	b := newTestBans(t, nil, nil)
	for i := 0; i < maxSourceLabels+5; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 32)
		if err := b.Add(context.Background(), Ban{Prefix: p, Source: fmt.Sprint("api-user-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := testutil.CollectAndCount(b.m.added); n != maxSourceLabels+1 {
		t.Errorf("levee_bans_added_total has %d series; want %d (capped, plus other)", n, maxSourceLabels+1)
	}
	if got := testutil.ToFloat64(b.m.added.WithLabelValues("other")); got != 5 {
		t.Errorf("other = %v; want 5", got)
	}
}
