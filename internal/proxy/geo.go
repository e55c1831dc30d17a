package proxy

import (
	"hash/maphash"
	"net/netip"
	"sync"

	"github.com/levee-dev/levee/internal/telemetry"
)

// GeoCache puts a bounded per-address cache in front of a GeoIP database:
// a database lookup allocates (about a microsecond), a cache hit does not.
// A full shard is emptied (the hot clients come right back). Safe for
// concurrent use; a nil *GeoCache knows nothing.
type GeoCache struct {
	db     *telemetry.GeoIP
	seed   maphash.Seed
	shards [64]geoShard
	max    int
}

type geoEntry struct {
	asn     uint32
	country [2]byte
}

type geoShard struct {
	mu sync.Mutex
	m  map[netip.Addr]geoEntry
}

// NewGeoCache returns a cache of about maxEntries addresses over db.
func NewGeoCache(db *telemetry.GeoIP, maxEntries int) *GeoCache {
	g := &GeoCache{db: db, seed: maphash.MakeSeed(), max: max(maxEntries/64, 16)}
	for i := range g.shards {
		g.shards[i].m = make(map[netip.Addr]geoEntry)
	}
	return g
}

// Fill sets the event's ASN and country from its client address.
func (g *GeoCache) Fill(e *telemetry.Event) {
	if g == nil || !e.Client.IsValid() {
		return
	}
	sh := &g.shards[maphash.Comparable(g.seed, e.Client)%64]
	sh.mu.Lock()
	ge, ok := sh.m[e.Client]
	sh.mu.Unlock()
	if !ok {
		geo := g.db.Lookup(e.Client)
		ge = geoEntry{asn: geo.ASN, country: geo.Country}
		sh.mu.Lock()
		if len(sh.m) >= g.max {
			clear(sh.m)
		}
		sh.m[e.Client] = ge
		sh.mu.Unlock()
	}
	e.ASN, e.Country = ge.asn, ge.country
}
