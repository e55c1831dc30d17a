package admission

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type limiterMetrics struct {
	probes prometheus.Counter
	minRTT prometheus.Gauge
	regs   registration
}

func newLimiterMetrics(name string, l *Limiter, reg prometheus.Registerer) (*limiterMetrics, error) {
	cl := prometheus.Labels{"upstream": name}
	m := &limiterMetrics{
		probes: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_admission_limiter_probes_total",
			Help: "Minimum-latency probes run by the adaptive concurrency limiter.", ConstLabels: cl}),
		minRTT: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_admission_min_rtt_seconds",
			Help: "Minimum origin latency learned by the adaptive concurrency limiter.", ConstLabels: cl}),
	}
	if reg == nil {
		return m, nil
	}
	limit := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "levee_admission_limit_requests",
		Help: "Adaptive concurrency limit: requests allowed in flight to the upstream.", ConstLabels: cl},
		func() float64 { return float64(l.Limit()) })
	if err := m.regs.register(reg, m.probes, m.minRTT, limit); err != nil {
		return nil, err
	}
	return m, nil
}

// gateMetrics: the wait histogram is observed on the request path (atomic,
// allocation-free); everything else is read from the Gate at scrape time.
type gateMetrics struct {
	wait prometheus.Histogram
	regs registration
}

type gateCollector struct {
	g                                      *Gate
	inflight, queued, delay, admitted, shd *prometheus.Desc
}

func newGateMetrics(g *Gate, reg prometheus.Registerer) (*gateMetrics, error) {
	cl := prometheus.Labels{"upstream": g.cfg.Name}
	m := &gateMetrics{wait: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "levee_admission_queue_wait_seconds",
		Help:        "Time admitted requests waited in the admission queue (immediate admissions are not observed).",
		ConstLabels: cl,
		Buckets:     []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	})}
	if reg == nil {
		return m, nil
	}
	c := &gateCollector{g: g,
		inflight: prometheus.NewDesc("levee_admission_inflight_requests", "Requests in flight to the upstream through the gate.", nil, cl),
		queued:   prometheus.NewDesc("levee_admission_queue_length_requests", "Requests waiting in the admission queue.", []string{"class"}, cl),
		delay:    prometheus.NewDesc("levee_admission_queue_delay_seconds", "Age of the oldest waiting request (standing queue delay).", nil, cl),
		admitted: prometheus.NewDesc("levee_admission_admitted_total", "Requests admitted, by class and whether they waited.", []string{"class", "path"}, cl),
		shd:      prometheus.NewDesc("levee_admission_shed_total", "Requests refused by the gate, by class and reason.", []string{"class", "reason"}, cl),
	}
	if err := m.regs.register(reg, m.wait, c); err != nil {
		return nil, err
	}
	return m, nil
}

func (c *gateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.inflight
	ch <- c.queued
	ch <- c.delay
	ch <- c.admitted
	ch <- c.shd
}

func (c *gateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.g.StatsAt(time.Now())
	ch <- prometheus.MustNewConstMetric(c.inflight, prometheus.GaugeValue, float64(s.InFlight))
	ch <- prometheus.MustNewConstMetric(c.delay, prometheus.GaugeValue, s.OldestWait.Seconds())
	for k := range NumClasses {
		cls := classNames[k]
		ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(s.Queued[k]), cls)
		ch <- prometheus.MustNewConstMetric(c.admitted, prometheus.CounterValue, float64(s.AdmittedNow[k]), cls, "immediate")
		ch <- prometheus.MustNewConstMetric(c.admitted, prometheus.CounterValue, float64(s.AdmittedQueued[k]), cls, "queued")
		ch <- prometheus.MustNewConstMetric(c.shd, prometheus.CounterValue, float64(s.ShedFull[k]), cls, "queue_full")
		ch <- prometheus.MustNewConstMetric(c.shd, prometheus.CounterValue, float64(s.ShedDelay[k]), cls, "delay")
		ch <- prometheus.MustNewConstMetric(c.shd, prometheus.CounterValue, float64(s.ShedTimeout[k]), cls, "timeout")
		ch <- prometheus.MustNewConstMetric(c.shd, prometheus.CounterValue, float64(s.ShedCanceled[k]), cls, "canceled")
	}
}

// Unregister removes the Limiter's metrics from the Registerer it was built
// with (before building its replacement on reload).
func (l *Limiter) Unregister() { l.m.regs.unregister() }

// Unregister removes the Gate's metrics from the Registerer it was built
// with (before building its replacement on reload). Tickets already issued
// stay valid.
func (g *Gate) Unregister() { g.m.regs.unregister() }
