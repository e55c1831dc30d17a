package decide

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	ruleHits    *prometheus.CounterVec
	limitDenied *prometheus.CounterVec
	connRefused [3]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		ruleHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_decide_rule_hits_total",
			Help: "Requests matched by each rule (including dry-run and log rules).",
		}, []string{"rule", "action"}),
		limitDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_decide_limit_denied_total",
			Help: "Requests refused with 429 by each rate limit.",
		}, []string{"limit"}),
	}
	conn := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "levee_decide_connections_refused_total",
		Help: "Connections refused at accept time by source: ban, block list or feed.",
	}, []string{"source"})
	for i, s := range []string{"ban", "block", "feed"} {
		m.connRefused[i] = conn.WithLabelValues(s)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.ruleHits, m.limitDenied, conn} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
