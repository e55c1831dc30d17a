package store

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/iplist"
)

// TestBansSurviveRestart wires iplist.Bans to a real store, "restarts" and
// checks that the bans come back and expired ones do not.
func TestBansSurviveRestart(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	now := t0
	clock := func() time.Time { return now }
	bans, err := iplist.NewBans(ctx, iplist.BansConfig{}, iplist.BansDeps{Store: s, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := bans.Add(ctx,
		iplist.Ban{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Reason: "flood", Source: "detector", Expires: t0.Add(time.Hour)},
		iplist.Ban{Prefix: netip.MustParsePrefix("2001:db8::/64"), Reason: "manual", Source: "cli"},
		iplist.Ban{Prefix: netip.MustParsePrefix("198.51.100.1/32"), Reason: "short", Source: "api", Expires: t0.Add(time.Minute)},
	); err != nil {
		t.Fatal(err)
	}
	if ok, err := bans.Remove(ctx, netip.MustParsePrefix("2001:db8::/64")); !ok || err != nil {
		t.Fatalf("Remove = %v, %v", ok, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart ten minutes later.
	now = t0.Add(10 * time.Minute)
	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	bans2, err := iplist.NewBans(ctx, iplist.BansConfig{}, iplist.BansDeps{Store: s2, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if bans2.Len() != 1 {
		t.Fatalf("after restart %d bans; want 1 (one removed, one expired)", bans2.Len())
	}
	b, ok := bans2.Lookup(netip.MustParseAddr("192.0.2.77"), now)
	if !ok || b.Reason != "flood" || b.Source != "detector" || !b.Created.Equal(t0) || !b.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("after restart Lookup = %+v, %v", b, ok)
	}
	for _, a := range []string{"2001:db8::1", "198.51.100.1"} {
		if bans2.Banned(netip.MustParseAddr(a), now) {
			t.Errorf("%s still banned after restart", a)
		}
	}
}
