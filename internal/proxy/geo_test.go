package proxy

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/levee-dev/levee/internal/telemetry"
)

func TestGeoCacheFillsAndCaches(t *testing.T) {
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "Levee-Test", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	_, ipn, _ := net.ParseCIDR("127.0.9.0/24")
	tree.Insert(ipn, mmdbtype.Map{
		"autonomous_system_number":       mmdbtype.Uint32(64500),
		"autonomous_system_organization": mmdbtype.String("Example Net"),
		"country":                        mmdbtype.Map{"iso_code": mmdbtype.String("DE")},
	})
	path := filepath.Join(t.TempDir(), "t.mmdb")
	f, _ := os.Create(path)
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	db, err := telemetry.OpenGeoIP(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	g := NewGeoCache(db, 1024)
	ev := telemetry.Event{Client: netip.MustParseAddr("127.0.9.7")}
	g.Fill(&ev)
	if ev.ASN != 64500 || string(ev.Country[:]) != "DE" {
		t.Fatalf("event after Fill: ASN %d country %q", ev.ASN, ev.Country)
	}
	other := telemetry.Event{Client: netip.MustParseAddr("127.0.10.1")}
	g.Fill(&other)
	if other.ASN != 0 {
		t.Fatalf("unknown address got ASN %d", other.ASN)
	}
	// Cached: no allocation on a hit.
	if n := testing.AllocsPerRun(100, func() { g.Fill(&ev) }); n != 0 && !raceEnabled {
		t.Fatalf("cache hit allocates %.0f", n)
	}
	var nilCache *GeoCache
	nilCache.Fill(&ev) // no panic
}
