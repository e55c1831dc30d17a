package detect

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"ratio not above 1", Config{Ratio: 1}, false},
		{"end ratio above ratio", Config{Ratio: 2, EndRatio: 3}, false},
		{"collateral order", Config{BlockCollateral: 0.1, ChallengeCollateral: 0.01}, false},
		{"short half-life", Config{HalfLife: time.Millisecond}, false},
		{"under attack below ratio", Config{Ratio: 3, UnderAttackRatio: 2}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg, Deps{}); (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestNoFalseAlarm runs legitimate traffic that is steady, noisy, ramps
// gently or follows a slow wave, and expects no attack.
func TestNoFalseAlarm(t *testing.T) {
	tests := []struct {
		name string
		rate func(sec int) float64
		secs int
	}{
		{"steady", func(int) float64 { return 200 }, 1200},
		{"ramp 3x over 10 minutes", func(s int) float64 { return 100 + 200*min(1, float64(max(0, s-300))/600) }, 1200},
		{"low traffic", func(int) float64 { return 3 }, 900},
		{"wave", func(s int) float64 { return 150 + 50*sinApprox(float64(s)/300) }, 1200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, Config{})
			p := newPopulation(42)
			for i := range tc.secs {
				s.second(poisson(p.rng, tc.rate(i)), func(_ int, e *telemetry.Event) { p.normal(e) })
			}
			if ev := s.find(EventAttackStart); ev != nil {
				t.Fatalf("false alarm at %v (second %d): %+v", ev.At, int(ev.At.Sub(epoch).Seconds()), ev.Anomalies)
			}
			if m := s.det.Mode(s.now); m != ModeNormal {
				t.Fatalf("mode %v", m)
			}
		})
	}
}

// sinApprox is a smooth periodic function in [-1, 1] (period 2π).
func sinApprox(x float64) float64 {
	const twoPi = 6.283185307179586
	x -= twoPi * float64(int(x/twoPi))
	if x > twoPi/2 {
		return -sinApprox(x - twoPi/2)
	}
	return 16 * x * (twoPi/2 - x) / (5*(twoPi/2)*(twoPi/2) - 4*x*(twoPi/2-x))
}

// TestAttackKinds checks each attack kind is declared within 2 s of its
// onset, with the right kind, and ends with hysteresis after it stops.
func TestAttackKinds(t *testing.T) {
	const rate = 200
	tests := []struct {
		name   string
		n      int // requests per attack second (normal + attack)
		gen    func(p *population, i int, e *telemetry.Event)
		conns  int // extra bare connections per second
		want   Kind
		reject Kind // kinds that must not be declared
	}{
		{
			name: "request surge",
			n:    rate + 2000,
			gen: func(p *population, i int, e *telemetry.Event) {
				if i < rate {
					p.normal(e)
				} else {
					p.bot(e)
				}
			},
			want: KindRequestSurge,
		},
		{
			name:   "connection surge without requests",
			n:      rate,
			gen:    func(p *population, _ int, e *telemetry.Event) { p.normal(e) },
			conns:  3000,
			want:   KindConnSurge,
			reject: KindRequestSurge | KindErrorSurge,
		},
		{
			name: "many new sources at low rate each",
			n:    rate + 150,
			gen: func(p *population, i int, e *telemetry.Event) {
				p.normal(e)
				if i >= rate {
					p.fresh++
					e.Client = netip.AddrFrom4([4]byte{45, byte(p.fresh >> 16), byte(p.fresh >> 8), byte(p.fresh)})
				}
			},
			want:   KindNewSourceSurge,
			reject: KindRequestSurge | KindErrorSurge,
		},
		{
			name: "origin errors only",
			n:    rate,
			gen: func(p *population, i int, e *telemetry.Event) {
				p.normal(e)
				if i%5 < 2 {
					e.Status = 503
				}
			},
			want:   KindErrorSurge,
			reject: KindRequestSurge | KindNewSourceSurge | KindConnSurge,
		},
		{
			name: "origin latency only",
			n:    rate,
			gen: func(p *population, _ int, e *telemetry.Event) {
				p.normal(e)
				e.Latency = 900 * time.Millisecond
			},
			want:   KindLatencySurge,
			reject: KindRequestSurge | KindNewSourceSurge | KindErrorSurge,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, Config{})
			p := newPopulation(7)
			s.warm(p, 5*time.Minute, rate)
			if s.find(EventAttackStart) != nil {
				t.Fatal("false alarm during warm-up")
			}
			onset := s.now
			for range 30 {
				for range tc.conns {
					n := p.rng.Uint32()
					s.rec.RecordConn(netip.AddrFrom4([4]byte{30, byte(n >> 16), byte(n >> 8), byte(n)}))
				}
				s.second(tc.n, func(i int, e *telemetry.Event) { tc.gen(p, i, e) })
			}
			start := s.find(EventAttackStart)
			if start == nil {
				t.Fatal("attack not declared")
			}
			if delay := start.At.Sub(onset); delay > 2*time.Second {
				t.Fatalf("declared %v after onset", delay)
			}
			if !start.Onset.Equal(onset) {
				t.Errorf("onset %v, want %v", start.Onset, onset)
			}
			if start.Kinds&tc.want == 0 {
				t.Fatalf("kinds %v, want %v", start.Kinds, tc.want)
			}
			if start.Kinds&tc.reject != 0 {
				t.Fatalf("kinds %v include one of %v", start.Kinds, tc.reject)
			}
			if st, _ := s.det.State(); st != StateAttack {
				t.Fatal("attack not in progress during the attack")
			}
			// Stop the attack: it must end after Quiet (10 s), not before.
			stop := s.now
			for range 30 {
				s.second(poisson(p.rng, rate), func(_ int, e *telemetry.Event) { p.normal(e) })
			}
			end := s.find(EventAttackEnd)
			if end == nil {
				t.Fatal("attack did not end")
			}
			if d := end.At.Sub(stop); d < 10*time.Second || d > 13*time.Second {
				t.Fatalf("attack ended %v after it stopped, want 10-13 s", d)
			}
			if m := s.det.Mode(s.now); m != ModeNormal {
				t.Fatalf("mode after the attack %v", m)
			}
		})
	}
}

// TestHysteresis: one quiet second inside an attack does not end it.
func TestHysteresis(t *testing.T) {
	s := newSim(t, Config{})
	p := newPopulation(3)
	s.warm(p, 3*time.Minute, 100)
	surge := func() { s.second(2000, func(_ int, e *telemetry.Event) { p.bot(e) }) }
	calm := func() { s.second(100, func(_ int, e *telemetry.Event) { p.normal(e) }) }
	for range 5 {
		surge()
	}
	for range 5 {
		calm()
	}
	for range 5 {
		surge()
	}
	n := 0
	for _, e := range s.events {
		if e.Type == EventAttackStart {
			n++
		}
		if e.Type == EventAttackEnd {
			t.Fatalf("attack ended at %v during a 5 s pause", e.At)
		}
	}
	if n != 1 {
		t.Fatalf("%d attacks declared, want 1", n)
	}
}

func TestWarmUpSuppressesDetection(t *testing.T) {
	s := newSim(t, Config{WarmUp: time.Minute})
	p := newPopulation(5)
	s.warm(p, 30*time.Second, 100)
	for range 5 {
		s.second(3000, func(_ int, e *telemetry.Event) { p.bot(e) })
	}
	if s.find(EventAttackStart) != nil {
		t.Fatal("attack declared before the baseline was warm")
	}
}

func TestModeEscalationAndOverride(t *testing.T) {
	s := newSim(t, Config{EscalateAfter: 5 * time.Second})
	p := newPopulation(9)
	s.warm(p, 3*time.Minute, 200)
	// 3x surge: elevated first; the leak stays high (nothing applies the
	// rules here), so under-attack after EscalateAfter.
	for range 3 {
		s.second(600, func(i int, e *telemetry.Event) {
			if i < 200 {
				p.normal(e)
			} else {
				p.bot(e)
				e.NewConn = false // keep-alive bots: only the request rate is 3x
			}
		})
	}
	if m := s.det.Mode(s.now); m != ModeElevated {
		t.Fatalf("mode after 3 s of a 3x surge: %v", m)
	}
	for range 5 {
		s.second(600, func(i int, e *telemetry.Event) {
			if i < 200 {
				p.normal(e)
			} else {
				p.bot(e)
				e.NewConn = false // keep-alive bots: only the request rate is 3x
			}
		})
	}
	if m := s.det.Mode(s.now); m != ModeUnderAttack {
		t.Fatalf("mode after 8 s of an unmitigated 3x surge: %v", m)
	}
	var modes []Mode
	for _, e := range s.events {
		if e.Type == EventModeChange {
			modes = append(modes, e.Mode)
		}
	}
	if len(modes) != 2 || modes[0] != ModeElevated || modes[1] != ModeUnderAttack {
		t.Fatalf("mode changes %v", modes)
	}

	// Manual override with expiry.
	s.det.SetOverride(ModeNormal, s.now.Add(3*time.Second))
	if m := s.det.Mode(s.now); m != ModeNormal {
		t.Fatalf("override ignored: %v", m)
	}
	st := s.det.Status(s.now)
	if st.Override == nil || *st.Override != ModeNormal || st.AutoMode != ModeUnderAttack {
		t.Fatalf("status %+v", st)
	}
	if m := s.det.Mode(s.now.Add(3 * time.Second)); m != ModeUnderAttack {
		t.Fatalf("override did not expire: %v", m)
	}
	s.det.SetOverride(ModeUnderAttack, time.Time{})
	s.det.ClearOverride()
	if m := s.det.Mode(s.now); m != ModeUnderAttack {
		t.Fatalf("after ClearOverride: %v", m)
	}
}

func TestHugeSurgeGoesStraightToUnderAttack(t *testing.T) {
	s := newSim(t, Config{})
	p := newPopulation(11)
	s.warm(p, 2*time.Minute, 100)
	s.second(5000, func(_ int, e *telemetry.Event) { p.bot(e) })
	if m := s.det.Mode(s.now); m != ModeUnderAttack {
		t.Fatalf("mode after a 50x surge: %v", m)
	}
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mode
		ok   bool
	}{{"normal", ModeNormal, true}, {"elevated", ModeElevated, true}, {"under-attack", ModeUnderAttack, true}, {"under_attack", ModeUnderAttack, true}, {"panic", 0, false}} {
		m, err := ParseMode(tc.in)
		if (err == nil) != tc.ok || m != tc.want {
			t.Errorf("ParseMode(%q) = %v, %v", tc.in, m, err)
		}
	}
	var k Kind
	if err := k.UnmarshalText([]byte("request_surge+origin_error_surge")); err != nil || k != KindRequestSurge|KindErrorSurge {
		t.Errorf("Kind.UnmarshalText: %v %v", k, err)
	}
}

// rng for tests that need one outside a population.
var _ = rand.New
