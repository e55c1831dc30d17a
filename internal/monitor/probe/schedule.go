package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	mrand "math/rand/v2"
	"time"
)

// Schedule says how often a target is probed. The zero Schedule probes every
// DefaultInterval with DefaultJitter and retries after a failure at half the
// interval.
type Schedule struct {
	// Interval between probes. Default DefaultInterval (10 s).
	Interval time.Duration
	// Jitter is the fraction of Interval by which each wait is randomly
	// lengthened or shortened, and the spread of the first probe. Default 0.1.
	Jitter float64
	// Retry is the wait after a failed probe, so that a failure is confirmed
	// (or dismissed) quickly. Default Interval/2.
	Retry time.Duration
}

// Defaults for Schedule.
const (
	DefaultInterval = 10 * time.Second
	DefaultJitter   = 0.1
)

// WithDefaults returns s with zero fields set to their defaults.
func (s Schedule) WithDefaults() Schedule {
	if s.Interval <= 0 {
		s.Interval = DefaultInterval
	}
	if s.Jitter <= 0 {
		s.Jitter = DefaultJitter
	}
	if s.Jitter > 0.5 {
		s.Jitter = 0.5
	}
	if s.Retry <= 0 || s.Retry > s.Interval {
		s.Retry = s.Interval / 2
	}
	return s
}

// jittered returns d changed by a uniform random amount in ±jitter*d.
func jittered(d time.Duration, jitter float64) time.Duration {
	return d + time.Duration((mrand.Float64()*2-1)*jitter*float64(d))
}

// Loop probes with p on schedule s until ctx ends, passing every result to
// emit (from Loop's goroutine, one at a time). The first probe runs after a
// random delay of up to Jitter*Interval.
func Loop(ctx context.Context, p *Prober, s Schedule, emit func(Result)) {
	s = s.WithDefaults()
	t := time.NewTimer(time.Duration(mrand.Float64() * s.Jitter * float64(s.Interval)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := p.ProbeAt(ctx, time.Now())
		if ctx.Err() != nil {
			return
		}
		emit(r)
		wait := s.Interval
		if !r.OK {
			wait = s.Retry
		}
		t.Reset(jittered(wait, s.Jitter))
	}
}

// NewID returns a fresh result id for vantage: the name, a dash and 16
// random hex digits.
func NewID(vantage string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return vantage + "-" + hex.EncodeToString(b[:])
}
