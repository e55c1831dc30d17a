package guard

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	admitted prometheus.Counter
	closed   prometheus.Counter
	refused  [numReasons]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, g *Guard) (*metrics, error) {
	m := &metrics{
		admitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_guard_connections_admitted_total",
			Help: "Client connections admitted by the connection guard.",
		}),
		closed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_guard_connections_closed_total",
			Help: "Admitted client connections that have been closed.",
		}),
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "levee_guard_connections_rejected_total",
		Help: "Client connections refused at accept time, by reason.",
	}, []string{"reason"})
	for r := Reason(1); r < numReasons; r++ {
		m.refused[r] = refused.WithLabelValues(r.String())
	}
	m.refused[Admitted] = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "levee_guard_connections_open",
		Help: "Client connections currently open.",
	}, func() float64 { return float64(g.Open()) })
	tracked := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "levee_guard_tracked_addresses",
		Help: "Addresses in the connection guard's per-address table.",
	}, func() float64 { return float64(g.Tracked()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{m.admitted, m.closed, refused, open, tracked} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
