package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collector's Prometheus metrics, built on an injected
// Registerer so that two collectors (or parallel tests) do not collide.
type metrics struct {
	probes       *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	targetState  *prometheus.GaugeVec
	vantageState *prometheus.GaugeVec
	incidents    *prometheus.CounterVec
	ingest       *prometheus.CounterVec
	authFailures prometheus.Counter
	webhooks     *prometheus.CounterVec
	storeBytes   prometheus.Gauge
	pruned       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_monitor_probes_total",
			Help: "Probe results received, by target, vantage point and result (ok or the failure class).",
		}, []string{"target", "vantage", "result"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "levee_monitor_probe_duration_seconds",
			Help:    "Total duration of probes, by target and vantage point.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"target", "vantage"}),
		targetState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "levee_monitor_target_state",
			Help: "Global state of a target by quorum: 0 unknown, 1 up, 2 degraded, 3 down.",
		}, []string{"target"}),
		vantageState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "levee_monitor_vantage_state",
			Help: "State of a target from one vantage point: 0 unknown, 1 up, 2 degraded, 3 down.",
		}, []string{"target", "vantage"}),
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_monitor_incidents_total",
			Help: "Incident events, by target and event (open, classification, close).",
		}, []string{"target", "event"}),
		ingest: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_monitor_ingested_results_total",
			Help: "Results offered for ingestion, by vantage point and outcome (accepted, duplicate, rejected).",
		}, []string{"vantage", "outcome"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_monitor_agent_auth_failures_total",
			Help: "Agent requests refused for a missing or wrong token.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_monitor_webhook_deliveries_total",
			Help: "Webhook deliveries by outcome (ok, failed after retries, dropped because the queue was full).",
		}, []string{"outcome"}),
		storeBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levee_monitor_store_size_bytes",
			Help: "Size of the monitor database including its write-ahead log.",
		}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_monitor_store_pruned_rows_total",
			Help: "Rows deleted by retention, by table.",
		}, []string{"table"}),
	}
	for _, c := range []prometheus.Collector{m.probes, m.latency, m.targetState, m.vantageState, m.incidents,
		m.ingest, m.authFailures, m.webhooks, m.storeBytes, m.pruned} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
