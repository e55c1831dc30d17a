package shield

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/levee-dev/levee/internal/admin"
	"github.com/levee-dev/levee/internal/buildinfo"
	"github.com/levee-dev/levee/internal/config"
)

// Reload re-reads the configuration file (when the shield was started from
// one, through Options.Load if set), validates it and applies it. On any
// error the running configuration stays in effect and the error is
// returned.
func (s *Shield) Reload() error {
	cfg := s.cfg.Load()
	load := s.opts.Load
	if load == nil && s.opts.ConfigPath != "" {
		load = func() (*config.Config, error) { return config.Load(s.opts.ConfigPath) }
	}
	if load != nil {
		nc, err := load()
		if err != nil {
			s.recordReload(err)
			return fmt.Errorf("reload refused, running configuration kept: %w", err)
		}
		cfg = nc
	}
	if err := s.Apply(cfg); err != nil {
		s.recordReload(err)
		return fmt.Errorf("reload refused, running configuration kept: %w", err)
	}
	s.recordReload(nil)
	return nil
}

func (s *Shield) recordReload(err error) {
	if err != nil {
		msg := err.Error()
		s.lastErr.Store(&msg)
		s.log.Error("reload failed; keeping the running configuration", "err", err)
		return
	}
	s.lastErr.Store(nil)
	s.reloads.Add(1)
	s.log.Info("configuration reloaded")
}

// SiteStatus describes one site in Status.
type SiteStatus struct {
	Name      string           `json:"name"`
	Hosts     []string         `json:"hosts"`
	Upstreams []UpstreamStatus `json:"upstreams"`
	// Breaker is the circuit breaker's state (closed, open, half-open);
	// empty without passive health.
	Breaker string `json:"breaker,omitempty"`
}

// UpstreamStatus describes one origin.
type UpstreamStatus struct {
	Addr     string `json:"addr"`
	Healthy  bool   `json:"healthy"`
	Ejected  bool   `json:"ejected,omitempty"` // by passive health
	Inflight int64  `json:"inflight"`
	Conns    int    `json:"conns"`
}

// StatusReport is the body of GET /v1/status.
type StatusReport struct {
	Version         string       `json:"version"`
	Uptime          string       `json:"uptime"`
	StartedAt       time.Time    `json:"started_at"`
	Mode            string       `json:"mode"`
	Listeners       []string     `json:"listeners"`
	Sites           []SiteStatus `json:"sites"`
	OpenConnections int64        `json:"open_connections"`
	// FloodListeners counts listeners refusing a connection flood on the
	// raw accept path (64+ refusals a second).
	FloodListeners  int    `json:"flood_listeners"`
	TrackedAddrs    int    `json:"tracked_addresses"`
	Reloads         int64  `json:"reloads"`
	LastReloadError string `json:"last_reload_error,omitempty"`
	// RestartPending lists the settings of the running configuration
	// that keep their start values until a restart (listeners, server
	// timeouts and sizes, log handler, caches and admission gates).
	RestartPending []string         `json:"restart_pending,omitempty"`
	Bans           int              `json:"bans"`
	Rules          []RuleView       `json:"rules"`
	LimitTable     LimitTableStatus `json:"limit_table"`
	// Feeds are the threat feeds' names (FeedLists has their details).
	Feeds []string `json:"feeds,omitempty"`
	// FeedLists describes each threat feed in declaration order.
	FeedLists []FeedStatus `json:"feed_lists,omitempty"`
	// AllowPrefixes and BlockPrefixes are the sizes of the static allow
	// and block lists of the running configuration (addresses or CIDRs).
	AllowPrefixes int `json:"allow_prefixes"`
	BlockPrefixes int `json:"block_prefixes"`
}

// FeedStatus describes one threat feed in Status.
type FeedStatus struct {
	Name string `json:"name"`
	Path string `json:"path"`
	// Format of the last good read (detected when the feed says auto).
	Format string `json:"format"`
	// Prefixes in effect: from the last good read.
	Prefixes int `json:"prefixes"`
	// Skipped bad lines in the last good read.
	Skipped int `json:"skipped_lines,omitempty"`
	// Loaded is the time of the last good read; zero if never.
	Loaded time.Time `json:"loaded,omitzero"`
	// Error is the last read failure, empty after a good read.
	Error string `json:"error,omitempty"`
}

// LimitTableStatus summarizes the rate limit table.
type LimitTableStatus struct {
	Slots     int64  `json:"slots"`
	Bytes     int64  `json:"bytes"`
	Live      int64  `json:"live_keys"`
	Evictions uint64 `json:"evictions_active"`
}

// Status implements admin.Backend.
func (s *Shield) Status() any {
	cfg := s.cfg.Load()
	st := StatusReport{
		Version:         buildinfo.String(),
		Uptime:          time.Since(s.started).Truncate(time.Second).String(),
		StartedAt:       s.started,
		Mode:            s.engine.ModeAt(time.Now()).Name,
		OpenConnections: s.guard.Open(),
		FloodListeners:  s.floodListeners(),
		TrackedAddrs:    s.guard.Tracked(),
		Reloads:         s.reloads.Load(),
	}
	if e := s.lastErr.Load(); e != nil {
		st.LastReloadError = *e
	}
	if p := s.pending.Load(); p != nil {
		st.RestartPending = *p
	}
	st.Bans = s.bans.Len()
	st.Rules = s.ruleViews()
	ts := s.engine.LimitTable().Stats()
	st.LimitTable = LimitTableStatus{Slots: int64(ts.Slots), Bytes: int64(ts.Bytes), Live: int64(ts.Live), Evictions: uint64(ts.EvictionsActive)}
	if f := s.engine.Feeds(); f != nil {
		st.Feeds = f.Lists()
		for _, l := range f.Status() {
			st.FeedLists = append(st.FeedLists, FeedStatus{Name: l.Name, Path: l.Path, Format: l.Format,
				Prefixes: l.Prefixes, Skipped: l.Skipped, Loaded: l.Loaded, Error: l.Error})
		}
	}
	st.AllowPrefixes, st.BlockPrefixes = len(cfg.Allow), len(cfg.Block)
	for _, a := range s.Addrs() {
		st.Listeners = append(st.Listeners, a.String())
	}
	s.mu.Lock()
	pools := s.pools
	breakers := map[string]string{}
	for name, h := range s.health {
		if h.breaker != nil {
			breakers[name] = h.breaker.State().String()
		}
	}
	s.mu.Unlock()
	now := time.Now()
	for i, p := range pools {
		ss := SiteStatus{Name: p.Site(), Breaker: breakers[p.Site()]}
		if i < len(cfg.Sites) {
			ss.Hosts = cfg.Sites[i].Hosts
		}
		for _, b := range p.Backends() {
			ss.Upstreams = append(ss.Upstreams, UpstreamStatus{Addr: b.Addr, Healthy: b.Healthy(), Ejected: b.Ejected(now),
				Inflight: b.Inflight(), Conns: b.Open()})
		}
		st.Sites = append(st.Sites, ss)
	}
	return st
}

// Stats implements admin.Backend: every metric family as name -> value(s).
func (s *Shield) Stats() any {
	mfs, err := s.reg.Gather()
	if err != nil {
		return map[string]any{"error": err.Error()}
	}
	out := map[string]any{}
	for _, mf := range mfs {
		var sum float64
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
		out[mf.GetName()] = sum
	}
	return out
}

// StartAdmin serves the admin API on the configured address, unless it is
// "off". It returns the bound address (nil when off).
func (s *Shield) StartAdmin() (net.Addr, *admin.Server, error) {
	cfg := s.cfg.Load()
	if cfg.Admin.Address == "off" {
		return nil, nil, nil
	}
	tok, err := admin.LoadToken(cfg.Admin.TokenEnv, cfg.Admin.TokenFile, true)
	if err != nil {
		return nil, nil, err
	}
	srv, err := admin.New(admin.Config{Token: tok, PublicMetrics: cfg.Admin.PublicMetrics}, s, s.reg, s.log)
	if err != nil {
		return nil, nil, err
	}
	s.registerPolicyAPI(srv)
	s.registerIncidentAPI(srv)
	ln, err := net.Listen("tcp", cfg.Admin.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("admin: listen %s: %w", cfg.Admin.Address, err)
	}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-s.stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	s.log.Info("admin API listening", "address", ln.Addr().String(), "token_file", cfg.Admin.TokenFile)
	return ln.Addr(), srv, nil
}
