package incident

import "github.com/prometheus/client_golang/prometheus"

// newWebhookMetrics builds levee_incident_webhooks_total{host,result} and
// registers it when reg is not nil.
func newWebhookMetrics(reg prometheus.Registerer, host string) (*prometheus.CounterVec, error) {
	sent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "levee_incident_webhooks_total",
		Help:        "Webhook notifications by final result (ok, failed).",
		ConstLabels: prometheus.Labels{"host": host},
	}, []string{"result"})
	if reg != nil {
		if err := reg.Register(sent); err != nil {
			return nil, err
		}
	}
	return sent, nil
}
