package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Class orders requests in the admission queue: a lower class is served
// first and shed last. The zero Class is Verified: always set it from the
// decision engine's verdict.
type Class uint8

// The classes, best first.
const (
	// Verified clients passed a challenge, carry a valid known-client cookie
	// with good history, or are allowlisted.
	Verified Class = iota
	// Normal is every client with no verdict either way.
	Normal
	// Suspect clients have bad signals that did not suffice to block them.
	Suspect
	// NumClasses is the number of classes.
	NumClasses = 3
)

var classNames = [NumClasses]string{"verified", "normal", "suspect"}

// String returns "verified", "normal" or "suspect".
func (c Class) String() string {
	if c < NumClasses {
		return classNames[c]
	}
	return fmt.Sprintf("class(%d)", uint8(c))
}

// Errors returned by Gate.Acquire. Each means the request must not go to the
// origin; answer it with 503 and Retry-After (see ShedResponse).
var (
	// ErrQueueFull: the queue was full of requests of the same or a better
	// class, or this request was pushed out of a full queue by a better one.
	ErrQueueFull = errors.New("admission: queue full")
	// ErrShed: the queue had been standing for longer than the interval and
	// this request waited longer than the delay target.
	ErrShed = errors.New("admission: shed by queue delay control")
	// ErrTimeout: the request waited MaxWait without getting a slot.
	ErrTimeout = errors.New("admission: queue wait timeout")
)

// GateConfig configures a Gate. Zero fields take the documented defaults;
// the zero value is the default configuration.
type GateConfig struct {
	// Name labels the upstream in metrics. Default "default".
	Name string `yaml:"name"`
	// MaxQueue bounds the number of waiting requests over all classes.
	// Default 1024.
	MaxQueue int `yaml:"max_queue"`
	// Target is the queue delay target: once the queue has stood for
	// Interval, waiters older than Target are shed. Default 5ms.
	Target time.Duration `yaml:"target"`
	// Interval is how long the queue may stay non-empty before it counts as
	// standing (overloaded). Default 100ms.
	Interval time.Duration `yaml:"interval"`
	// VerifiedTarget replaces Target for the Verified class: verified
	// clients are few and served first, so when one waits it is because the
	// whole gate is briefly busy, not because of a standing queue of its own.
	// Default MaxWait/2 (500ms with the default MaxWait), so that only a
	// stall of the whole gate, or verified demand above capacity, sheds
	// them.
	VerifiedTarget time.Duration `yaml:"verified_target"`
	// MaxWait bounds any wait in the queue. Default 1s.
	MaxWait time.Duration `yaml:"max_wait"`
	// RetryAfter is the Retry-After sent with shed responses, rounded up to
	// whole seconds. Default 1s.
	RetryAfter time.Duration `yaml:"retry_after"`
}

func (c *GateConfig) fill() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = 1024
	}
	if c.Target == 0 {
		c.Target = 5 * time.Millisecond
	}
	if c.Interval == 0 {
		c.Interval = 100 * time.Millisecond
	}
	if c.MaxWait == 0 {
		c.MaxWait = time.Second
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = time.Second
	}
	if c.VerifiedTarget == 0 {
		c.VerifiedTarget = max(c.MaxWait/2, c.Target)
	}
}

// WithDefaults returns c with its zero fields set to their defaults, as
// NewGate uses it (for validating a configuration before the gate exists).
func (c GateConfig) WithDefaults() GateConfig {
	c.fill()
	return c
}

// Validate reports the first invalid field.
func (c GateConfig) Validate() error {
	switch {
	case c.MaxQueue < 0:
		return fmt.Errorf("max_queue %d: must be >= 0", c.MaxQueue)
	case c.Target <= 0:
		return fmt.Errorf("target %v: must be > 0", c.Target)
	case c.Interval < c.Target:
		return fmt.Errorf("interval %v: must be >= target %v", c.Interval, c.Target)
	case c.MaxWait < c.Target:
		return fmt.Errorf("max_wait %v: must be >= target %v", c.MaxWait, c.Target)
	case c.VerifiedTarget < c.Target:
		return fmt.Errorf("verified_target %v: must be >= target %v", c.VerifiedTarget, c.Target)
	case c.RetryAfter < 0:
		return fmt.Errorf("retry_after %v: must be >= 0", c.RetryAfter)
	}
	return nil
}

// Gate admits requests to one upstream under its Limiter's limit.
//
// Acquire admits at once while fewer than Limit requests are in flight and
// nobody waits. Otherwise the request waits in its class's queue. A released
// slot goes to the best non-empty class. While the queue is young it is
// served oldest first; once it has stayed non-empty for Interval it counts as
// standing: every queue event then sheds the waiters older than Target
// (VerifiedTarget for the Verified class), from the Suspect class up, and
// each class is served newest first (adaptive LIFO), so admitted requests
// wait at most about Target while an overload lasts. A full queue pushes out the oldest waiter of the worst class below
// the newcomer's, or refuses the newcomer. No request waits longer than
// MaxWait.
//
// Use NewGate; the zero value is not usable. A Gate is safe for concurrent
// use.
type Gate struct {
	cfg   GateConfig
	lim   *Limiter
	m     *gateMetrics
	retry string

	mu            sync.Mutex
	inflight      int
	qlen          int
	nonEmptySince time.Time
	// overloaded is set once the queue stands (non-empty for Interval) and
	// cleared when the queue has then stayed empty for Interval: under a
	// steady overload, shedding every waiter older than Target empties the
	// queue for a moment, which must not restart the lenient first-come
	// first-served phase (measured: admitted waits of 40-55 ms in a
	// sawtooth at 2x capacity with a 5 ms target). Light traffic after an
	// overload is not shed for it: a free slot goes to a waiter even when
	// all of them are older than Target (see dispatch).
	overloaded bool
	emptySince time.Time
	last       time.Time // latest time given to Acquire or release
	queues     [NumClasses]waitList
	st         gateCounters

	pool sync.Pool // *waiter
}

// gateCounters are plain counters kept under Gate.mu and read at scrape.
type gateCounters struct {
	admittedNow    [NumClasses]uint64
	admittedQueued [NumClasses]uint64
	shed           [NumClasses][numShedReasons]uint64
}

type shedReason uint8

const (
	shedFull shedReason = iota
	shedDelay
	shedTimeout
	shedCanceled
	numShedReasons
)

// NewGate returns a Gate in front of lim.
func NewGate(cfg GateConfig, lim *Limiter, deps Deps) (*Gate, error) {
	cfg.fill()
	if lim == nil {
		return nil, fmt.Errorf("admission: gate %s: %w", cfg.Name, errLimiterNil)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admission: gate %s: %w", cfg.Name, err)
	}
	g := &Gate{cfg: cfg, lim: lim}
	g.retry = fmt.Sprint(int64((cfg.RetryAfter + time.Second - 1) / time.Second))
	g.pool.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return &waiter{ch: make(chan struct{}, 1), timer: t}
	}
	m, err := newGateMetrics(g, deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("admission: gate %s: %w", cfg.Name, err)
	}
	g.m = m
	return g, nil
}

// Limiter returns the gate's limiter.
func (g *Gate) Limiter() *Limiter { return g.lim }

// Ticket is an admitted request's slot. Call Done (or Cancel) exactly once.
// The zero Ticket is not admitted; Done on it does nothing.
type Ticket struct {
	g        *Gate
	start    time.Time
	inflight int
}

// Done releases the slot and feeds the limiter: now is when the origin's
// answer ended (or failed), ok=false marks an overload signal (see
// Limiter.OnSample).
func (t Ticket) Done(now time.Time, ok bool) {
	if t.g != nil {
		t.g.release(now, t.start, t.inflight, ok, true)
	}
}

// DoneFrom is Done for a request whose origin work started only at from,
// for example when the client finished uploading its body: the latency
// sample runs from the later of from and the grant to now, so a slow but
// legal upload does not read as a slow origin. A zero from is Done.
func (t Ticket) DoneFrom(from, now time.Time, ok bool) {
	if t.g != nil {
		t.g.release(now, later(t.start, from), t.inflight, ok, true)
	}
}

// DoneWithoutLatency is Done for an answer whose latency says nothing about
// the origin (a request body that was not read to its end: the time
// includes the client's upload). An overload signal (ok=false) still
// counts; a success adds no sample.
func (t Ticket) DoneWithoutLatency(now time.Time, ok bool) {
	if t.g != nil {
		t.g.release(now, t.start, t.inflight, ok, !ok)
	}
}

// Cancel releases the slot without a latency sample, for a request that
// never reached the origin.
func (t Ticket) Cancel(now time.Time) {
	if t.g != nil {
		t.g.release(now, t.start, t.inflight, true, false)
	}
}

// Start returns when the slot was granted.
func (t Ticket) Start() time.Time { return t.start }

type waitState uint8

const (
	waiting waitState = iota
	granted
	shed
)

type waiter struct {
	prev, next *waiter
	class      Class
	state      waitState
	reason     shedReason
	enq        time.Time
	start      time.Time
	inflight   int
	ch         chan struct{}
	timer      *time.Timer
}

// waitList is an intrusive doubly linked list, oldest at head.
type waitList struct {
	head, tail *waiter
	n          int
}

func (l *waitList) pushBack(w *waiter) {
	w.prev, w.next = l.tail, nil
	if l.tail != nil {
		l.tail.next = w
	} else {
		l.head = w
	}
	l.tail = w
	l.n++
}

func (l *waitList) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		l.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		l.tail = w.prev
	}
	w.prev, w.next = nil, nil
	l.n--
}

// Acquire asks for a slot at time now. It returns at once when a slot is
// free; otherwise it waits until it gets one, is shed (ErrQueueFull,
// ErrShed), waits MaxWait (ErrTimeout), or ctx ends (ctx.Err()). Classes
// beyond Suspect count as Suspect.
func (g *Gate) Acquire(ctx context.Context, now time.Time, class Class) (Ticket, error) {
	if class >= NumClasses {
		class = Suspect
	}
	g.mu.Lock()
	if now.After(g.last) {
		g.last = now
	}
	if g.qlen == 0 && g.inflight < g.lim.Limit() {
		g.inflight++
		t := Ticket{g: g, start: now, inflight: g.inflight}
		g.st.admittedNow[class]++
		g.mu.Unlock()
		return t, nil
	}
	g.shedStale(now)
	if g.qlen >= g.cfg.MaxQueue {
		victim := g.worstBelow(class)
		if victim == nil {
			g.st.shed[class][shedFull]++
			g.mu.Unlock()
			return Ticket{}, ErrQueueFull
		}
		g.drop(victim, shedFull)
	}
	w := g.pool.Get().(*waiter)
	w.class, w.state, w.enq = class, waiting, now
	if g.qlen == 0 {
		g.nonEmptySince = now
		if g.overloaded && now.Sub(g.emptySince) >= g.cfg.Interval {
			g.overloaded = false
		}
	}
	g.queues[class].pushBack(w)
	g.qlen++
	// A slot may be free with an empty queue only transiently (limit raised
	// since the last release); hand it out now rather than waiting.
	g.dispatch(now)
	g.mu.Unlock()

	w.timer.Reset(g.cfg.MaxWait)
	var err error
	select {
	case <-w.ch:
	case <-ctx.Done():
		err = ctx.Err()
	case <-w.timer.C:
		err = ErrTimeout
	}
	w.timer.Stop()
	if err != nil {
		g.mu.Lock()
		if w.state == waiting {
			g.queues[class].remove(w)
			g.qlen--
			if g.qlen == 0 {
				// The gate's clock is its callers': the best estimate of
				// now is the last time it was given, or the end of this
				// waiter's MaxWait.
				g.emptySince = g.last
				if err == ErrTimeout {
					g.emptySince = later(g.emptySince, w.enq.Add(g.cfg.MaxWait))
				}
			}
			reason := shedTimeout
			if err != ErrTimeout {
				reason = shedCanceled
			}
			g.st.shed[class][reason]++
			g.mu.Unlock()
			g.pool.Put(w)
			return Ticket{}, err
		}
		g.mu.Unlock()
		<-w.ch // the decision was made concurrently; it is in the channel
	}
	var t Ticket
	switch w.state {
	case granted:
		t = Ticket{g: g, start: w.start, inflight: w.inflight}
		g.m.wait.Observe(w.start.Sub(w.enq).Seconds())
		if err != nil && err != ErrTimeout {
			// Granted while the caller gave up: give the slot back.
			t.Cancel(w.start)
			t = Ticket{}
		} else {
			err = nil
		}
	case shed:
		if w.reason == shedFull {
			err = ErrQueueFull
		} else {
			err = ErrShed
		}
	}
	g.pool.Put(w)
	return t, err
}

// worstBelow returns the oldest waiter of the worst class worse than c.
func (g *Gate) worstBelow(c Class) *waiter {
	for k := Class(NumClasses - 1); k > c; k-- {
		if g.queues[k].head != nil {
			return g.queues[k].head
		}
	}
	return nil
}

// drop sheds a queued waiter. Called with g.mu held.
func (g *Gate) drop(w *waiter, reason shedReason) {
	g.queues[w.class].remove(w)
	g.qlen--
	w.state, w.reason = shed, reason
	g.st.shed[w.class][reason]++
	w.ch <- struct{}{}
}

// standing reports whether the queue is standing: non-empty now, and
// non-empty for Interval or already standing before and empty for less
// than Interval since. Called with g.mu held.
func (g *Gate) standing(now time.Time) bool {
	if g.qlen == 0 {
		return false
	}
	if !g.overloaded && now.Sub(g.nonEmptySince) >= g.cfg.Interval {
		g.overloaded = true
	}
	return g.overloaded
}

// shedStale drops, while the queue stands, every waiter older than Target
// (VerifiedTarget for Verified), worst class first. Called with g.mu held.
func (g *Gate) shedStale(now time.Time) {
	if !g.standing(now) {
		return
	}
	for c := Class(NumClasses - 1); ; c-- {
		q := &g.queues[c]
		target := g.target(c)
		for q.head != nil && now.Sub(q.head.enq) > target {
			g.drop(q.head, shedDelay)
		}
		if c == 0 {
			break
		}
	}
	if g.qlen == 0 {
		g.emptySince = now
	}
}

// dispatch hands free slots to waiters, best class first. Called with g.mu
// held.
func (g *Gate) dispatch(now time.Time) {
	limit := g.lim.Limit()
	if g.inflight >= limit || g.qlen == 0 {
		return
	}
	if !g.standing(now) {
		// Young queue: oldest first, best class first.
		for c := Class(0); c < NumClasses && g.inflight < limit; c++ {
			q := &g.queues[c]
			for q.n > 0 && g.inflight < limit {
				g.grant(now, q.head)
			}
		}
	} else {
		// Standing queue: newest first, best class first, among the
		// waiters still within their class's target; shedStale then
		// drops the rest. When every waiter is older than its target, the
		// newest of the best class still gets the slot rather than leaving
		// the origin idle until the next arrival (light traffic after an
		// overload, or a slow origin with few waiters).
		for g.inflight < limit && g.qlen > 0 {
			var pick *waiter
			for c := Class(0); c < NumClasses; c++ {
				if w := g.queues[c].tail; w != nil && now.Sub(w.enq) <= g.target(c) {
					pick = w
					break
				}
			}
			if pick == nil {
				for c := Class(0); c < NumClasses && pick == nil; c++ {
					pick = g.queues[c].tail
				}
			}
			g.grant(now, pick)
		}
	}
	if g.qlen == 0 {
		g.emptySince = now
	}
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// grant gives w a slot. Called with g.mu held.
func (g *Gate) grant(now time.Time, w *waiter) {
	g.queues[w.class].remove(w)
	g.qlen--
	g.inflight++
	w.state, w.start, w.inflight = granted, now, g.inflight
	g.st.admittedQueued[w.class]++
	w.ch <- struct{}{}
}

// target is the queue delay target of class c.
func (g *Gate) target(c Class) time.Duration {
	if c == Verified {
		return g.cfg.VerifiedTarget
	}
	return g.cfg.Target
}

func (g *Gate) release(now, start time.Time, inflight int, ok, sample bool) {
	if sample {
		g.lim.OnSample(now, now.Sub(start), inflight, ok)
	}
	g.mu.Lock()
	if now.After(g.last) {
		g.last = now
	}
	g.inflight--
	g.dispatch(now)
	g.shedStale(now)
	g.mu.Unlock()
}

// Stats is a snapshot of a Gate (a plain value).
type Stats struct {
	Limit, InFlight int
	Queued          [NumClasses]int
	// OldestWait is the age of the oldest waiter at the time given to
	// StatsAt (the standing queue delay), 0 with an empty queue.
	OldestWait     time.Duration
	AdmittedNow    [NumClasses]uint64
	AdmittedQueued [NumClasses]uint64
	// Shed counts refusals by class: queue full, delay control, MaxWait
	// timeout, caller canceled.
	ShedFull, ShedDelay, ShedTimeout, ShedCanceled [NumClasses]uint64
}

// StatsAt returns a snapshot.
func (g *Gate) StatsAt(now time.Time) Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := Stats{Limit: g.lim.Limit(), InFlight: g.inflight,
		AdmittedNow: g.st.admittedNow, AdmittedQueued: g.st.admittedQueued}
	for c := range NumClasses {
		q := &g.queues[c]
		s.Queued[c] = q.n
		if q.head != nil && now.Sub(q.head.enq) > s.OldestWait {
			s.OldestWait = now.Sub(q.head.enq)
		}
		s.ShedFull[c] = g.st.shed[c][shedFull]
		s.ShedDelay[c] = g.st.shed[c][shedDelay]
		s.ShedTimeout[c] = g.st.shed[c][shedTimeout]
		s.ShedCanceled[c] = g.st.shed[c][shedCanceled]
	}
	return s
}
