package admission

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeOrigin is a closed-form origin: N workers, M per request, FIFO queue.
// With c requests in flight its latency is M for c <= N and M*c/N above.
type fakeOrigin struct {
	n int
	m time.Duration
}

func (o fakeOrigin) rtt(c int) time.Duration {
	if c <= o.n {
		return o.m
	}
	return time.Duration(int64(o.m) * int64(c) / int64(o.n))
}

// drive feeds the limiter for d of fake time with the origin saturated at the
// current limit (offered load above capacity) and returns the end time.
func drive(l *Limiter, o fakeOrigin, now time.Time, d time.Duration) time.Time {
	end := now.Add(d)
	for now.Before(end) {
		c := l.Limit()
		rtt := o.rtt(c)
		// c requests complete every rtt: one sample each.
		step := rtt / time.Duration(c)
		for i := 0; i < c; i++ {
			now = now.Add(step)
			l.OnSample(now, rtt, c, true)
		}
	}
	return now
}

func TestLimiterConverges(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	for _, tc := range []struct {
		name    string
		origin  fakeOrigin
		initial int
	}{
		{"8x20ms from 20", fakeOrigin{8, 20 * time.Millisecond}, 20},
		{"8x20ms from 2", fakeOrigin{8, 20 * time.Millisecond}, 2},
		{"64x5ms from 20", fakeOrigin{64, 5 * time.Millisecond}, 20},
		{"2x50ms from 100", fakeOrigin{2, 50 * time.Millisecond}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLimiter(LimiterConfig{InitialLimit: tc.initial, ProbeInterval: -1}, Deps{})
			if err != nil {
				t.Fatal(err)
			}
			// Seed the minimum with an unloaded window.
			now := t0
			for i := 0; i < 20; i++ {
				now = now.Add(10 * time.Millisecond)
				l.OnSample(now, tc.origin.m, 1, true)
			}
			now = drive(l, tc.origin, now, 20*time.Second)
			lim := l.Limit()
			// Enough to keep every worker busy, not so much that the
			// origin queue more than doubles latency.
			hi := 2*tc.origin.n + 2
			if lim < tc.origin.n || lim > hi {
				t.Fatalf("limit %d, want within [%d, %d]", lim, tc.origin.n, hi)
			}
			if got := l.MinRTT(); got != tc.origin.m {
				t.Fatalf("minRTT %v, want %v", got, tc.origin.m)
			}
			// Stays there.
			drive(l, tc.origin, now, 5*time.Second)
			if l2 := l.Limit(); l2 < tc.origin.n || l2 > hi {
				t.Fatalf("limit drifted to %d", l2)
			}
		})
	}
}

func TestLimiterBounds(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l, err := NewLimiter(LimiterConfig{InitialLimit: 10, MinLimit: 5, MaxLimit: 12}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	// Very fast origin, always busy: the limit grows to MaxLimit and no further.
	drive(l, fakeOrigin{1000, time.Millisecond}, t0, 10*time.Second)
	if got := l.Limit(); got != 12 {
		t.Fatalf("limit %d, want max 12", got)
	}
	// Overload signals only: shrinks to MinLimit and no further.
	now := t0.Add(time.Minute)
	for i := 0; i < 1000; i++ {
		now = now.Add(10 * time.Millisecond)
		l.OnSample(now, 0, 10, false)
	}
	if got := l.Limit(); got != 5 {
		t.Fatalf("limit %d, want min 5", got)
	}
}

// Bounds alone (no initial limit) are valid: the default start of 20 moves
// into them.
func TestLimiterDefaultStartWithinBounds(t *testing.T) {
	for _, tc := range []struct{ min, max, want int }{{1, 1, 1}, {2, 10, 10}, {30, 100, 30}, {0, 0, 20}} {
		l, err := NewLimiter(LimiterConfig{MinLimit: tc.min, MaxLimit: tc.max}, Deps{})
		if err != nil {
			t.Fatalf("min %d max %d: %v", tc.min, tc.max, err)
		}
		if got := l.Limit(); got != tc.want {
			t.Errorf("min %d max %d: initial limit %d, want %d", tc.min, tc.max, got, tc.want)
		}
	}
}

func TestLimiterBackoffOnDrops(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l, _ := NewLimiter(LimiterConfig{InitialLimit: 100, Backoff: 0.5}, Deps{})
	l.OnSample(t0, time.Millisecond, 1, true)
	l.OnSample(t0.Add(200*time.Millisecond), 0, 50, false)
	if got := l.Limit(); got != 50 {
		t.Fatalf("after one window with a drop: limit %d, want 50", got)
	}
}

func TestLimiterAppLimitedDoesNotGrow(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l, _ := NewLimiter(LimiterConfig{InitialLimit: 40, ProbeInterval: -1}, Deps{})
	now := t0
	// Latency at its minimum but only 3 in flight: no evidence that 40+ is
	// fine. The limit must not grow; it decays towards twice the peak in
	// flight, so that an overload starting now does not first queue 40
	// requests inside the origin.
	for i := 0; i < 10_000; i++ {
		now = now.Add(time.Millisecond)
		l.OnSample(now, 5*time.Millisecond, 3, true)
	}
	if got := l.Limit(); got != 6 {
		t.Fatalf("limit %d, want 6 (twice the peak of 3 in flight)", got)
	}
	// Never below MinLimit.
	l2, _ := NewLimiter(LimiterConfig{InitialLimit: 40, MinLimit: 10, ProbeInterval: -1}, Deps{})
	for i := 0; i < 10_000; i++ {
		now = now.Add(time.Millisecond)
		l2.OnSample(now, 5*time.Millisecond, 1, true)
	}
	if got := l2.Limit(); got != 10 {
		t.Fatalf("limit %d, want MinLimit 10", got)
	}
}

// When latency rises the limit drops in one window, not by Smoothing: an
// origin of 4 workers x 20 ms held at 40 in flight answers in 200 ms, and
// the limit must fall to the gradient's floor (half) at once.
func TestLimiterDropsAtOnce(t *testing.T) {
	l, _ := NewLimiter(LimiterConfig{InitialLimit: 40, ProbeInterval: -1}, Deps{})
	now := t0
	for i := 0; i < 20; i++ { // an unloaded window sets the minimum
		now = now.Add(10 * time.Millisecond)
		l.OnSample(now, 20*time.Millisecond, 30, true)
	}
	before := l.Limit()
	for i := 0; i < 20; i++ { // one loaded window
		now = now.Add(10 * time.Millisecond)
		l.OnSample(now, 200*time.Millisecond, 40, true)
	}
	got := l.Limit()
	// The gradient 22/200 clamps at 0.5: about 0.5*limit + 0.5*sqrt(limit)
	// (the window boundary may hold an unloaded sample or two). Smoothing
	// alone (0.2) would only have taken off about a tenth.
	if want := 0.65 * float64(before); float64(got) > want {
		t.Fatalf("limit %d -> %d after one loaded window, want <= %.0f", before, got, want)
	}
}

// After a drop, answers to requests that started before it (they queued at
// the origin under the old, higher limit) do not drop the limit again: an
// origin of 200 ms per request is still answering them for a while, and
// dropping on each window undershoots its workers.
func TestLimiterIgnoresSamplesFromBeforeDrop(t *testing.T) {
	l, _ := NewLimiter(LimiterConfig{InitialLimit: 40, ProbeInterval: -1}, Deps{})
	now := t0
	for i := 0; i < 20; i++ { // minimum 200 ms
		now = now.Add(10 * time.Millisecond)
		l.OnSample(now, 200*time.Millisecond, 30, true)
	}
	for l.Limit() >= 30 { // loaded: 1 s per request
		now = now.Add(10 * time.Millisecond)
		l.OnSample(now, time.Second, 40, true)
	}
	dropped := l.Limit()
	// For the next second, answers of requests started before the drop
	// (latency 1 s) keep arriving: ignored.
	for i := 0; i < 100; i++ {
		now = now.Add(10 * time.Millisecond)
		l.OnSample(now, time.Second+time.Duration(i)*10*time.Millisecond, 40, true)
	}
	if got := l.Limit(); got != dropped {
		t.Fatalf("limit %d -> %d on answers to requests started before the drop", dropped, got)
	}
	// Requests started after it count again.
	for i := 0; i < 30; i++ {
		now = now.Add(10 * time.Millisecond)
		l.OnSample(now, 50*time.Millisecond+time.Second, 40, true)
	}
	if got := l.Limit(); got >= dropped {
		t.Fatalf("limit %d -> %d: slow answers to requests started after the drop must lower it", dropped, got)
	}
}

func TestLimiterWindowNeedsSamples(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	l, _ := NewLimiter(LimiterConfig{InitialLimit: 20, MinWindowSamples: 5}, Deps{})
	// Four slow samples over a long time: not enough for a window.
	for i := 0; i < 4; i++ {
		l.OnSample(t0.Add(time.Duration(i)*time.Second), time.Second, 20, true)
	}
	if l.MinRTT() != 0 || l.Limit() != 20 {
		t.Fatalf("window closed early: minRTT %v limit %d", l.MinRTT(), l.Limit())
	}
	l.OnSample(t0.Add(5*time.Second), time.Second, 20, true)
	if l.MinRTT() != time.Second {
		t.Fatalf("minRTT %v after 5 samples", l.MinRTT())
	}
}

// An origin that becomes permanently slower: without probing, the old
// minimum would pin the limit at MinLimit. The probe re-learns the minimum
// and the limit recovers.
func TestLimiterProbeRelearnsSlowerOrigin(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	reg := prometheus.NewRegistry()
	l, err := NewLimiter(LimiterConfig{Name: "o", InitialLimit: 16, ProbeInterval: 5 * time.Second}, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	now := drive(l, fakeOrigin{8, 10 * time.Millisecond}, t0, 10*time.Second)
	if l.MinRTT() != 10*time.Millisecond {
		t.Fatalf("minRTT %v", l.MinRTT())
	}
	slow := fakeOrigin{8, 40 * time.Millisecond}
	drive(l, slow, now, 30*time.Second)
	if got := l.MinRTT(); got != 40*time.Millisecond {
		t.Fatalf("minRTT %v after origin slowed down, want 40ms", got)
	}
	if got := l.Limit(); got < 8 {
		t.Fatalf("limit %d after re-learning, want >= 8 workers", got)
	}
	if n := testutil.ToFloat64(l.m.probes); n < 2 {
		t.Fatalf("probes %v, want >= 2", n)
	}
	if got := testutil.ToFloat64(l.m.minRTT); got != 0.04 {
		t.Fatalf("min rtt gauge %v", got)
	}
	if err := testutil.CollectAndCompare(reg, strings.NewReader(""), "levee_admission_limit_requests"); err == nil {
		t.Fatal("limit gauge not registered")
	}
}

func TestLimiterConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  LimiterConfig
		want string
	}{
		{LimiterConfig{MinLimit: -1}, "min_limit"},
		{LimiterConfig{MinLimit: 10, MaxLimit: 5}, "max_limit"},
		{LimiterConfig{InitialLimit: 5000}, "initial_limit"},
		{LimiterConfig{Window: time.Microsecond}, "window"},
		{LimiterConfig{Smoothing: 2}, "smoothing"},
		{LimiterConfig{Backoff: 1.5}, "backoff"},
		{LimiterConfig{Buffer: -1}, "buffer"},
	} {
		_, err := NewLimiter(tc.cfg, Deps{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want mention of %q", tc.cfg, err, tc.want)
		}
	}
}

// A few stalled requests per window (a slow endpoint, a GC pause) do not
// shrink the limit: the window's median is used, not its mean.
func TestLimiterIgnoresOutliers(t *testing.T) {
	l, _ := NewLimiter(LimiterConfig{InitialLimit: 16, ProbeInterval: -1}, Deps{})
	now := t0
	for i := range 5000 {
		now = now.Add(time.Millisecond)
		rtt := 10 * time.Millisecond
		if i%10 == 0 {
			rtt = time.Second // 10% of requests are 100x slower
		}
		l.OnSample(now, rtt, 16, true)
	}
	if got := l.Limit(); got < 16 {
		t.Fatalf("limit %d: shrank because of outliers", got)
	}
	if got := l.MinRTT(); got != 10*time.Millisecond {
		t.Fatalf("minRTT %v", got)
	}
}

func TestLimiterOnSampleAllocs(t *testing.T) {
	l, _ := NewLimiter(LimiterConfig{}, Deps{})
	now := t0
	n := testing.AllocsPerRun(10000, func() {
		now = now.Add(time.Millisecond)
		l.OnSample(now, 5*time.Millisecond, 10, true)
	})
	if n != 0 {
		t.Fatalf("%v allocs per sample", n)
	}
}
