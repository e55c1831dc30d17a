package limit

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMemoryBytes is the default budget of one Table: 64 MiB, about four
// million slots. Levee's default for all tables together is the same 64 MiB,
// so a caller running several tables divides it among them.
const DefaultMemoryBytes = 64 << 20

// MinMemoryBytes is the smallest budget New accepts.
const MinMemoryBytes = 8 << 10

// Memory layout constants. A slot is 16 bytes; eight slots form a 128-byte
// bucket (two cache lines, which the adjacent-line prefetcher loads together).
const (
	slotBytes      = 16
	slotsPerBucket = 8
	bucketBytes    = slotBytes * slotsPerBucket
	shardBytes     = 64
	refBit         = 1 // low bit of slot.key: CLOCK reference bit
)

// warnEvery limits the "table too small" warning to one line per interval.
const warnEvery = int64(time.Minute)

// Config configures a Table. The zero value is usable: every field has a
// default. Config is a plain value; New does not keep a reference to it.
type Config struct {
	// Name labels the table's metrics (label table="...") and log lines.
	// Default "default".
	Name string `yaml:"name"`
	// MemoryBytes is the table's memory budget in bytes, including its lock
	// shards. The table allocates it entirely in New and never grows.
	// Default DefaultMemoryBytes (64 MiB); minimum MinMemoryBytes (8 KiB).
	MemoryBytes int64 `yaml:"memory_bytes"`
	// Shards is the number of lock shards, a power of two. Default: 16 per
	// GOMAXPROCS rounded up to a power of two, between 64 and 256, reduced
	// for small budgets so that locks take at most 1/16 of the budget.
	Shards int `yaml:"shards"`
}

// Deps holds a Table's optional collaborators. The zero value registers no
// metrics and discards log lines.
type Deps struct {
	// Registerer receives the table's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Logger receives rate-limited warnings when the table is too small
	// for its load; nil discards them.
	Logger *slog.Logger
}

func (c *Config) fill() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.MemoryBytes == 0 {
		c.MemoryBytes = DefaultMemoryBytes
	}
}

// Validate reports whether c, after defaults are filled, is usable.
func (c Config) Validate() error {
	c.fill()
	if c.MemoryBytes < MinMemoryBytes {
		return fmt.Errorf("limit: table %q: memory_bytes %d: %w: must be at least %d", c.Name, c.MemoryBytes, ErrConfig, MinMemoryBytes)
	}
	if c.Shards < 0 || c.Shards&(c.Shards-1) != 0 {
		return fmt.Errorf("limit: table %q: shards %d: %w: must be a power of two (0 = automatic)", c.Name, c.Shards, ErrConfig)
	}
	if c.Shards > 1<<16 {
		return fmt.Errorf("limit: table %q: shards %d: %w: at most %d", c.Name, c.Shards, ErrConfig, 1<<16)
	}
	return nil
}

// slot is one key's state. key is the normalised key with the CLOCK
// reference bit in bit 0; 0 marks an empty slot. tat is the key's
// theoretical arrival time in Unix nanoseconds, or tatBusy while the slot
// changes hands. Both words are read and written atomically: checks of keys
// already in the table run without the shard lock (see Table.allow).
type slot struct {
	key uint64
	tat int64
}

// Test hooks: testHookCharge runs in a check between its read of a slot's
// TAT and the re-read of the slot's key, testHookCAS just before its
// compare-and-swap, testHookEvict in an eviction between its store of the
// new key and of the new TAT. Nil outside tests, and only called in builds
// with the limithooks tag (hooksOn).
var testHookCharge, testHookCAS, testHookEvict func()

// tatBusy parks a slot's TAT while an eviction gives it to another key: a
// lock-free check that reads it retries under the shard lock.
const tatBusy = math.MinInt64

// bucket is the probe window of a key: eight slots, scanned in order. Slots
// are filled in order and never emptied, so the first empty slot ends a scan.
type bucket [slotsPerBucket]slot

// shard is a lock and the counters it protects, padded to a cache line.
// The lock serialises inserts and evictions in its buckets; checks and
// refunds of keys already present do not take it.
type shard struct {
	mu             sync.Mutex
	inserted       uint64
	evictRecovered uint64
	evictActive    uint64
	refunded       atomic.Uint64 // refunds run without the lock
	_              [shardBytes - 40]byte
}

// Table is a fixed-size, sharded table of GCRA rate limiter states keyed by
// uint64. Create it with New; the zero value is not usable.
//
// A Table is safe for concurrent use by multiple goroutines.
type Table struct {
	name      string
	seed      uint64
	nbuckets  uint64
	shardMask uint64
	buckets   []bucket
	shards    []shard
	bytes     int64

	log      *slog.Logger
	lastWarn atomic.Int64
}

// New returns a Table sized from cfg.MemoryBytes, with its metrics registered
// on deps.Registerer (if any).
func New(cfg Config, deps Deps) (*Table, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nshards := cfg.Shards
	if nshards == 0 {
		nshards = 1 << bits.Len(uint(16*runtime.GOMAXPROCS(0)-1))
		nshards = min(max(nshards, 64), 256)
		for nshards > 1 && int64(nshards)*shardBytes*16 > cfg.MemoryBytes {
			nshards /= 2
		}
	}
	nb := (cfg.MemoryBytes - int64(nshards)*shardBytes) / bucketBytes
	if nb < 1 {
		return nil, fmt.Errorf("limit: table %q: memory_bytes %d: %w: too small for %d shards", cfg.Name, cfg.MemoryBytes, ErrConfig, nshards)
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	t := &Table{
		name:      cfg.Name,
		seed:      rand.Uint64() | 1,
		nbuckets:  uint64(nb),
		shardMask: uint64(nshards - 1),
		buckets:   make([]bucket, nb),
		shards:    make([]shard, nshards),
		bytes:     nb*bucketBytes + int64(nshards)*shardBytes,
		log:       log.With("table", cfg.Name),
	}
	adviseHugePages(t.buckets)
	prefault(t.buckets)
	t.lastWarn.Store(-warnEvery - 1)
	if deps.Registerer != nil {
		if err := deps.Registerer.Register(newCollector(t)); err != nil {
			return nil, fmt.Errorf("limit: table %q: register metrics: %w", cfg.Name, err)
		}
	}
	return t, nil
}

// prefault writes one word of every 4 KiB page of the bucket array, so
// that the kernel maps (and zeroes) the whole table in New rather than in
// page faults on the first requests that touch each page. With huge pages a
// first touch zeroes 2 MiB; measured on the shared VM this took up to tens
// of milliseconds per fault, a stall no request should see.
func prefault(b []bucket) {
	const perPage = 4096 / bucketBytes
	for i := 0; i < len(b); i += perPage {
		b[i][0].key = 0
	}
}

// Name returns the table's configured name.
func (t *Table) Name() string { return t.name }

// Allow is AllowAt with the current wall-clock time.
func (t *Table) Allow(key uint64, l Limit) (ok bool, retryAfter time.Duration) {
	return t.AllowNAt(time.Now().UnixNano(), key, l, 1)
}

// AllowAt reports whether one event for key at time now (Unix nanoseconds)
// conforms to l, and records it if so. When the event is denied, retryAfter
// is the time until the same event would conform, for a 429 Retry-After
// header (round it up to whole seconds there). A denied event is not
// recorded, so a client that keeps retrying does not lock itself out for
// longer.
//
// An unlimited Limit (Rate 0) always allows and stores nothing. Times need not
// be monotonic: an event earlier than the key's last one is judged against
// the recorded state. All callers of one table should read the same clock,
// though: when a full bucket needs a slot, whether a key has recovered is
// judged at the evicting caller's now, so a caller whose clock runs seconds
// ahead can evict state that has not recovered yet by other callers' time.
func (t *Table) AllowAt(now int64, key uint64, l Limit) (ok bool, retryAfter time.Duration) {
	return t.AllowNAt(now, key, l, 1)
}

// AllowCompiledAt is AllowAt for a compiled limit: the form for the request
// path, where the limit was compiled once at configuration time.
func (t *Table) AllowCompiledAt(now int64, key uint64, c Compiled) (ok bool, retryAfter time.Duration) {
	if c.interval == 0 {
		return true, 0
	}
	return t.allow(now, key, c.interval, c.tau)
}

// AllowNAt is AllowAt for n events at once (for example n bytes or n
// requests of a batch). n <= 0 always succeeds without touching the table;
// n larger than the limit's burst never succeeds and reports Never.
func (t *Table) AllowNAt(now int64, key uint64, l Limit, n int) (ok bool, retryAfter time.Duration) {
	interval, burst := l.gcra()
	if interval == 0 || n <= 0 {
		return true, 0
	}
	if int64(n) > burst {
		return false, Never
	}
	return t.allow(now, key, interval*int64(n), interval*burst)
}

// allow runs GCRA for one key: the event costs inc nanoseconds of TAT and
// conforms while TAT-now stays within tau.
//
// A key already in the table is checked without the shard lock: its slot's
// TAT is updated with a compare-and-swap, and the slot's key is read again
// after the TAT and after the compare-and-swap. Inserts and evictions take
// the lock (allowLocked). An eviction parks the TAT on tatBusy before it
// changes the key, so a check never reads the new key with the old key's
// TAT. A check of the evicted key that read its TAT before the eviction
// can still land its compare-and-swap on the new key, when the new key's
// TAT happens to equal the value it read (with callers on a millisecond
// clock, equal TATs are common): the key read after the compare-and-swap
// then differs, the check swaps the TAT back if nobody moved it since, and
// redoes itself under the lock. What remains is a charge of the new key
// that falls between those two steps, a window of a few instructions.
func (t *Table) allow(now int64, key uint64, inc, tau int64) (bool, time.Duration) {
	k := normKey(key)
	bi := t.bucketOf(k)
	b := &t.buckets[bi]
	if s := b.find(k); s != nil {
		if ok, ra, done := charge(s, k, now, inc, tau); done {
			return ok, ra
		}
	}
	return t.allowLocked(now, k, bi, inc, tau)
}

// find returns k's slot in b, or nil if the scan meets an empty slot first.
// Without the lock, a key inserted meanwhile may be missed: the caller then
// retries under the lock.
func (b *bucket) find(k uint64) *slot {
	for i := range b {
		w := atomic.LoadUint64(&b[i].key)
		if w&^refBit == k {
			return &b[i]
		}
		if w == 0 {
			return nil
		}
	}
	return nil
}

// charge runs GCRA on slot s, which held key k when found. done is false
// when the slot is changing hands or no longer holds k: nothing was
// changed (or the change was taken back), and the caller must retry under
// the shard lock.
func charge(s *slot, k uint64, now, inc, tau int64) (ok bool, retryAfter time.Duration, done bool) {
	for {
		old := atomic.LoadInt64(&s.tat)
		if hooksOn && testHookCharge != nil {
			testHookCharge()
		}
		if old == tatBusy {
			return false, 0, false
		}
		w := atomic.LoadUint64(&s.key)
		if w&^refBit != k {
			return false, 0, false
		}
		nt := max(old, now) + inc
		if nt-now > tau {
			reference(s, w)
			return false, time.Duration(nt - now - tau), true
		}
		if hooksOn && testHookCAS != nil {
			testHookCAS()
		}
		if atomic.CompareAndSwapInt64(&s.tat, old, nt) {
			if !still(s, k, nt, old) {
				return false, 0, false
			}
			reference(s, w)
			return true, 0, true
		}
	}
}

// still is called after a compare-and-swap set slot s's TAT from old to
// nt for key k. It reports whether s still holds k; if not, the slot
// changed hands meanwhile and the swap may have landed on the new key's
// TAT (equal to old by chance), so it is taken back while the TAT is still
// nt. A swap that landed on the evicted key's state before the eviction
// needs nothing: the eviction has overwritten it.
func still(s *slot, k uint64, nt, old int64) bool {
	if atomic.LoadUint64(&s.key)&^refBit == k {
		return true
	}
	atomic.CompareAndSwapInt64(&s.tat, nt, old)
	return false
}

// reference sets the CLOCK reference bit of s, whose key word was w, when
// it is not set already (it nearly always is: only a full bucket's sweep
// clears it). Should the slot have changed hands since, the bit lands on
// the new key, which only makes it a later eviction choice.
func reference(s *slot, w uint64) {
	if w&refBit == 0 {
		atomic.OrUint64(&s.key, refBit)
	}
}

// allowLocked is allow under the shard lock: it finds k again (a check or
// insert may have raced), inserts it into a free slot or evicts a victim.
func (t *Table) allowLocked(now int64, k, bi uint64, inc, tau int64) (bool, time.Duration) {
	b := &t.buckets[bi]
	sh := &t.shards[bi&t.shardMask]
	sh.mu.Lock()
	for i := range b {
		s := &b[i]
		w := atomic.LoadUint64(&s.key)
		if w&^refBit == k {
			// Under the lock no eviction can move this slot: done.
			ok, ra, _ := charge(s, k, now, inc, tau)
			sh.mu.Unlock()
			return ok, ra
		}
		if w == 0 {
			// Key absent and a free slot: a fresh key always conforms
			// because inc <= tau. TAT first: a lock-free reader that sees
			// the key must see its TAT.
			atomic.StoreInt64(&s.tat, now+inc)
			atomic.StoreUint64(&s.key, k)
			sh.inserted++
			sh.mu.Unlock()
			return true, 0
		}
	}
	v, recovered := b.victim(now)
	s := &b[v]
	old := atomic.SwapInt64(&s.tat, tatBusy)
	nt := now + inc
	if nt == old {
		nt++ // not the evicted key's last TAT (see allow)
	}
	atomic.StoreUint64(&s.key, k)
	if hooksOn && testHookEvict != nil {
		testHookEvict()
	}
	atomic.StoreInt64(&s.tat, nt)
	if recovered {
		sh.evictRecovered++
	} else {
		sh.evictActive++
	}
	sh.mu.Unlock()
	if !recovered {
		t.warnFull(now)
	}
	return true, 0
}

// normKey clears the reference bit of a key and avoids 0, the empty slot.
func normKey(key uint64) uint64 {
	k := key &^ refBit
	if k == 0 {
		k = 2
	}
	return k
}

// bucketOf maps a normalised key to its bucket with the table's own seed, so
// that two tables (or two processes) spread the same keys differently.
func (t *Table) bucketOf(k uint64) uint64 {
	bi, _ := bits.Mul64((k^t.seed)*0x9e3779b97f4a7c15, t.nbuckets)
	return bi
}

// victim picks the slot to reuse in a full bucket. In order of preference:
// a slot whose key has fully recovered (its TAT is not after now, so
// forgetting it changes no future decision); an unreferenced slot with the
// earliest TAT (the state closest to recovery); otherwise, as CLOCK's second
// chance, it clears every reference bit and takes the earliest TAT.
//
// Called with the shard lock held; lock-free checks may still move TATs
// and set reference bits meanwhile, which can only make the choice a little
// stale.
func (b *bucket) victim(now int64) (i int, recovered bool) {
	best, bestRef := -1, -1
	var bestTat, bestRefTat int64
	for j := range b {
		s := &b[j]
		tat := atomic.LoadInt64(&s.tat)
		if tat <= now {
			return j, true
		}
		if atomic.LoadUint64(&s.key)&refBit == 0 {
			if best < 0 || tat < bestTat {
				best, bestTat = j, tat
			}
		} else if bestRef < 0 || tat < bestRefTat {
			bestRef, bestRefTat = j, tat
		}
	}
	if best >= 0 {
		return best, false
	}
	for j := range b {
		atomic.AndUint64(&b[j].key, ^uint64(refBit))
	}
	return bestRef, false
}

// warnFull logs, at most once per warnEvery of table time, that the table
// evicted a key that still had state: its budget is too small for the load.
func (t *Table) warnFull(now int64) {
	last := t.lastWarn.Load()
	if now-last < warnEvery && now >= last {
		return
	}
	if !t.lastWarn.CompareAndSwap(last, now) {
		return
	}
	st := t.Stats()
	t.log.Warn("limit: table full, evicting keys that still have state; raise memory_bytes if this persists",
		"slots", st.Slots, "live", st.Live, "evictions_active", st.EvictionsActive)
}

// Stats is a snapshot of a Table's counters, a plain value.
type Stats struct {
	// Slots is the table's capacity in keys.
	Slots int64
	// Bytes is the memory the table allocated.
	Bytes int64
	// Live is the number of occupied slots. Slots are never emptied, so once
	// the table has filled Live equals Slots; recovered keys stay until their
	// slot is needed.
	Live int64
	// EvictionsRecovered counts evicted keys whose state had fully recovered
	// (no information lost).
	EvictionsRecovered uint64
	// EvictionsActive counts evicted keys that still had state: a sign that
	// the table is too small for the number of active keys.
	EvictionsActive uint64
	// Refunded counts allowed checks taken back by AllowAllAt because a
	// later check of the same event was denied.
	Refunded uint64
}

// Stats returns the table's counters. It briefly takes every shard lock, so
// call it from a scrape or a test, not per request.
func (t *Table) Stats() Stats {
	st := Stats{
		Slots: int64(t.nbuckets) * slotsPerBucket,
		Bytes: t.bytes,
	}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		st.Live += int64(sh.inserted)
		st.EvictionsRecovered += sh.evictRecovered
		st.EvictionsActive += sh.evictActive
		st.Refunded += sh.refunded.Load()
		sh.mu.Unlock()
	}
	return st
}
