package detect

import (
	"math"
	"sort"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

// Metric is one per-second quantity the baseline learns.
type Metric uint8

// Metrics.
const (
	MetricRequests   Metric = iota // requests per second
	MetricConns                    // new connections per second
	MetricNewSources               // never-seen sources per second
	MetricErrors                   // origin errors per second
	MetricLatency                  // mean origin latency, seconds
	NumMetrics
)

var metricNames = [NumMetrics]string{"requests", "connections", "new_sources", "origin_errors", "origin_latency"}

func (m Metric) String() string {
	if m < NumMetrics {
		return metricNames[m]
	}
	return "unknown"
}

// ewma is an exponentially weighted mean and variance (incremental update,
// Finch 2009). The variance forgets faster than the mean (alphaVar >=
// alphaMean): the noise estimate follows the recent minutes while the level
// follows the configured half-life.
type ewma struct {
	Mean, Var float64
	N         float64 // samples seen
}

func (e *ewma) update(x, alphaMean, alphaVar float64) {
	e.N++
	if a := 1 / e.N; a > alphaMean {
		alphaMean = a // the first samples: plain running mean
	}
	if a := 1 / e.N; a > alphaVar {
		alphaVar = a
	}
	if e.N == 1 {
		e.Mean, e.Var = x, 0
		return
	}
	d := x - e.Mean
	e.Mean += alphaMean * d
	e.Var = (1 - alphaVar) * (e.Var + alphaVar*d*d)
}

func (e *ewma) sd() float64 { return math.Sqrt(e.Var) }

// share is one remembered attribute value and its smoothed share of traffic.
type share struct {
	Item  telemetry.Item
	Share float64
}

// dist is the smoothed distribution of one attribute.
type dist struct {
	vals  map[uint64]*share
	floor float64 // smoothed share bound of any value not in vals
}

// Baseline is one site's learned normal traffic: EWMA mean and variance of
// each Metric and the smoothed shares of the most frequent values of each
// attribute. The zero value is not usable; Detector makes one. Not safe for
// concurrent use (the Detector serializes access).
type Baseline struct {
	halfLife  time.Duration
	warmUp    time.Duration
	maxValues int
	metrics   [NumMetrics]ewma
	sources   ewma // distinct sources per second: not alarmed on, used to size a typical source
	dists     [telemetry.NumAttrs]dist
	observed  time.Duration // traffic history learned
}

func newBaseline(cfg *Config) *Baseline {
	b := &Baseline{halfLife: cfg.HalfLife, warmUp: cfg.WarmUp, maxValues: cfg.MaxValues}
	for a := range b.dists {
		b.dists[a].vals = make(map[uint64]*share)
	}
	return b
}

// values extracts the per-second metric values of sec. ok[m] is false when
// the metric has no meaning for this second (latency with too few answers).
func values(sec *telemetry.Second) (v [NumMetrics]float64, ok [NumMetrics]bool) {
	d := sec.Duration().Seconds()
	if d <= 0 {
		return v, ok
	}
	v[MetricRequests] = float64(sec.Requests) / d
	v[MetricConns] = float64(sec.Conns) / d
	v[MetricNewSources] = float64(sec.NewSources) / d
	v[MetricErrors] = float64(sec.OriginErrors) / d
	ok[MetricRequests], ok[MetricConns], ok[MetricNewSources], ok[MetricErrors] = true, true, true, true
	if n := sec.Answered(); n >= 5 {
		v[MetricLatency] = sec.LatencySum.Seconds() / float64(n)
		ok[MetricLatency] = true
	}
	return v, ok
}

func alphaFor(d, halfLife time.Duration) float64 {
	return 1 - math.Exp2(-d.Seconds()/halfLife.Seconds())
}

// alphas returns the smoothing factors of the mean and the variance for a
// sample of duration d. During warm-up both use a quarter of the warm-up
// period as half-life, so that a cold start (every source is new at first)
// is forgotten quickly; afterwards the mean uses HalfLife and the variance
// a fifth of it.
func (b *Baseline) alphas(d time.Duration) (mean, variance float64) {
	mean = alphaFor(d, b.halfLife)
	variance = alphaFor(d, max(b.halfLife/5, time.Second))
	if b.observed < b.warmUp {
		w := alphaFor(d, max(b.warmUp/4, time.Second))
		mean, variance = max(mean, w), max(variance, w)
	}
	return mean, variance
}

// learn folds a normal second into the baseline.
func (b *Baseline) learn(sec *telemetry.Second) {
	d := sec.Duration()
	if d <= 0 {
		return
	}
	alpha, alphaVar := b.alphas(d)
	v, ok := values(sec)
	for m := range NumMetrics {
		if ok[m] {
			b.metrics[m].update(v[m], alpha, alphaVar)
		}
	}
	b.sources.update(float64(sec.Sources), alpha, alphaVar)
	b.observed += d
	total := float64(sec.Requests)
	if total == 0 {
		return
	}
	// Distributions: warm-up uses a running mean like the metrics.
	if n := b.observed.Seconds() / d.Seconds(); 1/n > alpha {
		alpha = 1 / n
	}
	for a := range telemetry.NumAttrs {
		ds := &b.dists[a]
		for _, s := range ds.vals {
			s.Share *= 1 - alpha
		}
		for _, it := range sec.Top[a] {
			s := ds.vals[it.Key]
			if s == nil {
				s = &share{Item: it}
				ds.vals[it.Key] = s
			}
			s.Share += alpha * float64(it.Count) / total
		}
		ds.floor += alpha * (float64(sec.TopFloor[a])/total - ds.floor)
		if len(ds.vals) > b.maxValues {
			b.prune(ds)
		}
	}
}

// prune keeps the maxValues*3/4 largest shares; the largest dropped share
// raises the floor.
func (b *Baseline) prune(ds *dist) {
	all := make([]*share, 0, len(ds.vals))
	for _, s := range ds.vals {
		all = append(all, s)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Share > all[j].Share })
	keep := b.maxValues * 3 / 4
	if all[keep].Share > ds.floor {
		ds.floor = all[keep].Share
	}
	for _, s := range all[keep:] {
		delete(ds.vals, s.Item.Key)
	}
}

// Warm reports whether the baseline has learned enough history.
func (b *Baseline) Warm(warmUp time.Duration) bool { return b.observed >= warmUp }

// Mean returns the learned mean of m (per second; latency in seconds).
func (b *Baseline) Mean(m Metric) float64 { return b.metrics[m].Mean }

// SD returns the learned standard deviation of m.
func (b *Baseline) SD(m Metric) float64 { return b.metrics[m].sd() }

// Share returns the learned share of normal traffic carrying the value with
// key k of attribute a, and whether the value is remembered. For a value
// not remembered the share is at most Floor(a).
func (b *Baseline) Share(a telemetry.Attr, k uint64) (float64, bool) {
	s := b.dists[a].vals[k]
	if s == nil {
		return 0, false
	}
	return s.Share, true
}

// Floor bounds the share of any value of a that the baseline does not
// remember.
func (b *Baseline) Floor(a telemetry.Attr) float64 { return b.dists[a].floor }

// Top returns the n values of a with the largest learned shares.
func (b *Baseline) Top(a telemetry.Attr, n int) []ValueShare {
	out := make([]ValueShare, 0, len(b.dists[a].vals))
	for _, s := range b.dists[a].vals {
		out = append(out, ValueShare{Value: s.Item.Value, Share: s.Share})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Share != out[j].Share {
			return out[i].Share > out[j].Share
		}
		return out[i].Value < out[j].Value
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// ValueShare is an attribute value with its share of normal traffic.
type ValueShare struct {
	Value string  `json:"value"`
	Share float64 `json:"share"`
}
