package upstream

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/admission"
)

func pool(t *testing.T, cfg Config) *Pool {
	t.Helper()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestWeightedRoundRobinIsSmooth(t *testing.T) {
	p := pool(t, Config{Site: "s", Targets: []Target{{Addr: "a:1", Weight: 3}, {Addr: "b:1", Weight: 1}}})
	var seq string
	for i := 0; i < 8; i++ {
		seq += p.Pick(nil).Addr[:1]
	}
	counts := map[rune]int{}
	for _, c := range seq {
		counts[c]++
	}
	if counts['a'] != 6 || counts['b'] != 2 {
		t.Fatalf("sequence %s: want 3:1", seq)
	}
	// Smooth WRR interleaves: the schedule is a a b a, never a a a b.
	if got := wrrSchedule(p.backends); len(got) != 4 || got[0] != 0 || got[1] != 0 || got[2] != 1 || got[3] != 0 {
		t.Fatalf("schedule %v, want [0 0 1 0]", got)
	}
}

func TestPickSkipsUnhealthyAndFallsBack(t *testing.T) {
	p := pool(t, Config{Site: "s", Targets: []Target{{Addr: "a:1"}, {Addr: "b:1"}, {Addr: "c:1"}}})
	p.backends[1].healthy.Store(false)
	for i := 0; i < 30; i++ {
		if b := p.Pick(nil); b.Addr == "b:1" {
			t.Fatal("picked an unhealthy backend")
		}
	}
	// skip excludes the backend that just failed.
	for i := 0; i < 10; i++ {
		if b := p.Pick(p.backends[0]); b.Addr != "c:1" {
			t.Fatalf("with a skipped and b unhealthy, picked %s", b.Addr)
		}
	}
	// All unhealthy: panic mode still serves.
	for _, b := range p.backends {
		b.healthy.Store(false)
	}
	if p.Pick(nil) == nil {
		t.Fatal("no backend in panic mode")
	}
}

func TestLeastConn(t *testing.T) {
	p := pool(t, Config{Site: "s", LeastConn: true, Targets: []Target{{Addr: "a:1"}, {Addr: "b:1", Weight: 2}}})
	p.backends[0].inflight.Store(3)
	p.backends[1].inflight.Store(5) // 5/2 < 3/1
	if b := p.Pick(nil); b.Addr != "b:1" {
		t.Fatalf("picked %s, want b (lower load per weight)", b.Addr)
	}
	p.backends[1].inflight.Store(7)
	if b := p.Pick(nil); b.Addr != "a:1" {
		t.Fatalf("picked %s, want a", b.Addr)
	}
}

func TestHealthHysteresis(t *testing.T) {
	p := pool(t, Config{Site: "s", Targets: []Target{{Addr: "a:1"}}, Health: Health{Path: "/h", UnhealthyAfter: 2, HealthyAfter: 3}})
	b := p.backends[0]
	p.record(b, false, errors.New("refused"), 0)
	if !b.Healthy() {
		t.Fatal("down after one failure")
	}
	p.record(b, false, nil, 500)
	if b.Healthy() {
		t.Fatal("still up after two failures")
	}
	p.record(b, true, nil, 200)
	p.record(b, true, nil, 200)
	if b.Healthy() {
		t.Fatal("up after two successes, want three")
	}
	p.record(b, true, nil, 200)
	if !b.Healthy() {
		t.Fatal("still down after three successes")
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{Site: "s"}, nil); err == nil {
		t.Fatal("no targets accepted")
	}
	if _, err := New(Config{Site: "s", Targets: []Target{{Addr: "nohostport"}}}, nil); err == nil {
		t.Fatal("bad address accepted")
	}
}

// Interface guard: admission's Outlier is what the pool takes.
var _ Outlier = (*admission.Outlier)(nil)

func TestPickSkipsEjectedBackends(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	for _, leastConn := range []bool{false, true} {
		p := pool(t, Config{Site: "s", LeastConn: leastConn, Targets: []Target{{Addr: "a:1"}, {Addr: "b:1"}, {Addr: "c:1"}}})
		set, err := admission.NewOutlierSet([]admission.OutlierConfig{{Name: "a"}, {Name: "b"}, {Name: "c"}}, 100, admission.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.SetOutliers([]Outlier{set.Target(0), set.Target(1), set.Target(2)}); err != nil {
			t.Fatal(err)
		}
		b := p.backends[1]
		for range 5 { // the default consecutive_errors
			b.Observe(t0, time.Millisecond, Failed(nil, 502))
		}
		if !b.Ejected(t0) || p.backends[0].Ejected(t0) {
			t.Fatal("five 502s in a row did not eject b (or ejected a)")
		}
		for i := range 30 {
			if got := p.PickAt(t0.Add(time.Second), nil); got == b {
				t.Fatalf("least_conn=%v: pick %d chose the ejected backend", leastConn, i)
			}
		}
		// Ejected and another backend skipped: the third one.
		if got := p.PickAt(t0, p.backends[0]); got.Addr != "c:1" {
			t.Fatalf("least_conn=%v: with a skipped and b ejected, picked %s", leastConn, got.Addr)
		}
		// The ejection ends after base_ejection (30s by default).
		seen := false
		for range 30 {
			seen = seen || p.PickAt(t0.Add(31*time.Second), nil) == b
		}
		if !seen {
			t.Fatalf("least_conn=%v: b not picked again after its ejection ended", leastConn)
		}
		// Every backend ejected: panic mode still serves.
		for _, x := range p.backends {
			for range 5 {
				x.Observe(t0.Add(40*time.Second), 0, true)
			}
		}
		if set.Ejected(t0.Add(41*time.Second)) != 3 || p.PickAt(t0.Add(41*time.Second), nil) == nil {
			t.Fatalf("least_conn=%v: no backend in panic mode", leastConn)
		}
	}
	if err := pool(t, Config{Site: "s", Targets: []Target{{Addr: "a:1"}}}).SetOutliers(nil); err == nil {
		t.Fatal("SetOutliers accepted the wrong count")
	}
}

func TestFailed(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		want   bool
	}{
		{nil, 200, false}, {nil, 404, false}, {nil, 500, false}, {nil, 501, false},
		{nil, 502, true}, {nil, 503, true}, {nil, 504, true}, {errors.New("reset"), 0, true},
	} {
		if got := Failed(tc.err, tc.status); got != tc.want {
			t.Errorf("Failed(%v, %d) = %v", tc.err, tc.status, got)
		}
	}
}

func TestPickAtAllocations(t *testing.T) {
	p := pool(t, Config{Site: "s", Targets: []Target{{Addr: "a:1"}, {Addr: "b:1"}}})
	set, _ := admission.NewOutlierSet([]admission.OutlierConfig{{Name: "a"}, {Name: "b"}}, 0, admission.Deps{})
	_ = p.SetOutliers([]Outlier{set.Target(0), set.Target(1)})
	now := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		b := p.PickAt(now, nil)
		b.Observe(now, time.Millisecond, false)
	}); n != 0 {
		t.Fatalf("PickAt+Observe allocate %v times", n)
	}
}

// TestConnectTimeoutForTunnels: the pool reports the site's dial timeout
// (used for WebSocket tunnels, which dial outside the pool), 5s by default.
func TestConnectTimeoutForTunnels(t *testing.T) {
	for _, tc := range []struct{ set, want time.Duration }{{0, 5 * time.Second}, {300 * time.Millisecond, 300 * time.Millisecond}} {
		p, err := New(Config{Site: "s", Targets: []Target{{Addr: "127.0.0.1:1"}}, ConnectTimeout: tc.set}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.ConnectTimeout(); got != tc.want {
			t.Errorf("connect_timeout %v: pool reports %v, want %v", tc.set, got, tc.want)
		}
		p.Close()
	}
}

// TestStopHealthChecks: a pool retired by a reload stops checking at once,
// though it stays open for its requests in flight.
func TestStopHealthChecks(t *testing.T) {
	var checks atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { checks.Add(1) }))
	defer srv.Close()
	p := pool(t, Config{Site: "s", Targets: []Target{{Addr: srv.Listener.Addr().String()}},
		Health: Health{Path: "/health", Interval: 20 * time.Millisecond, Timeout: time.Second, UnhealthyAfter: 1, HealthyAfter: 1, StatusLo: 200, StatusHi: 399}})
	p.Start()
	deadline := time.Now().Add(5 * time.Second)
	for checks.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if checks.Load() < 3 {
		t.Fatal("health checks did not run")
	}
	p.StopHealthChecks()
	time.Sleep(50 * time.Millisecond) // a check already under way may finish
	n := checks.Load()
	time.Sleep(200 * time.Millisecond)
	if got := checks.Load(); got != n {
		t.Fatalf("%d health checks after StopHealthChecks", got-n)
	}
}
