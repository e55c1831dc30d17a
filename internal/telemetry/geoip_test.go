package telemetry

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// writeTestMMDB builds a small database with both country and ASN fields.
func writeTestMMDB(t *testing.T) string {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "Levee-Test", RecordSize: 24, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	nets := []struct {
		cidr    string
		asn     uint32
		org     string
		country string
	}{
		{"192.0.2.0/24", 64500, "Example Net", "DE"},
		{"198.51.100.0/24", 64501, "Other Net", "FR"},
		{"2001:db8::/32", 64502, "V6 Net", "NL"},
	}
	for _, n := range nets {
		_, ipn, err := net.ParseCIDR(n.cidr)
		if err != nil {
			t.Fatal(err)
		}
		rec := mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(n.asn),
			"autonomous_system_organization": mmdbtype.String(n.org),
			"country":                        mmdbtype.Map{"iso_code": mmdbtype.String(n.country)},
		}
		if err := tree.Insert(ipn, rec); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "test.mmdb")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestGeoIP(t *testing.T) {
	g, err := OpenGeoIP(writeTestMMDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	tests := []struct {
		ip      string
		asn     uint32
		org     string
		country string
	}{
		{"192.0.2.77", 64500, "Example Net", "DE"},
		{"::ffff:198.51.100.1", 64501, "Other Net", "FR"},
		{"2001:db8:1::5", 64502, "V6 Net", "NL"},
		{"203.0.113.1", 0, "", ""},
	}
	for _, tc := range tests {
		geo := g.Lookup(netip.MustParseAddr(tc.ip))
		if geo.ASN != tc.asn || geo.Org != tc.org || geo.CountryString() != tc.country {
			t.Errorf("Lookup(%s) = %+v %q", tc.ip, geo, geo.CountryString())
		}
	}
	e := &Event{Client: netip.MustParseAddr("192.0.2.1")}
	g.Fill(e)
	if e.ASN != 64500 || e.Country != [2]byte{'D', 'E'} {
		t.Errorf("Fill: %+v", e)
	}
	var nilG *GeoIP
	if geo := nilG.Lookup(e.Client); geo != (Geo{}) {
		t.Errorf("nil GeoIP knows %+v", geo)
	}
	if _, err := OpenGeoIP(filepath.Join(t.TempDir(), "missing.mmdb")); err == nil {
		t.Error("opening a missing database succeeded")
	}
}
