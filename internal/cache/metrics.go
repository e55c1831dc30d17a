package cache

import "github.com/prometheus/client_golang/prometheus"

// collector reads the cache's counters at scrape time; the request path
// only increments plain counters under the shard lock it already holds.
type collector struct {
	c                                           *Cache
	lookups, stores, evictions, coalesced, stle *prometheus.Desc
	entries, bytes, budget, variantsFull        *prometheus.Desc
}

func newCollector(c *Cache) *collector {
	cl := prometheus.Labels{"cache": c.cfg.Name}
	return &collector{c: c,
		lookups:   prometheus.NewDesc("levee_cache_lookups_total", "Cache lookups by result (hit, miss, stale: expired entry found, bypass).", []string{"result"}, cl),
		stores:    prometheus.NewDesc("levee_cache_stores_total", "Responses stored.", nil, cl),
		evictions: prometheus.NewDesc("levee_cache_evictions_total", "Entries evicted to stay within the memory budget.", nil, cl),
		coalesced: prometheus.NewDesc("levee_cache_coalesced_total", "Requests that waited for another request's origin fetch of the same key.", nil, cl),
		stle:      prometheus.NewDesc("levee_cache_stale_served_total", "Stale entries served because the origin could not answer.", nil, cl),
		variantsFull: prometheus.NewDesc("levee_cache_variants_refused_total",
			"Responses not stored because their URL already had max_variants Vary variants.", nil, cl),
		entries: prometheus.NewDesc("levee_cache_entries", "Entries stored.", nil, cl),
		bytes:   prometheus.NewDesc("levee_cache_bytes", "Memory accounted to stored entries.", nil, cl),
		budget:  prometheus.NewDesc("levee_cache_budget_bytes", "Configured memory budget.", nil, cl),
	}
}

func (x *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{x.lookups, x.stores, x.evictions, x.coalesced, x.stle, x.entries, x.bytes, x.budget, x.variantsFull} {
		ch <- d
	}
}

func (x *collector) Collect(ch chan<- prometheus.Metric) {
	s := x.c.Stats()
	ch <- prometheus.MustNewConstMetric(x.lookups, prometheus.CounterValue, float64(s.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(x.lookups, prometheus.CounterValue, float64(s.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(x.lookups, prometheus.CounterValue, float64(s.Stale), "stale")
	ch <- prometheus.MustNewConstMetric(x.lookups, prometheus.CounterValue, float64(s.Bypass), "bypass")
	ch <- prometheus.MustNewConstMetric(x.stores, prometheus.CounterValue, float64(s.Stores))
	ch <- prometheus.MustNewConstMetric(x.evictions, prometheus.CounterValue, float64(s.Evictions))
	ch <- prometheus.MustNewConstMetric(x.coalesced, prometheus.CounterValue, float64(s.Coalesced))
	ch <- prometheus.MustNewConstMetric(x.stle, prometheus.CounterValue, float64(s.StaleServed))
	ch <- prometheus.MustNewConstMetric(x.variantsFull, prometheus.CounterValue, float64(s.VariantsFull))
	ch <- prometheus.MustNewConstMetric(x.entries, prometheus.GaugeValue, float64(s.Entries))
	ch <- prometheus.MustNewConstMetric(x.bytes, prometheus.GaugeValue, float64(s.Bytes))
	ch <- prometheus.MustNewConstMetric(x.budget, prometheus.GaugeValue, float64(x.c.cfg.MaxBytes))
}
