package shield

import (
	"github.com/prometheus/client_golang/prometheus"
)

// upstreamCollector exports the health and pool sizes of the current
// upstream pools at scrape time (pools are replaced on reload).
type upstreamCollector struct{ s *Shield }

var (
	descHealthy = prometheus.NewDesc("levee_upstream_healthy",
		"1 if the upstream passes its health checks (or has none), else 0.", []string{"site", "upstream"}, nil)
	descConns = prometheus.NewDesc("levee_upstream_connections",
		"Open pooled connections to the upstream.", []string{"site", "upstream"}, nil)
	descInflight = prometheus.NewDesc("levee_upstream_inflight_requests",
		"Requests in progress on the upstream.", []string{"site", "upstream"}, nil)
)

func (c upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descHealthy
	ch <- descConns
	ch <- descInflight
}

func (c upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.mu.Lock()
	pools := c.s.pools
	c.s.mu.Unlock()
	for _, p := range pools {
		for _, b := range p.Backends() {
			h := 0.0
			if b.Healthy() {
				h = 1
			}
			ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, h, p.Site(), b.Addr)
			ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(b.Open()), p.Site(), b.Addr)
			ch <- prometheus.MustNewConstMetric(descInflight, prometheus.GaugeValue, float64(b.Inflight()), p.Site(), b.Addr)
		}
	}
}
