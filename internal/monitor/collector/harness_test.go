package collector

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levee-dev/levee/internal/monitor"
	"github.com/levee-dev/levee/internal/monitor/agent"
	"github.com/levee-dev/levee/internal/monitor/probe"
)

// All traffic in these tests stays on 127.0.0.1 and every server, agent
// and collector is stopped by the test.

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("LEVEE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// hookRecorder is a webhook receiver on loopback.
type hookRecorder struct {
	mu     sync.Mutex
	events []WebhookEvent
	srv    *httptest.Server
}

func newHookRecorder(t *testing.T) *hookRecorder {
	h := &hookRecorder{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ev WebhookEvent
		if err := json.NewDecoder(r.Body).Decode(&ev); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		h.mu.Lock()
		h.events = append(h.events, ev)
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookRecorder) all() []WebhookEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]WebhookEvent(nil), h.events...)
}

func (h *hookRecorder) find(event string) *WebhookEvent {
	for _, ev := range h.all() {
		if ev.Event == event {
			return &ev
		}
	}
	return nil
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// origin is an HTTP server the test can stop and restart on the same port.
type origin struct {
	addr string
	srv  *http.Server
}

func startOrigin(t *testing.T, addr string) *origin {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 50 { // the port may take a moment to be free again
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{addr: ln.Addr().String(), srv: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "origin ok")
	}), ReadHeaderTimeout: time.Second}}
	go o.srv.Serve(ln)
	t.Cleanup(func() { o.srv.Close() })
	return o
}

// stop closes the listener and all connections: afterwards connects are refused.
func (o *origin) stop() { o.srv.Close() }

// collectorHarness runs a Collector on loopback from a config string.
type collectorHarness struct {
	t      *testing.T
	dir    string
	addr   string
	c      *Collector
	cancel context.CancelFunc
	done   chan error
}

const agentTokenPrefix = "test-token-0123456789-"

// startCollector writes cfgYAML (with %DATA% replaced) and token files for
// the agents into dir and serves on addr ("" = any free port).
func startCollector(t *testing.T, dir, addr, cfgYAML string, agents ...string) *collectorHarness {
	t.Helper()
	for _, a := range agents {
		if err := os.WriteFile(filepath.Join(dir, a+".token"), []byte(agentTokenPrefix+a+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "monitor.yaml")
	if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := monitor.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	for range 50 {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(cfg, Deps{Logger: testLogger(t), Client: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	c.hooks.backoff = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	h := &collectorHarness{t: t, dir: dir, addr: ln.Addr().String(), c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- c.Serve(ctx, ln) }()
	t.Cleanup(h.stop)
	return h
}

func (h *collectorHarness) url() string { return "http://" + h.addr }

func (h *collectorHarness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("collector: %v", err)
		}
	case <-time.After(10 * time.Second):
		h.t.Errorf("collector did not stop within 10s")
	}
	h.c.Close()
}

// agentHarness runs an agent in-process.
type agentHarness struct {
	a      *agent.Agent
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

func startAgent(t *testing.T, name, collectorURL string, dial probe.DialFunc) *agentHarness {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := agent.New(agent.Config{
		Collector: collectorURL, Token: agentTokenPrefix + name, Name: name, DataDir: filepath.Join(t.TempDir(), name),
		SendEvery: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
	}, agent.Deps{Logger: testLogger(t), Registerer: reg, Dial: dial, Client: &http.Client{Timeout: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &agentHarness{a: a, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() { a.Run(ctx); close(h.done) }()
	t.Cleanup(h.stop)
	return h
}

func (h *agentHarness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	<-h.done
	h.a.Close()
}

// probes is the number of probes the agent ran (levee_agent_probes_total).
func (h *agentHarness) probes(t *testing.T) int {
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "levee_agent_probes_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return int(n)
}

// config renders a collector config probing url every interval.
func config(dataDir, hookURL, kind, target string, interval, timeout time.Duration, agents ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\ntitle: Levee test status\n", dataDir)
	fmt.Fprintf(&b, "defaults: {interval: %s, timeout: %s}\n", interval, timeout)
	b.WriteString("detection: {baseline_min: 10}\n")
	if len(agents) > 0 {
		b.WriteString("agents:\n")
		for _, a := range agents {
			fmt.Fprintf(&b, "  - {name: %s, token_file: %s.token}\n", a, a)
		}
	}
	if hookURL != "" {
		fmt.Fprintf(&b, "webhooks:\n  - {url: %q, timeout: 1s}\n", hookURL)
	}
	if kind == "http" {
		fmt.Fprintf(&b, "targets:\n  - {name: site, kind: http, url: %q, body_contains: origin}\n", target)
	} else {
		fmt.Fprintf(&b, "targets:\n  - {name: site, kind: tcp, address: %q}\n", target)
	}
	return b.String()
}

// warm waits until every vantage point has at least n baseline samples.
func (h *collectorHarness) warm(t *testing.T, vantages, n int) {
	t.Helper()
	waitFor(t, 40*time.Second, "baselines to warm up", func() bool {
		st := h.c.tracker.Status(time.Now())
		if len(st) == 0 || len(st[0].Vantages) < vantages {
			return false
		}
		for _, v := range st[0].Vantages {
			if v.Samples < n {
				return false
			}
		}
		return true
	})
}
