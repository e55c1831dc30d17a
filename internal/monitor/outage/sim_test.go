package outage

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

// t0 is the fake clock's origin.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// outcome is what one simulated probe returns.
type outcome struct {
	ok      bool
	failure probe.Failure
	latency time.Duration
}

// sim drives a Tracker with simulated vantage points on a fake clock,
// scheduling probes like probe.Loop does: every interval with +-10% jitter,
// and after a failure again at half the interval.
type sim struct {
	tr       *Tracker
	target   string
	interval time.Duration
	rng      *rand.Rand
	next     map[string]time.Time
	names    []string
	events   []Event
	probes   int
}

func newSim(t testing.TB, cfg Config, vantages ...string) *sim {
	t.Helper()
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{tr: tr, target: "site", interval: tr.cfg.Interval, rng: rand.New(rand.NewPCG(1, 2)), next: map[string]time.Time{}, names: vantages}
	for _, v := range vantages {
		s.next[v] = t0.Add(time.Duration(s.rng.Float64() * float64(s.interval)))
	}
	return s
}

func (s *sim) jitter(d time.Duration) time.Duration {
	return d + time.Duration((s.rng.Float64()*2-1)*0.1*float64(d))
}

// run advances the clock to until, asking gen for each probe's outcome.
func (s *sim) run(until time.Time, gen func(vantage string, at time.Time) outcome) {
	for {
		var who string
		var at time.Time
		for _, v := range s.names {
			if who == "" || s.next[v].Before(at) {
				who, at = v, s.next[v]
			}
		}
		if at.After(until) {
			s.events = append(s.events, s.tr.TickAt(until)...)
			return
		}
		o := gen(who, at)
		done := at.Add(o.latency)
		s.events = append(s.events, s.tr.ObserveAt(done, s.target, Observation{
			Vantage: who, At: at, OK: o.ok, Failure: o.failure, Latency: o.latency,
		})...)
		s.events = append(s.events, s.tr.TickAt(done)...)
		s.probes++
		wait := s.interval
		if !o.ok {
			wait = s.interval / 2
		}
		s.next[who] = at.Add(s.jitter(wait))
	}
}

func (s *sim) kinds(k EventKind) []Event {
	var out []Event
	for _, e := range s.events {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// healthy returns jittery normal latency around 20 ms (log-normal, sigma 0.3).
func (s *sim) healthy() outcome {
	return outcome{ok: true, latency: time.Duration(20e6 * math.Exp(0.3*s.rng.NormFloat64()))}
}

func labels(inc *Incident) []Label {
	var out []Label
	for _, c := range inc.Timeline {
		out = append(out, c.Label)
	}
	return out
}

func TestCleanCut(t *testing.T) {
	s := newSim(t, Config{}, "local", "a1", "a2")
	cut := t0.Add(30 * time.Minute)
	back := cut.Add(5 * time.Minute)
	s.run(t0.Add(50*time.Minute), func(v string, at time.Time) outcome {
		if !at.Before(cut) && at.Before(back) {
			return outcome{failure: probe.FailRefused, latency: 300 * time.Microsecond}
		}
		return s.healthy()
	})
	opens, closes := s.kinds(EventOpen), s.kinds(EventClose)
	if len(opens) != 1 || len(closes) != 1 {
		t.Fatalf("opens %d closes %d, want 1 and 1: %+v", len(opens), len(closes), s.events)
	}
	inc := closes[0].Incident
	delay := opens[0].At.Sub(cut)
	t.Logf("detection delay %s = %.2f intervals; labels %v; evidence %q", delay, float64(delay)/float64(s.interval), labels(inc), inc.Timeline[0].Evidence)
	if delay > 2*s.interval {
		t.Errorf("detection delay %s > 2 intervals", delay)
	}
	if got := labels(inc); len(got) != 1 || got[0] != LabelCleanCut {
		t.Errorf("labels %v, want [clean_cut]", got)
	}
	if len(inc.Vantages) != 3 || inc.Peak != Down || len(inc.Onsets) != 3 {
		t.Errorf("vantages %v onsets %v peak %v", inc.Vantages, inc.Onsets, inc.Peak)
	}
	for v, on := range inc.Onsets {
		if on.Before(cut) || on.After(cut.Add(s.interval+s.interval/5)) {
			t.Errorf("onset of %s %s after the cut", v, on.Sub(cut))
		}
	}
	if d := inc.End.Sub(back); d < 0 || d > 2*s.interval {
		t.Errorf("end %v is %s after the service came back", inc.End, d)
	}
	if d := inc.Start.Sub(cut); d < 0 || d > s.interval+s.interval/5 {
		t.Errorf("start %v is %s after the cut", inc.Start, d)
	}
}

func TestAttackThenRecoveringThenUp(t *testing.T) {
	s := newSim(t, Config{}, "local", "a1", "a2")
	attack := t0.Add(30 * time.Minute)
	mitigated := attack.Add(10 * time.Minute) // failures stop, latency still high
	clear := mitigated.Add(5 * time.Minute)
	s.run(t0.Add(60*time.Minute), func(v string, at time.Time) outcome {
		switch {
		case at.Before(attack) || !at.Before(clear):
			return s.healthy()
		case at.Before(mitigated):
			// Waves: 40 s of mostly timeouts, 30 s of slow answers.
			phase := at.Sub(attack) % (70 * time.Second)
			if phase < 40*time.Second && (v != "a2" || phase < 20*time.Second) && s.rng.Float64() < 0.85 {
				return outcome{failure: probe.FailTimeout, latency: 5 * time.Second}
			}
			return outcome{ok: true, latency: time.Duration(s.rng.Float64()*400+400) * time.Millisecond}
		default:
			return outcome{ok: true, latency: 150 * time.Millisecond}
		}
	})
	closes := s.kinds(EventClose)
	if len(s.kinds(EventOpen)) != 1 || len(closes) != 1 {
		t.Fatalf("opens %d closes %d, want 1 and 1", len(s.kinds(EventOpen)), len(closes))
	}
	inc := closes[0].Incident
	got := labels(inc)
	t.Logf("labels %v", got)
	for _, c := range inc.Timeline {
		t.Logf("%s %s %q", c.At.Sub(attack), c.Label, c.Evidence)
	}
	if got[len(got)-1] != LabelRecovering {
		t.Errorf("final label %s, want recovering", got[len(got)-1])
	}
	var sawAttack bool
	for _, c := range inc.Timeline {
		if c.Label == LabelAttack {
			sawAttack = true
			if c.At.Sub(attack) > 2*time.Minute {
				t.Errorf("attack pattern recognised only after %s", c.At.Sub(attack))
			}
		}
		if c.Label == LabelCleanCut {
			t.Errorf("attack misclassified as clean cut at %s", c.At.Sub(attack))
		}
		if c.Label == LabelRecovering && c.At.Before(mitigated) {
			t.Errorf("recovering at %s, before mitigation", c.At.Sub(attack))
		}
	}
	if !sawAttack {
		t.Errorf("no attack_pattern label")
	}
	// Degraded vantage points need 3 normal answers (hysteresis) to be up.
	if inc.End.Before(clear) || inc.End.After(clear.Add(4*s.interval)) {
		t.Errorf("end %s after clear, want within 4 intervals", inc.End.Sub(clear))
	}
}

func TestDegradedWithoutFailures(t *testing.T) {
	s := newSim(t, Config{}, "local", "a1")
	slow := t0.Add(20 * time.Minute)
	s.run(t0.Add(25*time.Minute), func(v string, at time.Time) outcome {
		if at.Before(slow) {
			return s.healthy()
		}
		return outcome{ok: true, latency: 120 * time.Millisecond}
	})
	opens := s.kinds(EventOpen)
	if len(opens) != 1 {
		t.Fatalf("opens %d, want 1", len(opens))
	}
	st := s.tr.Status(t0.Add(25 * time.Minute))[0]
	if st.State != Degraded || st.Incident == nil || st.Incident.Label != LabelDegraded {
		t.Fatalf("state %v incident %+v, want degraded", st.State, st.Incident)
	}
	if d := opens[0].At.Sub(slow); d > 4*s.interval {
		t.Errorf("degraded detected after %s, want within 4 intervals (3 slow answers)", d)
	}
}

func TestFlakyVantageNoAlarm(t *testing.T) {
	for _, n := range []int{2, 3} {
		names := []string{"local", "flaky", "a2"}[:n]
		s := newSim(t, Config{}, names...)
		s.run(t0.Add(6*time.Hour), func(v string, at time.Time) outcome {
			if v == "flaky" && s.rng.Float64() < 0.5 {
				return outcome{failure: probe.FailTimeout, latency: 5 * time.Second}
			}
			return s.healthy()
		})
		if opens := s.kinds(EventOpen); len(opens) != 0 {
			t.Errorf("%d vantage points, one flaky: %d incidents, want 0", n, len(opens))
		}
		downs := 0
		for _, e := range s.kinds(EventVantageState) {
			if e.Vantage == "flaky" && e.To == Down {
				downs++
			}
		}
		if downs == 0 {
			t.Errorf("flaky vantage never went down: the test does not exercise quorum")
		}
		t.Logf("%d vantage points: flaky went down %d times, %d incidents", n, downs, len(s.kinds(EventOpen)))
	}
}

// TestSimulatedDayNoFalseAlarms runs a day of healthy, jittery probes (8640
// per vantage point at 10 s, heavy-tailed latency, 1% random timeouts) and
// expects no incident.
func TestSimulatedDayNoFalseAlarms(t *testing.T) {
	s := newSim(t, Config{}, "local", "a1", "a2")
	s.run(t0.Add(24*time.Hour), func(v string, at time.Time) outcome {
		switch r := s.rng.Float64(); {
		case r < 0.01:
			return outcome{failure: probe.FailTimeout, latency: 5 * time.Second}
		case r < 0.03: // occasional slow answer (GC pause, retransmit)
			return outcome{ok: true, latency: time.Duration(100+s.rng.IntN(300)) * time.Millisecond}
		}
		return s.healthy()
	})
	vdown := 0
	for _, e := range s.kinds(EventVantageState) {
		if e.To == Down || e.To == Degraded {
			vdown++
		}
	}
	t.Logf("%d probes over 3 vantage points; %d vantage-level down/degraded transitions; %d incidents", s.probes, vdown, len(s.kinds(EventOpen)))
	if s.probes < 3*8640 {
		t.Errorf("only %d probes simulated", s.probes)
	}
	if n := len(s.kinds(EventOpen)); n != 0 {
		t.Errorf("%d false alarms in a healthy day, want 0: %+v", n, s.kinds(EventOpen)[0].Incident)
	}
}

// TestDetectionDelay cuts the service at many random phases and checks the
// worst detection delay stays within two probe intervals.
func TestDetectionDelay(t *testing.T) {
	var worst, sum time.Duration
	const trials = 100
	for i := range trials {
		s := newSim(t, Config{}, "local", "a1", "a2")
		s.rng = rand.New(rand.NewPCG(uint64(i), 7))
		cut := t0.Add(10*time.Minute + time.Duration(s.rng.Float64()*float64(s.interval)))
		s.run(cut.Add(time.Minute), func(v string, at time.Time) outcome {
			if at.Before(cut) {
				return s.healthy()
			}
			return outcome{failure: probe.FailRefused, latency: time.Millisecond}
		})
		opens := s.kinds(EventOpen)
		if len(opens) != 1 {
			t.Fatalf("trial %d: %d opens", i, len(opens))
		}
		d := opens[0].At.Sub(cut)
		sum += d
		worst = max(worst, d)
	}
	t.Logf("detection delay over %d clean cuts: mean %.2f, worst %.2f probe intervals", trials, float64(sum/trials)/1e10, float64(worst)/1e10)
	if worst > 2*10*time.Second {
		t.Errorf("worst detection delay %s > 2 intervals", worst)
	}
}

func TestStaleVantageLeavesQuorum(t *testing.T) {
	tr, _ := New(Config{})
	at := t0
	for i := range 30 {
		at = t0.Add(time.Duration(i) * 10 * time.Second)
		tr.ObserveAt(at, "site", Observation{Vantage: "a", At: at, OK: true, Latency: time.Millisecond})
		tr.ObserveAt(at, "site", Observation{Vantage: "b", At: at, OK: i < 10, Failure: probe.FailTimeout, Latency: time.Millisecond})
	}
	// b and a are both active: 1 of 2 down is no quorum.
	if st := tr.Status(at)[0]; st.State != Up {
		t.Fatalf("state %v, want up with one of two down", st.State)
	}
	// a goes silent: b alone is down, 1 of 1 > 50%.
	later := at.Add(40 * time.Second)
	tr.ObserveAt(later, "site", Observation{Vantage: "b", At: later, Failure: probe.FailTimeout, Latency: time.Millisecond})
	st := tr.Status(later)[0]
	if st.State != Down || !st.Vantages[0].Stale {
		t.Fatalf("state %v, a stale %v; want down with a stale", st.State, st.Vantages[0].Stale)
	}
}

func TestLateObservationsIgnoredForState(t *testing.T) {
	tr, _ := New(Config{})
	now := t0.Add(time.Hour)
	if ev := tr.ObserveAt(now, "site", Observation{Vantage: "a", At: now.Add(-time.Hour), Failure: probe.FailRefused}); ev != nil {
		t.Fatalf("hour-old observation produced events %v", ev)
	}
	tr.ObserveAt(now, "site", Observation{Vantage: "a", At: now, OK: true})
	if ev := tr.ObserveAt(now, "site", Observation{Vantage: "a", At: now.Add(-time.Second), Failure: probe.FailRefused}); ev != nil {
		t.Fatalf("out-of-order observation produced events %v", ev)
	}
}

func TestRestoreClosesWhenHealthy(t *testing.T) {
	tr, _ := New(Config{})
	tr.Restore(Incident{ID: "site-1", Target: "site", Start: t0, Detected: t0, Peak: Down, Label: LabelCleanCut,
		Timeline: []Classification{{At: t0, Label: LabelCleanCut}}})
	var closed *Incident
	for i := range 20 {
		at := t0.Add(time.Minute + time.Duration(i)*10*time.Second)
		for _, e := range tr.ObserveAt(at, "site", Observation{Vantage: "a", At: at, OK: true, Latency: time.Millisecond}) {
			if e.Kind == EventClose {
				closed = e.Incident
			}
		}
	}
	if closed == nil || closed.ID != "site-1" || closed.Label != LabelCleanCut {
		t.Fatalf("restored incident not closed as expected: %+v", closed)
	}
}

// TestCleanCutWithNoisyFastBaseline: a loopback-fast service (1 ms) whose
// latency jitters to 5-8 ms just before the cut (a busy machine) is still a
// clean cut: fast answers are no latency build-up. The return of service
// does not count as a partial failure, nor a lone timeout during it as a
// second failure cycle.
func TestCleanCutWithNoisyFastBaseline(t *testing.T) {
	s := newSim(t, Config{}, "local", "a1", "a2")
	noisy := t0.Add(29 * time.Minute)
	cut := t0.Add(30 * time.Minute)
	back := cut.Add(2 * time.Minute)
	okAfterBack := 0
	s.run(t0.Add(40*time.Minute), func(v string, at time.Time) outcome {
		switch {
		case at.Before(noisy):
			return outcome{ok: true, latency: time.Millisecond}
		case at.Before(cut):
			return outcome{ok: true, latency: time.Duration(5+s.rng.IntN(4)) * time.Millisecond}
		case at.Before(back):
			return outcome{failure: probe.FailRefused, latency: 100 * time.Microsecond}
		}
		if v == "local" {
			// One lone timeout while the service comes back: a blip, not
			// a second failure cycle.
			if okAfterBack++; okAfterBack == 2 {
				return outcome{failure: probe.FailTimeout, latency: 5 * time.Second}
			}
		}
		return outcome{ok: true, latency: time.Millisecond}
	})
	closes := s.kinds(EventClose)
	if len(closes) != 1 {
		t.Fatalf("closes %d", len(closes))
	}
	inc := closes[0].Incident
	if got := labels(inc); len(got) != 1 || got[0] != LabelCleanCut {
		t.Errorf("labels %v, want [clean_cut]; evidence %q", got, inc.Evidence)
	}
	for _, e := range inc.Evidence {
		if strings.Contains(e, "partial") {
			t.Errorf("recovery counted as partial failure: %q", inc.Evidence)
		}
	}
}
