package h2guard

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	conns     prometheus.Counter
	abuse     *prometheus.CounterVec
	clientRST prometheus.Counter
	serverRST prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	rst := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "levee_h2guard_rst_stream_frames_total",
		Help: "RST_STREAM frames seen on guarded HTTP/2 connections, by sender (client or server).",
	}, []string{"sender"})
	m := &metrics{
		conns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_h2guard_connections_total",
			Help: "HTTP/2 connections wrapped by the guard.",
		}),
		abuse: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_h2guard_abuse_total",
			Help: "HTTP/2 connections cut off with GOAWAY(ENHANCE_YOUR_CALM), by reason.",
		}, []string{"reason"}),
		clientRST: rst.WithLabelValues("client"),
		serverRST: rst.WithLabelValues("server"),
	}
	for _, r := range allReasons {
		m.abuse.WithLabelValues(string(r))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.conns, m.abuse, rst} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("metrics already registered: use one Guard per Registerer")
			}
			return nil, err
		}
	}
	return m, nil
}
