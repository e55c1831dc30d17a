package telemetry

import (
	"net/netip"
	"time"
)

// Item is one value of a top-k list.
type Item struct {
	Key       uint64       `json:"-"`                   // internal hash of the value
	Value     string       `json:"value"`               // printable value: address, prefix, "AS64500", "DE", path, user agent, 16 hex digits for hashes
	Prefix    netip.Prefix `json:"prefix,omitzero"`     // AttrSource (/32 or /128) and AttrPrefix (/24 or /64)
	Num       uint64       `json:"num,omitempty"`       // AttrASN: the AS number; AttrQuery, AttrHeaderOrder, AttrFingerprint: the hash
	Count     uint64       `json:"count"`               // estimated occurrences (Space-Saving overestimates by at most Err)
	Err       uint64       `json:"err,omitempty"`       // maximum overestimation of Count
	Truncated bool         `json:"truncated,omitempty"` // Value is the first 96 bytes of a longer value
}

// Second is the closed, immutable telemetry of one bucket (normally one
// second) of one site. The zero value is an empty second. A Second is a plain
// value: safe to share between goroutines once returned by Tick.
type Second struct {
	Start, End   time.Time
	Requests     uint64
	Verdicts     [NumVerdicts]uint64
	Status       [6]uint64 // index 0: no origin response; 1..5: 1xx..5xx
	OriginErrors uint64    // origin 5xx responses and VerdictError requests
	Conns        uint64    // new connections
	Sources      uint64    // distinct source addresses (HyperLogLog, ~1.6 % error)
	NewSources   uint64    // sources not in the seen filter (never seen or not for a long time)
	Latency      [NumLatencyBuckets]uint64
	LatencySum   time.Duration
	// Top lists the most frequent values per attribute, by descending count:
	// at most TopK, for AttrSource and AttrPrefix at most SourceTopK per
	// shard.
	Top [NumAttrs][]Item
	// TopFloor is the sum of the shards' smallest monitored counts (0 when
	// no summary was full): with Config.ExactTopK an upper bound of the
	// count of any value missing from Top; with randomized admission (the
	// default) an estimate of it.
	TopFloor [NumAttrs]uint64
}

// Duration is End-Start.
func (s *Second) Duration() time.Duration { return s.End.Sub(s.Start) }

// Mitigated is the number of requests the shield stopped.
func (s *Second) Mitigated() uint64 {
	var n uint64
	for v := range NumVerdicts {
		if v.Mitigated() {
			n += s.Verdicts[v]
		}
	}
	return n
}

// Passed is the number of requests that reached the origin.
func (s *Second) Passed() uint64 { return s.Verdicts[VerdictPass] + s.Verdicts[VerdictError] }

// Answered is the number of requests the origin answered.
func (s *Second) Answered() uint64 {
	var n uint64
	for _, c := range s.Latency {
		n += c
	}
	return n
}

// LatencyQuantile returns the upper bound of the histogram bucket holding
// the q-quantile of origin latency, 0 when nothing was answered.
func (s *Second) LatencyQuantile(q float64) time.Duration {
	total := s.Answered()
	if total == 0 {
		return 0
	}
	want := uint64(q*float64(total) + 0.5)
	if want < 1 {
		want = 1
	}
	var acc uint64
	for i, c := range s.Latency {
		acc += c
		if acc >= want {
			return LatencyBucketBound(i)
		}
	}
	return LatencyBucketBound(NumLatencyBuckets - 1)
}
