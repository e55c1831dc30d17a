// Package limit implements Levee's per-key rate limiter tables.
//
// A Table holds one GCRA ("generic cell rate algorithm") state word per key:
// the key's theoretical arrival time (TAT) in Unix nanoseconds. Keys are
// uint64 hashes built with KeyAddr (a client address grouped by prefix),
// KeyBytes/KeyString (a header, cookie or route value) and KeyCombine (a
// combination of keys). Each key builder mixes in a limit id, so the same
// address checked under two limits gives two independent keys, and one Table
// can serve every limit of a site at once.
//
// The table has a fixed size derived from a byte budget: it allocates all of
// its memory in New and never grows. When a bucket of slots is full, the
// table evicts with a CLOCK (second chance) policy, preferring keys whose TAT
// is already in the past (those have fully recovered; forgetting them loses
// nothing). A flood of distinct keys therefore evicts cold state but never
// fails: a frequently touched heavy source keeps its slot and stays limited.
//
// The hot path, (*Table).AllowCompiledAt with a limit compiled once
// (Limit.Compile), takes the current time as an argument, allocates nothing,
// and updates a key already in the table with one compare-and-swap; inserts
// and evictions take a per-shard mutex. AllowAt takes a Limit and compiles
// it on every call, for callers off the request path.
package limit

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Never is the retry-after duration reported for a request that can never
// succeed: AllowNAt with n larger than the limit's burst.
const Never = time.Duration(math.MaxInt64)

// maxTolerance caps the interval and burst*interval (2^60 ns, about 36
// years) so that TAT arithmetic on Unix nanoseconds can never overflow int64.
const maxTolerance = float64(1 << 60)

// maxBurst is the largest burst Validate accepts.
const maxBurst = 1 << 30

// Limit is one rate limit: a sustained rate and a burst.
//
// The zero value (Rate 0) means "no limit": every check passes and no state
// is stored. A Limit is a plain value, safe to copy and share.
type Limit struct {
	// Rate is the sustained number of events per second. 0 means no limit.
	// Rates above 1e9 per second are treated as no limit (the table keeps
	// time in nanoseconds). Negative and NaN rates are rejected by Validate
	// and treated as no limit by the table.
	Rate float64 `yaml:"rate"`
	// Burst is the number of events a fresh (or fully recovered) key may send
	// at once. Values below 1 mean 1. Over any window of length W starting
	// from a recovered key, at most Burst + floor(Rate*W) events pass.
	Burst int `yaml:"burst"`
}

// Unlimited reports whether l imposes no limit.
func (l Limit) Unlimited() bool {
	return !(l.Rate > 0) || l.Rate > 1e9
}

// Validate reports whether l is a usable configuration value.
func (l Limit) Validate() error {
	switch {
	case math.IsNaN(l.Rate) || math.IsInf(l.Rate, 0):
		return fmt.Errorf("limit: rate %v: %w: must be a finite number of events per second (0 = no limit)", l.Rate, ErrConfig)
	case l.Rate < 0:
		return fmt.Errorf("limit: rate %v: %w: must not be negative (0 = no limit)", l.Rate, ErrConfig)
	case l.Rate > 1e9:
		return fmt.Errorf("limit: rate %v: %w: above 1e9 events per second; use 0 for no limit", l.Rate, ErrConfig)
	case l.Burst < 0 || l.Burst > maxBurst:
		return fmt.Errorf("limit: burst %d: %w: must be between 0 and %d", l.Burst, ErrConfig, maxBurst)
	}
	return nil
}

// String formats l as "20/s burst 40".
func (l Limit) String() string {
	if l.Unlimited() {
		return "unlimited"
	}
	return fmt.Sprintf("%g/s burst %d", l.Rate, l.burst())
}

func (l Limit) burst() int {
	if l.Burst < 1 {
		return 1
	}
	return l.Burst
}

// gcra returns the emission interval T (nanoseconds per event) and the burst
// as used by the table. interval is 0 for an unlimited Limit.
func (l Limit) gcra() (interval int64, burst int64) {
	if l.Unlimited() {
		return 0, 0
	}
	iv := 1e9 / l.Rate
	if iv > maxTolerance {
		iv = maxTolerance // one event per 36 years: the slowest rate kept
	}
	interval = int64(iv)
	if interval < 1 {
		return 0, 0
	}
	// Cap the burst rather than the interval, so that the rate stays exact
	// and burst*interval cannot overflow. The float test keeps the integer
	// division off the hot path.
	burst = int64(l.burst())
	if float64(burst)*float64(interval) > maxTolerance {
		burst = int64(maxTolerance) / interval
	}
	return interval, burst
}

// Compiled is a Limit prepared for checks: its GCRA emission interval and
// tolerance in nanoseconds. Compile a limit once, where it is configured,
// and check it with Table.AllowCompiledAt or in a Check: AllowAt converts
// its Limit on every call (a floating-point division among others), which
// measured 1-15 ns (median about 6) per check at 1M keys
// (BenchmarkAllowAtOverhead).
// The zero value is unlimited.
type Compiled struct {
	interval, tau int64
}

// Compile prepares l for checks.
func (l Limit) Compile() Compiled {
	interval, burst := l.gcra()
	return Compiled{interval: interval, tau: interval * burst}
}

// Unlimited reports whether c imposes no limit.
func (c Compiled) Unlimited() bool { return c.interval == 0 }

// ErrConfig wraps every configuration error returned by New.
var ErrConfig = errors.New("invalid configuration")
