// Package monitor is Levee's outage monitor: the outside view of a site.
// A collector (`levee monitor`) probes targets as the local vantage point,
// accepts results from remote agents (`levee agent`), stores history,
// detects and classifies outages and serves a status page, a JSON API and
// Prometheus metrics.
//
// This package holds the collector configuration. The work is done in the
// subpackages: probe (checks), outage (state machines, quorum, classifier,
// incidents), store (SQLite history), collector (HTTP, scheduling,
// webhooks), status (HTML page), agent (remote vantage point) and api (wire
// types).
package monitor

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/probe"
)

// Config is the collector configuration (monitor.yaml). Load or Parse fill
// defaults and validate it.
type Config struct {
	// Listen is the address of the status page, API and metrics.
	// Default 127.0.0.1:9180.
	Listen string `yaml:"listen"`
	// TLS, if set, serves HTTPS on Listen. Use it (or a TLS-terminating
	// proxy) whenever agents connect over a network you do not trust: their
	// bearer tokens travel in every request.
	TLS *TLS `yaml:"tls"`
	// DataDir holds the database (monitor.db). Default ./levee-monitor-data.
	DataDir string `yaml:"data_dir"`
	// Vantage is the name of the collector's own vantage point. Default "local".
	Vantage string `yaml:"vantage"`
	// ProbeLocal makes the collector probe targets itself. Default true.
	ProbeLocal *bool `yaml:"probe_local"`
	// Title is shown on the status page. Default "Levee status".
	Title string `yaml:"title"`
	// Defaults apply to targets that do not set their own.
	Defaults Defaults `yaml:"defaults"`
	// Detection tunes outage detection (see outage.Config).
	Detection outage.Config `yaml:"detection"`
	// Retention bounds the history kept on disk.
	Retention Retention `yaml:"retention"`
	// Agents are the remote vantage points allowed to report.
	Agents []Agent `yaml:"agents"`
	// Webhooks receive incident open, classification and close events.
	Webhooks []Webhook `yaml:"webhooks"`
	// Shield optionally links a Levee shield's admin API.
	Shield *Shield `yaml:"shield"`
	// Targets are the services to watch. At least one.
	Targets []Target `yaml:"targets"`
}

// Defaults are per-target defaults.
type Defaults struct {
	// Interval between probes. Default 10s.
	Interval time.Duration `yaml:"interval"`
	// Timeout per probe. Default 5s (and at most Interval).
	Timeout time.Duration `yaml:"timeout"`
	// Jitter is the random fraction added to or removed from each interval.
	// Default 0.1.
	Jitter float64 `yaml:"jitter"`
}

// Retention says how long history is kept.
type Retention struct {
	// Raw results. Default 168h (7 days).
	Raw time.Duration `yaml:"raw"`
	// Per-minute aggregates. Default 720h (30 days).
	Minute time.Duration `yaml:"minute"`
	// Per-hour aggregates and incidents. Default 9600h (400 days).
	Hour time.Duration `yaml:"hour"`
}

// TLS names the collector's certificate and key (PEM files).
type TLS struct {
	// CertFile is the certificate chain. Required.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the private key. Required.
	KeyFile string `yaml:"key_file"`
}

// Agent is a remote vantage point.
type Agent struct {
	// Name identifies the agent (letters, digits, '-', '_', '.'). Required.
	Name string `yaml:"name"`
	// TokenFile holds the agent's bearer token (at least 16 characters).
	// Required.
	TokenFile string `yaml:"token_file"`
	// Token is read from TokenFile by Load; never logged or serialized.
	Token string `yaml:"-"`
}

// Webhook is an alert receiver. The body is JSON (see docs/monitor.md).
type Webhook struct {
	// URL to POST to. Required.
	URL string `yaml:"url"`
	// TokenFile, if set, holds a bearer token sent in Authorization.
	TokenFile string `yaml:"token_file"`
	// Token is read from TokenFile by Load.
	Token string `yaml:"-"`
	// Timeout per delivery attempt. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
}

// Shield links a Levee shield's admin API, so incident pages show the
// shield's own attack incidents for the same time (inside and outside view).
type Shield struct {
	// AdminURL is the shield admin API base URL. Required.
	AdminURL string `yaml:"admin_url"`
	// IncidentsPath is the admin API path listing incidents; it is called
	// with ?from=RFC3339&to=RFC3339. Default /v1/incidents.
	IncidentsPath string `yaml:"incidents_path"`
	// TokenFile holds the admin API bearer token. Optional.
	TokenFile string `yaml:"token_file"`
	// Token is read from TokenFile by Load.
	Token string `yaml:"-"`
}

// Target is one service to watch.
type Target struct {
	// Name identifies the target (letters, digits, '-', '_', '.'). Required.
	Name string `yaml:"name"`
	// Interval, Timeout and Jitter override Defaults.
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	Jitter   float64       `yaml:"jitter"`
	// Agents lists the agents that probe this target. Default: all agents.
	Agents []string `yaml:"agents"`
	// Spec is the probe (kind, url, address, ...), written inline.
	probe.Spec `yaml:",inline"`

	line int
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// Load reads, parses and validates the file at path, and reads the token
// files it names (relative paths are relative to the config file).
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("monitor: read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if !filepath.IsAbs(c.DataDir) {
		c.DataDir = filepath.Join(dir, c.DataDir)
	}
	read := func(what, file string) (string, error) {
		if file == "" {
			return "", nil
		}
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %s: read token file: %w", path, what, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	for i := range c.Agents {
		a := &c.Agents[i]
		if a.Token, err = read("agent "+a.Name, a.TokenFile); err != nil {
			return nil, err
		}
		if len(a.Token) < 16 {
			return nil, fmt.Errorf("%s: agent %s: token in %s is shorter than 16 characters", path, a.Name, a.TokenFile)
		}
	}
	for i := range c.Webhooks {
		if c.Webhooks[i].Token, err = read("webhook "+c.Webhooks[i].URL, c.Webhooks[i].TokenFile); err != nil {
			return nil, err
		}
	}
	if c.Shield != nil {
		if c.Shield.Token, err = read("shield", c.Shield.TokenFile); err != nil {
			return nil, err
		}
	}
	if c.TLS != nil {
		for _, f := range []*string{&c.TLS.CertFile, &c.TLS.KeyFile} {
			if !filepath.IsAbs(*f) {
				*f = filepath.Join(dir, *f)
			}
		}
		if _, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			return nil, fmt.Errorf("%s: tls: load %s and %s: %w", path, c.TLS.CertFile, c.TLS.KeyFile, err)
		}
	}
	return c, nil
}

// Parse decodes a YAML config strictly (unknown fields are errors, with
// line numbers), fills defaults and validates. Token files are not read.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("monitor: config is empty")
		}
		return nil, fmt.Errorf("monitor: parse config: %w", err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err == nil {
		c.targetLines(&root)
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// targetLines records the line of each targets[i] item for error messages.
func (c *Config) targetLines(root *yaml.Node) {
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "targets" && m.Content[i+1].Kind == yaml.SequenceNode {
			for j, item := range m.Content[i+1].Content {
				if j < len(c.Targets) {
					c.Targets[j].line = item.Line
				}
			}
		}
	}
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9180"
	}
	if c.DataDir == "" {
		c.DataDir = "levee-monitor-data"
	}
	if c.Vantage == "" {
		c.Vantage = "local"
	}
	if c.ProbeLocal == nil {
		t := true
		c.ProbeLocal = &t
	}
	if c.Title == "" {
		c.Title = "Levee status"
	}
	if c.Defaults.Interval <= 0 {
		c.Defaults.Interval = probe.DefaultInterval
	}
	if c.Defaults.Timeout <= 0 {
		c.Defaults.Timeout = min(probe.DefaultTimeout, c.Defaults.Interval)
	}
	if c.Defaults.Jitter <= 0 {
		c.Defaults.Jitter = probe.DefaultJitter
	}
	for i := range c.Targets {
		t := &c.Targets[i]
		if t.Interval <= 0 {
			t.Interval = c.Defaults.Interval
		}
		if t.Timeout <= 0 {
			t.Timeout = min(c.Defaults.Timeout, t.Interval)
		}
		if t.Jitter <= 0 {
			t.Jitter = c.Defaults.Jitter
		}
	}
	if c.Shield != nil && c.Shield.IncidentsPath == "" {
		c.Shield.IncidentsPath = "/v1/incidents"
	}
	for i := range c.Webhooks {
		if c.Webhooks[i].Timeout <= 0 {
			c.Webhooks[i].Timeout = 5 * time.Second
		}
	}
	c.Detection.Interval = c.Defaults.Interval
	c.Detection = c.Detection.WithDefaults()
}

// Validate reports the first problem, naming the config line of a target.
func (c *Config) Validate() error {
	if len(c.Targets) == 0 {
		return errors.New("monitor: no targets: add at least one under targets:")
	}
	if !nameRE.MatchString(c.Vantage) {
		return fmt.Errorf("monitor: vantage %q: use letters, digits, '.', '_' or '-'", c.Vantage)
	}
	if err := c.Detection.Validate(); err != nil {
		return fmt.Errorf("monitor: detection: %w", err)
	}
	agents := map[string]bool{c.Vantage: true}
	for i, a := range c.Agents {
		if !nameRE.MatchString(a.Name) {
			return fmt.Errorf("monitor: agents[%d]: name %q: use letters, digits, '.', '_' or '-'", i, a.Name)
		}
		if agents[a.Name] {
			return fmt.Errorf("monitor: agents[%d]: name %q used twice (or equals the collector's vantage name)", i, a.Name)
		}
		agents[a.Name] = true
		if a.TokenFile == "" {
			return fmt.Errorf("monitor: agent %s: token_file is required", a.Name)
		}
	}
	for i, w := range c.Webhooks {
		if u, err := url.Parse(w.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("monitor: webhooks[%d]: url %q: want http(s)://host/...", i, w.URL)
		}
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		return errors.New("monitor: tls: cert_file and key_file are both required")
	}
	if c.Shield != nil {
		if u, err := url.Parse(c.Shield.AdminURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("monitor: shield: admin_url %q: want http(s)://host:port", c.Shield.AdminURL)
		}
	}
	seen := map[string]bool{}
	for i := range c.Targets {
		t := &c.Targets[i]
		where := fmt.Sprintf("targets[%d]", i)
		if t.line > 0 {
			where = fmt.Sprintf("line %d: %s", t.line, where)
		}
		if !nameRE.MatchString(t.Name) {
			return fmt.Errorf("monitor: %s: name %q: use letters, digits, '.', '_' or '-'", where, t.Name)
		}
		if seen[t.Name] {
			return fmt.Errorf("monitor: %s: target name %q used twice", where, t.Name)
		}
		seen[t.Name] = true
		if err := t.Spec.Validate(); err != nil {
			return fmt.Errorf("monitor: %s (%s): %w", where, t.Name, err)
		}
		if t.Timeout > t.Interval {
			return fmt.Errorf("monitor: %s (%s): timeout %s exceeds interval %s", where, t.Name, t.Timeout, t.Interval)
		}
		if t.Interval < 10*time.Millisecond {
			return fmt.Errorf("monitor: %s (%s): interval %s is below 10ms", where, t.Name, t.Interval)
		}
		for _, a := range t.Agents {
			if !agents[a] {
				return fmt.Errorf("monitor: %s (%s): agent %q is not configured under agents:", where, t.Name, a)
			}
		}
	}
	return nil
}

// LocalProbing reports whether the collector probes targets itself.
func (c *Config) LocalProbing() bool { return c.ProbeLocal == nil || *c.ProbeLocal }

// TargetsFor returns the targets an agent (or the local vantage) probes.
func (c *Config) TargetsFor(vantage string) []Target {
	var out []Target
	for _, t := range c.Targets {
		if vantage == c.Vantage {
			if c.LocalProbing() {
				out = append(out, t)
			}
			continue
		}
		if len(t.Agents) == 0 {
			out = append(out, t)
			continue
		}
		for _, a := range t.Agents {
			if a == vantage {
				out = append(out, t)
			}
		}
	}
	return out
}
