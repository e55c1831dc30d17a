// Package h2guard protects an HTTP/2 server from per-connection protocol
// abuse that costs the server far more than it costs the client:
//
//   - Rapid Reset (CVE-2023-44487): the client opens streams with HEADERS
//     and cancels them at once with RST_STREAM, so the server starts work
//     for every stream while the concurrency limit never applies.
//   - CONTINUATION flood (CVE-2023-45288): the client sends HEADERS without
//     END_HEADERS followed by an endless run of CONTINUATION frames, which
//     the server must buffer or decode.
//   - MadeYouReset (CVE-2025-8671): the client sends frames that are
//     invalid on an open stream (WINDOW_UPDATE with increment 0, DATA past
//     the flow-control window, ...), making the server reset the stream
//     itself, which escapes client-reset accounting.
//   - Optionally, floods of PING, SETTINGS and empty DATA frames.
//
// Guard.Wrap returns a net.Conn to place between TLS (or a plain h2c conn)
// and golang.org/x/net/http2's Server.ServeConn. The wrapper follows the
// frame stream in both directions without copying payloads and counts the
// events above in sliding windows. When a budget is exceeded, its next Read
// returns http2.ConnectionError(http2.ErrCodeEnhanceYourCalm). The
// x/net/http2 server (v0.62.0, serverConn.processFrameFromReader) treats a
// ConnectionError from the frame reader like one it detected itself: it
// sends GOAWAY with that error code and closes the connection after
// goAwayTimeout (1 s). As a backstop the wrapper also closes the
// underlying connection itself CloseGrace after the budget was exceeded,
// so a client that does not read (and so blocks the GOAWAY write) is cut
// off too.
//
// ServerConfig and BaseConfig return the http2.Server and http.Server
// settings recommended for the shield.
package h2guard

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reason names the abuse a connection was cut off for. It is used as the
// "reason" metric label and passed to Deps.OnAbuse. The zero value ""
// means no abuse.
type Reason string

// Abuse reasons.
const (
	ReasonRapidReset        Reason = "rapid_reset"
	ReasonResetRatio        Reason = "reset_ratio"
	ReasonContinuationFlood Reason = "continuation_flood"
	ReasonHeaderBlockSize   Reason = "header_block_size"
	ReasonServerResets      Reason = "server_resets"
	ReasonPingFlood         Reason = "ping_flood"
	ReasonSettingsFlood     Reason = "settings_flood"
	ReasonEmptyDataFlood    Reason = "empty_data_flood"
)

var allReasons = []Reason{
	ReasonRapidReset, ReasonResetRatio, ReasonContinuationFlood, ReasonHeaderBlockSize,
	ReasonServerResets, ReasonPingFlood, ReasonSettingsFlood, ReasonEmptyDataFlood,
}

// Config holds the per-connection budgets and the recommended HTTP/2
// server settings. Zero fields take their defaults, so the zero value is
// the recommended configuration; budgets set to a negative value are
// disabled. A Config is a plain value; New copies it.
type Config struct {
	// Window is the sliding window all rate budgets are counted in.
	// Default 10s.
	Window time.Duration `yaml:"window"`
	// MaxClientResets is the number of RST_STREAM frames the client may
	// send, per Window, for streams it opened. Default 100.
	MaxClientResets int `yaml:"max_client_resets"`
	// MaxResetRatio, when positive, also cuts off a connection on which,
	// within one Window, the client reset more than this fraction of the
	// streams it opened, once it has reset at least MinResetsForRatio
	// streams. Default 0 (disabled): a browser leaving a page can cancel
	// most of its streams legitimately.
	MaxResetRatio float64 `yaml:"max_reset_ratio"`
	// MinResetsForRatio is the number of client resets in a Window before
	// MaxResetRatio applies. Default 50.
	MinResetsForRatio int `yaml:"min_resets_for_ratio"`
	// MaxContinuationFrames is the number of CONTINUATION frames allowed
	// in one header block. Default 32.
	MaxContinuationFrames int `yaml:"max_continuation_frames"`
	// MaxHeaderBlockBytes is the size in bytes of one header block
	// (HEADERS plus its CONTINUATION frames, compressed). Default 65536.
	MaxHeaderBlockBytes int `yaml:"max_header_block_bytes"`
	// MaxServerResets is the number of RST_STREAM frames the server may
	// send per Window before the client is considered to provoke them
	// (MadeYouReset). Default 100.
	MaxServerResets int `yaml:"max_server_resets"`
	// MaxPings is the number of PING frames (not ACKs) the client may send
	// per Window. Default 100.
	MaxPings int `yaml:"max_pings"`
	// MaxSettings is the number of SETTINGS frames (not ACKs) the client
	// may send per Window. Default 100.
	MaxSettings int `yaml:"max_settings"`
	// MaxEmptyData is the number of DATA frames with no payload and no
	// END_STREAM flag the client may send per Window. Default 100.
	MaxEmptyData int `yaml:"max_empty_data"`
	// CloseGrace is how long after a budget was exceeded the wrapper
	// closes the underlying connection itself, whatever the server did.
	// Default 2s.
	CloseGrace time.Duration `yaml:"close_grace"`

	// Server holds the recommended HTTP/2 server settings; see
	// ServerConfig.
	Server ServerSettings `yaml:"server"`
}

// SetDefaults fills zero fields with their defaults.
func (c *Config) SetDefaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Window == 0 {
		c.Window = 10 * time.Second
	}
	def(&c.MaxClientResets, 100)
	def(&c.MinResetsForRatio, 50)
	def(&c.MaxContinuationFrames, 32)
	def(&c.MaxHeaderBlockBytes, 64<<10)
	def(&c.MaxServerResets, 100)
	def(&c.MaxPings, 100)
	def(&c.MaxSettings, 100)
	def(&c.MaxEmptyData, 100)
	if c.CloseGrace == 0 {
		c.CloseGrace = 2 * time.Second
	}
	c.Server.setDefaults()
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	if c.Window < time.Second || c.Window > time.Hour {
		return fmt.Errorf("h2guard: window %v: must be between 1s and 1h", c.Window)
	}
	if c.MaxResetRatio < 0 || c.MaxResetRatio > 1 {
		return fmt.Errorf("h2guard: max_reset_ratio %v: must be between 0 (off) and 1", c.MaxResetRatio)
	}
	if c.CloseGrace < 0 {
		return fmt.Errorf("h2guard: close_grace %v: must not be negative", c.CloseGrace)
	}
	if c.MinResetsForRatio < 1 {
		return fmt.Errorf("h2guard: min_resets_for_ratio %d: must be at least 1", c.MinResetsForRatio)
	}
	return c.Server.validate()
}

// Deps are the collaborators of a Guard. All fields are optional; the zero
// value registers no metrics, logs nothing and calls nothing.
type Deps struct {
	// Registerer receives the metrics; nil means they are not registered.
	Registerer prometheus.Registerer
	// Logger logs cut-off connections, at most one line per second; nil
	// discards.
	Logger *slog.Logger
	// OnAbuse is called once per connection, from the connection's read or
	// write goroutine, when a budget is exceeded. c.RemoteAddr() is the
	// client (as reported by the conn passed to Wrap), c.Stats() the
	// counts so far. It must not block (count, ban, return) and must not
	// call c.Stats from a goroutine it waits for.
	OnAbuse func(c *Conn, r Reason)
}

// Guard wraps connections with HTTP/2 abuse accounting. It holds the
// configuration and the shared metrics; each wrapped connection keeps its
// own counters.
//
// The zero value is not usable; use New. A Guard is safe for concurrent
// use.
type Guard struct {
	cfg     Config
	m       *metrics
	log     *slog.Logger
	onAbuse func(*Conn, Reason)

	lastLog    atomic.Int64 // unix nanos of the last log line
	suppressed atomic.Int64 // abuse lines not logged since
}

// New validates cfg (after filling defaults) and returns a Guard.
func New(cfg Config, deps Deps) (*Guard, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, fmt.Errorf("h2guard: register metrics: %w", err)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guard{cfg: cfg, m: m, log: log, onAbuse: deps.OnAbuse}, nil
}

// Config returns the effective configuration (defaults filled).
func (g *Guard) Config() Config { return g.cfg }

// Wrap returns c wrapped with abuse accounting, for use as the conn given
// to http2.Server.ServeConn. If c has a ConnectionState method (a
// *tls.Conn), so does the result, so the HTTP/2 server still sees the TLS
// state; the result is then not a *Conn but embeds one. Use AsConn to get
// the *Conn back.
func (g *Guard) Wrap(c net.Conn) net.Conn {
	g.m.conns.Inc()
	gc := &Conn{Conn: c, g: g, start: time.Now(), rd: newClientScanner()}
	if cs, ok := c.(connectionStater); ok {
		return &tlsConn{Conn: gc, cs: cs}
	}
	return gc
}

// AsConn returns the *Conn inside a net.Conn returned by Wrap.
func AsConn(c net.Conn) (*Conn, bool) {
	switch v := c.(type) {
	case *Conn:
		return v, true
	case *tlsConn:
		return v.Conn, true
	}
	return nil, false
}

// tripped records that c exceeded a budget: metrics, rate-limited log,
// callback. It is called at most once per connection.
func (g *Guard) tripped(c *Conn, r Reason) {
	g.m.abuse.WithLabelValues(string(r)).Inc()
	if g.onAbuse != nil {
		g.onAbuse(c, r)
	}
	now := time.Now().UnixNano()
	last := g.lastLog.Load()
	if now-last >= int64(time.Second) && g.lastLog.CompareAndSwap(last, now) {
		g.log.Warn("h2guard: connection exceeded its HTTP/2 budget, sending GOAWAY(ENHANCE_YOUR_CALM)",
			"remote", c.Conn.RemoteAddr().String(), "reason", string(r),
			"suppressed", g.suppressed.Swap(0))
	} else {
		g.suppressed.Add(1)
	}
}

// IsEnhanceYourCalm reports whether err is the error a tripped Conn
// returns from Read: http2.ConnectionError(http2.ErrCodeEnhanceYourCalm).
func IsEnhanceYourCalm(err error) bool { return errors.Is(err, errEnhanceYourCalm) }
