package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Verdict labels used in levee_http_requests_total. The decision engine adds
// block, limit, drop, tarpit and challenge.
const (
	VerdictPass    = "pass"
	VerdictInvalid = "invalid" // refused by a request-level guard (413, 414, 431, 408)
	VerdictError   = "error"   // upstream failure (502, 504)
	VerdictNoSite  = "no_site"
)

var verdicts = []string{VerdictPass, VerdictInvalid, VerdictError, VerdictNoSite, "block", "limit", "drop", "tarpit", "challenge", "shed"}

type verdictIdx uint8

const (
	vPass verdictIdx = iota
	vInvalid
	vError
	vNoSite
	vBlock
	vLimit
	vDrop
	vTarpit
	vChallenge
	vShed // refused by the origin's admission gate (overload)
	numVerdicts
)

// Metrics holds the proxy's collectors. Build it once per registry with
// NewMetrics; sites created across reloads share it.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	upErrors *prometheus.CounterVec
	cache    *prometheus.CounterVec
	noSite   *siteMetrics
}

type siteMetrics struct {
	// requests[verdict][status class 0..5] (class 0 = no response)
	requests [numVerdicts][6]prometheus.Counter
	latency  prometheus.Observer
	dialErr  prometheus.Counter
	timeout  prometheus.Counter
	otherErr prometheus.Counter
	// micro-cache outcomes
	cacheHit, cacheStale, cacheStore prometheus.Counter
}

// NewMetrics registers the proxy's metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_http_requests_total",
			Help: "HTTP requests by site, status class and verdict.",
		}, []string{"site", "code", "verdict"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "levee_http_request_duration_seconds",
			Help:    "Time from request head received to response head sent, for proxied requests.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"site"}),
		upErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_upstream_errors_total",
			Help: "Failed upstream exchanges by site and kind (connect, timeout, other).",
		}, []string{"site", "kind"}),
	}
	m.cache = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "levee_proxy_cache_responses_total",
		Help: "Micro-cache outcomes by site: hit (served fresh), stale (served expired while the origin failed or was overloaded), stored.",
	}, []string{"site", "outcome"})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.requests, m.latency, m.upErrors, m.cache} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	m.noSite = m.site("")
	return m, nil
}

var codeClasses = [6]string{"none", "1xx", "2xx", "3xx", "4xx", "5xx"}

func (m *Metrics) site(name string) *siteMetrics {
	sm := &siteMetrics{
		latency:    m.latency.WithLabelValues(name),
		dialErr:    m.upErrors.WithLabelValues(name, "connect"),
		timeout:    m.upErrors.WithLabelValues(name, "timeout"),
		otherErr:   m.upErrors.WithLabelValues(name, "other"),
		cacheHit:   m.cache.WithLabelValues(name, "hit"),
		cacheStale: m.cache.WithLabelValues(name, "stale"),
		cacheStore: m.cache.WithLabelValues(name, "stored"),
	}
	for v := range numVerdicts {
		for c := range 6 {
			sm.requests[v][c] = m.requests.WithLabelValues(name, codeClasses[c], verdicts[v])
		}
	}
	return sm
}

func (sm *siteMetrics) count(v verdictIdx, status int) {
	c := status / 100
	if c < 1 || c > 5 {
		c = 0
	}
	sm.requests[v][c].Inc()
}
