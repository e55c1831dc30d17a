package telemetry

import (
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Geo is what a GeoIP lookup knows about an address. The zero value means
// nothing is known.
type Geo struct {
	ASN     uint32  `json:"asn,omitempty"`
	Org     string  `json:"org,omitempty"` // AS owner name
	Country [2]byte `json:"-"`
}

// CountryString returns the country code, "" when unknown.
func (g Geo) CountryString() string {
	if g.Country == [2]byte{} {
		return ""
	}
	return string(g.Country[:])
}

// GeoIP looks addresses up in one or more MaxMind-format (.mmdb) databases:
// a country database (GeoLite2-Country layout: country.iso_code), an ASN
// database (GeoLite2-ASN layout: autonomous_system_number,
// autonomous_system_organization) or one database with both. The first
// database that knows a field wins. Safe for concurrent use. The zero value
// knows nothing; a nil *GeoIP too.
type GeoIP struct {
	dbs []*maxminddb.Reader
}

type geoRecord struct {
	Country struct {
		ISOCode string `maxminddb:"iso_code"`
	} `maxminddb:"country"`
	ASN uint32 `maxminddb:"autonomous_system_number"`
	Org string `maxminddb:"autonomous_system_organization"`
}

// OpenGeoIP opens the databases at paths (memory-mapped).
func OpenGeoIP(paths ...string) (*GeoIP, error) {
	g := &GeoIP{}
	for _, p := range paths {
		db, err := maxminddb.Open(p)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("telemetry: open geoip database %s: %w", p, err)
		}
		g.dbs = append(g.dbs, db)
	}
	return g, nil
}

// Close releases the databases.
func (g *GeoIP) Close() error {
	if g == nil {
		return nil
	}
	var first error
	for _, db := range g.dbs {
		if err := db.Close(); err != nil && first == nil {
			first = err
		}
	}
	g.dbs = nil
	return first
}

// Lookup returns what the databases know about a. It allocates the strings
// it decodes (about a microsecond): the data plane should look a client up
// once per connection, not per request.
func (g *GeoIP) Lookup(a netip.Addr) Geo {
	var out Geo
	if g == nil {
		return out
	}
	a = a.Unmap()
	for _, db := range g.dbs {
		var rec geoRecord
		if err := db.Lookup(a).Decode(&rec); err != nil {
			continue
		}
		if out.ASN == 0 && rec.ASN != 0 {
			out.ASN = rec.ASN
			out.Org = rec.Org
		}
		if out.Country == [2]byte{} && len(rec.Country.ISOCode) == 2 {
			out.Country = [2]byte{rec.Country.ISOCode[0], rec.Country.ISOCode[1]}
		}
	}
	return out
}

// Fill sets e.ASN and e.Country from the databases.
func (g *GeoIP) Fill(e *Event) {
	geo := g.Lookup(e.Client)
	e.ASN = geo.ASN
	e.Country = geo.Country
}
