//go:build limithooks

package limit

// The tests in this file stop a check or an eviction at its racy points
// through the test hooks of table.go, which exist only in builds with the
// limithooks tag (hooks_on.go): the production table carries no hook checks
// on its hot path. test.sh runs them with -tags limithooks under the race
// detector.

import (
	"sync/atomic"
	"testing"
	"time"
)

// bucketKeys returns n keys that share one bucket of tb.
func bucketKeys(tb *Table, n int) []uint64 {
	var keys []uint64
	target := tb.bucketOf(normKey(withID(4, 0)))
	for i := uint64(0); len(keys) < n; i++ {
		if k := withID(4, i); tb.bucketOf(normKey(k)) == target {
			keys = append(keys, k)
		}
	}
	return keys
}

// stopFirst sets *hook so that the first call to it closes paused and
// waits for resume to be closed; later calls (other checks, made while
// the first one stands) pass through. The hook is removed when the test
// ends.
func stopFirst(t *testing.T, hook *func()) (paused, resume chan struct{}) {
	paused, resume = make(chan struct{}), make(chan struct{})
	var first atomic.Bool
	*hook = func() {
		if first.CompareAndSwap(false, true) {
			close(paused)
			<-resume
		}
	}
	t.Cleanup(func() { *hook = nil })
	return paused, resume
}

// remaining counts the events key can still pass at now (it uses them up).
func remaining(tb *Table, now int64, key uint64, l Limit) int {
	n := 0
	for ok, _ := tb.AllowAt(now, key, l); ok; ok, _ = tb.AllowAt(now, key, l) {
		n++
	}
	return n
}

// TestCheckRacingEvictionOfItsKey stops a lock-free check of key A after
// it has read A's TAT, evicts A for a new key B meanwhile, then lets the
// check go on: it must notice that the slot changed hands and redo the
// check under the lock (A inserted again) instead of charging B's state.
func TestCheckRacingEvictionOfItsKey(t *testing.T) {
	tb := newTable(t, Config{MemoryBytes: MinMemoryBytes})
	l := Limit{Rate: 1, Burst: 5}
	keys := bucketKeys(tb, 9)
	for _, k := range keys[:8] { // the bucket is full
		tb.AllowAt(epoch, k, l)
	}
	a, b := keys[0], keys[8]
	now := epoch + int64(10*time.Second) // every key recovered: A is the first victim
	paused, resume := stopFirst(t, &testHookCharge)
	done := make(chan bool)
	go func() {
		ok, _ := tb.AllowAt(now, a, l)
		done <- ok
	}()
	<-paused
	if ok, _ := tb.AllowAt(now, b, l); !ok { // evicts A
		t.Fatal("B's first event denied")
	}
	close(resume)
	if !<-done {
		t.Fatal("A's check was denied")
	}
	testHookCharge = nil
	if got := remaining(tb, now, b, l); got != l.Burst-1 {
		t.Errorf("B can pass %d more events, want %d: A's check charged B's state", got, l.Burst-1)
	}
	if got := remaining(tb, now, a, l); got != l.Burst-1 {
		t.Errorf("A can pass %d more events, want %d: its check was not recorded", got, l.Burst-1)
	}
}

// TestCheckDuringEvictionToItsKey stops an eviction after it has given the
// slot to key B but before B's TAT is stored, and checks B meanwhile: the
// check must not use the evicted key's TAT (it waits for the eviction under
// the lock), so B ends with two events charged.
func TestCheckDuringEvictionToItsKey(t *testing.T) {
	tb := newTable(t, Config{MemoryBytes: MinMemoryBytes})
	l := Limit{Rate: 1, Burst: 5}
	keys := bucketKeys(tb, 9)
	for _, k := range keys[:8] {
		tb.AllowAt(epoch, k, l)
	}
	b := keys[8]
	now := epoch + int64(10*time.Second)
	paused, resume := stopFirst(t, &testHookEvict)
	evicted := make(chan bool)
	go func() {
		ok, _ := tb.AllowAt(now, b, l) // inserts B over the first victim
		evicted <- ok
	}()
	<-paused
	checked := make(chan bool, 1)
	go func() {
		ok, _ := tb.AllowAt(now, b, l)
		checked <- ok
	}()
	// A correct check now waits for the shard lock; give a wrong one the
	// time to finish on the old TAT.
	early := false
	select {
	case <-checked:
		early = true
		t.Error("a check of B finished while B's slot was half written")
	case <-time.After(50 * time.Millisecond):
	}
	close(resume)
	if !<-evicted {
		t.Fatal("B's insert was denied")
	}
	testHookEvict = nil
	if !early {
		<-checked
	}
	if got := remaining(tb, now, b, l); got != l.Burst-2 {
		t.Errorf("B can pass %d more events after two, want %d", got, l.Burst-2)
	}
}

// TestCheckLandingOnEvictingKeysEqualTAT: a check of k1 reads k1's TAT and
// stops just before its compare-and-swap; k1 is charged again, then
// evicted for k2, whose fresh TAT equals the value the stopped check read
// (all at one time, as with callers on a millisecond clock). The check's
// compare-and-swap then succeeds on k2's slot: it must see that the slot
// changed hands, take its change back and redo the check under the lock,
// leaving k2 with its own single event.
func TestCheckLandingOnEvictingKeysEqualTAT(t *testing.T) {
	tb := newTable(t, Config{MemoryBytes: MinMemoryBytes})
	l := Limit{Rate: 1, Burst: 5}
	keys := bucketKeys(tb, 9)
	now := epoch
	k1, k2 := keys[0], keys[8]
	tb.AllowAt(now, k1, l) // TAT now+1s, unreferenced
	for _, k := range keys[1:8] {
		for range 3 {
			tb.AllowAt(now, k, l) // TAT now+3s, referenced
		}
	}
	paused, resume := stopFirst(t, &testHookCAS)
	done := make(chan bool)
	go func() {
		ok, _ := tb.AllowAt(now, k1, l) // stops before its compare-and-swap
		done <- ok
	}()
	<-paused
	tb.AllowAt(now, k1, l)                    // k1: TAT now+2s, referenced
	if ok, _ := tb.AllowAt(now, k2, l); !ok { // evicts k1 (earliest TAT after the sweep); k2: now+1s
		t.Fatal("k2's first event denied")
	}
	// Mark k2 referenced without charging it (as a denied check would), so
	// that the redo of k1's check under the lock evicts another key.
	k2n := normKey(k2)
	atomic.OrUint64(&tb.buckets[tb.bucketOf(k2n)].find(k2n).key, refBit)
	close(resume)
	if !<-done {
		t.Fatal("the stopped check of k1 was denied")
	}
	testHookCAS = nil
	if got := remaining(tb, now, k2, l); got != l.Burst-1 {
		t.Errorf("k2 can pass %d more events, want %d: the check of k1 charged k2", got, l.Burst-1)
	}
}
