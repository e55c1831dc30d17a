package guard

import (
	"net/netip"
	"testing"
	"time"
)

// TestAdmitPending: a connection whose PROXY header is pending counts
// against the global cap only: not against a per-address cap, ban or rate
// (its peer is a load balancer carrying every client, and pending
// connections make no entry in the address table); ReleasePending undoes
// it.
func TestAdmitPending(t *testing.T) {
	g := mustNew(t, Config{MaxConns: 8, MaxConnsPerIP: 1, NewConnRate: 1, NewConnBurst: 1})
	g.SetBanChecker(banSet{a1: true})
	for i := range 4 {
		if r := g.AdmitPending(); r != Admitted {
			t.Fatalf("pending %d: %v, want admitted", i, r)
		}
	}
	// Pending connections may hold half the global cap: the other half
	// stays for the clients their headers name.
	if r := g.AdmitPending(); r != PendingCap {
		t.Fatalf("5th pending of a cap of 8: %v, want the pending cap", r)
	}
	if g.Tracked() != 0 {
		t.Fatalf("pending connections made %d address entries, want none", g.Tracked())
	}
	for i := range 4 {
		if r := g.Admit(time.Now(), netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)})); r != Admitted {
			t.Fatalf("client %d beside the pending ones: %v", i, r)
		}
	}
	if r := g.AdmitPending(); r != GlobalCap {
		t.Fatalf("pending with the global cap full: %v, want the global cap", r)
	}
	for i := range 4 {
		g.Release(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}))
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
