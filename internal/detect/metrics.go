package detect

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	attacks prometheus.Counter
	rules   [3]prometheus.Counter // by ActionKind
	active  prometheus.Gauge
	mode    prometheus.Gauge
	nrules  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, site string) (*metrics, error) {
	cl := prometheus.Labels{"site": site}
	m := &metrics{
		attacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "levee_detect_attacks_total",
			Help: "Attacks declared.", ConstLabels: cl}),
		active: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_detect_attack_active",
			Help: "1 while an attack is in progress.", ConstLabels: cl}),
		mode: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_detect_mode",
			Help: "Effective escalation mode: 0 normal, 1 elevated, 2 under attack.", ConstLabels: cl}),
		nrules: prometheus.NewGauge(prometheus.GaugeOpts{Name: "levee_detect_rules_active",
			Help: "Generated rules in force.", ConstLabels: cl}),
	}
	rules := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_detect_rules_generated_total",
		Help: "Mitigation rules generated, by action.", ConstLabels: cl}, []string{"action"})
	for k := range m.rules {
		m.rules[k] = rules.WithLabelValues(ActionKind(k).String())
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.attacks, m.active, m.mode, m.nrules, rules} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

// set updates the gauges; called with d.mu held.
func (m *metrics) set(d *Detector, now time.Time) {
	if d.state == StateAttack {
		m.active.Set(1)
	} else {
		m.active.Set(0)
	}
	m.mode.Set(float64(d.modeLocked(now)))
	m.nrules.Set(float64(len(d.rules)))
}
