package guard

import (
	"testing"
	"time"
)

// TestAdmitPending: a connection whose PROXY header is pending counts
// against the global and per-address caps of its peer, but never against
// the peer's bans or new-connection rate (the peer is a load balancer
// carrying every client), and Release undoes it.
func TestAdmitPending(t *testing.T) {
	g := mustNew(t, Config{MaxConns: 4, MaxConnsPerIP: 3, NewConnRate: 1, NewConnBurst: 1})
	g.SetBanChecker(banSet{a1: true})
	now := time.Now()
	for i := range 3 {
		if r := g.AdmitPending(now, a1); r != Admitted {
			t.Fatalf("pending %d from a banned, rate-limited peer: %v, want admitted", i, r)
		}
	}
	if r := g.AdmitPending(now, a1); r != PerIPCap {
		t.Fatalf("4th pending from one peer: %v, want the per-address cap", r)
	}
	if r := g.AdmitPending(now, a2); r != Admitted {
		t.Fatalf("pending from another peer: %v", r)
	}
	if r := g.AdmitPending(now, a2); r != GlobalCap {
		t.Fatalf("5th pending in all: %v, want the global cap", r)
	}
	if g.Open() != 4 {
		t.Fatalf("open %d, want 4", g.Open())
	}
	for range 3 {
		g.Release(a1)
	}
	g.Release(a2)
	if g.Open() != 0 {
		t.Fatalf("open %d after release, want 0", g.Open())
	}
	// The rate applies to real admissions as before.
	if r := g.Admit(now, a2); r != Admitted {
		t.Fatalf("admit after pending: %v", r)
	}
	if r := g.Admit(now, a2); r != PerIPRate {
		t.Fatalf("second admit within the rate: %v, want the rate refusal", r)
	}
}
