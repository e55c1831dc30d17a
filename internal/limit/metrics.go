package limit

import "github.com/prometheus/client_golang/prometheus"

// collector exposes a Table's counters at scrape time. Inserts and
// evictions increment plain per-shard counters under the shard lock they
// hold, refunds an atomic one; checks count nothing (they run without the
// lock, and a shared counter would bring back the contention the lock-free
// path removes: the decision engine counts denials per limit,
// levee_decide_limit_denied_total). Nothing Prometheus-specific runs per
// request.
type collector struct {
	get       func() *Table
	slots     *prometheus.Desc
	bytes     *prometheus.Desc
	live      *prometheus.Desc
	evictions *prometheus.Desc
	refunds   *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(t *Table) *collector {
	return newCollectorFunc(t.name, func() *Table { return t })
}

// NewCollector returns a collector of the metrics of the table current
// returns at each scrape (nothing while it returns nil), labelled
// table=name. It is for owners that replace their table, for example on a
// reload that changes its memory budget: one collector, registered once,
// follows the table in use (its counters start again from zero with a new
// table, which Prometheus reads as a counter reset). Create such tables
// with no Registerer in Deps.
func NewCollector(name string, current func() *Table) prometheus.Collector {
	return newCollectorFunc(name, current)
}

func newCollectorFunc(name string, get func() *Table) *collector {
	cl := prometheus.Labels{"table": name}
	return &collector{
		get: get,
		slots: prometheus.NewDesc("levee_limit_table_slots",
			"Capacity of the rate limiter table in keys.", nil, cl),
		bytes: prometheus.NewDesc("levee_limit_table_bytes",
			"Memory allocated by the rate limiter table.", nil, cl),
		live: prometheus.NewDesc("levee_limit_table_live_keys",
			"Occupied slots of the rate limiter table (recovered keys stay until their slot is reused).", nil, cl),
		evictions: prometheus.NewDesc("levee_limit_evictions_total",
			"Keys evicted from a full bucket; state=recovered lost no information, state=active means the table is too small.",
			[]string{"state"}, cl),
		refunds: prometheus.NewDesc("levee_limit_refunds_total",
			"Allowed checks taken back because another limit of the same event denied it.", nil, cl),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.slots
	ch <- c.bytes
	ch <- c.live
	ch <- c.evictions
	ch <- c.refunds
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	t := c.get()
	if t == nil {
		return
	}
	st := t.Stats()
	ch <- prometheus.MustNewConstMetric(c.slots, prometheus.GaugeValue, float64(st.Slots))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(c.live, prometheus.GaugeValue, float64(st.Live))
	ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(st.EvictionsRecovered), "recovered")
	ch <- prometheus.MustNewConstMetric(c.evictions, prometheus.CounterValue, float64(st.EvictionsActive), "active")
	ch <- prometheus.MustNewConstMetric(c.refunds, prometheus.CounterValue, float64(st.Refunded))
}
