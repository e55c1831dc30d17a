// Package config defines Levee's configuration: one tree of structs decoded
// from YAML, with documented defaults and strict validation.
//
// Loading is three steps, as in Prometheus: strict decode (unknown keys are
// errors), Defaults (fill every zero field with its documented default), then
// Validate. Every error carries the file and line it refers to. A reload
// parses and validates a whole new Config before anything is swapped, so a bad
// file never half-applies.
//
// Convention: for numeric and duration fields, zero (or omitted) means "use the
// default"; a negative value disables the limit where the field says so.
// Boolean fields are phrased so that false is the default.
package config

import (
	"time"

	"github.com/levee-dev/levee/internal/cache"
	"github.com/levee-dev/levee/internal/challenge"
)

// Config is the root of a shield's configuration (levee serve).
type Config struct {
	// Listen is the list of client-facing listeners.
	// Default: one plain HTTP listener on ":8000".
	Listen []Listener `yaml:"listen"`

	// Sites are the protected origins, selected by the request's Host header.
	// At least one site is required. A site with no hosts is the default site,
	// used when no other site matches; at most one site may have no hosts.
	Sites []Site `yaml:"sites"`

	// Admin is the operator API (status, stats, reload, metrics).
	Admin Admin `yaml:"admin"`

	// Guard holds the connection-level and HTTP-level protections.
	Guard Guard `yaml:"guard"`

	// TrustedProxies lists the networks whose X-Forwarded-For / Forwarded
	// headers are believed. Default: empty (headers from clients are never
	// trusted).
	TrustedProxies Prefixes `yaml:"trusted_proxies"`

	// ClientIPHeader is the header read from trusted proxies:
	// "x-forwarded-for" (default) or "forwarded".
	ClientIPHeader string `yaml:"client_ip_header"`

	// DataDir holds persistent state (admin token, bans, incidents).
	// Default: $LEVEE_DATA_DIR, else /var/lib/levee when running as root,
	// else $XDG_STATE_HOME/levee or ~/.local/state/levee.
	DataDir string `yaml:"data_dir"`

	// Log configures the process log and the access log.
	Log Log `yaml:"log"`

	// Policy: allow/block lists, feeds, limits and rules (top-level keys).
	Policy `yaml:",inline"`

	// Detection configures attack detection and automatic mitigation, on by
	// default.
	Detection Detection `yaml:"detection"`

	// Challenge configures the browser challenges (proof of work, no-JS
	// path, clearance cookies); see internal/challenge/README.md. With no
	// keys configured, a key is generated into <data_dir>/challenge.key
	// (single node; configure shared keys for several nodes).
	Challenge challenge.Config `yaml:"challenge"`

	// KnownClients configures the known-client cookie, on by default.
	KnownClients KnownClients `yaml:"known_clients"`
}

// KnownClients configures the known-client cookie: a signed first-party
// cookie (internal/admission Cookies) given in normal mode with successful
// HTML responses to clients that have none, bound to the client's /24
// (IPv4) or /64 (IPv6). Once it is MinAge old it makes its holder a known
// client: not challenged in under-attack mode, and served first by the
// admission gate (sites[].origin_protection). The address history does the
// same for addresses seen in normal times; either suffices.
type KnownClients struct {
	// DisableCookie turns the cookie off (no Set-Cookie is ever added).
	// Default false.
	DisableCookie bool `yaml:"disable_cookie"`
	// CookieName is the cookie's name. Default "levee_known".
	CookieName string `yaml:"cookie_name"`
	// KeyFile holds the signing key: base64 of at least 32 bytes. Default
	// <data_dir>/known.key, generated with mode 0600 when missing. Give
	// every node behind one name the same file; replacing it invalidates
	// every cookie (see OldKeyFiles to rotate it without that).
	KeyFile string `yaml:"key_file"`
	// OldKeyFiles hold keys that no longer sign but still verify, in the
	// same format: to rotate, move the current key file's path here, write
	// a new key_file and reload; cookies signed with the old key keep
	// counting until they expire (max_age) or the file is removed from the
	// list. At most MaxOldKeyFiles. Default none.
	OldKeyFiles []string `yaml:"old_key_files"`
	// MaxAge is how long a cookie stays valid (and its Max-Age). Default
	// 720h (30 days).
	MaxAge time.Duration `yaml:"max_age"`
	// MinAge is how old a cookie must be to count: a cookie obtained just
	// before an attack is declared does not help in it. Default 10m.
	MinAge time.Duration `yaml:"min_age"`
}

// MaxOldKeyFiles bounds known_clients.old_key_files: a cookie that no key
// verifies costs one HMAC per key.
const MaxOldKeyFiles = 4

// Detection configures the detector. Zero values take the detector's
// documented defaults (internal/detect).
type Detection struct {
	// Disable turns off telemetry, detection and automatic mitigation.
	// Default false: detection is on.
	Disable bool `yaml:"disable"`
	// WarmUp is the traffic history needed before any attack is declared.
	// Default 60s.
	WarmUp time.Duration `yaml:"warm_up"`
	// Ratio is how many times its baseline a metric must reach to count as
	// a surge. Default 2.5.
	Ratio float64 `yaml:"ratio"`
	// MinRequests is the least excess in requests per second over the
	// baseline for a request surge. Default 50.
	MinRequests float64 `yaml:"min_requests"`
	// DisableMitigation detects and records incidents but generates no
	// rules and changes no mode. Default false.
	DisableMitigation bool `yaml:"disable_mitigation"`
	// Webhooks are notified on attack start, escalation, mitigation and end.
	Webhooks []Webhook `yaml:"webhooks"`
	// GeoIP lists MaxMind-format (.mmdb) databases (country and/or ASN) used
	// to add countries, AS numbers and owners to telemetry and incidents.
	// Default: none.
	GeoIP []string `yaml:"geoip"`
}

// Webhook is one notification endpoint.
type Webhook struct {
	// URL receives POST requests (http or https).
	URL string `yaml:"url"`
	// Format is "json" (default) or "slack".
	Format string `yaml:"format"`
	// Events to send: attack_start, escalation, mitigation, attack_end.
	// Default: all.
	Events []string `yaml:"events"`
}

// Listener is one client-facing socket.
type Listener struct {
	// Address is host:port to bind, e.g. ":8000" or "127.0.0.1:8443".
	Address string `yaml:"address"`
	// ProxyProtocol, when true, requires a PROXY protocol v1 or v2 header on
	// every connection and takes the client address from it. Only enable it
	// behind a load balancer that sends one. Default false.
	ProxyProtocol bool `yaml:"proxy_protocol"`
	// ProxyProtocolTimeout bounds reading the PROXY header. Default 5s.
	ProxyProtocolTimeout time.Duration `yaml:"proxy_protocol_timeout"`
	// TLS enables TLS termination on this listener when it lists certificates.
	TLS TLS `yaml:"tls"`
	// H2C accepts cleartext HTTP/2 with prior knowledge on a plain listener.
	// Default false.
	H2C bool `yaml:"h2c"`
}

// TLS configures TLS termination for a listener.
type TLS struct {
	// Certificates are cert/key file pairs. The one matching the client's SNI
	// is chosen (by the certificate's names); the first is the fallback.
	Certificates []Certificate `yaml:"certificates"`
	// MinVersion is "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// DisableHTTP2 turns off HTTP/2 negotiation (ALPN h2). Default false.
	DisableHTTP2 bool `yaml:"disable_http2"`
}

// Certificate is a PEM certificate chain and its private key.
type Certificate struct {
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Enabled reports whether the listener terminates TLS.
func (t TLS) Enabled() bool { return len(t.Certificates) > 0 }

// Site is one protected website: the hosts it answers for and its origins.
type Site struct {
	// Name identifies the site in metrics, logs and the admin API.
	// Default: the first host, or "default".
	Name string `yaml:"name"`
	// Hosts are the Host header values this site serves (case-insensitive,
	// port ignored). "*.example.com" matches any subdomain. Empty: default site.
	Hosts []string `yaml:"hosts"`
	// Upstreams are the origin servers, as http://host:port URLs. At least one.
	Upstreams []Upstream `yaml:"upstreams"`
	// Balance is "round_robin" (default) or "least_conn".
	Balance string `yaml:"balance"`
	// HealthCheck configures active health checks of the upstreams.
	HealthCheck HealthCheck `yaml:"health_check"`
	// ConnectTimeout bounds dialing an upstream. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ResponseTimeout bounds each wait for the upstream while a response is
	// read (an inactivity timeout: the headers, then every part of the
	// body); 504 when it passes before the headers. Default 60s.
	ResponseTimeout time.Duration `yaml:"response_timeout"`
	// MaxConnsPerUpstream caps open connections to each upstream (pool limit).
	// Requests beyond it wait up to ConnectTimeout, then get 503 with
	// Retry-After. Default 1024.
	MaxConnsPerUpstream int `yaml:"max_conns_per_upstream"`
	// IdleConnTimeout closes pooled upstream connections idle this long.
	// Default 60s.
	IdleConnTimeout time.Duration `yaml:"idle_conn_timeout"`
	// OriginProtection keeps the origin at its best throughput under
	// overload: an adaptive concurrency limit learned from the origin's
	// latency and a priority admission queue (known clients first).
	OriginProtection OriginProtection `yaml:"origin_protection"`
	// Cache is the site's micro-cache of cacheable GET responses, with
	// serve-stale when the origin fails or is overloaded. Off by default.
	Cache SiteCache `yaml:"cache"`
	// PassiveHealth watches the answers of the site's upstreams: a target
	// that keeps failing is ejected from balancing for a while, and a
	// circuit breaker stops sending requests to an origin that mostly
	// fails. Off by default.
	PassiveHealth PassiveHealth `yaml:"passive_health"`
	// RewriteHost, when set, replaces the Host header sent upstream.
	// Default: the client's Host header is passed through.
	RewriteHost string `yaml:"rewrite_host"`
}

// SiteCache enables the micro-cache; its other fields are those of
// internal/cache (max_bytes, max_entry_bytes, ignore_params, keep_params,
// statuses, default_ttl, max_ttl, stale_for, ...), with their defaults.
type SiteCache struct {
	Enabled      bool `yaml:"enabled"`
	cache.Config `yaml:",inline"`
}

// OriginProtection configures adaptive concurrency and admission.
type OriginProtection struct {
	// Enabled turns it on for the site. Default false.
	Enabled bool `yaml:"enabled"`
	// MinLimit and MaxLimit bound the learned concurrency limit. Defaults
	// 2 and 1000.
	MinLimit int `yaml:"min_limit"`
	MaxLimit int `yaml:"max_limit"`
	// MaxQueue bounds waiting requests. Default 1024.
	MaxQueue int `yaml:"max_queue"`
	// QueueTarget is the standing queue delay above which the lowest class
	// is shed. Default 5ms.
	QueueTarget time.Duration `yaml:"queue_target"`
	// MaxWait bounds any wait in the queue; then 503. Default 1s.
	MaxWait time.Duration `yaml:"max_wait"`
}

// PassiveHealth configures passive health checks: judgements from real
// traffic, next to the active HealthCheck. A failure is a connect error, a
// timeout or another transport error, or a 502, 503 or 504 answer; other
// 5xx answers are application errors and do not count.
type PassiveHealth struct {
	// Enabled turns on outlier ejection (sites with two or more upstreams)
	// and, unless Breaker.Disable, the circuit breaker. Default false.
	Enabled bool `yaml:"enabled"`
	// ConsecutiveErrors ejects an upstream after this many failures in a
	// row. Default 5.
	ConsecutiveErrors int `yaml:"consecutive_errors"`
	// BaseEjection is the first ejection's length; the n-th ejection in a
	// row lasts n times as long. Default 30s.
	BaseEjection time.Duration `yaml:"base_ejection"`
	// MaxEjection caps an ejection's length. Default 300s.
	MaxEjection time.Duration `yaml:"max_ejection"`
	// MaxEjectionPercent is the share of the site's upstreams that may be
	// ejected at once, 1-100; at least one may always be. When every
	// upstream is unhealthy or ejected, all of them are used again (panic
	// mode): the site is never left with none. Default 10.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
	// LatencyThreshold also ejects an upstream whose moving-average latency
	// (to the response head, over at least 20 answers) exceeds it. Default
	// 0: off.
	LatencyThreshold time.Duration `yaml:"latency_threshold"`
	// Breaker is the site's circuit breaker.
	Breaker Breaker `yaml:"breaker"`
}

// Breaker configures a site's circuit breaker. While it is open the origin
// gets no requests: clients get a stale micro-cache entry if there is one,
// else 503 with Retry-After.
type Breaker struct {
	// Disable turns the breaker off while passive health is enabled.
	// Default false.
	Disable bool `yaml:"disable"`
	// Window is the counting window of the closed breaker. Default 10s.
	Window time.Duration `yaml:"window"`
	// MinRequests is the number of answers a window needs before it can
	// open the breaker. Default 20.
	MinRequests int `yaml:"min_requests"`
	// FailureRatio opens the breaker when this share of a window's answers
	// failed, in (0, 1]. Default 0.5.
	FailureRatio float64 `yaml:"failure_ratio"`
	// OpenTime is how long the breaker stays open the first time; each
	// reopening after a failed trial doubles it, up to MaxOpenTime.
	// Default 5s.
	OpenTime time.Duration `yaml:"open_time"`
	// MaxOpenTime caps OpenTime's doubling. Default 60s.
	MaxOpenTime time.Duration `yaml:"max_open_time"`
	// HalfOpenProbes is the number of trial requests let through at once
	// when the open time is over; that many successes close the breaker,
	// one failure reopens it. Default 3.
	HalfOpenProbes int `yaml:"half_open_probes"`
}

// Upstream is one origin server.
type Upstream struct {
	// URL is http://host:port (https upstreams are not supported yet).
	URL string `yaml:"url"`
	// Weight is the round-robin weight (1-100). Default 1.
	Weight int `yaml:"weight"`
}

// HealthCheck configures active upstream health checks.
type HealthCheck struct {
	// Path is requested with GET on each upstream. Empty (default): active
	// checks are off and every upstream is assumed healthy until a connection
	// to it fails.
	Path string `yaml:"path"`
	// Interval between checks. Default 5s.
	Interval time.Duration `yaml:"interval"`
	// Timeout of one check. Default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// UnhealthyAfter consecutive failures mark an upstream down. Default 3.
	UnhealthyAfter int `yaml:"unhealthy_after"`
	// HealthyAfter consecutive successes mark it up again. Default 2.
	HealthyAfter int `yaml:"healthy_after"`
	// ExpectStatus is the accepted status range, e.g. "200-399" (default).
	ExpectStatus string `yaml:"expect_status"`
}

// Admin configures the operator API listener.
type Admin struct {
	// Address to bind. Default "127.0.0.1:9901". Set to "off" to disable.
	Address string `yaml:"address"`
	// TokenFile holds the bearer token. Default: <data_dir>/admin.token,
	// generated with mode 0600 on first start.
	TokenFile string `yaml:"token_file"`
	// TokenEnv names an environment variable holding the token; it takes
	// precedence over TokenFile when set and non-empty. Default LEVEE_ADMIN_TOKEN.
	TokenEnv string `yaml:"token_env"`
	// PublicMetrics serves /metrics without the token. Default false.
	PublicMetrics bool `yaml:"public_metrics"`
}

// Guard holds connection and request limits enforced before proxying.
type Guard struct {
	// MaxConnections caps open client connections in total. Default 20000.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerIP caps concurrent connections from one address.
	// Default 256.
	MaxConnectionsPerIP int `yaml:"max_connections_per_ip"`
	// NewConnectionsPerIP limits the rate of new connections from one address
	// (per second, with burst NewConnectionsBurst). Default 100/s.
	NewConnectionsPerIP float64 `yaml:"new_connections_per_ip"`
	// NewConnectionsBurst is the burst for NewConnectionsPerIP. Default 200.
	NewConnectionsBurst int `yaml:"new_connections_burst"`
	// HeaderTimeout is the time a client has to send a full request head:
	// for a connection's first request counted from accept (TLS handshake
	// included), for later requests on a keep-alive connection from their
	// first byte (the wait for it is IdleTimeout). Default 10s.
	HeaderTimeout time.Duration `yaml:"header_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 60s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// BodyTimeout is the longest pause allowed while receiving a request
	// body. Default 30s.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// MinBodyRate is the minimum average upload rate in bytes/s once a body
	// has been sending for BodyTimeout (slow POST defense). Default 1KiB.
	MinBodyRate ByteSize `yaml:"min_body_rate"`
	// WriteTimeout is the longest a single write to the client may block
	// (slow read defense: a client that stops reading is cut off after it).
	// Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// MaxHeaderBytes caps the request line plus headers. Default 16KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// MaxURLLength caps the request target length (414 beyond). Default 8KiB.
	MaxURLLength ByteSize `yaml:"max_url_length"`
	// MaxBodyBytes caps a request body (413 beyond). Default 1GiB.
	// -1 disables the cap.
	MaxBodyBytes ByteSize `yaml:"max_body_bytes"`
	// TunnelIdleTimeout closes an Upgrade (WebSocket) tunnel when neither
	// side sent anything for this long. Default 10m.
	TunnelIdleTimeout time.Duration `yaml:"tunnel_idle_timeout"`
	// HTTP2 bounds HTTP/2 resource use per connection.
	HTTP2 HTTP2 `yaml:"http2"`
	// LogSampleInterval bounds rejection logging: at most one log line per
	// reason per interval, with a count of what was suppressed. Default 10s.
	LogSampleInterval time.Duration `yaml:"log_sample_interval"`
}

// HTTP2 holds HTTP/2 limits.
type HTTP2 struct {
	// MaxConcurrentStreams per connection. Default 100.
	MaxConcurrentStreams int `yaml:"max_concurrent_streams"`
	// MaxHeaderListBytes caps the decoded header list. Default 16KiB
	// (follows guard.max_header_bytes when unset).
	MaxHeaderListBytes ByteSize `yaml:"max_header_list_bytes"`
	// HPACKTableBytes caps the HPACK dynamic table. Default 4KiB.
	HPACKTableBytes ByteSize `yaml:"hpack_table_bytes"`
	// MaxResetsPerWindow is the client RST_STREAM budget per Window before the
	// connection gets GOAWAY(ENHANCE_YOUR_CALM) (Rapid Reset). Default 200.
	MaxResetsPerWindow int `yaml:"max_resets_per_window"`
	// MaxServerResetsPerWindow is the budget of resets the server was provoked
	// into sending (MadeYouReset). Default 200.
	MaxServerResetsPerWindow int `yaml:"max_server_resets_per_window"`
	// MaxContinuationFrames per header block (CONTINUATION flood). Default 32.
	MaxContinuationFrames int `yaml:"max_continuation_frames"`
	// Window is the accounting window. Default 10s.
	Window time.Duration `yaml:"window"`
	// AbuseBan, when set, bans the client address of a connection cut off
	// for HTTP/2 abuse for this long (a runtime ban: refused at accept,
	// listed by levee ban ls, persisted). Off by default: clients behind
	// one address (NAT) would share the ban. Applies on reload.
	AbuseBan time.Duration `yaml:"abuse_ban"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Format is "text" (default) or "json".
	Format string `yaml:"format"`
	// AccessLog is a file path, "stdout", or empty (default: off). Lines are
	// JSON objects.
	AccessLog string `yaml:"access_log"`
	// AccessLogMaxRejected caps the access log lines of requests the shield
	// refused (blocked, limited, challenged, invalid) per second, so that a
	// flood turned away does not become a flood of lines; the lines left
	// out are counted (levee_access_log_suppressed_total) and logged.
	// Passed requests and origin errors are always written. Default 1000;
	// -1 writes every line.
	AccessLogMaxRejected int `yaml:"access_log_max_rejected"`
}
