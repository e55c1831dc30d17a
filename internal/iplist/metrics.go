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

// setCollector exposes the lists of a Set at scrape time, from
// Set.Status: nothing is updated on the lookup path, and a scrape does not
// wait for a load in progress.
type setCollector struct {
	get         func() *Set
	prefixes    *prometheus.Desc
	reloads     *prometheus.Desc
	skipped     *prometheus.Desc
	lastSuccess *prometheus.Desc
}

var _ prometheus.Collector = (*setCollector)(nil)

// NewSetCollector returns a collector of the metrics of the lists of the Set
// current returns at each scrape (nothing while it returns nil):
// levee_iplist_prefixes, levee_iplist_reloads_total,
// levee_iplist_skipped_lines_total and
// levee_iplist_last_success_timestamp_seconds, labelled list=name.
//
// It is for owners that replace their Set, for example on a configuration
// reload that changes the list files: one collector, registered once,
// follows the Set in use, so added lists appear and removed lists disappear
// at the next scrape. Create such Sets with no Registerer in SetDeps. The
// counters of a new Set start again from zero, which Prometheus reads as a
// counter reset.
func NewSetCollector(current func() *Set) prometheus.Collector {
	l := []string{"list"}
	return &setCollector{
		get: current,
		prefixes: prometheus.NewDesc("levee_iplist_prefixes",
			"Prefixes loaded from each list.", l, nil),
		reloads: prometheus.NewDesc("levee_iplist_reloads_total",
			"List file reads, by list and result (ok, error).", []string{"list", "result"}, nil),
		skipped: prometheus.NewDesc("levee_iplist_skipped_lines_total",
			"Bad lines skipped in lenient lists.", l, nil),
		lastSuccess: prometheus.NewDesc("levee_iplist_last_success_timestamp_seconds",
			"Unix time of the last successful read of each list.", l, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *setCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.prefixes
	ch <- c.reloads
	ch <- c.skipped
	ch <- c.lastSuccess
}

// Collect implements prometheus.Collector.
func (c *setCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.get()
	if s == nil {
		return
	}
	for _, l := range s.Status() {
		ch <- prometheus.MustNewConstMetric(c.prefixes, prometheus.GaugeValue, float64(l.Prefixes), l.Name)
		ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(l.Reads), l.Name, "ok")
		ch <- prometheus.MustNewConstMetric(c.reloads, prometheus.CounterValue, float64(l.Failures), l.Name, "error")
		ch <- prometheus.MustNewConstMetric(c.skipped, prometheus.CounterValue, float64(l.SkippedTotal), l.Name)
		if !l.Loaded.IsZero() {
			ch <- prometheus.MustNewConstMetric(c.lastSuccess, prometheus.GaugeValue, float64(l.Loaded.UnixNano())/1e9, l.Name)
		}
	}
}
