package admission

import (
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// Deps are the optional dependencies of the constructors in this package.
// The zero value is valid: no metrics, no logs.
type Deps struct {
	// Registerer receives the metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// Logger receives rare state changes (ejections, breaker trips); nil
	// discards.
	Logger *slog.Logger
}

func (d Deps) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return d.Logger
}

// registration remembers what a constructor registered so that Unregister
// can take it back (configuration reload builds new instances with the same
// metric names). The zero value has nothing registered.
type registration struct {
	reg prometheus.Registerer
	cs  []prometheus.Collector
}

// register registers cs with reg (nil: nothing), all or none.
func (r *registration) register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	r.reg, r.cs = reg, cs
	return nil
}

func (r *registration) unregister() {
	for _, c := range r.cs {
		r.reg.Unregister(c)
	}
	r.cs = nil
}
