package admission

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Unix(1_700_000_000, 0)

// fixedGate returns a gate whose limit stays at limit.
func fixedGate(t testing.TB, limit int, cfg GateConfig) *Gate {
	t.Helper()
	l, err := NewLimiter(LimiterConfig{InitialLimit: limit, MinLimit: limit, MaxLimit: limit}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGate(cfg, l, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func queued(g *Gate) int {
	s := g.StatsAt(t0)
	return s.Queued[0] + s.Queued[1] + s.Queued[2]
}

// waitQueued waits (real time, bounded) until n requests wait in g.
func waitQueued(t *testing.T, g *Gate, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for queued(g) != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue length %d, want %d", queued(g), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

type result struct {
	name string
	t    Ticket
	err  error
}

// enqueue starts Acquire(name, class at now) in a goroutine and waits until it
// is queued.
func enqueue(t *testing.T, g *Gate, out chan<- result, name string, now time.Time, c Class) {
	t.Helper()
	n := queued(g)
	go func() {
		tk, err := g.Acquire(context.Background(), now, c)
		out <- result{name, tk, err}
	}()
	waitQueued(t, g, n+1)
}

// recvAll receives n results, by name.
func recvAll(t *testing.T, out <-chan result, n int) map[string]result {
	t.Helper()
	got := map[string]result{}
	for range n {
		r := recv(t, out)
		got[r.name] = r
	}
	return got
}

func recv(t *testing.T, out <-chan result) result {
	t.Helper()
	select {
	case r := <-out:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no result")
		return result{}
	}
}

func TestGateImmediateUnderLimit(t *testing.T) {
	g := fixedGate(t, 3, GateConfig{})
	var ts []Ticket
	for i := 0; i < 3; i++ {
		tk, err := g.Acquire(context.Background(), t0, Normal)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tk)
	}
	if s := g.StatsAt(t0); s.InFlight != 3 || s.AdmittedNow[Normal] != 3 {
		t.Fatalf("stats %+v", s)
	}
	for _, tk := range ts {
		tk.Done(t0.Add(time.Millisecond), true)
	}
	if s := g.StatsAt(t0); s.InFlight != 0 {
		t.Fatalf("in flight %d after Done", s.InFlight)
	}
	Ticket{}.Done(t0, true) // the zero ticket is inert
}

func TestGatePriorityOrder(t *testing.T) {
	g := fixedGate(t, 1, GateConfig{Interval: time.Hour, MaxWait: time.Hour})
	hold, err := g.Acquire(context.Background(), t0, Suspect)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan result, 8)
	enqueue(t, g, out, "s1", t0, Suspect)
	enqueue(t, g, out, "n1", t0, Normal)
	enqueue(t, g, out, "s2", t0, Suspect)
	enqueue(t, g, out, "v1", t0, Verified)
	enqueue(t, g, out, "n2", t0, Normal)
	enqueue(t, g, out, "v2", t0, Verified)
	// Young queue: best class first, oldest first within a class.
	want := []string{"v1", "v2", "n1", "n2", "s1", "s2"}
	now := t0.Add(time.Millisecond)
	hold.Done(now, true)
	for _, w := range want {
		r := recv(t, out)
		if r.err != nil || r.name != w {
			t.Fatalf("got %s (%v), want %s", r.name, r.err, w)
		}
		now = now.Add(time.Millisecond)
		r.t.Done(now, true)
	}
	s := g.StatsAt(now)
	if s.InFlight != 0 || s.AdmittedQueued != [3]uint64{2, 2, 2} {
		t.Fatalf("stats %+v", s)
	}
}

// Once the queue has stood for Interval, waiters older than Target are shed,
// worst class first, and each class is served newest first.
func TestGateStandingQueueShedsAndServesLIFO(t *testing.T) {
	g := fixedGate(t, 1, GateConfig{Target: 20 * time.Millisecond, Interval: 60 * time.Millisecond, MaxWait: time.Hour})
	hold, _ := g.Acquire(context.Background(), t0, Normal)
	out := make(chan result, 8)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	enqueue(t, g, out, "n-old", ms(0), Normal)
	enqueue(t, g, out, "s-old", ms(1), Suspect)
	enqueue(t, g, out, "n-a", ms(40), Normal)
	enqueue(t, g, out, "n-b", ms(45), Normal)
	enqueue(t, g, out, "s-new", ms(50), Suspect)
	// At 60ms the queue has stood 60ms = Interval: n-old and s-old (older
	// than 20ms) are shed, suspect first; n-b (newest) gets the slot.
	hold.Done(ms(60), true)
	got := recvAll(t, out, 3)
	if !errors.Is(got["s-old"].err, ErrShed) || !errors.Is(got["n-old"].err, ErrShed) {
		t.Fatalf("old waiters not shed: %+v", got)
	}
	rb, ok := got["n-b"]
	if !ok || rb.err != nil {
		t.Fatalf("n-b not admitted: %+v", got)
	}
	// Next release at 62ms: n-a (age 22ms > target) is shed before s-new
	// (age 12ms) is admitted, even though n-a has the better class: it
	// waited too long while the queue stood.
	rb.t.Done(ms(62), true)
	r1, r2 := recv(t, out), recv(t, out)
	if r1.name == "s-new" {
		r1, r2 = r2, r1
	}
	if r1.name != "n-a" || !errors.Is(r1.err, ErrShed) || r2.name != "s-new" || r2.err != nil {
		t.Fatalf("got %s:%v %s:%v", r1.name, r1.err, r2.name, r2.err)
	}
	r2.t.Done(ms(63), true)
	s := g.StatsAt(ms(63))
	if s.InFlight != 0 || s.ShedDelay != [3]uint64{0, 2, 1} {
		t.Fatalf("stats %+v", s)
	}
}

// Under a steady overload, shedding every waiter older than Target empties
// the queue for a moment; the queue must stay "standing" (LIFO, Target)
// until it has been empty for Interval, or the next Interval would again
// be served first come first served with long waits.
func TestGateStandingSurvivesBriefEmptyQueue(t *testing.T) {
	g := fixedGate(t, 1, GateConfig{Target: 20 * time.Millisecond, Interval: 60 * time.Millisecond, MaxWait: time.Hour})
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	hold, _ := g.Acquire(context.Background(), ms(0), Normal)
	out := make(chan result, 8)
	enqueue(t, g, out, "a", ms(0), Normal)
	enqueue(t, g, out, "b", ms(1), Normal)
	// At 70ms the queue has stood 70ms: both are older than Target; the
	// newest, b, still gets the free slot (better than an idle origin),
	// a is shed and the queue is empty.
	hold.Done(ms(70), true)
	got := recvAll(t, out, 2)
	if !errors.Is(got["a"].err, ErrShed) || got["b"].err != nil {
		t.Fatalf("got %+v, want a shed and b admitted", got)
	}
	hold = got["b"].t
	// 5 ms later new waiters arrive; at 100ms: still standing, so c (25
	// ms old) is shed and d (20 ms, within Target) is admitted.
	enqueue(t, g, out, "c", ms(75), Normal)
	enqueue(t, g, out, "d", ms(80), Normal)
	hold.Done(ms(100), true)
	got = map[string]result{}
	for range 2 {
		r := recv(t, out)
		got[r.name] = r
	}
	if !errors.Is(got["c"].err, ErrShed) || got["d"].err != nil {
		t.Fatalf("got %+v, want c shed and d admitted", got)
	}
	got["d"].t.Done(ms(101), true)
	// After the queue has been empty for Interval, a new queue starts
	// lenient again: first come first served, nothing shed at Target.
	hold, _ = g.Acquire(context.Background(), ms(200), Normal)
	enqueue(t, g, out, "e", ms(200), Normal)
	enqueue(t, g, out, "f", ms(201), Normal)
	hold.Done(ms(240), true) // e is 40ms old, queue young (40ms < Interval)
	r := recv(t, out)
	if r.name != "e" || r.err != nil {
		t.Fatalf("got %s %v, want e admitted first", r.name, r.err)
	}
	r.t.Done(ms(241), true)
	if r := recv(t, out); r.name != "f" || r.err != nil {
		t.Fatalf("got %s %v, want f admitted", r.name, r.err)
	} else {
		r.t.Done(ms(242), true)
	}
}

func TestGateStandingLIFOWithinClass(t *testing.T) {
	g := fixedGate(t, 1, GateConfig{Target: time.Second, Interval: time.Second, MaxWait: time.Hour})
	hold, _ := g.Acquire(context.Background(), t0, Normal)
	out := make(chan result, 8)
	for i, n := range []string{"a", "b", "c"} {
		enqueue(t, g, out, n, t0.Add(time.Duration(i)*time.Millisecond), Normal)
	}
	// At 1.0005s the queue stands (non-empty since t0) and only "a" (age
	// 1.0005s) is older than the target: "a" is shed, and of b and c the
	// newest, c, is served.
	now := t0.Add(time.Second + 500*time.Microsecond)
	hold.Done(now, true)
	got := recvAll(t, out, 2)
	if !errors.Is(got["a"].err, ErrShed) {
		t.Fatalf("a: %+v, want shed", got["a"])
	}
	rc, ok := got["c"]
	if !ok || rc.err != nil {
		t.Fatalf("c not admitted: %+v", got)
	}
	rc.t.Done(now, true)
	r := recv(t, out)
	if r.name != "b" || r.err != nil {
		t.Fatalf("got %s %v, want b admitted", r.name, r.err)
	}
	r.t.Done(now, true)
}

func TestGateFullQueuePushesOutWorstClass(t *testing.T) {
	g := fixedGate(t, 1, GateConfig{MaxQueue: 2, Interval: time.Hour, MaxWait: time.Hour})
	hold, _ := g.Acquire(context.Background(), t0, Normal)
	out := make(chan result, 8)
	enqueue(t, g, out, "n1", t0, Normal)
	enqueue(t, g, out, "s1", t0, Suspect)
	// Verified arrives at a full queue: s1 is pushed out.
	go func() {
		tk, err := g.Acquire(context.Background(), t0, Verified)
		out <- result{"v1", tk, err}
	}()
	r := recv(t, out)
	if r.name != "s1" || !errors.Is(r.err, ErrQueueFull) {
		t.Fatalf("got %s %v, want s1 pushed out", r.name, r.err)
	}
	waitQueued(t, g, 2)
	// Suspect and Normal newcomers find nothing worse: refused at once.
	for _, c := range []Class{Suspect, Normal} {
		if _, err := g.Acquire(context.Background(), t0, c); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("class %v: err %v, want ErrQueueFull", c, err)
		}
	}
	hold.Done(t0, true)
	for _, w := range []string{"v1", "n1"} {
		r := recv(t, out)
		if r.name != w || r.err != nil {
			t.Fatalf("got %s %v, want %s", r.name, r.err, w)
		}
		r.t.Done(t0, true)
	}
	s := g.StatsAt(t0)
	if s.ShedFull != [3]uint64{0, 1, 2} || s.InFlight != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestGateMaxWaitBoundsTheWait(t *testing.T) {
	g := fixedGate(t, 1, GateConfig{MaxWait: 30 * time.Millisecond, Target: time.Millisecond, Interval: time.Hour})
	hold, _ := g.Acquire(context.Background(), t0, Normal)
	start := time.Now()
	_, err := g.Acquire(context.Background(), t0, Verified)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 30*time.Millisecond || d > 2*time.Second {
		t.Fatalf("waited %v, want about 30ms", d)
	}
	if s := g.StatsAt(t0); queued(g) != 0 || s.ShedTimeout[Verified] != 1 {
		t.Fatalf("stats %+v", s)
	}
	hold.Done(t0, true)
	if g.StatsAt(t0).InFlight != 0 {
		t.Fatal("slot leaked")
	}
}

func TestGateCancelLeavesNoSlot(t *testing.T) {
	g := fixedGate(t, 1, GateConfig{MaxWait: time.Hour})
	hold, _ := g.Acquire(context.Background(), t0, Normal)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := g.Acquire(ctx, t0, Normal)
		errc <- err
	}()
	waitQueued(t, g, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
	hold.Done(t0, true)
	if s := g.StatsAt(t0); s.InFlight != 0 || queued(g) != 0 || s.ShedCanceled[Normal] != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Many goroutines acquire, cancel, time out and release concurrently; at the
// end no slot and no waiter is left. Run with -race.
func TestGateStressNoLeaks(t *testing.T) {
	reg := prometheus.NewRegistry()
	l, _ := NewLimiter(LimiterConfig{InitialLimit: 4, MinLimit: 2, MaxLimit: 8}, Deps{Registerer: reg})
	g, err := NewGate(GateConfig{MaxQueue: 16, MaxWait: 5 * time.Millisecond}, l, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < 300; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				if rng.IntN(4) == 0 {
					cancel()
				}
				tk, err := g.Acquire(ctx, time.Now(), Class(rng.IntN(4)))
				if err == nil {
					time.Sleep(time.Duration(rng.IntN(200)) * time.Microsecond)
					tk.Done(time.Now(), rng.IntN(10) != 0)
				}
				cancel()
			}
		}(uint64(w))
	}
	wg.Wait()
	s := g.StatsAt(time.Now())
	if s.InFlight != 0 || queued(g) != 0 {
		t.Fatalf("leak: %+v", s)
	}
	var total uint64
	for c := range NumClasses {
		total += s.AdmittedNow[c] + s.AdmittedQueued[c] + s.ShedFull[c] + s.ShedDelay[c] + s.ShedTimeout[c] + s.ShedCanceled[c]
	}
	if total != 16*300 {
		t.Fatalf("accounted %d requests, want %d", total, 16*300)
	}
	if n, err := testutil.GatherAndCount(reg, "levee_admission_shed_total", "levee_admission_admitted_total", "levee_admission_limit_requests"); err != nil || n != 3*4+3*2+1 {
		t.Fatalf("metrics: %d series, %v", n, err)
	}
}

func TestGateConfigValidate(t *testing.T) {
	l, _ := NewLimiter(LimiterConfig{}, Deps{})
	for _, cfg := range []GateConfig{
		{MaxQueue: -1},
		{Target: time.Second, Interval: time.Millisecond},
		{Target: time.Second, Interval: time.Hour, MaxWait: time.Millisecond},
		{RetryAfter: -time.Second},
	} {
		if _, err := NewGate(cfg, l, Deps{}); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
	if _, err := NewGate(GateConfig{}, nil, Deps{}); err == nil {
		t.Error("nil limiter accepted")
	}
	g, _ := NewGate(GateConfig{RetryAfter: 1500 * time.Millisecond}, l, Deps{})
	if g.RetryAfter() != "2" {
		t.Errorf("RetryAfter %q", g.RetryAfter())
	}
}

func TestShedResponse(t *testing.T) {
	for _, tc := range []struct{ accept, want string }{
		{"", "text/html; charset=utf-8"},
		{"application/json", "application/json"},
		{"text/html,application/json;q=0.9", "text/html; charset=utf-8"},
		{"*/*", "text/html; charset=utf-8"},
	} {
		ct, body := ShedResponse([]byte(tc.accept))
		if ct != tc.want || len(body) == 0 {
			t.Errorf("Accept %q: %s", tc.accept, ct)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ShedResponse([]byte("application/json")) }); n != 0 {
		t.Errorf("%v allocs", n)
	}
}

func TestGateAcquireAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	g := fixedGate(t, 4, GateConfig{})
	ctx := context.Background()
	n := testing.AllocsPerRun(1000, func() {
		tk, _ := g.Acquire(ctx, t0, Normal)
		tk.Done(t0, true)
	})
	if n != 0 {
		t.Fatalf("%v allocs per admitted request", n)
	}
}

func BenchmarkGateAcquireDone(b *testing.B) {
	g := fixedGate(b, 1<<20, GateConfig{})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			tk, err := g.Acquire(ctx, now, Normal)
			if err != nil {
				b.Fatal(err)
			}
			tk.Done(now, true)
		}
	})
}

func BenchmarkGateQueued(b *testing.B) {
	// Limit 2 with 2*GOMAXPROCS... goroutines: most requests wait in the queue.
	g := fixedGate(b, 2, GateConfig{MaxWait: time.Minute, Interval: time.Minute})
	ctx := context.Background()
	b.SetParallelism(4)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, err := g.Acquire(ctx, time.Now(), Normal)
			if err != nil {
				b.Fatal(err)
			}
			tk.Done(time.Now(), true)
		}
	})
}

// In overload mode a free slot is not left idle: a lone waiter older than
// Target is served (light traffic after an attack, or a slow origin with
// few waiters), while with several waiters the newest within Target goes
// first and the stale ones are shed.
func TestGateServesLoneStaleWaiter(t *testing.T) {
	g := fixedGate(t, 1, GateConfig{Target: 5 * time.Millisecond, Interval: 100 * time.Millisecond, MaxWait: time.Hour})
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	out := make(chan result, 8)
	hold, _ := g.Acquire(context.Background(), ms(0), Normal)
	enqueue(t, g, out, "a", ms(0), Normal)
	enqueue(t, g, out, "b", ms(1), Normal)
	hold.Done(ms(150), true) // stood 150 ms: overloaded; b served, a shed
	got := recvAll(t, out, 2)
	if !errors.Is(got["a"].err, ErrShed) || got["b"].err != nil {
		t.Fatalf("got %+v, want a shed and b admitted", got)
	}
	hold = got["b"].t
	// Light traffic: one waiter at a time, each waiting 10 ms (> Target)
	// for the slot. Each is served.
	for i, at := range []int{160, 210, 260} {
		name := fmt.Sprint("light", i)
		enqueue(t, g, out, name, ms(at), Normal)
		hold.Done(ms(at+10), true)
		r := recv(t, out)
		if r.name != name || r.err != nil {
			t.Fatalf("%s: %+v, want admitted after a 10 ms wait", name, r)
		}
		hold = r.t
	}
	// Two waiters: the one within Target is served, the stale one shed.
	enqueue(t, g, out, "old", ms(300), Normal)
	enqueue(t, g, out, "new", ms(304), Normal)
	hold.Done(ms(307), true) // old is 7 ms old, new 3 ms
	got = map[string]result{}
	for range 2 {
		r := recv(t, out)
		got[r.name] = r
	}
	if !errors.Is(got["old"].err, ErrShed) || got["new"].err != nil {
		t.Fatalf("got %+v, want old shed and new admitted", got)
	}
	got["new"].t.Done(ms(308), true)
}

// busyGate is a gate with a learning limiter whose rounds keep the origin
// busy: each round, as many requests as the limit allows start at once (so
// the limit is not decayed as idle), last d, and end with done.
type busyGate struct {
	t   *testing.T
	lim *Limiter
	g   *Gate
	now time.Time
}

func newBusyGate(t *testing.T) *busyGate {
	l, err := NewLimiter(LimiterConfig{InitialLimit: 40, ProbeInterval: -1}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGate(GateConfig{}, l, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return &busyGate{t: t, lim: l, g: g, now: t0}
}

// round runs one round of requests started at b.now that end d later;
// done releases each ticket given its start and end.
func (b *busyGate) round(d time.Duration, done func(tk Ticket, start, end time.Time)) {
	tks := make([]Ticket, b.lim.Limit())
	for i := range tks {
		tk, err := b.g.Acquire(context.Background(), b.now, Normal)
		if err != nil {
			b.t.Fatal(err)
		}
		tks[i] = tk
	}
	start, end := b.now, b.now.Add(d)
	for _, tk := range tks {
		done(tk, start, end)
	}
	b.now = end
}

// TestGateDoneFromExcludesUpload: a request whose client took 2 s to
// upload its body, answered by the origin 20 ms after the upload ended,
// is a 20 ms sample with DoneFrom; with Done it would read as a 2 s answer
// and drop the limit (the control below shows it does).
func TestGateDoneFromExcludesUpload(t *testing.T) {
	const upload, origin = 2 * time.Second, 20 * time.Millisecond
	run := func(from bool) (before, after int) {
		b := newBusyGate(t)
		for range 20 { // no body: 20 ms
			b.round(origin, func(tk Ticket, _, end time.Time) { tk.Done(end, true) })
		}
		before = b.lim.Limit()
		for range 20 { // slow uploads, same origin time
			b.round(upload+origin, func(tk Ticket, start, end time.Time) {
				if from {
					tk.DoneFrom(start.Add(upload), end, true)
				} else {
					tk.Done(end, true)
				}
			})
		}
		return before, b.lim.Limit()
	}
	if before, after := run(true); after < before {
		t.Errorf("DoneFrom: limit %d -> %d after slow uploads to a fast origin", before, after)
	}
	if before, after := run(false); after >= before {
		t.Errorf("control (Done): limit %d -> %d, want a drop (upload time read as origin latency)", before, after)
	}
}

// TestGateDoneWithoutLatency: no latency sample from a success (the limit
// does not move however long the request took), but an overload signal
// still drops the limit.
func TestGateDoneWithoutLatency(t *testing.T) {
	b := newBusyGate(t)
	for range 20 {
		b.round(20*time.Millisecond, func(tk Ticket, _, end time.Time) { tk.Done(end, true) })
	}
	before := b.lim.Limit()
	for range 20 { // 2 s each, but no latency sample
		b.round(2*time.Second, func(tk Ticket, _, end time.Time) { tk.DoneWithoutLatency(end, true) })
	}
	if got := b.lim.Limit(); got < before {
		t.Errorf("limit %d -> %d from answers without latency samples", before, got)
	}
	before = b.lim.Limit()
	for range 5 {
		b.round(20*time.Millisecond, func(tk Ticket, _, end time.Time) { tk.DoneWithoutLatency(end, false) })
	}
	if got := b.lim.Limit(); got >= before {
		t.Errorf("limit %d -> %d: overload signals without latency must still lower it", before, got)
	}
}
