// Package agent is a remote vantage point (`levee agent`): it fetches its
// probe plan from the collector, probes the targets on their schedule,
// buffers every result in an on-disk spool and sends the spool to the
// collector in order, deleting results only after the collector
// acknowledged them. While the collector is unreachable the agent keeps
// probing (from its last known plan) and the spool grows; nothing is lost.
package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levee-dev/levee/internal/monitor/api"
	"github.com/levee-dev/levee/internal/monitor/probe"
)

// Config configures an agent.
type Config struct {
	// Collector is the collector's base URL, e.g. https://status.example.com. Required.
	Collector string
	// Token is the agent's bearer token. Required.
	Token string
	// Name is this vantage point's name; it must match the name the
	// collector has for Token. Required.
	Name string
	// DataDir holds the spool and the last plan. Required.
	DataDir string
	// MaxSpool bounds the spool on disk. Default 64 MiB; when full, new
	// results are dropped and counted.
	MaxSpool int64
	// Batch is the most results per request. Default 200 (at most api.MaxBatch).
	Batch int
	// SendEvery is how often the spool is flushed. Default 1s.
	SendEvery time.Duration
	// MaxBackoff caps the wait between failed sends or plan fetches. Default 30s.
	MaxBackoff time.Duration
	// CAFile, if set, is a PEM bundle of the CAs trusted for an https
	// collector (for a private CA); default: the system roots.
	CAFile string
}

// Deps are optional dependencies.
type Deps struct {
	// Logger; nil discards.
	Logger *slog.Logger
	// Registerer for the agent's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Client for talking to the collector; nil uses a 10 s timeout client.
	Client *http.Client
	// Dial, if set, opens the connections of http, tcp and tls probes (for
	// example to bind a source address); nil uses a plain net.Dialer.
	Dial probe.DialFunc
}

// Agent is a running remote vantage point. It is safe for concurrent use;
// the zero Agent is not usable, build one with New.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	spool  *Spool
	m      *metrics
	kick   chan struct{}
	dial   probe.DialFunc

	mu   sync.Mutex
	plan *api.Plan
}

// New validates cfg, opens the spool and loads the last known plan.
func New(cfg Config, deps Deps) (*Agent, error) {
	u, err := url.Parse(cfg.Collector)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("agent: collector URL %q: want http(s)://host[:port]", cfg.Collector)
	}
	cfg.Collector = strings.TrimRight(cfg.Collector, "/")
	if cfg.Token == "" {
		return nil, errors.New("agent: token is empty")
	}
	if cfg.Name == "" {
		return nil, errors.New("agent: name is empty")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: data directory is empty")
	}
	if cfg.Batch <= 0 || cfg.Batch > api.MaxBatch {
		cfg.Batch = 200
	}
	if cfg.SendEvery <= 0 {
		cfg.SendEvery = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	a := &Agent{cfg: cfg, log: deps.Logger, client: deps.Client, dial: deps.Dial, kick: make(chan struct{}, 1)}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.client == nil {
		a.client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("agent: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("agent: CA file %s: no PEM certificates", cfg.CAFile)
		}
		c := *a.client
		c.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
		a.client = &c
	}
	reg := deps.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if a.m, err = newMetrics(reg); err != nil {
		return nil, fmt.Errorf("agent: register metrics: %w", err)
	}
	if a.spool, err = OpenSpool(cfg.DataDir, cfg.MaxSpool); err != nil {
		return nil, err
	}
	if b, err := os.ReadFile(a.planPath()); err == nil {
		var p api.Plan
		if json.Unmarshal(b, &p) == nil {
			a.plan = &p
			a.log.Info("loaded last known plan", "targets", len(p.Targets))
		}
	}
	return a, nil
}

func (a *Agent) planPath() string { return filepath.Join(a.cfg.DataDir, "plan.json") }

// Spool exposes the agent's buffer (for inspection and tests).
func (a *Agent) Spool() *Spool { return a.spool }

// Close closes the spool; call after Run returned.
func (a *Agent) Close() error { return a.spool.Close() }

// Run probes and reports until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { a.sendLoop(ctx) })
	var (
		probeCancel context.CancelFunc
		probeWG     sync.WaitGroup
		running     *api.Plan
	)
	apply := func(p *api.Plan) {
		if running != nil && reflect.DeepEqual(running.Targets, p.Targets) {
			return
		}
		if probeCancel != nil {
			probeCancel()
			probeWG.Wait()
		}
		var pctx context.Context
		pctx, probeCancel = context.WithCancel(ctx)
		running = p
		started := 0
		for _, t := range p.Targets {
			pr, err := probe.New(t.Spec, t.Timeout)
			if err != nil {
				a.log.Warn("skipping target with invalid probe", "target", t.Name, "err", err)
				continue
			}
			if a.dial != nil {
				pr = pr.WithDial(a.dial)
			}
			started++
			sched := probe.Schedule{Interval: t.Interval, Jitter: t.Jitter}
			probeWG.Go(func() { probe.Loop(pctx, pr, sched, func(r probe.Result) { a.record(t.Name, r) }) })
		}
		a.log.Info("probe plan applied", "targets", started)
	}
	a.mu.Lock()
	if a.plan != nil {
		apply(a.plan)
	}
	a.mu.Unlock()
	backoff := time.Second
	for {
		wait := backoff
		p, err := a.fetchPlan(ctx)
		switch {
		case err == nil:
			apply(p)
			backoff = time.Second
			wait = p.Refresh
			if wait <= 0 {
				wait = time.Minute
			}
		case ctx.Err() != nil:
		default:
			a.log.Warn("fetch plan failed, keeping the last one", "err", err, "retry_in", backoff)
			backoff = min(2*backoff, a.cfg.MaxBackoff)
		}
		select {
		case <-ctx.Done():
			if probeCancel != nil {
				probeCancel()
			}
			probeWG.Wait()
			wg.Wait()
			return nil
		case <-time.After(wait):
		}
	}
}

func (a *Agent) record(target string, r probe.Result) {
	r.ID, r.Target, r.Vantage = probe.NewID(a.cfg.Name), target, a.cfg.Name
	res := "ok"
	if !r.OK {
		res = string(r.Failure)
	}
	a.m.probes.WithLabelValues(target, res).Inc()
	if err := a.spool.Append(r); err != nil {
		a.m.dropped.Inc()
		a.log.Error("result not buffered", "target", target, "err", err)
		return
	}
	a.m.spoolBytes.Set(float64(a.spool.Pending()))
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) fetchPlan(ctx context.Context) (*api.Plan, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.cfg.Collector+api.PlanPath, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent: fetch plan: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("agent: fetch plan: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent: fetch plan: collector answered %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var p api.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("agent: decode plan: %w", err)
	}
	if p.Vantage != a.cfg.Name {
		return nil, fmt.Errorf("agent: the collector knows this token as %q, not %q: fix --name or the token", p.Vantage, a.cfg.Name)
	}
	a.mu.Lock()
	a.plan = &p
	a.mu.Unlock()
	if err := os.WriteFile(a.planPath()+".tmp", b, 0o600); err == nil {
		_ = os.Rename(a.planPath()+".tmp", a.planPath())
	}
	return &p, nil
}

// sendLoop flushes the spool whenever results arrive or SendEvery passes,
// backing off while the collector is unreachable.
func (a *Agent) sendLoop(ctx context.Context) {
	backoff := a.cfg.SendEvery
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
			if backoff > a.cfg.SendEvery {
				continue // failing: wait for the timer
			}
		}
		err := a.Flush(ctx)
		if err != nil && ctx.Err() == nil {
			a.m.sendFailures.Inc()
			a.log.Warn("collector unreachable, results stay buffered", "err", err, "pending_bytes", a.spool.Pending(), "retry_in", backoff)
			backoff = min(2*backoff, a.cfg.MaxBackoff)
		} else {
			backoff = a.cfg.SendEvery
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(backoff)
	}
}

// Flush sends everything buffered, batch by batch, and returns the first error.
func (a *Agent) Flush(ctx context.Context) error {
	for {
		rs, end, err := a.spool.Peek(a.cfg.Batch)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			if end > 0 {
				return a.spool.Ack(end) // only undecodable lines were left
			}
			return nil
		}
		ack, err := a.send(ctx, rs)
		if err != nil {
			return err
		}
		if err := a.spool.Ack(end); err != nil {
			return err
		}
		a.m.sent.Add(float64(ack.Accepted + ack.Duplicate))
		if ack.Rejected > 0 {
			a.m.rejected.Add(float64(ack.Rejected))
			a.log.Warn("collector rejected results", "count", ack.Rejected)
		}
		a.m.spoolBytes.Set(float64(a.spool.Pending()))
	}
}

func (a *Agent) send(ctx context.Context, rs []probe.Result) (api.Ack, error) {
	body, err := json.Marshal(api.Results{Results: rs})
	if err != nil {
		return api.Ack{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.Collector+api.ResultsPath, bytes.NewReader(body))
	if err != nil {
		return api.Ack{}, err
	}
	req.Header.Set("Authorization", "Bearer "+a.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return api.Ack{}, fmt.Errorf("agent: send results: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return api.Ack{}, fmt.Errorf("agent: send results: collector answered %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var ack api.Ack
	if err := json.Unmarshal(b, &ack); err != nil {
		return api.Ack{}, fmt.Errorf("agent: decode ack: %w", err)
	}
	if ack.Accepted+ack.Duplicate+ack.Rejected != len(rs) {
		return api.Ack{}, fmt.Errorf("agent: collector acknowledged %d of %d results", ack.Accepted+ack.Duplicate+ack.Rejected, len(rs))
	}
	return ack, nil
}
