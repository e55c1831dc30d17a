// Package telemetry records what a site's traffic looks like, one second at a
// time, in fixed memory and without allocating on the request path.
//
// The data plane calls [Recorder.Record] for every request (and
// [Recorder.RecordConn] for connections that never carried one). A ticker
// calls [Recorder.Tick] once per second; it closes the current bucket and
// returns it as an immutable [Second]: counters by verdict and origin status
// class, a latency histogram, new connections, a HyperLogLog estimate of
// distinct sources, the number of sources never seen before (against a
// rotating blocked Bloom filter) and Space-Saving top-k lists for every
// [Attr] (source, /24 or /64 prefix, ASN, country, path, query shape, user
// agent, header order, fingerprint). The detector (internal/detect) consumes
// the Seconds.
package telemetry

import (
	"math/bits"
	"net/netip"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Verdict is what the shield did with a request.
type Verdict uint8

// Verdicts. The zero value is VerdictPass.
const (
	VerdictPass       Verdict = iota // forwarded to the origin
	VerdictBlocked                   // refused by a block rule or ban
	VerdictLimited                   // refused by a rate limit
	VerdictChallenged                // answered with a challenge instead of the origin
	VerdictInvalid                   // refused by a protocol or request guard
	VerdictError                     // forwarded, but the origin failed (502/504)
	NumVerdicts
)

var verdictNames = [NumVerdicts]string{"pass", "blocked", "limited", "challenged", "invalid", "error"}

// String returns the lower-case name used in logs and metrics.
func (v Verdict) String() string {
	if v < NumVerdicts {
		return verdictNames[v]
	}
	return "unknown"
}

// Mitigated reports whether the request was stopped by the shield (it did
// not reach the origin).
func (v Verdict) Mitigated() bool {
	return v == VerdictBlocked || v == VerdictLimited || v == VerdictChallenged || v == VerdictInvalid
}

// ParseVerdict is the inverse of String. Unknown names return false.
func ParseVerdict(s string) (Verdict, bool) {
	for i, n := range verdictNames {
		if n == s {
			return Verdict(i), true
		}
	}
	return 0, false
}

// Attr names one attribute of a request that telemetry keeps a top-k list for.
type Attr uint8

// Attributes. Values whose Event field is zero (unknown) are not counted.
const (
	AttrSource      Attr = iota // client address
	AttrPrefix                  // client /24 (IPv4) or /64 (IPv6)
	AttrASN                     // origin AS number (GeoIP)
	AttrCountry                 // ISO 3166 country code (GeoIP)
	AttrPath                    // URL path without query
	AttrQuery                   // query shape: hash of the parameter names in order
	AttrUserAgent               // User-Agent header
	AttrHeaderOrder             // hash of the request header names in order
	AttrFingerprint             // TLS/HTTP2 fingerprint hash
	NumAttrs
)

var attrNames = [NumAttrs]string{"source", "prefix", "asn", "country", "path", "query", "user_agent", "header_order", "fingerprint"}

// String returns the lower-case name used in rules, reports and JSON.
func (a Attr) String() string {
	if a < NumAttrs {
		return attrNames[a]
	}
	return "unknown"
}

// ParseAttr is the inverse of String.
func ParseAttr(s string) (Attr, bool) {
	for i, n := range attrNames {
		if n == s {
			return Attr(i), true
		}
	}
	return 0, false
}

// MarshalText implements encoding.TextMarshaler.
func (a Attr) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Attr) UnmarshalText(b []byte) error {
	v, ok := ParseAttr(string(b))
	if !ok {
		return &attrError{string(b)}
	}
	*a = v
	return nil
}

type attrError struct{ s string }

func (e *attrError) Error() string { return "telemetry: unknown attribute " + e.s }

// Event is one request (or one new connection) as the data plane saw it. It
// is passed by pointer and not retained: Record copies what it needs, so
// the byte slices may point into reused request buffers. The zero value is a
// request with nothing known about it.
type Event struct {
	Time        int64      // Unix nanoseconds; informational, buckets are set by Tick
	Client      netip.Addr // client address (after PROXY protocol / trusted XFF)
	Path        []byte     // URL path without the query
	QueryShape  uint64     // QueryShape of the raw query; 0 = no query
	UserAgent   []byte     // User-Agent header value; empty = none
	HeaderOrder uint64     // hash of the header names in order; 0 = unknown
	Fingerprint uint64     // client fingerprint hash; 0 = none
	ASN         uint32     // AS number; 0 = unknown
	Country     [2]byte    // ISO country code; zero = unknown
	Verdict     Verdict
	Status      uint16        // origin response status; 0 = the origin did not answer
	Latency     time.Duration // origin latency (only used when Status != 0)
	NewConn     bool          // the request is the first on a new connection
}

// Hash is the 64-bit hash telemetry uses for byte-string attributes (xxHash64,
// seed 0). Producers of HeaderOrder and Fingerprint values should use it so
// that rules generated from telemetry compare equal to what the data plane
// computes.
func Hash(b []byte) uint64 { return xxhash.Sum64(b) }

// QueryShape hashes the parameter names of a raw query string in order,
// ignoring the values: "a=1&b=2" and "a=9&b=" have the same shape. It returns
// 0 for an empty query and never 0 otherwise. It does not allocate.
func QueryShape(q []byte) uint64 {
	if len(q) == 0 {
		return 0
	}
	h := uint64(0x9e3779b97f4a7c15)
	start := 0
	inKey := true
	for i := 0; i <= len(q); i++ {
		if i == len(q) || q[i] == '&' {
			end := i
			if inKey {
				h = mix(h ^ xxhash.Sum64(q[start:end]))
			}
			start = i + 1
			inKey = true
			continue
		}
		if q[i] == '=' && inKey {
			h = mix(h ^ xxhash.Sum64(q[start:i]))
			inKey = false
		}
	}
	if h == 0 {
		h = 1
	}
	return h
}

// mix is the splitmix64 finalizer: a cheap bijective scrambler for integer
// keys.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// addrKey hashes a client address. IPv4 and IPv4-mapped IPv6 hash alike.
func addrKey(a netip.Addr) uint64 {
	b := a.As16()
	hi := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 | uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
	lo := uint64(b[8])<<56 | uint64(b[9])<<48 | uint64(b[10])<<40 | uint64(b[11])<<32 | uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])
	return mix(hi ^ mix(lo^0x5851f42d4c957f2d))
}

// PrefixOf returns the prefix telemetry aggregates a client into: /24 for
// IPv4 (and IPv4-mapped) addresses, /64 for IPv6.
func PrefixOf(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		p, _ := a.Prefix(24)
		return p
	}
	p, _ := a.Prefix(64)
	return p
}

// latencyBucket maps a latency to its histogram bucket: bucket i holds
// latencies below 2^i microseconds (bucket 0: under 1 µs), the last bucket
// everything above.
func latencyBucket(d time.Duration) int {
	us := uint64(d / time.Microsecond)
	if d < 0 {
		us = 0
	}
	b := bits.Len64(us)
	if b >= NumLatencyBuckets {
		b = NumLatencyBuckets - 1
	}
	return b
}

// NumLatencyBuckets is the number of buckets of the latency histogram.
const NumLatencyBuckets = 24

// LatencyBucketBound returns the exclusive upper bound of bucket i (the last
// bucket has no bound and returns the bound of the one before times two).
func LatencyBucketBound(i int) time.Duration {
	return time.Duration(uint64(1)<<uint(i)) * time.Microsecond
}
