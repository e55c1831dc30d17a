package agent

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/api"
	"github.com/levee-dev/levee/internal/monitor/probe"
)

// fakeCollector serves a plan for agent "eu-1" probing a loopback TCP port
// and records the results it is sent.
type fakeCollector struct {
	mu      sync.Mutex
	results []probe.Result
	srv     *httptest.Server
}

func newFakeCollector(t *testing.T, target string) *fakeCollector {
	f := &fakeCollector{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok-0123456789abcdef" {
			http.Error(w, "no", 401)
			return
		}
		switch r.URL.Path {
		case api.PlanPath:
			json.NewEncoder(w).Encode(api.Plan{Vantage: "eu-1", Refresh: time.Minute, Targets: []api.PlanTarget{{
				Name: "port", Spec: probe.Spec{Kind: probe.KindTCP, Address: target},
				Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Jitter: 0.1,
			}}})
		case api.ResultsPath:
			var b api.Results
			json.NewDecoder(r.Body).Decode(&b)
			f.mu.Lock()
			f.results = append(f.results, b.Results...)
			f.mu.Unlock()
			json.NewEncoder(w).Encode(api.Ack{Accepted: len(b.Results)})
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCollector) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.results)
}

func run(t *testing.T, cfg Config) (*Agent, func()) {
	t.Helper()
	a, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	return a, func() { cancel(); <-done; a.Close() }
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAgentUsesLastPlanWhenCollectorIsDown: an agent restarted while the
// collector is unreachable probes from the plan it saved, and spools.
func TestAgentUsesLastPlanWhenCollectorIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	fc := newFakeCollector(t, ln.Addr().String())
	cfg := Config{Collector: fc.srv.URL, Token: "tok-0123456789abcdef", Name: "eu-1", DataDir: t.TempDir(),
		SendEvery: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	_, stop := run(t, cfg)
	waitUntil(t, "results at the collector", func() bool { return fc.count() >= 3 })
	stop()
	for _, r := range fc.results {
		if r.Vantage != "eu-1" || r.Target != "port" || !strings.HasPrefix(r.ID, "eu-1-") || !r.OK {
			t.Fatalf("result %+v", r)
		}
	}

	fc.srv.Close() // the collector goes away
	a, stop := run(t, cfg)
	defer stop()
	waitUntil(t, "probing from the saved plan into the spool", func() bool { return a.Spool().Pending() > 0 })
}

func TestAgentRefusesWrongName(t *testing.T) {
	fc := newFakeCollector(t, "127.0.0.1:9")
	a, err := New(Config{Collector: fc.srv.URL, Token: "tok-0123456789abcdef", Name: "us-1", DataDir: t.TempDir()}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.fetchPlan(context.Background()); err == nil || !strings.Contains(err.Error(), `knows this token as "eu-1"`) {
		t.Fatalf("fetchPlan with the wrong name: %v", err)
	}
	b, _ := New(Config{Collector: fc.srv.URL, Token: "wrong-token", Name: "eu-1", DataDir: t.TempDir()}, Deps{})
	defer b.Close()
	if _, err := b.fetchPlan(context.Background()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("fetchPlan with a wrong token: %v", err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, c := range []Config{
		{Collector: "ftp://x", Token: "t", Name: "n", DataDir: "d"},
		{Collector: "http://x", Name: "n", DataDir: "d"},
		{Collector: "http://x", Token: "t", DataDir: "d"},
		{Collector: "http://x", Token: "t", Name: "n"},
	} {
		if a, err := New(c, Deps{}); err == nil {
			a.Close()
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
