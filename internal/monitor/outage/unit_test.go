package outage

import (
	"slices"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

func TestVantageHysteresis(t *testing.T) {
	// Steps: 'o' ok at 10 ms, 's' ok but slow (200 ms), 'f' failure.
	tests := []struct {
		name  string
		steps string
		want  string // state after each step: u, d (degraded), D (down)
	}{
		{"one failure is not down", "of", "uu"},
		{"two failures are down", "off", "uuD"},
		{"one success does not recover", "offo", "uuDD"},
		{"two successes recover", "offoo", "uuDDu"},
		{"failure resets the success count", "offofoo", "uuDDDDu"},
		{"recover slow lands in degraded", "offss", "uuDDd"},
		{"three slow answers degrade", "osss", "uuud"},
		{"slow streak broken", "ossoss", "uuuuuu"},
		{"degraded needs three normal to clear", "ossssooo", "uuuddddu"},
		{"failure while degraded", "osssff", "uuuddD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{}.WithDefaults()
			v := newVantage("a", &cfg)
			for range 30 { // warm baseline at ~10 ms
				v.base.Add(10 * time.Millisecond)
			}
			at := t0
			var got []byte
			for _, c := range tt.steps {
				at = at.Add(10 * time.Second)
				o := Observation{Vantage: "a", At: at, OK: c != 'f', Latency: 10 * time.Millisecond}
				if c == 's' {
					o.Latency = 200 * time.Millisecond
				}
				if c == 'f' {
					o.Failure = probe.FailRefused
				}
				v.observe(&cfg, o)
				got = append(got, map[State]byte{Up: 'u', Degraded: 'd', Down: 'D'}[v.state])
			}
			if string(got) != tt.want {
				t.Errorf("states %s, want %s", got, tt.want)
			}
		})
	}
}

func TestQuorum(t *testing.T) {
	tests := []struct {
		min        int
		frac       float64
		n, active  int
		wantAgreed bool
	}{
		{2, 0.5, 1, 1, true},  // single vantage point: 100% > 50%
		{2, 0.5, 1, 2, false}, // one of two: neither >= 2 nor > 50%
		{2, 0.5, 2, 2, true},
		{2, 0.5, 1, 3, false}, // one flaky agent of three
		{2, 0.5, 2, 3, true},
		{2, 0.5, 2, 10, true}, // >= 2 wins even at 20%
		{3, 0.5, 2, 10, false},
		{3, 0.5, 6, 10, true},
		{2, 0.5, 0, 3, false},
	}
	for _, tt := range tests {
		tg := &target{cfg: Config{QuorumMin: tt.min, QuorumFraction: tt.frac}}
		if got := tg.quorum(tt.n, tt.active); got != tt.wantAgreed {
			t.Errorf("quorum(min %d, frac %.1f, %d of %d) = %v, want %v", tt.min, tt.frac, tt.n, tt.active, got, tt.wantAgreed)
		}
	}
}

func TestBaseline(t *testing.T) {
	b := NewBaseline(100)
	for i := range 300 { // only the last 100 (200..299 ms) stay
		b.Add(time.Duration(i) * time.Millisecond)
	}
	if b.Len() != 100 {
		t.Fatalf("len %d", b.Len())
	}
	if q := b.Quantile(0.5); q != 249*time.Millisecond {
		t.Errorf("median %s, want 249ms", q)
	}
	if q := b.Quantile(0); q != 200*time.Millisecond {
		t.Errorf("min %s", q)
	}
	if th := b.Threshold(3, 0); th != 747*time.Millisecond {
		t.Errorf("threshold %s, want 3 x median", th)
	}
	if th := b.Threshold(1, time.Second); th != time.Second {
		t.Errorf("floor not applied: %s", th)
	}
	var z Baseline
	if z.Quantile(0.5) != 0 {
		t.Errorf("empty baseline quantile not 0")
	}
	z.Add(time.Second)
	if z.Quantile(0.99) != time.Second {
		t.Errorf("zero Baseline unusable")
	}
}

func TestRank(t *testing.T) {
	now := t0.Add(100 * 24 * time.Hour)
	mk := func(id string, startAgo, dur time.Duration) Incident {
		s := now.Add(-startAgo)
		return Incident{ID: id, Target: "site", Start: s, End: s.Add(dur), Closed: s.Add(dur)}
	}
	hist := []Incident{
		mk("old-long", 95*24*time.Hour, 10*time.Hour), // outside 90 days
		mk("a", 10*24*time.Hour, time.Hour),
		mk("b", 5*24*time.Hour, 10*time.Minute),
		{ID: "other", Target: "else", Start: now.Add(-time.Hour), End: now},
	}
	tests := []struct {
		inc    Incident
		rank   int
		total  int
		phrase string
	}{
		{mk("new", time.Hour, 2*time.Hour), 1, 3, "longest of 3 incidents in the last 90 days"},
		{mk("new", time.Hour, 30*time.Minute), 2, 3, "2nd longest of 3 incidents in the last 90 days"},
		{hist[1], 1, 2, "longest of 2 incidents in the last 90 days"},
	}
	for _, tt := range tests {
		r, n, p := Rank(tt.inc, hist, 90*24*time.Hour, now)
		if r != tt.rank || n != tt.total || p != tt.phrase {
			t.Errorf("Rank(%s) = %d, %d, %q; want %d, %d, %q", tt.inc.ID, r, n, p, tt.rank, tt.total, tt.phrase)
		}
	}
	if _, _, p := Rank(mk("x", time.Hour, time.Minute), nil, 90*24*time.Hour, now); p != "only incident in the last 90 days" {
		t.Errorf("phrase %q", p)
	}
}

func TestBaselineMatchesSort(t *testing.T) {
	b := NewBaseline(50)
	var all []time.Duration
	for i := range 500 {
		d := time.Duration((i*7919)%1000) * time.Microsecond
		b.Add(d)
		all = append(all, d)
		win := slices.Clone(all[max(0, len(all)-50):])
		slices.Sort(win)
		for _, q := range []float64{0, 0.5, 0.95, 1} {
			if got, want := b.Quantile(q), win[int(q*float64(len(win)-1))]; got != want {
				t.Fatalf("after %d samples q%.2f = %s, want %s", i+1, q, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { b.Add(time.Millisecond); b.Quantile(0.5) }); n != 0 {
		t.Errorf("Add+Quantile allocate %.0f times on a full window", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{QuorumFraction: 1},
		{SlowFactor: 0.5},
		{BaselineMin: 50, BaselineWindow: 10},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted an invalid config", c)
		}
	}
}

func TestTargetIntervalScalesWindows(t *testing.T) {
	tr, _ := New(Config{})
	tr.SetTarget("fast", 100*time.Millisecond)
	tg := tr.targets["fast"]
	if tg.cfg.StaleAfter != 300*time.Millisecond || tg.cfg.RecoveryWindow != 600*time.Millisecond {
		t.Errorf("windows not scaled: %+v", tg.cfg)
	}
}

func BenchmarkObserve(b *testing.B) {
	tr, _ := New(Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		at := t0
		for pb.Next() {
			at = at.Add(10 * time.Second)
			tr.ObserveAt(at, "site", Observation{Vantage: "a", At: at, OK: true, Latency: 20 * time.Millisecond})
		}
	})
}
