// Package shield assembles the data plane of `levee serve`: listeners with
// the connection guard, TLS with SNI and ALPN, the HTTP/1.1 (fasthttp) and
// HTTP/2 (x/net/http2) servers, the proxy and its upstream pools, and the
// admin API. It owns reload (parse, validate, build, swap atomically) and
// graceful shutdown.
package shield

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"

	"github.com/levee-dev/levee/internal/admission"
	"github.com/levee-dev/levee/internal/cache"
	"github.com/levee-dev/levee/internal/challenge"
	"github.com/levee-dev/levee/internal/clientip"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/decide"
	"github.com/levee-dev/levee/internal/fingerprint"
	"github.com/levee-dev/levee/internal/guard"
	"github.com/levee-dev/levee/internal/h2guard"
	"github.com/levee-dev/levee/internal/iplist"
	"github.com/levee-dev/levee/internal/proxy"
	"github.com/levee-dev/levee/internal/store"
	"github.com/levee-dev/levee/internal/telemetry"
	"github.com/levee-dev/levee/internal/upstream"
)

// Options are the shield's dependencies.
type Options struct {
	// ConfigPath is re-read on Reload; empty means the configuration was not
	// loaded from a file (zero-config start) and Reload re-applies it.
	ConfigPath string
	// Load, when set, is what Reload calls instead of config.Load(ConfigPath):
	// the command line uses it to merge its overrides (--upstream, --listen,
	// --admin, --data-dir) into every re-read of the file, as at start.
	Load   func() (*config.Config, error)
	Logger *slog.Logger
	// Registry receives all metrics. Nil: a new registry.
	Registry *prometheus.Registry
}

// Shield is a running data plane. Create it with New, then Start.
type Shield struct {
	opts    Options
	cfg     atomic.Pointer[config.Config]
	reg     *prometheus.Registry
	log     *slog.Logger
	sampled *sampledLog

	guard *guard.Guard
	// acceptRec receives the connections refused at accept (see
	// acceptRecorder); nil without detection.
	acceptRec atomic.Pointer[telemetry.Recorder]
	h2g       *h2guard.Guard
	proxy     *proxy.Proxy
	h1        *fasthttp.Server
	h2        *http2.Server
	h2base    *http.Server

	mu        sync.Mutex // serializes Apply and Shutdown
	pools     []*upstream.Pool
	listeners []*listener
	h2conns   sync.WaitGroup
	// h2mu orders h2conns.Add (serveH2) before Shutdown's Wait: once
	// h2closed is set, new HTTP/2 connections are closed, not served.
	h2mu     sync.Mutex
	h2closed bool
	h2ctx    context.Context
	h2cancel context.CancelFunc
	started  time.Time

	store      *store.Store
	bans       *iplist.Bans
	engine     *decide.Engine
	feedCfg    []config.Feed
	feedCancel context.CancelFunc
	rulesMu    sync.Mutex // serializes runtime rule changes
	bgCancel   context.CancelFunc
	hkDone     chan struct{} // closed when housekeeping has returned
	alog       *proxy.AccessLog
	det        *detection
	chal       *challenge.Service
	gates      map[string]*admission.Gate // by site name, kept across reloads
	caches     map[string]*cache.Cache    // by site name, kept across reloads
	health     map[string]*siteHealth     // by site name, kept while unchanged; under mu
	history    *admission.History
	reloads    atomic.Int64
	lastErr    atomic.Pointer[string]
	// boot is the configuration the shield started with; pending lists
	// the settings of the running configuration that differ from it and
	// take effect only after a restart (restartOnly).
	boot    *config.Config
	pending atomic.Pointer[[]string]
	// alogSuppressed counts access log lines left out (accessLogSuppressed).
	alogSuppressed prometheus.Counter
	// retiredLogs are access logs replaced by reloads (closed 2 s later,
	// or at Shutdown).
	retiredLogs []*proxy.AccessLog
	// abuseBans queues the bans of HTTP/2 abusers (h2Abuse, banAbusers);
	// banStop ends the worker, banDone says it has ended.
	abuseBans        chan iplist.Ban
	banStop, banDone chan struct{}
	stop             chan struct{}
}

// New builds a shield from a validated config without binding sockets.
func New(cfg *config.Config, opts Options) (*Shield, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	s := &Shield{opts: opts, reg: reg, log: opts.Logger, stop: make(chan struct{}), abuseBans: make(chan iplist.Ban, 1024),
		banStop: make(chan struct{}), banDone: make(chan struct{})}
	if err := reg.Register(upstreamCollector{s}); err != nil {
		return nil, fmt.Errorf("shield: register metrics: %w", err)
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "levee_guard_flood_listeners",
		Help: "Listeners refusing a connection flood (64 or more refusals a second, more than admissions) with raw accept calls.",
	}, func() float64 { return float64(s.floodListeners()) })); err != nil {
		return nil, fmt.Errorf("shield: register metrics: %w", err)
	}
	s.alogSuppressed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "levee_access_log_suppressed_total",
		Help: "Access log lines of rejected requests left out over log.access_log_max_rejected per second.",
	})
	if err := reg.Register(s.alogSuppressed); err != nil {
		return nil, fmt.Errorf("shield: register metrics: %w", err)
	}
	s.sampled = newSampledLog(s.log, cfg.Guard.LogSampleInterval)
	var err error
	if s.guard, err = guard.New(guardConfig(cfg), reg, s.log); err != nil {
		return nil, err
	}
	h2c := h2guardConfig(cfg)
	if s.h2g, err = h2guard.New(h2c, h2guard.Deps{Registerer: reg, Logger: s.log, OnAbuse: s.h2Abuse}); err != nil {
		return nil, fmt.Errorf("shield: %w", err)
	}
	s.h2 = h2guard.ServerConfig(s.h2g.Config())
	s.h2base = h2guard.BaseConfig(s.h2g.Config())
	if err := http2.ConfigureServer(s.h2base, s.h2); err != nil {
		return nil, fmt.Errorf("shield: configure http2: %w", err)
	}
	s.h2ctx, s.h2cancel = context.WithCancel(context.Background())
	pm, err := proxy.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	s.proxy = proxy.New(pm, s.log)
	s.h1 = s.newH1Server(cfg)
	if err := s.openPolicy(context.Background(), cfg); err != nil {
		return nil, err
	}
	if err := s.openChallenge(cfg); err != nil {
		s.store.Close()
		return nil, err
	}
	if err := s.openHistory(context.Background()); err != nil {
		s.store.Close()
		return nil, err
	}
	s.gates = map[string]*admission.Gate{}
	s.caches = map[string]*cache.Cache{}
	s.health = map[string]*siteHealth{}
	if err := s.openDetection(cfg); err != nil {
		s.store.Close()
		return nil, err
	}
	if err := s.Apply(cfg); err != nil {
		s.store.Close()
		return nil, err
	}
	return s, nil
}

func guardConfig(c *config.Config) guard.Config {
	return guard.Config{
		MaxConns:      c.Guard.MaxConnections,
		MaxConnsPerIP: c.Guard.MaxConnectionsPerIP,
		NewConnRate:   c.Guard.NewConnectionsPerIP,
		NewConnBurst:  c.Guard.NewConnectionsBurst,
		WriteTimeout:  c.Guard.WriteTimeout,
	}
}

func h2guardConfig(c *config.Config) h2guard.Config {
	h := c.Guard.HTTP2
	return h2guard.Config{
		Window:                h.Window,
		MaxClientResets:       h.MaxResetsPerWindow,
		MaxServerResets:       h.MaxServerResetsPerWindow,
		MaxContinuationFrames: h.MaxContinuationFrames,
		Server: h2guard.ServerSettings{
			MaxConcurrentStreams:      uint32(h.MaxConcurrentStreams),
			MaxDecoderHeaderTableSize: uint32(h.HPACKTableBytes),
			MaxEncoderHeaderTableSize: uint32(h.HPACKTableBytes),
			MaxHeaderBytes:            int(h.MaxHeaderListBytes),
			IdleTimeout:               c.Guard.IdleTimeout,
			WriteByteTimeout:          c.Guard.WriteTimeout,
		},
	}
}

func (s *Shield) newH1Server(c *config.Config) *fasthttp.Server {
	g := c.Guard
	return &fasthttp.Server{
		Handler:                       s.proxy.ServeFastHTTP,
		ErrorHandler:                  s.h1Error,
		ContinueHandler:               s.continueOK,
		Logger:                        fasthttpLogger{s.sampled},
		Name:                          "levee",
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 true,
		NoDefaultContentType:          true,
		ReadTimeout:                   g.HeaderTimeout,
		IdleTimeout:                   g.IdleTimeout,
		ReadBufferSize:                int(g.MaxHeaderBytes),
		WriteBufferSize:               16 << 10,
		StreamRequestBody:             true,
		MaxRequestBodySize:            64 << 10, // buffered in memory below this; streamed above
		DisablePreParseMultipartForm:  true,
		CloseOnShutdown:               true,
		SecureErrorLogMessage:         true,
		Concurrency:                   g.MaxConnections + 1024,
		LazyRequestTime:               true,
		DisableHeaderNamesNormalizing: false,
	}
}

// fasthttpLogger routes fasthttp's own messages (one per malformed request)
// through the sampled logger.
type fasthttpLogger struct{ s *sampledLog }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.s.warn("fasthttp", "http/1.1 server", "msg", fmt.Sprintf(format, args...))
}

// h1Error answers requests fasthttp could not read: oversized heads (431),
// timeouts (408) and malformed requests (400), with static pages.
func (s *Shield) h1Error(ctx *fasthttp.RequestCtx, err error) {
	var code int
	var msg string
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		code, msg = 413, "Content Too Large"
	case isSmallBuffer(err):
		code, msg = 431, "Request Header Fields Too Large"
	case isTimeoutErr(err):
		code, msg = 408, "Request Timeout"
	default:
		code, msg = 400, "Bad Request"
	}
	ctx.Response.Reset()
	ctx.SetStatusCode(code)
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetBodyString(msg + "\n")
	ctx.SetConnectionClose()
}

// continueOK answers "Expect: 100-continue": a body announced larger than
// guard.max_body_bytes is refused (417) before the client sends it.
func (s *Shield) continueOK(h *fasthttp.RequestHeader) bool {
	max := int64(s.cfg.Load().Guard.MaxBodyBytes)
	return max < 0 || int64(h.ContentLength()) <= max
}

func isSmallBuffer(err error) bool {
	var e *fasthttp.ErrSmallBuffer
	return errors.As(err, &e)
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Apply builds the request-path state from cfg and swaps it in atomically.
// Upstream pools of the previous state are closed once swapped out;
// requests already using them finish. Listener and admin address changes
// need a restart; they are reported, not applied.
func (s *Shield) Apply(cfg *config.Config) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pending []string
	if s.boot != nil {
		pending = restartOnly(s.boot, cfg)
		cfg = keepDataDir(s.boot, cfg)
	}
	router := proxy.NewRouter()
	var pools []*upstream.Pool
	var psites []*proxy.Site // by index of cfg.Sites, as pools
	fail := func(err error) error {
		for _, p := range pools {
			p.Close()
		}
		return err
	}
	cookies, err := knownCookies(cfg)
	if err != nil {
		return err
	}
	for _, site := range cfg.Sites {
		lo, hi, _ := config.ParseStatusRange(site.HealthCheck.ExpectStatus)
		uc := upstream.Config{
			Site:            site.Name,
			LeastConn:       site.Balance == "least_conn",
			ConnectTimeout:  site.ConnectTimeout,
			ResponseTimeout: site.ResponseTimeout,
			IdleConnTimeout: site.IdleConnTimeout,
			MaxConns:        site.MaxConnsPerUpstream,
			Health: upstream.Health{
				Path: site.HealthCheck.Path, Interval: site.HealthCheck.Interval, Timeout: site.HealthCheck.Timeout,
				UnhealthyAfter: site.HealthCheck.UnhealthyAfter, HealthyAfter: site.HealthCheck.HealthyAfter,
				StatusLo: lo, StatusHi: hi,
			},
		}
		for _, u := range site.Upstreams {
			uc.Targets = append(uc.Targets, upstream.Target{Addr: config.UpstreamAddr(u.URL), Weight: u.Weight})
		}
		pool, err := upstream.New(uc, s.log)
		if err != nil {
			return fail(fmt.Errorf("site %s: %w", site.Name, err))
		}
		pools = append(pools, pool)
		hosts := make([]string, len(site.Hosts))
		for i, h := range site.Hosts {
			hosts[i] = config.NormalizeHost(h)
		}
		ps := s.proxy.NewSite(site.Name, pool, site.RewriteHost)
		psites = append(psites, ps)
		ps.Rec = s.recorder(site.Name)
		if site.OriginProtection.Enabled {
			g, err := s.gate(site)
			if err != nil {
				return fail(fmt.Errorf("site %s: origin_protection: %w", site.Name, err))
			}
			ps.Gate = g
		}
		ps.History = s.history
		ps.Cookies = cookies
		if s.det != nil {
			ps.Geo = s.det.geo
		}
		if site.Cache.Enabled {
			c, max, err := s.siteCache(site)
			if err != nil {
				return fail(fmt.Errorf("site %s: cache: %w", site.Name, err))
			}
			ps.Cache, ps.CacheMaxEntry = c, max
		}
		router.Add(ps, hosts)
	}
	if s.det != nil {
		if err := s.det.configure(cfg); err != nil {
			return fail(fmt.Errorf("detection: %w", err))
		}
		for _, ps := range router.Sites() {
			ps.Rec = s.recorder(ps.Name)
			ps.Geo = s.det.geo
		}
	}
	var cip *clientip.Resolver
	if len(cfg.TrustedProxies) > 0 {
		var err error
		cip, err = clientip.NewFromConfig(clientip.Config{Trusted: prefixStrings(cfg.TrustedProxies), Header: cfg.ClientIPHeader})
		if err != nil {
			return fail(fmt.Errorf("trusted_proxies: %w", err))
		}
	}
	// Certificates of running listeners are reloaded too.
	newCerts := map[*listener]*certStore{}
	for _, l := range s.listeners {
		for _, lc := range cfg.Listen {
			if lc.Address == l.cfg.Address && lc.TLS.Enabled() {
				cs, err := loadCerts(lc.TLS.Certificates)
				if err != nil {
					return fail(err)
				}
				newCerts[l] = cs
			}
		}
	}
	// The access log opens before the policy applies: applyPolicy swaps
	// the engine's policy in, so nothing after it may fail.
	alog, err := s.openAccessLog(cfg.Log)
	if err != nil {
		return fail(err)
	}
	if err := s.applyPolicy(cfg); err != nil {
		if alog != nil {
			alog.Close()
		}
		return fail(fmt.Errorf("policy: %w", err))
	}
	// Everything built: swap.
	if s.boot == nil {
		s.boot = cfg
	} else if len(pending) > 0 {
		s.log.Warn("configuration applied, but these settings keep their start values until a restart", "settings", pending)
	}
	s.pending.Store(&pending)
	for l, cs := range newCerts {
		l.certs.Store(cs)
	}
	s.attachHealth(cfg, pools, psites)
	for _, p := range pools {
		p.Start()
	}
	s.guard.Reconfigure(guardConfig(cfg))
	s.acceptRec.Store(acceptRecorder(cfg, psites))
	s.proxy.Publish(&proxy.State{Router: router, Config: proxy.Config{
		MaxURLLength:      int(cfg.Guard.MaxURLLength),
		MaxBodyBytes:      int64(cfg.Guard.MaxBodyBytes),
		BodyTimeout:       cfg.Guard.BodyTimeout,
		MinBodyRate:       int64(cfg.Guard.MinBodyRate),
		TunnelIdleTimeout: cfg.Guard.TunnelIdleTimeout,
		ConnectTimeout:    5 * time.Second,
		ClientIP:          cip,
		TarpitDelay:       cfg.TarpitDelay,
		MaxTarpits:        cfg.MaxTarpits,
	}, Decider: s.engine, Challenge: s.chal, ModeName: s.modeName, NormalMode: func(now time.Time) bool { return s.engine.ModeAt(now).Mode == decide.Normal }})
	s.cfg.Store(cfg)
	// The access log is reopened on every reload (log rotation via SIGHUP).
	// The old one closes a little later: a request that loaded it just
	// before the swap still gets its line written.
	if old := s.alog; old != nil {
		s.retiredLogs = append(s.retiredLogs, old)
		time.AfterFunc(2*time.Second, func() {
			s.mu.Lock()
			s.retiredLogs = slices.DeleteFunc(s.retiredLogs, func(l *proxy.AccessLog) bool { return l == old })
			s.mu.Unlock()
			old.Close()
		})
	}
	s.alog = alog
	if alog != nil {
		s.proxy.SetAccessLog(alog)
	} else {
		s.proxy.SetAccessLog(nil)
	}
	old := s.pools
	s.pools = pools
	// Let requests picked from the old pools finish first: they end within
	// the longest response timeout.
	var grace time.Duration
	for _, site := range cfg.Sites {
		grace = max(grace, site.ResponseTimeout)
	}
	for _, p := range old {
		p.StopHealthChecks()
		time.AfterFunc(grace, p.Close)
	}
	return nil
}

// modeName is the current mode as the challenge difficulty table names it.
func (s *Shield) modeName(now time.Time) string {
	switch s.engine.ModeAt(now).Mode {
	case decide.UnderAttack:
		return "under_attack"
	case decide.Elevated:
		return "elevated"
	}
	return "normal"
}

// siteCache returns the site's micro-cache, created on first use and kept
// across reloads (configuration changes take effect after a restart).
func (s *Shield) siteCache(site config.Site) (*cache.Cache, int64, error) {
	cc := site.Cache.Config
	cc.Name = site.Name
	cc = cc.WithDefaults()
	if c, ok := s.caches[site.Name]; ok {
		return c, int64(cc.MaxEntryBytes), nil
	}
	c, err := cache.New(cc, s.reg)
	if err != nil {
		return nil, 0, err
	}
	s.caches[site.Name] = c
	return c, int64(cc.MaxEntryBytes), nil
}

// gate returns the site's admission gate, created on first use and kept
// across reloads (its limit is learned state). A changed configuration
// takes effect after a restart.
func (s *Shield) gate(site config.Site) (*admission.Gate, error) {
	if g, ok := s.gates[site.Name]; ok {
		return g, nil
	}
	op := site.OriginProtection
	deps := admission.Deps{Registerer: s.reg, Logger: s.log}
	lim, err := admission.NewLimiter(admission.LimiterConfig{Name: site.Name, MinLimit: op.MinLimit, MaxLimit: op.MaxLimit}, deps)
	if err != nil {
		return nil, err
	}
	g, err := admission.NewGate(admission.GateConfig{Name: site.Name, MaxQueue: op.MaxQueue, Target: op.QueueTarget, MaxWait: op.MaxWait}, lim, deps)
	if err != nil {
		return nil, err
	}
	s.gates[site.Name] = g
	return g, nil
}

// accessLogSuppressed counts and logs (sampled) the access log lines of
// rejected requests left out over the per-second cap.
func (s *Shield) accessLogSuppressed(n int64) {
	s.alogSuppressed.Add(float64(n))
	s.sampled.warn("accesslog", "access log: lines of rejected requests left out (log.access_log_max_rejected per second)", "lines", n)
}

// openAccessLog opens the JSON access log: a file path (appended to, mode
// 0640), "stdout", or "" for none; refused requests' lines capped at
// access_log_max_rejected a second.
func (s *Shield) openAccessLog(c config.Log) (*proxy.AccessLog, error) {
	limit := int64(c.AccessLogMaxRejected)
	switch c.AccessLog {
	case "":
		return nil, nil
	case "stdout":
		return proxy.NewAccessLogCapped(os.Stdout, nil, limit, s.accessLogSuppressed), nil
	}
	f, err := os.OpenFile(c.AccessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return proxy.NewAccessLogCapped(f, f, limit, s.accessLogSuppressed), nil
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// keepDataDir returns cfg with boot's data directory when a reload changed
// it (a restart applies that: the stores are open), along with the key
// files derived from it: the known-client key is read on every reload, and
// reading it from the new directory would rotate the key (generating one)
// and void every cookie.
func keepDataDir(boot, cfg *config.Config) *config.Config {
	if cfg.DataDir == boot.DataDir {
		return cfg
	}
	c := *cfg
	c.SetDataDir(boot.DataDir)
	return &c
}

// restartOnly lists the settings of cfg that differ from boot's and that
// only a restart applies: listeners (certificates excepted: they reload),
// the admin listener, the HTTP/1.1 and HTTP/2 servers (built once at
// start), the log handler and its sampling, the data directory (stores and
// keys opened at start), the challenge service, detection's switch, GeoIP
// databases and thresholds (for sites that already exist), and each
// site's micro-cache and admission gate (kept across reloads with their
// state). TestRestartOnly lists what a reload does apply.
func restartOnly(boot, cfg *config.Config) []string {
	var out []string
	add := func(changed bool, name string) {
		if changed {
			out = append(out, name)
		}
	}
	add(!sameListeners(boot, cfg), "listen")
	add(boot.Admin.Address != cfg.Admin.Address, "admin.address")
	g, h := boot.Guard, cfg.Guard
	add(boot.DataDir != cfg.DataDir, "data_dir")
	add(g.HeaderTimeout != h.HeaderTimeout, "guard.header_timeout")
	add(g.WriteTimeout != h.WriteTimeout, "guard.write_timeout (for HTTP/2; HTTP/1.1 applies it)")
	add(g.LogSampleInterval != h.LogSampleInterval, "guard.log_sample_interval")
	// The HTTP/1.1 server's concurrency is max_connections + 1024, set at
	// start: the guard's cap itself follows a reload.
	add(h.MaxConnections > g.MaxConnections+1024, "guard.max_connections (above the start value + 1024)")
	add(g.IdleTimeout != h.IdleTimeout, "guard.idle_timeout")
	add(g.MaxHeaderBytes != h.MaxHeaderBytes, "guard.max_header_bytes")
	gh, hh := g.HTTP2, h.HTTP2
	gh.AbuseBan, hh.AbuseBan = 0, 0 // read at each abuse
	add(gh != hh, "guard.http2")
	add(boot.Log.Level != cfg.Log.Level, "log.level")
	add(boot.Log.Format != cfg.Log.Format, "log.format")
	add(!reflect.DeepEqual(boot.Challenge, cfg.Challenge), "challenge")
	bd, cd := boot.Detection, cfg.Detection
	add(bd.Disable != cd.Disable, "detection.disable")
	add(!reflect.DeepEqual(bd.GeoIP, cd.GeoIP), "detection.geoip")
	add(bd.WarmUp != cd.WarmUp || bd.Ratio != cd.Ratio || bd.MinRequests != cd.MinRequests,
		"detection.warm_up/ratio/min_requests (sites that existed at start)")
	for _, b := range boot.Sites {
		for _, c := range cfg.Sites {
			if b.Name != c.Name {
				continue
			}
			add(b.Cache.Enabled && c.Cache.Enabled && !reflect.DeepEqual(b.Cache, c.Cache), "sites["+c.Name+"].cache")
			add(b.OriginProtection.Enabled && c.OriginProtection.Enabled && !reflect.DeepEqual(b.OriginProtection, c.OriginProtection),
				"sites["+c.Name+"].origin_protection")
		}
	}
	return out
}

// sameListeners reports whether a and b listen alike.
func sameListeners(a, b *config.Config) bool {
	if len(a.Listen) != len(b.Listen) {
		return false
	}
	for i := range a.Listen {
		x, y := a.Listen[i], b.Listen[i]
		if x.Address != y.Address || x.ProxyProtocol != y.ProxyProtocol || x.ProxyProtocolTimeout != y.ProxyProtocolTimeout ||
			x.H2C != y.H2C || x.TLS.Enabled() != y.TLS.Enabled() || x.TLS.MinVersion != y.TLS.MinVersion ||
			x.TLS.DisableHTTP2 != y.TLS.DisableHTTP2 {
			return false
		}
	}
	return true
}

// Start binds every listener and starts serving. It returns after the
// sockets are bound; serving continues in the background.
func (s *Shield) Start() error {
	cfg := s.cfg.Load()
	s.started = time.Now()
	for _, lc := range cfg.Listen {
		// No TCP keep-alive on client sockets: Go would set it up with four
		// setsockopt calls per accepted connection, refused ones included;
		// idle and header timeouts already end dead connections.
		ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", lc.Address)
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen %s: %w", lc.Address, err)
		}
		l := newListener(s, lc, ln)
		if lc.TLS.Enabled() {
			cs, err := loadCerts(lc.TLS.Certificates)
			if err != nil {
				l.close()
				s.closeListeners()
				return err
			}
			l.certs.Store(cs)
		}
		s.listeners = append(s.listeners, l)
	}
	for _, l := range s.listeners {
		go func() { _ = s.h1.Serve(l.h1) }()
		go l.acceptLoop()
		s.log.Info("listening", "address", l.ln.Addr().String(), "tls", l.cfg.TLS.Enabled(), "proxy_protocol", l.cfg.ProxyProtocol, "h2c", l.cfg.H2C)
	}
	bg, cancel := context.WithCancel(context.Background())
	s.bgCancel = cancel
	go s.bans.Run(bg)
	if s.det != nil {
		go s.det.run(bg)
	}
	s.runFeeds()
	s.hkDone = make(chan struct{})
	go s.housekeeping()
	go s.banAbusers()
	return nil
}

func (s *Shield) housekeeping() {
	defer close(s.hkDone)
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	var lastPrune time.Time
	lastHistory := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.guard.Sweep(now)
			s.pruneRuntimeRules(now)
			if now.Sub(lastHistory) >= historySaveEvery {
				lastHistory = now
				if err := s.saveHistory(context.Background(), now); err != nil {
					s.log.Error("could not save the address history", "err", err)
				}
			}
			if now.Sub(lastPrune) > time.Minute {
				lastPrune = now
				if _, err := s.store.PruneExpired(context.Background(), now); err != nil {
					s.log.Error("could not prune expired bans and rules from the store", "err", err)
				}
			}
		}
	}
}

// Addrs returns the bound listener addresses (useful with port 0).
func (s *Shield) Addrs() []net.Addr {
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.ln.Addr()
	}
	return out
}

// floodListeners counts the listeners on the raw accept path of a
// connection flood (listener.go).
func (s *Shield) floodListeners() int {
	n := 0
	for _, l := range s.listeners {
		if l.rawMode.Load() {
			n++
		}
	}
	return n
}

// Registry returns the metrics registry.
func (s *Shield) Registry() *prometheus.Registry { return s.reg }

// Config returns the configuration in effect.
func (s *Shield) Config() *config.Config { return s.cfg.Load() }

// Guard returns the connection guard (for ban checks and status).
func (s *Shield) Guard() *guard.Guard { return s.guard }

func (s *Shield) serveH2(c net.Conn, peer netip.Addr) {
	s.h2mu.Lock()
	if s.h2closed {
		s.h2mu.Unlock()
		c.Close() // shutting down
		return
	}
	s.h2conns.Add(1)
	s.h2mu.Unlock()
	defer s.h2conns.Done()
	// The HTTP/2 fingerprint recorder reads the client's first frames
	// (SETTINGS, WINDOW_UPDATE, PRIORITY, first HEADERS) and then steps aside.
	fc, rec := fingerprint.WrapH2(s.h2g.Wrap(c))
	s.h2.ServeConn(fc, &http2.ServeConnOpts{
		Context:    fingerprint.WithH2(proxy.WithPeer(s.h2ctx, peer, c), rec),
		Handler:    s.proxy,
		BaseConfig: s.h2base,
	})
}

func (s *Shield) closeListeners() {
	for _, l := range s.listeners {
		l.close()
		l.h1.Close()
	}
}

// Shutdown stops accepting, lets in-flight requests finish (responses then
// close their connections; HTTP/2 connections get GOAWAY), and returns when
// all are done or ctx expires.
func (s *Shield) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.stop:
		return nil
	default:
		close(s.stop)
	}
	s.proxy.SetDraining(true)
	for _, l := range s.listeners {
		l.close()
	}
	// Graceful GOAWAY to HTTP/2 connections.
	_ = s.h2base.Shutdown(ctx)
	err := s.h1.ShutdownWithContext(ctx)
	s.h2mu.Lock()
	s.h2closed = true
	s.h2mu.Unlock()
	h2done := make(chan struct{})
	go func() { s.h2conns.Wait(); close(h2done) }()
	select {
	case <-h2done:
	case <-ctx.Done():
		err = errors.Join(err, ctx.Err())
	}
	s.h2cancel()
	close(s.banStop) // HTTP/2 connections are done: no more abuse bans
	s.closeListeners()
	for _, p := range s.pools {
		p.Close()
	}
	if s.bgCancel != nil {
		s.bgCancel()
	}
	if s.feedCancel != nil {
		s.feedCancel()
	}
	if s.alog != nil {
		s.proxy.SetAccessLog(nil)
		s.alog.Close()
	}
	for _, l := range s.retiredLogs { // replaced by reloads: flush now
		l.Close()
	}
	if s.det != nil {
		s.det.close()
	}
	if s.hkDone != nil {
		// Housekeeping writes to the store (pruning, history): let a
		// running pass finish so that nothing writes after the final save
		// or the store's close.
		select {
		case <-s.hkDone:
		case <-ctx.Done():
		}
	}
	if s.hkDone != nil { // started: so is the ban worker
		select {
		case <-s.banDone:
		case <-ctx.Done():
		}
	}
	if herr := s.saveHistory(context.Background(), time.Now()); herr != nil {
		s.log.Error("could not save the address history", "err", herr)
	}
	if cerr := s.store.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// acceptRecorder is the telemetry recorder that counts connections refused
// at accept time, before any Host header says which site they were for:
// the default site's (the one without hosts), else the first site's. The
// detector then sees a connection flood that the guard turns away (as a
// connection surge, with its sources and prefixes) instead of nothing.
func acceptRecorder(cfg *config.Config, sites []*proxy.Site) *telemetry.Recorder {
	if len(sites) == 0 {
		return nil
	}
	for i, site := range cfg.Sites {
		if len(site.Hosts) == 0 && i < len(sites) {
			return sites[i].Rec
		}
	}
	return sites[0].Rec
}

// h2Abuse is h2guard's OnAbuse: with guard.http2.abuse_ban set, the client
// address of the connection just cut off is queued for a ban that long.
// OnAbuse must not block: bans are stored by one worker (banAbusers), and
// dropped (and counted in the log) when its queue is full. Trusted proxies
// and allowlisted clients are never banned, and a ban in force is not
// renewed.
func (s *Shield) h2Abuse(c *h2guard.Conn, r h2guard.Reason) {
	cfg := s.cfg.Load()
	d := cfg.Guard.HTTP2.AbuseBan
	addr := guard.AddrOf(c.RemoteAddr())
	if d <= 0 || !addr.IsValid() || s.bans == nil || s.bans.Banned(addr, time.Now()) || s.engine.Allowed(addr) {
		return
	}
	for _, p := range cfg.TrustedProxies {
		if p.Contains(addr) {
			return
		}
	}
	now := time.Now()
	b := iplist.Ban{Prefix: netip.PrefixFrom(addr, addr.BitLen()), Reason: "http2 abuse: " + string(r), Source: "h2guard",
		Created: now, Expires: now.Add(d)}
	select {
	case s.abuseBans <- b:
	default:
		s.sampled.warn("h2ban", "HTTP/2 abuser not banned: ban queue full", "client", addr)
	}
}

// banAbusers stores the bans h2Abuse queues, a batch at a time (what is
// queued, without repeats), until banStop closes: then it stores what is
// still queued and closes banDone. Shutdown closes banStop once the
// HTTP/2 connections are done, and waits for banDone before closing the
// store. Stored bans are logged through the sampled logger: a botnet's
// addresses must not flood the log.
func (s *Shield) banAbusers() {
	defer close(s.banDone)
	for {
		var batch []iplist.Ban
		select {
		case b := <-s.abuseBans:
			batch = append(batch, b)
		case <-s.banStop:
			s.storeBans(s.drainBans(nil))
			return
		}
		s.storeBans(s.drainBans(batch))
	}
}

// drainBans appends the bans queued now to batch, without repeats of one
// prefix, at most 256.
func (s *Shield) drainBans(batch []iplist.Ban) []iplist.Ban {
	for len(batch) < 256 {
		select {
		case b := <-s.abuseBans:
			if !slices.ContainsFunc(batch, func(x iplist.Ban) bool { return x.Prefix == b.Prefix }) {
				batch = append(batch, b)
			}
		default:
			return batch
		}
	}
	return batch
}

// storeBans adds a batch of abuse bans. When the batch fails as a whole
// (the max_bans limit, say), each ban is tried on its own so that those
// that fit are kept.
func (s *Shield) storeBans(batch []iplist.Ban) {
	if len(batch) == 0 {
		return
	}
	add := func(bs ...iplist.Ban) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.bans.Add(ctx, bs...); err != nil && !errors.Is(err, iplist.ErrNotPersisted) {
			return err
		}
		return nil
	}
	stored, err := len(batch), add(batch...)
	if err != nil && len(batch) > 1 {
		stored = 0
		for _, b := range batch {
			if add(b) == nil {
				stored++
			}
		}
	}
	if stored < len(batch) {
		s.sampled.warn("h2ban-fail", "could not ban HTTP/2 abusers", "clients", len(batch)-stored, "err", err)
	}
	if stored > 0 {
		s.sampled.warn("h2ban", "banned HTTP/2 abusers", "clients", stored, "first", batch[0].Prefix.Addr(), "reason", batch[0].Reason,
			"until", batch[0].Expires)
	}
}
