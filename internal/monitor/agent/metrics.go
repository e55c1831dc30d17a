package agent

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	probes       *prometheus.CounterVec
	sent         prometheus.Counter
	rejected     prometheus.Counter
	dropped      prometheus.Counter
	sendFailures prometheus.Counter
	spoolBytes   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_agent_probes_total", Help: "Probes run by this agent, by target and result.",
		}, []string{"target", "result"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_agent_results_sent_total", Help: "Results acknowledged by the collector (stored or already stored).",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_agent_results_rejected_total", Help: "Results the collector refused for good.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_agent_results_dropped_total", Help: "Results lost because the spool was full or unwritable.",
		}),
		sendFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_agent_send_failures_total", Help: "Failed attempts to send the spool to the collector.",
		}),
		spoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levee_agent_spool_bytes", Help: "Unacknowledged results buffered on disk.",
		}),
	}
	for _, c := range []prometheus.Collector{m.probes, m.sent, m.rejected, m.dropped, m.sendFailures, m.spoolBytes} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
