package config

import (
	"os"
	"path/filepath"
	"time"
)

// Default values, documented on the fields they fill.
const (
	DefaultListenAddress     = ":8000"
	DefaultAdminAddress      = "127.0.0.1:9901"
	DefaultAdminTokenEnv     = "LEVEE_ADMIN_TOKEN"
	DefaultProxyProtoTimeout = 5 * time.Second
)

// Defaults fills every zero field of c with its documented default. It is
// idempotent and does not validate.
func (c *Config) Defaults() {
	if len(c.Listen) == 0 {
		c.Listen = []Listener{{Address: DefaultListenAddress}}
	}
	for i := range c.Listen {
		l := &c.Listen[i]
		setDur(&l.ProxyProtocolTimeout, DefaultProxyProtoTimeout)
		if l.TLS.MinVersion == "" {
			l.TLS.MinVersion = "1.2"
		}
	}
	for i := range c.Sites {
		s := &c.Sites[i]
		if s.Name == "" {
			if len(s.Hosts) > 0 {
				s.Name = s.Hosts[0]
			} else {
				s.Name = "default"
			}
		}
		if s.Balance == "" {
			s.Balance = "round_robin"
		}
		for j := range s.Upstreams {
			if s.Upstreams[j].Weight == 0 {
				s.Upstreams[j].Weight = 1
			}
		}
		setDur(&s.ConnectTimeout, 5*time.Second)
		setDur(&s.ResponseTimeout, 60*time.Second)
		setDur(&s.IdleConnTimeout, 60*time.Second)
		setInt(&s.MaxConnsPerUpstream, 1024)
		h := &s.HealthCheck
		setDur(&h.Interval, 5*time.Second)
		setDur(&h.Timeout, 2*time.Second)
		setInt(&h.UnhealthyAfter, 3)
		setInt(&h.HealthyAfter, 2)
		if h.ExpectStatus == "" {
			h.ExpectStatus = "200-399"
		}
		ph := &s.PassiveHealth
		setInt(&ph.ConsecutiveErrors, 5)
		setDur(&ph.BaseEjection, 30*time.Second)
		setDur(&ph.MaxEjection, 300*time.Second)
		setInt(&ph.MaxEjectionPercent, 10)
		br := &ph.Breaker
		setDur(&br.Window, 10*time.Second)
		setInt(&br.MinRequests, 20)
		if br.FailureRatio == 0 {
			br.FailureRatio = 0.5
		}
		setDur(&br.OpenTime, 5*time.Second)
		setDur(&br.MaxOpenTime, 60*time.Second)
		setInt(&br.HalfOpenProbes, 3)
	}
	if c.Admin.Address == "" {
		c.Admin.Address = DefaultAdminAddress
	}
	if c.Admin.TokenEnv == "" {
		c.Admin.TokenEnv = DefaultAdminTokenEnv
	}
	if c.ClientIPHeader == "" {
		c.ClientIPHeader = "x-forwarded-for"
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.Admin.TokenFile == "" {
		c.Admin.TokenFile = filepath.Join(c.DataDir, adminTokenFile)
	}
	k := &c.KnownClients
	if k.CookieName == "" {
		k.CookieName = "levee_known"
	}
	if k.KeyFile == "" {
		k.KeyFile = filepath.Join(c.DataDir, knownKeyFile)
	}
	setDur(&k.MaxAge, 30*24*time.Hour)
	setDur(&k.MinAge, 10*time.Minute)
	g := &c.Guard
	setInt(&g.MaxConnections, 20000)
	setInt(&g.MaxConnectionsPerIP, 256)
	if g.NewConnectionsPerIP == 0 {
		g.NewConnectionsPerIP = 100
	}
	setInt(&g.NewConnectionsBurst, 200)
	setDur(&g.HeaderTimeout, 10*time.Second)
	setDur(&g.IdleTimeout, 60*time.Second)
	setDur(&g.BodyTimeout, 30*time.Second)
	setSize(&g.MinBodyRate, 1<<10)
	setDur(&g.WriteTimeout, 30*time.Second)
	setSize(&g.MaxHeaderBytes, 16<<10)
	setSize(&g.MaxURLLength, 8<<10)
	setSize(&g.MaxBodyBytes, 1<<30)
	setDur(&g.LogSampleInterval, 10*time.Second)
	setDur(&g.TunnelIdleTimeout, 10*time.Minute)
	h2 := &g.HTTP2
	setInt(&h2.MaxConcurrentStreams, 100)
	setSize(&h2.MaxHeaderListBytes, g.MaxHeaderBytes)
	setSize(&h2.HPACKTableBytes, 4<<10)
	setInt(&h2.MaxResetsPerWindow, 200)
	setInt(&h2.MaxServerResetsPerWindow, 200)
	setInt(&h2.MaxContinuationFrames, 32)
	setDur(&h2.Window, 10*time.Second)
	c.defaultsPolicy()
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.AccessLogMaxRejected == 0 {
		c.Log.AccessLogMaxRejected = 1000
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
}

// Files that Defaults places in the data directory unless configured.
const (
	adminTokenFile = "admin.token"
	knownKeyFile   = "known.key"
)

// SetDataDir moves c to the data directory dir. The paths Defaults derived
// from the previous directory (admin token, known-client key) follow it;
// paths the configuration set itself stay.
func (c *Config) SetDataDir(dir string) {
	old := c.DataDir
	c.DataDir = dir
	if c.Admin.TokenFile == filepath.Join(old, adminTokenFile) {
		c.Admin.TokenFile = filepath.Join(dir, adminTokenFile)
	}
	if c.KnownClients.KeyFile == filepath.Join(old, knownKeyFile) {
		c.KnownClients.KeyFile = filepath.Join(dir, knownKeyFile)
	}
}

// DefaultDataDir is the data directory used when none is configured:
// $LEVEE_DATA_DIR, else /var/lib/levee for root, else the XDG state dir.
func DefaultDataDir() string {
	if d := os.Getenv("LEVEE_DATA_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/var/lib/levee"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "levee")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "levee")
	}
	return "levee-data"
}

func setDur(p *time.Duration, d time.Duration) {
	if *p == 0 {
		*p = d
	}
}

func setInt(p *int, d int) {
	if *p == 0 {
		*p = d
	}
}

func setSize(p *ByteSize, d ByteSize) {
	if *p == 0 {
		*p = d
	}
}
