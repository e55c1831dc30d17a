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
