package limit

import (
	"sync/atomic"
	"time"
)

// Check is one limit to apply to one key, for AllowAllAt. It is a plain
// value; the zero value checks key 0 against no limit (always passes).
type Check struct {
	Key   uint64
	Limit Compiled
}

// AllowAllAt applies several limits to one event at once, all or nothing:
// for example the client's address, its /24 and the site. It charges the
// checks in order; if one is denied it refunds the charges already made, so
// a request refused by its /24 limit does not also use up its address limit.
// It returns the index of the denied check and its retry-after (later checks
// are not evaluated), or ok with failed -1.
//
// The checks are not one atomic transaction: a concurrent event may observe
// a charge that is refunded a moment later. Each key's state stays exact.
// AllowAllAt does not allocate.
func (t *Table) AllowAllAt(now int64, checks []Check) (ok bool, retryAfter time.Duration, failed int) {
	// Start loading every bucket before the first lock: a locked
	// instruction waits for earlier loads, so the cache misses of all
	// checks overlap instead of following one another.
	for i := range checks {
		touch(&t.buckets[t.bucketOf(normKey(checks[i].Key))])
	}
	for i := range checks {
		c := checks[i].Limit
		if c.interval == 0 {
			continue
		}
		ok, ra := t.allow(now, checks[i].Key, c.interval, c.tau)
		if !ok {
			for j := i - 1; j >= 0; j-- {
				if iv := checks[j].Limit.interval; iv != 0 {
					t.refund(now, checks[j].Key, iv)
				}
			}
			return false, ra, i
		}
	}
	return true, 0, -1
}

// refund takes back a charge of inc nanoseconds from key, if the key is
// still in the table. A TAT refunded to before now means "recovered" just
// as well, so it is clamped at now to keep the slot a preferred victim.
// Like a check, it runs without the shard lock unless the slot is changing
// hands; a key evicted meanwhile has nothing left to refund.
func (t *Table) refund(now int64, key uint64, inc int64) {
	k := normKey(key)
	bi := t.bucketOf(k)
	b := &t.buckets[bi]
	sh := &t.shards[bi&t.shardMask]
	if s := b.find(k); s != nil && uncharge(s, k, now, inc) {
		sh.refunded.Add(1)
		return
	}
	sh.mu.Lock()
	if s := b.find(k); s != nil && uncharge(s, k, now, inc) {
		sh.refunded.Add(1)
	}
	sh.mu.Unlock()
}

// uncharge lowers slot s's TAT by inc (not below now) while it holds key
// k; false when it is changing hands or holds another key (a refund that
// landed on another key is taken back, as in charge).
func uncharge(s *slot, k uint64, now, inc int64) bool {
	for {
		old := atomic.LoadInt64(&s.tat)
		if old == tatBusy || atomic.LoadUint64(&s.key)&^refBit != k {
			return false
		}
		nt := max(old-inc, now)
		if atomic.CompareAndSwapInt64(&s.tat, old, nt) {
			return nt == old || still(s, k, nt, old)
		}
	}
}

// touch reads a bucket's first word without its lock, only to bring the
// bucket into the cache; the value is discarded (returned so that the load is
// not optimised away). The read can race with a writer holding the shard
// lock, which is harmless for a discarded aligned word, so the race detector
// is told not to instrument it.
//
//go:norace
//go:noinline
func touch(b *bucket) uint64 {
	return b[0].key
}
