package telemetry

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	tickSeconds prometheus.Histogram
}

// newMetrics registers the recorder's metrics. Counters are read from the
// totals kept by Tick, so Record does no Prometheus work.
func newMetrics(reg prometheus.Registerer, r *Recorder) (*metrics, error) {
	cl := prometheus.Labels{"site": r.cfg.Site}
	m := &metrics{
		tickSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:        "levee_telemetry_tick_duration_seconds",
			Help:        "Time Tick took to close and merge a telemetry bucket.",
			ConstLabels: cl,
			Buckets:     prometheus.ExponentialBuckets(1e-5, 4, 8),
		}),
	}
	counter := func(name, help string, f func(t *totals) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: cl}, func() float64 {
			r.tickMu.Lock()
			defer r.tickMu.Unlock()
			return float64(f(&r.totals))
		})
	}
	cs := []prometheus.Collector{
		m.tickSeconds,
		counter("levee_telemetry_requests_total", "Requests recorded in closed telemetry buckets.", func(t *totals) uint64 { return t.requests }),
		counter("levee_telemetry_connections_total", "New connections recorded in closed telemetry buckets.", func(t *totals) uint64 { return t.conns }),
		counter("levee_telemetry_new_sources_total", "Sources not found in the seen filter.", func(t *totals) uint64 { return t.newSources }),
		counter("levee_telemetry_ticks_total", "Telemetry buckets closed.", func(t *totals) uint64 { return t.ticks }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "levee_telemetry_memory_bytes", Help: "Fixed memory of the telemetry recorder.", ConstLabels: cl},
			func() float64 { return float64(r.MemoryBytes()) }),
	}
	if reg != nil {
		for _, c := range cs {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
