package admission

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// LimiterConfig configures a Limiter. Zero fields take the documented
// defaults; the zero value is the default configuration.
type LimiterConfig struct {
	// Name labels the upstream in metrics. Default "default".
	Name string `yaml:"name"`
	// InitialLimit is the limit before any sample. Default 20, moved into
	// [MinLimit, MaxLimit].
	InitialLimit int `yaml:"initial_limit"`
	// MinLimit is the lowest limit, in requests in flight. Default 2.
	MinLimit int `yaml:"min_limit"`
	// MaxLimit is the highest limit. Default 1000.
	MaxLimit int `yaml:"max_limit"`
	// Window is the sample window after which the limit is recomputed.
	// Default 100ms.
	Window time.Duration `yaml:"window"`
	// MinWindowSamples is the number of successful samples a window needs
	// before it ends; a window with fewer is extended. Default 10.
	MinWindowSamples int `yaml:"min_window_samples"`
	// Buffer is the latency the origin may add above its minimum before the
	// limit shrinks, as a fraction of the minimum. Default 0.1 (Envoy's
	// default).
	Buffer float64 `yaml:"buffer"`
	// Headroom scales the sqrt(limit) requests added to the limit at every
	// update: a small standing queue at the origin so its workers never idle
	// while the next request is on its way. 1 is Envoy's choice; smaller
	// keeps origin latency closer to its minimum. Default 0.5.
	Headroom float64 `yaml:"headroom"`
	// Smoothing weights a new limit against the old one, in (0,1].
	// Default 0.2.
	Smoothing float64 `yaml:"smoothing"`
	// Backoff multiplies the limit after a window with overload signals
	// (samples with ok=false). Default 0.9.
	Backoff float64 `yaml:"backoff"`
	// Percentile is the latency percentile of a window compared with the
	// minimum, in (0,1). Behind an origin that queues requests first come
	// first served, the requests beyond its workers wait while the others
	// do not: until more than half of them wait, the median does not move,
	// so a median-based limit settles where half of the requests queue
	// inside the origin. The 75th percentile sees a quarter waiting and
	// still ignores a tenth of the requests being slow for reasons of
	// their own (a slow endpoint, a pause). Envoy uses the median. Default
	// 0.75.
	Percentile float64 `yaml:"percentile"`
	// ProbeInterval is the time between minimum-latency probes. During a
	// probe the limit is halved (but not below MinLimit) for one window and
	// the window's latency becomes the new minimum, so a permanently slower
	// origin is re-learned. Default 30s; jittered by up to 10%;
	// negative disables probing.
	ProbeInterval time.Duration `yaml:"probe_interval"`
}

func (c *LimiterConfig) fill() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.MinLimit == 0 {
		c.MinLimit = 2
	}
	if c.MaxLimit == 0 {
		c.MaxLimit = 1000
	}
	if c.InitialLimit == 0 && c.MinLimit <= c.MaxLimit {
		// The default start, moved into the configured bounds: a
		// max_limit below 20 alone must not make the config invalid.
		c.InitialLimit = max(c.MinLimit, min(20, c.MaxLimit))
	}
	if c.Window == 0 {
		c.Window = 100 * time.Millisecond
	}
	if c.MinWindowSamples == 0 {
		c.MinWindowSamples = 10
	}
	if c.Buffer == 0 {
		c.Buffer = 0.1
	}
	if c.Headroom == 0 {
		c.Headroom = 0.5
	}
	if c.Smoothing == 0 {
		c.Smoothing = 0.2
	}
	if c.Backoff == 0 {
		c.Backoff = 0.9
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 30 * time.Second
	}
	if c.Percentile == 0 {
		c.Percentile = 0.75
	}
}

// Validate reports the first invalid field.
func (c LimiterConfig) Validate() error {
	switch {
	case c.MinLimit < 1:
		return fmt.Errorf("min_limit %d: must be >= 1", c.MinLimit)
	case c.MaxLimit < c.MinLimit:
		return fmt.Errorf("max_limit %d: must be >= min_limit %d", c.MaxLimit, c.MinLimit)
	case c.InitialLimit < c.MinLimit || c.InitialLimit > c.MaxLimit:
		return fmt.Errorf("initial_limit %d: must be within [min_limit %d, max_limit %d]", c.InitialLimit, c.MinLimit, c.MaxLimit)
	case c.Window < time.Millisecond:
		return fmt.Errorf("window %v: must be >= 1ms", c.Window)
	case c.MinWindowSamples < 1:
		return fmt.Errorf("min_window_samples %d: must be >= 1", c.MinWindowSamples)
	case !(c.Buffer >= 0 && c.Buffer <= 10):
		return fmt.Errorf("buffer %v: must be within [0, 10]", c.Buffer)
	case !(c.Headroom >= 0 && c.Headroom <= 10):
		return fmt.Errorf("headroom %v: must be within [0, 10]", c.Headroom)
	case !(c.Smoothing > 0 && c.Smoothing <= 1):
		return fmt.Errorf("smoothing %v: must be within (0, 1]", c.Smoothing)
	case !(c.Backoff > 0 && c.Backoff < 1):
		return fmt.Errorf("backoff %v: must be within (0, 1)", c.Backoff)
	case !(c.Percentile > 0 && c.Percentile < 1):
		return fmt.Errorf("percentile %v: must be within (0, 1)", c.Percentile)
	}
	return nil
}

// Limiter learns the concurrency an upstream can take before its latency
// rises. It aggregates samples over short windows; at the end of each window
//
//	gradient = clamp((minRTT*(1+Buffer)) / windowRTT, 0.5, 2)
//	target   = limit*gradient + Headroom*sqrt(limit)   (room for a small standing queue)
//	limit    = limit*(1-Smoothing) + target*Smoothing, within [MinLimit, MaxLimit]
//
// where windowRTT is the Percentile (default 75th) latency of the window's
// successful samples (as Envoy's sample_aggregate_percentile; a few stalled
// or slow requests do not shrink the limit) and minRTT the lowest such
// window latency seen since the last probe. A window in which
// the upstream was not busy (at most half the limit in flight) cannot raise
// the limit, and a window with overload signals (ok=false) multiplies it by
// Backoff instead.
//
// Use NewLimiter; the zero value is not usable. A Limiter is safe for
// concurrent use.
type Limiter struct {
	cfg   LimiterConfig
	limit atomic.Int64
	m     *limiterMetrics

	mu          sync.Mutex
	est         float64
	minRTT      time.Duration
	winStart    time.Time
	winN        int                            // successful samples in the window
	winRTT      [windowReservoir]time.Duration // a uniform sample of their latencies
	winDrops    int
	winMaxInfl  int
	nextProbe   time.Time
	probing     bool
	probeBefore float64   // limit before the probe, restored after it
	probeStart  time.Time // samples of requests started before it are ignored
	// droppedAt is when the limit last dropped on latency: until a window
	// holds requests started after it, samples of requests started before
	// (queued at the origin under the old, higher limit) are ignored, or
	// they would drop the limit again, below the origin's workers.
	droppedAt time.Time
	seed      uint64
}

// NewLimiter returns a Limiter at cfg.InitialLimit.
func NewLimiter(cfg LimiterConfig, deps Deps) (*Limiter, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admission: limiter %s: %w", cfg.Name, err)
	}
	l := &Limiter{cfg: cfg, est: float64(cfg.InitialLimit), seed: uint64(time.Now().UnixNano()) | 1}
	l.limit.Store(int64(cfg.InitialLimit))
	m, err := newLimiterMetrics(cfg.Name, l, deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("admission: limiter %s: %w", cfg.Name, err)
	}
	l.m = m
	return l, nil
}

// Limit returns the current concurrency limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// MinRTT returns the minimum latency learned so far (0 before the first window).
func (l *Limiter) MinRTT() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.minRTT
}

// OnSample records one finished request: its latency rtt, the number of
// requests in flight when it started (including itself), and ok=false if it
// ended with an overload signal (timeout, connection refused, 503/429 from
// the origin). Application errors that say nothing about load should be
// passed as ok=true, or not at all.
func (l *Limiter) OnSample(now time.Time, rtt time.Duration, inflight int, ok bool) {
	l.mu.Lock()
	if l.winStart.IsZero() {
		// The first window may already run loaded: probe right after it.
		l.winStart = now
		l.nextProbe = now
	}
	if l.probing && now.Add(-rtt).Before(l.probeStart) {
		// Started before the limit was lowered: says nothing about the
		// origin's unloaded latency.
		l.mu.Unlock()
		return
	}
	if now.Add(-rtt).Before(l.droppedAt) {
		// Started before the last drop: its latency, or its timeout,
		// reflects the old limit.
		l.mu.Unlock()
		return
	}
	if ok {
		if l.winN < windowReservoir {
			l.winRTT[l.winN] = rtt
		} else if j := l.rand() % uint64(l.winN+1); j < windowReservoir {
			l.winRTT[j] = rtt // reservoir sampling
		}
		l.winN++
	} else {
		l.winDrops++
	}
	if inflight > l.winMaxInfl {
		l.winMaxInfl = inflight
	}
	if now.Sub(l.winStart) >= l.cfg.Window && (l.winN >= l.cfg.MinWindowSamples || l.winDrops > 0) {
		l.endWindow(now)
	}
	l.mu.Unlock()
}

// windowReservoir bounds the latencies kept per window for the median.
const windowReservoir = 128

// rand returns the next xorshift value (no global state).
func (l *Limiter) rand() uint64 {
	l.seed ^= l.seed << 13
	l.seed ^= l.seed >> 7
	l.seed ^= l.seed << 17
	return l.seed
}

// jitter returns d plus up to 10%.
func (l *Limiter) jitter(d time.Duration) time.Duration {
	r := l.rand()
	if d <= 0 {
		return d
	}
	return d + time.Duration(r%uint64(d/10+1))
}

// windowLatency returns the Percentile of the window's sampled latencies
// (nearest rank).
func (l *Limiter) windowLatency() time.Duration {
	n := min(l.winN, windowReservoir)
	w := l.winRTT[:n]
	slices.Sort(w)
	i := int(math.Ceil(l.cfg.Percentile*float64(n))) - 1
	return w[max(0, min(n-1, i))]
}

func (l *Limiter) endWindow(now time.Time) {
	c := &l.cfg
	est := l.est
	var rtt time.Duration
	if l.winN > 0 {
		rtt = l.windowLatency()
	}
	switch {
	case l.probing:
		// The probe window ran at a reduced limit: its latency is the
		// origin's minimum now.
		l.probing = false
		if rtt > 0 {
			l.minRTT = rtt
		}
		est = l.probeBefore
		l.nextProbe = now.Add(l.jitter(c.ProbeInterval))
		l.m.probes.Inc()
	case l.winDrops > 0:
		est *= c.Backoff
	case rtt > 0:
		if l.minRTT == 0 || rtt < l.minRTT {
			l.minRTT = rtt
		}
		g := float64(l.minRTT) * (1 + c.Buffer) / float64(rtt)
		g = math.Max(0.5, math.Min(2, g))
		target := est*g + c.Headroom*math.Sqrt(est)
		if busy := float64(l.winMaxInfl) > est/2; !busy && target > est {
			// Not busy enough to know whether more would be fine; and a
			// limit far above the demand would let the start of an
			// overload queue that many requests inside the origin before
			// the first latency samples come back. It decays towards
			// twice the window's peak.
			target = math.Min(est, math.Max(2*float64(l.winMaxInfl), float64(c.MinLimit)))
			est = est*(1-c.Smoothing) + target*c.Smoothing
			break
		}
		if target < est {
			// Latency above the minimum: the origin is queueing now, and
			// every window spent above its capacity adds to every
			// request's latency, so the limit drops at once.
			est = target
			l.droppedAt = now
		} else {
			est = est*(1-c.Smoothing) + target*c.Smoothing
		}
	}
	est = math.Max(float64(c.MinLimit), math.Min(float64(c.MaxLimit), est))
	l.est = est
	if c.ProbeInterval > 0 && !l.probing && !now.Before(l.nextProbe) && l.minRTT > 0 {
		l.probing = true
		l.probeBefore = est
		l.probeStart = now
		est = math.Max(float64(c.MinLimit), est/2)
	}
	l.limit.Store(int64(math.Round(est)))
	l.winStart, l.winN, l.winDrops, l.winMaxInfl = now, 0, 0, 0
	l.m.minRTT.Set(l.minRTT.Seconds())
}

// errLimiterNil is returned by NewGate without a Limiter.
var errLimiterNil = errors.New("a Limiter is required")
