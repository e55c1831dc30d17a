package admission

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OutlierConfig configures passive outlier detection for one upstream
// target. Zero fields take the documented defaults; the zero value is the
// default configuration.
type OutlierConfig struct {
	// Name labels the target in metrics and logs. Default "default".
	Name string `yaml:"name"`
	// ConsecutiveErrors ejects the target after this many failures in a row
	// (5xx answers, connect errors, timeouts). Default 5.
	ConsecutiveErrors int `yaml:"consecutive_errors"`
	// BaseEjection is the first ejection's length; the n-th ejection in a
	// row lasts n*BaseEjection. Default 30s.
	BaseEjection time.Duration `yaml:"base_ejection"`
	// MaxEjection caps an ejection's length; after a MaxEjection without an
	// ejection the multiplier steps back by one. Default 300s.
	MaxEjection time.Duration `yaml:"max_ejection"`
	// LatencyThreshold ejects the target when the moving average of its
	// successful answers' latency exceeds it. Zero disables the latency
	// check. Default 0.
	LatencyThreshold time.Duration `yaml:"latency_threshold"`
	// LatencyMinSamples is the number of samples the moving average needs
	// before the latency check applies. Default 20.
	LatencyMinSamples int `yaml:"latency_min_samples"`
	// LatencyWeight is the weight of a new sample in the moving average, in
	// (0,1]. Default 0.1.
	LatencyWeight float64 `yaml:"latency_weight"`
}

func (c *OutlierConfig) fill() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.ConsecutiveErrors == 0 {
		c.ConsecutiveErrors = 5
	}
	if c.BaseEjection == 0 {
		c.BaseEjection = 30 * time.Second
	}
	if c.MaxEjection == 0 {
		c.MaxEjection = 300 * time.Second
	}
	if c.LatencyMinSamples == 0 {
		c.LatencyMinSamples = 20
	}
	if c.LatencyWeight == 0 {
		c.LatencyWeight = 0.1
	}
}

// Validate reports the first invalid field.
func (c OutlierConfig) Validate() error {
	switch {
	case c.ConsecutiveErrors < 1:
		return fmt.Errorf("consecutive_errors %d: must be >= 1", c.ConsecutiveErrors)
	case c.BaseEjection <= 0:
		return fmt.Errorf("base_ejection %v: must be > 0", c.BaseEjection)
	case c.MaxEjection < c.BaseEjection:
		return fmt.Errorf("max_ejection %v: must be >= base_ejection %v", c.MaxEjection, c.BaseEjection)
	case c.LatencyThreshold < 0:
		return fmt.Errorf("latency_threshold %v: must be >= 0", c.LatencyThreshold)
	case c.LatencyMinSamples < 1:
		return fmt.Errorf("latency_min_samples %d: must be >= 1", c.LatencyMinSamples)
	case !(c.LatencyWeight > 0 && c.LatencyWeight <= 1):
		return fmt.Errorf("latency_weight %v: must be within (0, 1]", c.LatencyWeight)
	}
	return nil
}

// Outlier tracks one upstream target's answers and ejects it (Available
// returns false) after ConsecutiveErrors failures in a row or when its
// moving-average latency exceeds LatencyThreshold. The n-th ejection without
// a calm MaxEjection in between lasts n*BaseEjection, at most MaxEjection.
// After an ejection the target starts with a clean record.
//
// Use NewOutlier; the zero value is not usable. An Outlier is safe for
// concurrent use; Available is a single atomic load.
type Outlier struct {
	cfg   OutlierConfig
	log   *slog.Logger
	until atomic.Int64 // ejected until, Unix ns; 0 if never

	mu        sync.Mutex
	consec    int
	ewma      float64 // ns
	n         int
	mult      int
	lastEject time.Time

	ejErrors, ejLatency, ejSkipped prometheus.Counter
	set                            *OutlierSet // nil if alone
	regs                           registration
}

// Unregister removes the Outlier's metrics from the Registerer it was built
// with (before building its replacement on reload).
func (o *Outlier) Unregister() { o.regs.unregister() }

// NewOutlier returns an Outlier with the target available.
func NewOutlier(cfg OutlierConfig, deps Deps) (*Outlier, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admission: outlier %s: %w", cfg.Name, err)
	}
	o := &Outlier{cfg: cfg, log: deps.logger()}
	cl := prometheus.Labels{"upstream": cfg.Name}
	ej := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_admission_outlier_ejections_total",
		Help: "Times the upstream target was ejected by passive outlier detection, by reason.", ConstLabels: cl}, []string{"reason"})
	o.ejErrors, o.ejLatency = ej.WithLabelValues("errors"), ej.WithLabelValues("latency")
	o.ejSkipped = prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_admission_outlier_ejections_skipped_total",
		Help: "Ejections not done because the pool already had its maximum of ejected targets.", ConstLabels: cl})
	if deps.Registerer != nil {
		ejected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "levee_admission_outlier_ejected",
			Help: "1 while the upstream target is ejected.", ConstLabels: cl},
			func() float64 {
				if o.Available(time.Now()) {
					return 0
				}
				return 1
			})
		if err := o.regs.register(deps.Registerer, ej, ejected, o.ejSkipped); err != nil {
			return nil, fmt.Errorf("admission: outlier %s: metrics: %w", cfg.Name, err)
		}
	}
	return o, nil
}

// Available reports whether the target may get requests at now.
func (o *Outlier) Available(now time.Time) bool {
	return now.UnixNano() >= o.until.Load()
}

// EjectedUntil returns the end of the current or last ejection (zero if
// never ejected).
func (o *Outlier) EjectedUntil() time.Time {
	u := o.until.Load()
	if u == 0 {
		return time.Time{}
	}
	return time.Unix(0, u)
}

// Observe records one answer: its latency and whether it failed (5xx,
// connect error, timeout). A negative rtt records the outcome without a
// latency sample (for requests whose time includes the client's upload).
func (o *Outlier) Observe(now time.Time, rtt time.Duration, failed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.Available(now) {
		return // answers to requests sent before the ejection
	}
	if failed {
		o.consec++
		if o.consec >= o.cfg.ConsecutiveErrors {
			o.eject(now, "errors")
		}
		return
	}
	o.consec = 0
	if o.cfg.LatencyThreshold <= 0 || rtt < 0 {
		return
	}
	if o.n == 0 {
		o.ewma = float64(rtt)
	} else {
		o.ewma += o.cfg.LatencyWeight * (float64(rtt) - o.ewma)
	}
	o.n++
	if o.n >= o.cfg.LatencyMinSamples && o.ewma > float64(o.cfg.LatencyThreshold) {
		o.eject(now, "latency")
	}
}

func (o *Outlier) eject(now time.Time, reason string) {
	if o.set != nil && !o.set.mayEject(now, o) {
		o.consec, o.ewma, o.n = 0, 0, 0
		o.ejSkipped.Inc()
		return
	}
	if o.set != nil {
		defer o.set.mu.Unlock() // taken by mayEject, held until until is stored
	}
	// Calm periods since the last ejection step the multiplier back.
	if !o.lastEject.IsZero() {
		calm := now.Sub(time.Unix(0, o.until.Load()))
		for o.mult > 0 && calm >= o.cfg.MaxEjection {
			o.mult--
			calm -= o.cfg.MaxEjection
		}
	}
	o.mult++
	d := time.Duration(o.mult) * o.cfg.BaseEjection
	if d > o.cfg.MaxEjection || d <= 0 {
		d = o.cfg.MaxEjection
	}
	o.until.Store(now.Add(d).UnixNano())
	o.lastEject = now
	o.consec, o.ewma, o.n = 0, 0, 0
	if reason == "errors" {
		o.ejErrors.Inc()
	} else {
		o.ejLatency.Inc()
	}
	o.log.Warn("upstream ejected", "upstream", o.cfg.Name, "reason", reason, "for", d)
}

// BreakerState is a circuit breaker's state; the zero value is Closed.
type BreakerState int32

// The states.
const (
	Closed BreakerState = iota
	Open
	HalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int32(s))
}

// BreakerConfig configures a Breaker. Zero fields take the documented
// defaults; the zero value is the default configuration.
type BreakerConfig struct {
	// Name labels the upstream in metrics and logs. Default "default".
	Name string `yaml:"name"`
	// Window is the counting window of the closed state. Default 10s.
	Window time.Duration `yaml:"window"`
	// MinRequests is the number of answers a window needs before it can
	// trip the breaker. Default 20.
	MinRequests int `yaml:"min_requests"`
	// FailureRatio trips the breaker when this fraction of a window's
	// answers failed, in (0,1]. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// OpenTime is how long the breaker first stays open; each reopening
	// from half-open doubles it, up to MaxOpenTime. Default 5s.
	OpenTime time.Duration `yaml:"open_time"`
	// MaxOpenTime caps OpenTime's doubling. Default 60s.
	MaxOpenTime time.Duration `yaml:"max_open_time"`
	// HalfOpenProbes is the number of trial requests let through at once
	// in the half-open state; that many successes close the breaker.
	// Default 3.
	HalfOpenProbes int `yaml:"half_open_probes"`
}

func (c *BreakerConfig) fill() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	if c.MinRequests == 0 {
		c.MinRequests = 20
	}
	if c.FailureRatio == 0 {
		c.FailureRatio = 0.5
	}
	if c.OpenTime == 0 {
		c.OpenTime = 5 * time.Second
	}
	if c.MaxOpenTime == 0 {
		c.MaxOpenTime = 60 * time.Second
	}
	if c.HalfOpenProbes == 0 {
		c.HalfOpenProbes = 3
	}
}

// Validate reports the first invalid field.
func (c BreakerConfig) Validate() error {
	switch {
	case c.Window <= 0:
		return fmt.Errorf("window %v: must be > 0", c.Window)
	case c.MinRequests < 1:
		return fmt.Errorf("min_requests %d: must be >= 1", c.MinRequests)
	case !(c.FailureRatio > 0 && c.FailureRatio <= 1):
		return fmt.Errorf("failure_ratio %v: must be within (0, 1]", c.FailureRatio)
	case c.OpenTime <= 0:
		return fmt.Errorf("open_time %v: must be > 0", c.OpenTime)
	case c.MaxOpenTime < c.OpenTime:
		return fmt.Errorf("max_open_time %v: must be >= open_time %v", c.MaxOpenTime, c.OpenTime)
	case c.HalfOpenProbes < 1:
		return fmt.Errorf("half_open_probes %d: must be >= 1", c.HalfOpenProbes)
	}
	return nil
}

// Breaker is a circuit breaker for one upstream. Closed, it lets everything
// through and counts answers per Window; when at least MinRequests answers
// of a window include FailureRatio failures it opens. Open, it refuses
// everything for OpenTime (doubling on each reopening), then turns half-open:
// HalfOpenProbes trial requests at a time go through; one failure reopens
// it, HalfOpenProbes successes close it.
//
// Use NewBreaker; the zero value is not usable. A Breaker is safe for
// concurrent use.
type Breaker struct {
	cfg   BreakerConfig
	log   *slog.Logger
	state atomic.Int32

	mu        sync.Mutex
	winStart  time.Time
	total     int
	failures  int
	openUntil time.Time
	openFor   time.Duration
	probes    int // in flight, half-open
	successes int // half-open
	// since is when the state last changed: answers to requests allowed
	// before it belong to an earlier state and are ignored.
	since time.Time

	trips, rejected prometheus.Counter
	regs            registration
}

// Unregister removes the Breaker's metrics from the Registerer it was built
// with (before building its replacement on reload).
func (b *Breaker) Unregister() { b.regs.unregister() }

// NewBreaker returns a closed Breaker.
func NewBreaker(cfg BreakerConfig, deps Deps) (*Breaker, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admission: breaker %s: %w", cfg.Name, err)
	}
	b := &Breaker{cfg: cfg, log: deps.logger(), openFor: cfg.OpenTime}
	cl := prometheus.Labels{"upstream": cfg.Name}
	b.trips = prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_admission_breaker_trips_total",
		Help: "Times the upstream's circuit breaker opened.", ConstLabels: cl})
	b.rejected = prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_admission_breaker_rejected_total",
		Help: "Requests refused because the upstream's circuit breaker was open.", ConstLabels: cl})
	if deps.Registerer != nil {
		st := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "levee_admission_breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 open, 2 half-open.", ConstLabels: cl},
			func() float64 { return float64(b.State()) })
		if err := b.regs.register(deps.Registerer, b.trips, b.rejected, st); err != nil {
			return nil, fmt.Errorf("admission: breaker %s: metrics: %w", cfg.Name, err)
		}
	}
	return b, nil
}

// State returns the current state (an open breaker whose time is up shows as
// open until the next Allow).
func (b *Breaker) State() BreakerState { return BreakerState(b.state.Load()) }

// Allow reports whether a request may go to the upstream at now. Every
// allowed request must be followed by exactly one Record (or Release).
func (b *Breaker) Allow(now time.Time) bool {
	if b.state.Load() == int32(Closed) {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch BreakerState(b.state.Load()) {
	case Closed:
		return true
	case Open:
		if now.Before(b.openUntil) {
			b.rejected.Inc()
			return false
		}
		b.state.Store(int32(HalfOpen))
		b.probes, b.successes = 0, 0
		b.since = now
		b.log.Info("circuit breaker half-open", "upstream", b.cfg.Name)
	}
	if b.probes >= b.cfg.HalfOpenProbes {
		b.rejected.Inc()
		return false
	}
	b.probes++
	return true
}

// Release ends a request allowed at allowed whose outcome says nothing
// about the upstream (the client failed first), instead of Record: a
// half-open breaker frees the trial slot without counting a success.
func (b *Breaker) Release(allowed, now time.Time) {
	if b.state.Load() == int32(Closed) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if BreakerState(b.state.Load()) == HalfOpen && !allowed.Before(b.since) && b.probes > 0 {
		b.probes--
	}
}

// RetryAfter returns how long a client refused at now should wait: until
// the breaker turns half-open, or a second while its trial requests run.
// Zero when it is closed.
func (b *Breaker) RetryAfter(now time.Time) time.Duration {
	if b.state.Load() == int32(Closed) {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch BreakerState(b.state.Load()) {
	case Open:
		if d := b.openUntil.Sub(now); d > 0 {
			return d
		}
		return time.Second
	case HalfOpen:
		return time.Second
	}
	return 0
}

// Record records at now the answer to a request Allow let through at
// allowed (the time given to that Allow call). Answers to requests allowed
// before the breaker's last change of state are ignored: a request still
// running from before the breaker opened must not count as a half-open
// trial.
func (b *Breaker) Record(allowed, now time.Time, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if allowed.Before(b.since) {
		// Allowed in an earlier state: a trial's slot and verdict belong
		// to the requests the current state let through.
		return
	}
	switch BreakerState(b.state.Load()) {
	case Closed:
		if now.Sub(b.winStart) >= b.cfg.Window {
			b.winStart, b.total, b.failures = now, 0, 0
		}
		b.total++
		if !ok {
			b.failures++
		}
		if b.total >= b.cfg.MinRequests && float64(b.failures) >= b.cfg.FailureRatio*float64(b.total) {
			b.open(now, b.cfg.OpenTime)
		}
	case HalfOpen:
		if b.probes > 0 {
			b.probes--
		}
		if !ok {
			b.open(now, min(2*b.openFor, b.cfg.MaxOpenTime))
			return
		}
		b.successes++
		if b.successes >= b.cfg.HalfOpenProbes {
			b.state.Store(int32(Closed))
			b.since = now
			b.winStart, b.total, b.failures = now, 0, 0
			b.openFor = b.cfg.OpenTime
			b.log.Info("circuit breaker closed", "upstream", b.cfg.Name)
		}
	case Open:
		// Answers to requests allowed before the breaker opened.
	}
}

func (b *Breaker) open(now time.Time, d time.Duration) {
	b.state.Store(int32(Open))
	b.since = now
	b.openFor = d
	b.openUntil = now.Add(d)
	b.trips.Inc()
	b.log.Warn("circuit breaker open", "upstream", b.cfg.Name, "for", d)
}

// OutlierSet groups the Outliers of one pool's targets so that at most
// MaxEjectionPercent of them, but always at least one, are ejected at the
// same time (as Envoy's max_ejection_percent): a pool-wide problem, or an
// overload that slows every target, must not eject the whole pool.
//
// Use NewOutlierSet; the zero value is not usable. An OutlierSet is safe for
// concurrent use.
type OutlierSet struct {
	targets    []*Outlier
	maxEjected int
	mu         sync.Mutex // serializes ejection decisions
}

// NewOutlierSet returns Outliers for the targets described by cfgs (their
// Names must differ when deps.Registerer is set). maxEjectionPercent is in
// [0, 100]; 0 means the default 10.
func NewOutlierSet(cfgs []OutlierConfig, maxEjectionPercent int, deps Deps) (*OutlierSet, error) {
	if maxEjectionPercent == 0 {
		maxEjectionPercent = 10
	}
	if maxEjectionPercent < 0 || maxEjectionPercent > 100 {
		return nil, fmt.Errorf("admission: outlier set: max_ejection_percent %d: must be within [0, 100]", maxEjectionPercent)
	}
	s := &OutlierSet{maxEjected: max(1, len(cfgs)*maxEjectionPercent/100)}
	for _, c := range cfgs {
		o, err := NewOutlier(c, deps)
		if err != nil {
			return nil, err
		}
		o.set = s
		s.targets = append(s.targets, o)
	}
	return s, nil
}

// Len returns the number of targets.
func (s *OutlierSet) Len() int { return len(s.targets) }

// Target returns the i-th target's Outlier.
func (s *OutlierSet) Target(i int) *Outlier { return s.targets[i] }

// Ejected returns the number of targets ejected at now.
func (s *OutlierSet) Ejected(now time.Time) int {
	n := 0
	for _, o := range s.targets {
		if !o.Available(now) {
			n++
		}
	}
	return n
}

// Unregister removes every target's metrics.
func (s *OutlierSet) Unregister() {
	for _, o := range s.targets {
		o.Unregister()
	}
}

// mayEject reports whether o may be ejected now. On true, s.mu stays locked
// until the caller has stored the ejection.
func (s *OutlierSet) mayEject(now time.Time, o *Outlier) bool {
	s.mu.Lock()
	if s.Ejected(now) < s.maxEjected {
		return true
	}
	s.mu.Unlock()
	return false
}
