package upstream

import (
	"errors"
	"testing"
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
