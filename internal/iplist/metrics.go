package iplist

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// register registers cs with reg; a nil reg registers nothing.
func register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("iplist: register metrics: %w (use one registry per instance)", err)
			}
			return fmt.Errorf("iplist: register metrics: %w", err)
		}
	}
	return nil
}

type bansMetrics struct {
	active      prometheus.Gauge
	added       *prometheus.CounterVec
	removed     prometheus.Counter
	expired     prometheus.Counter
	storeErrors prometheus.Counter
}

func newBansMetrics(reg prometheus.Registerer) (*bansMetrics, error) {
	m := &bansMetrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "levee_bans_active",
			Help: "Runtime bans held in the published table, including expired ones not yet dropped.",
		}),
		added: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_bans_added_total",
			Help: "Bans added or replaced, by source (cli, api, detector, ...).",
		}, []string{"source"}),
		removed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_bans_removed_total",
			Help: "Bans lifted explicitly.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_bans_expired_total",
			Help: "Bans dropped because they expired.",
		}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "levee_bans_store_errors_total",
			Help: "Ban changes that could not be written to the persistent store.",
		}),
	}
	return m, register(reg, m.active, m.added, m.removed, m.expired, m.storeErrors)
}

type setMetrics struct {
	prefixes    *prometheus.GaugeVec
	reloads     *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
}

func newSetMetrics(reg prometheus.Registerer) (*setMetrics, error) {
	m := &setMetrics{
		prefixes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "levee_iplist_prefixes",
			Help: "Prefixes loaded from each list.",
		}, []string{"list"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_iplist_reloads_total",
			Help: "List file reads, by list and result (ok, error).",
		}, []string{"list", "result"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "levee_iplist_skipped_lines_total",
			Help: "Bad lines skipped in lenient lists.",
		}, []string{"list"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "levee_iplist_last_success_timestamp_seconds",
			Help: "Unix time of the last successful read of each list.",
		}, []string{"list"}),
	}
	return m, register(reg, m.prefixes, m.reloads, m.skipped, m.lastSuccess)
}
