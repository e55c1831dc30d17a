package admission

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestOutlierConsecutiveErrors(t *testing.T) {
	o, err := NewOutlier(OutlierConfig{ConsecutiveErrors: 3, BaseEjection: 10 * time.Second, MaxEjection: 25 * time.Second}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	step := func(failed bool) {
		now = now.Add(time.Millisecond)
		o.Observe(now, time.Millisecond, failed)
	}
	// Two failures, a success, two failures: never three in a row.
	for _, f := range []bool{true, true, false, true, true} {
		step(f)
	}
	if !o.Available(now) {
		t.Fatal("ejected without 3 consecutive failures")
	}
	step(true)
	if o.Available(now) {
		t.Fatal("not ejected after 3 consecutive failures")
	}
	ejectedAt := now
	if got := o.EjectedUntil(); got != ejectedAt.Add(10*time.Second) {
		t.Fatalf("ejected until %v, want +10s", got.Sub(ejectedAt))
	}
	// Answers arriving during the ejection are ignored.
	o.Observe(now.Add(time.Second), 0, true)
	if !o.Available(ejectedAt.Add(10 * time.Second)) {
		t.Fatal("still ejected after 10s")
	}
	// Second ejection soon after: 2x base. Third: capped at 25s.
	now = ejectedAt.Add(11 * time.Second)
	for range 3 {
		step(true)
	}
	if d := o.EjectedUntil().Sub(now); d != 20*time.Second {
		t.Fatalf("second ejection %v, want 20s", d)
	}
	now = now.Add(21 * time.Second)
	for range 3 {
		step(true)
	}
	if d := o.EjectedUntil().Sub(now); d != 25*time.Second {
		t.Fatalf("third ejection %v, want capped 25s", d)
	}
	// After calm periods (2 x MaxEjection) the multiplier steps back by 2: 1x base.
	now = o.EjectedUntil().Add(50 * time.Second)
	for range 3 {
		step(true)
	}
	if d := o.EjectedUntil().Sub(now); d != 20*time.Second {
		t.Fatalf("ejection after calm %v, want 20s (multiplier 3-2+1)", d)
	}
	if n := testutil.ToFloat64(o.ejErrors); n != 4 {
		t.Fatalf("ejections counter %v", n)
	}
}

func TestOutlierLatency(t *testing.T) {
	reg := prometheus.NewRegistry()
	o, err := NewOutlier(OutlierConfig{Name: "a", LatencyThreshold: 100 * time.Millisecond, LatencyMinSamples: 5, LatencyWeight: 0.5}, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for range 50 {
		now = now.Add(time.Millisecond)
		o.Observe(now, 50*time.Millisecond, false)
	}
	if !o.Available(now) {
		t.Fatal("ejected at normal latency")
	}
	for range 3 {
		now = now.Add(time.Millisecond)
		o.Observe(now, 400*time.Millisecond, false)
	}
	if o.Available(now) {
		t.Fatal("not ejected with moving average above threshold")
	}
	if n := testutil.ToFloat64(o.ejLatency); n != 1 {
		t.Fatalf("latency ejections %v", n)
	}
	if n, err := testutil.GatherAndCount(reg, "levee_admission_outlier_ejections_total", "levee_admission_outlier_ejected"); err != nil || n != 3 {
		t.Fatalf("metrics %d %v", n, err)
	}
}

func TestBreakerLifecycle(t *testing.T) {
	b, err := NewBreaker(BreakerConfig{Window: 10 * time.Second, MinRequests: 10, FailureRatio: 0.5,
		OpenTime: time.Second, MaxOpenTime: 3 * time.Second, HalfOpenProbes: 2}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	call := func(ok bool) bool {
		now = now.Add(time.Millisecond)
		if !b.Allow(now) {
			return false
		}
		b.Record(now, now, ok)
		return true
	}
	// 9 failures: below MinRequests.
	for range 9 {
		call(false)
	}
	if b.State() != Closed {
		t.Fatal("opened below MinRequests")
	}
	// A new window forgets them.
	now = now.Add(10 * time.Second)
	for i := range 10 {
		call(i%3 == 0) // 6 failures of 10: trips on the 10th answer
	}
	if b.State() != Open {
		t.Fatalf("state %v, want open", b.State())
	}
	if call(true) {
		t.Fatal("open breaker allowed a request")
	}
	// After OpenTime: half-open, two probes at a time.
	now = now.Add(time.Second)
	if !b.Allow(now) || !b.Allow(now) || b.Allow(now) {
		t.Fatal("half-open must allow exactly 2 concurrent probes")
	}
	if b.State() != HalfOpen {
		t.Fatalf("state %v", b.State())
	}
	b.Record(now, now, true)
	b.Record(now, now, false) // a failed probe reopens for 2x
	if b.State() != Open {
		t.Fatal("failed probe did not reopen")
	}
	now = now.Add(1999 * time.Millisecond)
	if b.Allow(now) {
		t.Fatal("reopened breaker allowed before 2s")
	}
	now = now.Add(time.Millisecond)
	if !call(true) || !call(true) {
		t.Fatal("probes refused after 2s")
	}
	if b.State() != Closed {
		t.Fatalf("state %v after 2 good probes, want closed", b.State())
	}
	if n := testutil.ToFloat64(b.trips); n != 2 {
		t.Fatalf("trips %v", n)
	}
	if n := testutil.ToFloat64(b.rejected); n != 3 {
		t.Fatalf("rejected %v", n)
	}
}

func TestBreakerOpenTimeCapped(t *testing.T) {
	b, _ := NewBreaker(BreakerConfig{MinRequests: 1, OpenTime: time.Second, MaxOpenTime: 3 * time.Second, HalfOpenProbes: 1}, Deps{})
	now := t0
	b.Allow(now)
	b.Record(now, now, false)
	for _, want := range []time.Duration{2 * time.Second, 3 * time.Second, 3 * time.Second} {
		now = b.openUntil
		if !b.Allow(now) {
			t.Fatal("no probe at end of open time")
		}
		b.Record(now, now, false)
		if got := b.openUntil.Sub(now); got != want {
			t.Fatalf("open for %v, want %v", got, want)
		}
	}
}

func TestHealthConfigValidate(t *testing.T) {
	for _, cfg := range []OutlierConfig{{ConsecutiveErrors: -1}, {BaseEjection: time.Minute, MaxEjection: time.Second}, {LatencyWeight: 2}} {
		if _, err := NewOutlier(cfg, Deps{}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	for _, cfg := range []BreakerConfig{{FailureRatio: 1.5}, {OpenTime: time.Minute, MaxOpenTime: time.Second}, {HalfOpenProbes: -1}} {
		if _, err := NewBreaker(cfg, Deps{}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func BenchmarkBreakerAllowRecord(b *testing.B) {
	br, _ := NewBreaker(BreakerConfig{}, Deps{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			now := time.Now()
			if br.Allow(now) {
				br.Record(now, now, true)
			}
		}
	})
}

func TestOutlierSetMaxEjectionPercent(t *testing.T) {
	cfgs := make([]OutlierConfig, 10)
	for i := range cfgs {
		cfgs[i] = OutlierConfig{Name: string(rune('a' + i)), ConsecutiveErrors: 2, BaseEjection: 10 * time.Second}
	}
	reg := prometheus.NewRegistry()
	s, err := NewOutlierSet(cfgs, 20, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	// Every target fails: only 20% (2 of 10) may be ejected at once.
	for range 3 {
		for i := range s.Len() {
			s.Target(i).Observe(now, 0, true)
		}
	}
	if n := s.Ejected(now); n != 2 {
		t.Fatalf("%d ejected, want 2", n)
	}
	if n := testutil.ToFloat64(s.Target(9).ejSkipped); n < 1 {
		t.Fatalf("skipped ejections of target j: %v", n)
	}
	// After the ejections end, others may take their turn.
	now = now.Add(10 * time.Second)
	for range 2 {
		s.Target(5).Observe(now, 0, true)
	}
	if s.Target(5).Available(now) || s.Ejected(now) != 1 {
		t.Fatalf("target f not ejected after the first two returned; ejected %d", s.Ejected(now))
	}
	// A single target may always be ejected (at least one).
	one, _ := NewOutlierSet(cfgs[:1], 10, Deps{})
	one.Target(0).Observe(t0, 0, true)
	one.Target(0).Observe(t0, 0, true)
	if one.Target(0).Available(t0) {
		t.Fatal("the only target was not ejected")
	}
	if _, err := NewOutlierSet(cfgs, 150, Deps{}); err == nil {
		t.Fatal("150% accepted")
	}
}

// RetryAfter tells a refused client the time until the next trial, which
// grows as reopenings double the open time.
func TestBreakerRetryAfter(t *testing.T) {
	b, err := NewBreaker(BreakerConfig{MinRequests: 2, FailureRatio: 1, OpenTime: 5 * time.Second, HalfOpenProbes: 1}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	if d := b.RetryAfter(now); d != 0 {
		t.Fatalf("closed: %v", d)
	}
	for range 2 {
		b.Allow(now)
		b.Record(now, now, false)
	}
	if d := b.RetryAfter(now.Add(time.Second)); d != 4*time.Second {
		t.Fatalf("open 1 s ago for 5 s: %v, want 4s", d)
	}
	// Half-open trial fails: reopened for 10 s.
	now = now.Add(5 * time.Second)
	if !b.Allow(now) {
		t.Fatal("no trial after the open time")
	}
	if d := b.RetryAfter(now); d != time.Second {
		t.Fatalf("half-open with its trial running: %v, want 1s", d)
	}
	b.Record(now, now, false)
	if d := b.RetryAfter(now); d != 10*time.Second {
		t.Fatalf("reopened: %v, want 10s", d)
	}
}

// Release frees a half-open trial slot without counting a success: a
// request that failed on the client's side says nothing about the upstream.
func TestBreakerReleaseDoesNotClose(t *testing.T) {
	b, err := NewBreaker(BreakerConfig{MinRequests: 2, FailureRatio: 1, OpenTime: time.Second, HalfOpenProbes: 1}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	now := t0
	for range 2 {
		b.Allow(now)
		b.Record(now, now, false)
	}
	now = now.Add(time.Second)
	if !b.Allow(now) {
		t.Fatal("no trial after the open time")
	}
	if b.Allow(now) {
		t.Fatal("a second trial while the first runs")
	}
	b.Release(now, now)
	if b.State() != HalfOpen {
		t.Fatalf("state %v after Release, want still half-open", b.State())
	}
	if !b.Allow(now) {
		t.Fatal("the released trial slot was not freed")
	}
	b.Record(now, now, true)
	if b.State() != Closed {
		t.Fatalf("state %v after a successful trial, want closed", b.State())
	}
}

// Answers to requests allowed before the breaker opened do not count as
// half-open trials: a long request still running from the closed state
// neither closes the breaker nor takes a trial's slot.
func TestBreakerIgnoresAnswersFromEarlierState(t *testing.T) {
	b, err := NewBreaker(BreakerConfig{MinRequests: 2, FailureRatio: 1, OpenTime: time.Second, HalfOpenProbes: 1}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	old := t0 // a long request allowed while closed
	if !b.Allow(old) {
		t.Fatal("closed breaker refused")
	}
	now := t0.Add(10 * time.Millisecond)
	for range 2 {
		b.Allow(now)
		b.Record(now, now, false)
	}
	if b.State() != Open {
		t.Fatalf("state %v, want open", b.State())
	}
	now = now.Add(time.Second)
	if !b.Allow(now) {
		t.Fatal("no trial after the open time")
	}
	// The old request answers successfully now: it is not the trial.
	b.Record(old, now, true)
	if b.State() != HalfOpen {
		t.Fatalf("state %v after an answer from before the trip, want still half-open", b.State())
	}
	if b.Allow(now) {
		t.Fatal("the old answer freed the trial's slot")
	}
	b.Record(now, now, true) // the trial itself
	if b.State() != Closed {
		t.Fatalf("state %v after the trial succeeded, want closed", b.State())
	}
}
