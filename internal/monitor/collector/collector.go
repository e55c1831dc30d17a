// Package collector is the monitor's central process (`levee monitor`): it
// probes targets as the local vantage point, accepts authenticated results
// from agents, stores them, drives outage detection, sends webhooks and
// serves the status page, the JSON API and Prometheus metrics.
package collector

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/levee-dev/levee/internal/monitor"
	"github.com/levee-dev/levee/internal/monitor/api"
	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/probe"
	"github.com/levee-dev/levee/internal/monitor/store"
)

// Deps are the collector's injected dependencies; all are optional.
type Deps struct {
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the collector's metrics and is served on /metrics.
	// Nil creates a private registry with Go and process collectors.
	Registry *prometheus.Registry
	// Client is used for webhooks and the shield admin API. Nil uses a
	// client with a 10 s timeout.
	Client *http.Client
}

// Collector is a running monitor collector. It is safe for concurrent use.
// The zero Collector is not usable; build one with New.
type Collector struct {
	cfg     *monitor.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics
	store   *store.Store
	tracker *outage.Tracker
	hooks   *webhooks
	client  *http.Client
	probers map[string]*probe.Prober
	targets map[string]monitor.Target
	// allowed[vantage][target] says which vantage may report which target.
	allowed map[string]map[string]bool
	tick    time.Duration
	handler http.Handler
	started time.Time

	mu sync.Mutex // serializes ingestion so state sees results in order
}

// New opens the store in cfg.DataDir, restores open incidents and latency
// baselines from it, and prepares (but does not start) probing and serving.
func New(cfg *monitor.Config, deps Deps) (*Collector, error) {
	if cfg == nil {
		return nil, errors.New("collector: nil config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Collector{cfg: cfg, log: deps.Logger, reg: deps.Registry, client: deps.Client,
		probers: map[string]*probe.Prober{}, targets: map[string]monitor.Target{}, allowed: map[string]map[string]bool{},
		started: time.Now()}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.reg == nil {
		c.reg = prometheus.NewRegistry()
		c.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	if c.client == nil {
		c.client = &http.Client{Timeout: 10 * time.Second}
	}
	var err error
	if c.m, err = newMetrics(c.reg); err != nil {
		return nil, fmt.Errorf("collector: register metrics: %w", err)
	}
	if c.tracker, err = outage.New(cfg.Detection); err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	c.tick = time.Second
	for _, t := range cfg.Targets {
		p, err := probe.New(t.Spec, t.Timeout)
		if err != nil {
			return nil, fmt.Errorf("collector: target %s: %w", t.Name, err)
		}
		c.probers[t.Name] = p
		c.targets[t.Name] = t
		c.tracker.SetTarget(t.Name, t.Interval)
		c.tick = min(c.tick, t.Interval/2)
	}
	for _, v := range append([]string{cfg.Vantage}, agentNames(cfg)...) {
		c.allowed[v] = map[string]bool{}
		for _, t := range cfg.TargetsFor(v) {
			c.allowed[v][t.Name] = true
		}
	}
	c.store, err = store.Open(store.Config{
		Path:            filepath.Join(cfg.DataDir, "monitor.db"),
		RawRetention:    cfg.Retention.Raw,
		MinuteRetention: cfg.Retention.Minute,
		HourRetention:   cfg.Retention.Hour,
	}, c.log)
	if err != nil {
		return nil, fmt.Errorf("collector: %w", err)
	}
	if err := c.restore(context.Background()); err != nil {
		c.store.Close()
		return nil, err
	}
	c.hooks = newWebhooks(cfg.Webhooks, c.client, c.log, c.m)
	c.handler = c.routes()
	return c, nil
}

func agentNames(cfg *monitor.Config) []string {
	var out []string
	for _, a := range cfg.Agents {
		out = append(out, a.Name)
	}
	return out
}

// restore warms latency baselines from recent history and re-opens
// incidents that were open when the collector stopped.
func (c *Collector) restore(ctx context.Context) error {
	recent, err := c.store.RecentOK(ctx, time.Now().Add(-24*time.Hour), c.cfg.Detection.BaselineWindow)
	if err != nil {
		return fmt.Errorf("collector: warm baselines: %w", err)
	}
	for k, lats := range recent {
		if _, ok := c.targets[k[0]]; !ok {
			continue
		}
		for _, l := range lats {
			c.tracker.Warm(k[0], k[1], l)
		}
	}
	open, err := c.store.Incidents(ctx, "", time.Time{}, 1000, true)
	if err != nil {
		return fmt.Errorf("collector: restore incidents: %w", err)
	}
	for _, inc := range open {
		if _, ok := c.targets[inc.Target]; ok {
			c.tracker.Restore(inc)
			c.log.Info("restored open incident", "id", inc.ID, "target", inc.Target)
		}
	}
	return nil
}

// Handler serves the status page, the JSON API, the agent API and /metrics.
func (c *Collector) Handler() http.Handler { return c.handler }

// Store exposes the history (read-only use intended).
func (c *Collector) Store() *store.Store { return c.store }

// Close closes the store. Call it after Run returned.
func (c *Collector) Close() error { return c.store.Close() }

// Run probes targets locally (unless disabled), evaluates state on a tick,
// applies retention hourly and delivers webhooks, until ctx ends.
func (c *Collector) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if c.cfg.LocalProbing() {
		for _, t := range c.cfg.Targets {
			p := c.probers[t.Name]
			sched := probe.Schedule{Interval: t.Interval, Jitter: t.Jitter}
			wg.Go(func() {
				probe.Loop(ctx, p, sched, func(r probe.Result) {
					r.ID, r.Target, r.Vantage = probe.NewID(c.cfg.Vantage), t.Name, c.cfg.Vantage
					if _, err := c.IngestAt(time.Now(), c.cfg.Vantage, []probe.Result{r}); err != nil {
						c.log.Error("store local result", "target", t.Name, "err", err)
					}
				})
			})
		}
	}
	wg.Go(func() { c.hooks.run(ctx) })
	wg.Go(func() {
		t := time.NewTicker(c.tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				c.mu.Lock()
				c.handle(ctx, c.tracker.TickAt(now))
				c.mu.Unlock()
			}
		}
	})
	wg.Go(func() {
		c.prune(ctx)
		t := time.NewTicker(time.Hour)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.prune(ctx)
			}
		}
	})
	wg.Wait()
	return nil
}

func (c *Collector) prune(ctx context.Context) {
	st, err := c.store.PruneAt(ctx, time.Now())
	if err != nil {
		if ctx.Err() == nil {
			c.log.Error("apply retention", "err", err)
		}
		return
	}
	c.m.pruned.WithLabelValues("results").Add(float64(st.Results))
	c.m.pruned.WithLabelValues("agg_minute").Add(float64(st.Minutes))
	c.m.pruned.WithLabelValues("agg_hour").Add(float64(st.Hours))
	c.m.pruned.WithLabelValues("incidents").Add(float64(st.Incidents))
	c.m.storeBytes.Set(float64(c.store.SizeBytes()))
}

// ListenAndRun serves HTTP on cfg.Listen and runs the collector until ctx
// ends, then shuts the server down gracefully.
func (c *Collector) ListenAndRun(ctx context.Context) error {
	ln, err := net.Listen("tcp", c.cfg.Listen)
	if err != nil {
		return fmt.Errorf("collector: listen %s: %w", c.cfg.Listen, err)
	}
	return c.Serve(ctx, ln)
}

// Serve is ListenAndRun on an existing listener.
func (c *Collector) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: c.handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelDebug)}
	c.log.Info("monitor collector listening", "addr", ln.Addr().String(), "targets", len(c.cfg.Targets), "agents", len(c.cfg.Agents))
	errc := make(chan error, 1)
	if t := c.cfg.TLS; t != nil {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		go func() { errc <- srv.ServeTLS(ln, t.CertFile, t.KeyFile) }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	runDone := make(chan struct{})
	go func() { _ = c.Run(ctx); close(runDone) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	<-runDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// IngestAt stores results reported by vantage at now and feeds the fresh
// ones to outage detection. Results for targets the vantage point does not
// probe, without an id, or stamped more than a minute in the future are
// rejected. The returned Ack counts every result.
func (c *Collector) IngestAt(now time.Time, vantage string, rs []probe.Result) (api.Ack, error) {
	var ack api.Ack
	allowed := c.allowed[vantage]
	ok := make([]probe.Result, 0, len(rs))
	for _, r := range rs {
		r.Vantage = vantage
		if r.ID == "" || len(r.ID) > 128 || !allowed[r.Target] || r.At.After(now.Add(time.Minute)) || r.At.IsZero() {
			ack.Rejected++
			continue
		}
		ok = append(ok, r)
	}
	slices.SortStableFunc(ok, func(a, b probe.Result) int { return a.At.Compare(b.At) })
	c.mu.Lock()
	defer c.mu.Unlock()
	fresh, err := c.store.AddResults(context.Background(), now, ok)
	if err != nil {
		return api.Ack{}, err
	}
	var evs []outage.Event
	for i, r := range ok {
		if !fresh[i] {
			if r.At.Before(now.Add(-c.store.Config().RawRetention)) {
				ack.Rejected++
			} else {
				ack.Duplicate++
			}
			continue
		}
		ack.Accepted++
		result := "ok"
		if !r.OK {
			result = string(r.Failure)
		}
		c.m.probes.WithLabelValues(r.Target, vantage, result).Inc()
		c.m.latency.WithLabelValues(r.Target, vantage).Observe(r.Timings.Total.Seconds())
		evs = append(evs, c.tracker.ObserveAt(now, r.Target, outage.Observation{
			Vantage: vantage, At: r.At, OK: r.OK, Failure: r.Failure, Latency: r.Timings.Total,
		})...)
	}
	c.m.ingest.WithLabelValues(vantage, "accepted").Add(float64(ack.Accepted))
	c.m.ingest.WithLabelValues(vantage, "duplicate").Add(float64(ack.Duplicate))
	c.m.ingest.WithLabelValues(vantage, "rejected").Add(float64(ack.Rejected))
	c.handle(context.Background(), evs)
	return ack, nil
}

// handle persists incidents, updates gauges, logs and queues webhooks.
// Called with c.mu held.
func (c *Collector) handle(ctx context.Context, evs []outage.Event) {
	for _, ev := range evs {
		switch ev.Kind {
		case outage.EventVantageState:
			c.m.vantageState.WithLabelValues(ev.Target, ev.Vantage).Set(float64(ev.To))
			c.log.Info("vantage state", "target", ev.Target, "vantage", ev.Vantage, "from", ev.From.String(), "to", ev.To.String())
		case outage.EventState:
			c.m.targetState.WithLabelValues(ev.Target).Set(float64(ev.To))
			c.log.Info("target state", "target", ev.Target, "from", ev.From.String(), "to", ev.To.String())
		case outage.EventOpen, outage.EventClassified, outage.EventClose:
			inc := *ev.Incident
			if err := c.store.SaveIncident(ctx, inc); err != nil {
				c.log.Error("save incident", "id", inc.ID, "err", err)
			}
			c.m.incidents.WithLabelValues(ev.Target, string(ev.Kind)).Inc()
			we := WebhookEvent{Event: string(ev.Kind), Target: ev.Target, At: ev.At, Label: inc.Label, Incident: inc}
			if ev.Kind == outage.EventClose {
				we.Rank = c.rank(ctx, inc, ev.At)
			}
			c.log.Info("incident "+string(ev.Kind), "id", inc.ID, "target", inc.Target, "label", string(inc.Label),
				"vantages", strings.Join(inc.Vantages, ","))
			c.hooks.enqueue(we)
		}
	}
}

// RankWindow is the history an incident is ranked against.
const RankWindow = 90 * 24 * time.Hour

func (c *Collector) rank(ctx context.Context, inc outage.Incident, now time.Time) string {
	hist, err := c.store.Incidents(ctx, inc.Target, now.Add(-RankWindow), 100000, false)
	if err != nil {
		return ""
	}
	_, _, phrase := outage.Rank(inc, hist, RankWindow, now)
	return phrase
}

// agent returns the agent a bearer token belongs to, comparing in constant
// time against every configured token.
func (c *Collector) agent(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return "", false
	}
	name := ""
	for _, a := range c.cfg.Agents {
		if subtle.ConstantTimeCompare([]byte(tok), []byte(a.Token)) == 1 {
			name = a.Name
		}
	}
	return name, name != ""
}
