package guard

import (
	"testing"
	"time"
)

// TestAdmitPending: a connection whose PROXY header is pending counts
// against the global cap only: not against a per-address cap, ban or rate
// (its peer is a load balancer carrying every client, and pending
// connections make no entry in the address table); ReleasePending undoes
// it.
func TestAdmitPending(t *testing.T) {
	g := mustNew(t, Config{MaxConns: 4, MaxConnsPerIP: 1, NewConnRate: 1, NewConnBurst: 1})
	g.SetBanChecker(banSet{a1: true})
	for i := range 4 {
		if r := g.AdmitPending(); r != Admitted {
			t.Fatalf("pending %d: %v, want admitted", i, r)
		}
	}
	if r := g.AdmitPending(); r != GlobalCap {
		t.Fatalf("5th pending: %v, want the global cap", r)
	}
	if g.Tracked() != 0 {
		t.Fatalf("pending connections made %d address entries, want none", g.Tracked())
	}
	for range 4 {
		g.ReleasePending()
	}
	if g.Open() != 0 {
		t.Fatalf("open %d after release, want 0", g.Open())
	}
	// Clients named by headers are admitted as usual.
	if r := g.Admit(time.Now(), a2); r != Admitted {
		t.Fatalf("admit after pending: %v", r)
	}
	if r := g.Admit(time.Now(), a1); r != Banned {
		t.Fatalf("banned client named by a header: %v", r)
	}
}
