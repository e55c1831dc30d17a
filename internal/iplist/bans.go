package iplist

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BansConfig configures Bans. The zero value selects the defaults.
type BansConfig struct {
	// MaxBans bounds the number of bans held in memory; Add fails beyond it.
	// Default 1,000,000.
	MaxBans int `yaml:"max_bans"`
	// ExpireInterval is how often Run drops expired bans. Default 1s.
	ExpireInterval time.Duration `yaml:"expire_interval"`
}

// BansDeps are the collaborators of Bans. All fields are optional, so the
// zero value is an in-memory, unobserved Bans on the real clock.
type BansDeps struct {
	Store      BanStore              // nil: bans live in memory only
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not registered
	Now        func() time.Time      // nil: time.Now; used when loading and by Run
}

// Bans is the set of runtime bans. Every change (Add, Remove, expiry)
// publishes a new immutable snapshot atomically, so Lookup on the accept path
// takes no lock and allocates nothing, while writers serialize on a mutex and
// write through to the BanStore.
//
// A snapshot has two compiled layers: a large base and a small delta of the
// bans added since the base was built, plus a bitmap of base bans removed or
// replaced since. A change rebuilds only the delta; when the delta and the
// garbage in the base together pass about sqrt(bans), everything is rebuilt
// into a new base. An Add to a million bans therefore costs about a
// millisecond, not the half second of a full rebuild.
//
// Bans is safe for concurrent use. The zero value is not usable; call
// NewBans.
type Bans struct {
	cfg   BansConfig
	store BanStore
	log   *slog.Logger
	now   func() time.Time
	m     *bansMetrics

	mu      sync.Mutex           // serializes writers; guards the fields below
	entries map[netip.Prefix]Ban // every ban held
	delta   map[netip.Prefix]Ban // bans added or replaced since the base was built
	garbage int                  // base bans removed, replaced or expired since
	sources map[string]bool      // metric label values seen, capped by maxSourceLabels

	snap atomic.Pointer[banSnapshot]
}

// banLayer is a compiled, immutable set of bans.
type banLayer struct {
	table *Table
	bans  []Ban   // sorted by address, then length; indexed by table value
	outer []int32 // outer[i]: index of the longest other ban containing bans[i], -1 if none
}

// banSnapshot is one immutable published state.
type banSnapshot struct {
	base, delta banLayer
	dead        []uint64 // bit i: base.bans[i] was removed or replaced; nil if none
	count       int      // bans held
	next        time.Time
}

// ErrNotPersisted wraps store failures of Add and Remove: the change is in
// effect in memory but will not survive a restart.
var ErrNotPersisted = errors.New("ban change applied in memory but not persisted")

// NewBans returns a Bans loaded with the active bans of deps.Store.
func NewBans(ctx context.Context, cfg BansConfig, deps BansDeps) (*Bans, error) {
	if cfg.MaxBans == 0 {
		cfg.MaxBans = 1_000_000
	}
	if cfg.ExpireInterval == 0 {
		cfg.ExpireInterval = time.Second
	}
	if cfg.MaxBans < 0 || cfg.ExpireInterval < 0 {
		return nil, fmt.Errorf("iplist: bans: max_bans and expire_interval must not be negative")
	}
	b := &Bans{
		cfg:     cfg,
		store:   deps.Store,
		log:     deps.Logger,
		now:     deps.Now,
		entries: map[netip.Prefix]Ban{},
		delta:   map[netip.Prefix]Ban{},
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.now == nil {
		b.now = time.Now
	}
	m, err := newBansMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	b.m = m
	if b.store != nil {
		list, err := b.store.ListBans(ctx, b.now())
		if err != nil {
			return nil, fmt.Errorf("iplist: bans: load from store: %w", err)
		}
		if len(list) > cfg.MaxBans {
			return nil, fmt.Errorf("iplist: bans: store holds %d active bans, more than max_bans %d", len(list), cfg.MaxBans)
		}
		for _, ban := range list {
			if !ban.Prefix.IsValid() {
				continue
			}
			ban.Prefix = normalize(ban.Prefix)
			b.entries[ban.Prefix] = ban
		}
	}
	b.rebuildAll()
	b.log.Info("bans loaded", "count", len(b.entries))
	return b, nil
}

// Lookup returns the most specific ban in force at now that contains addr.
// It is lock-free and allocation-free.
func (b *Bans) Lookup(addr netip.Addr, now time.Time) (Ban, bool) {
	s := b.snap.Load()
	d, dok := s.delta.find(addr, now, nil)
	if s.base.table.Len() == 0 {
		return d, dok
	}
	base, bok := s.base.find(addr, now, s.dead)
	if dok && (!bok || d.Prefix.Bits() >= base.Prefix.Bits()) {
		return d, true
	}
	return base, bok
}

// find returns the most specific ban of the layer in force at now that
// contains addr and is not marked in dead.
func (l *banLayer) find(addr netip.Addr, now time.Time, dead []uint64) (Ban, bool) {
	v, ok := l.table.Lookup(addr)
	if !ok {
		return Ban{}, false
	}
	// The most specific ban may be dead or expired; fall back to the bans
	// containing it, most specific first.
	for i := int32(v); i >= 0; i = l.outer[i] {
		if dead != nil && dead[i>>6]&(1<<(uint(i)&63)) != 0 {
			continue
		}
		if l.bans[i].ActiveAt(now) {
			return l.bans[i], true
		}
	}
	return Ban{}, false
}

// Banned reports whether a ban in force at now contains addr.
func (b *Bans) Banned(addr netip.Addr, now time.Time) bool {
	_, ok := b.Lookup(addr, now)
	return ok
}

// Len returns the number of bans held, including expired ones not yet
// dropped by Expire.
func (b *Bans) Len() int { return b.snap.Load().count }

// List returns the bans in force at now, ordered by address and length.
func (b *Bans) List(now time.Time) []Ban {
	b.mu.Lock()
	out := make([]Ban, 0, len(b.entries))
	for _, ban := range b.entries {
		if ban.ActiveAt(now) {
			out = append(out, ban)
		}
	}
	b.mu.Unlock()
	slices.SortFunc(out, compareBans)
	return out
}

// Add bans the given prefixes, replacing existing bans on the same prefixes,
// publishes the change once, then writes the bans through to the store.
// A zero Created is set to the current time. If the store fails, the bans are
// still in effect and the error wraps ErrNotPersisted.
func (b *Bans) Add(ctx context.Context, bans ...Ban) error {
	for _, ban := range bans {
		if !ban.Prefix.IsValid() {
			return fmt.Errorf("iplist: ban: %w", ErrInvalidPrefix)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	added := 0
	for _, ban := range bans {
		if _, ok := b.entries[normalize(ban.Prefix)]; !ok {
			added++
		}
	}
	if len(b.entries)+added > b.cfg.MaxBans {
		return fmt.Errorf("iplist: ban: %d bans held, %d more would exceed max_bans %d", len(b.entries), added, b.cfg.MaxBans)
	}
	now := b.now()
	bans = slices.Clone(bans) // normalized below; leave the caller's slice alone
	cur := b.snap.Load()
	dead := cur.dead
	next := cur.next
	copied := false
	for i := range bans {
		ban := &bans[i]
		ban.Prefix = normalize(ban.Prefix)
		if ban.Created.IsZero() {
			ban.Created = now
		}
		if _, ok := b.entries[ban.Prefix]; ok {
			if idx, inBase := cur.base.index(ban.Prefix); inBase && !bitSet(dead, idx) {
				if !copied {
					dead, copied = cloneBits(dead, len(cur.base.bans)), true
				}
				setBit(dead, idx)
				b.garbage++
			}
		}
		b.entries[ban.Prefix] = *ban
		b.delta[ban.Prefix] = *ban
		if !ban.Expires.IsZero() && (next.IsZero() || ban.Expires.Before(next)) {
			next = ban.Expires
		}
		b.m.added.WithLabelValues(b.sourceLabel(ban.Source)).Inc()
	}
	b.publishDelta(dead, next)
	if b.store == nil {
		return nil
	}
	var errs []error
	for _, ban := range bans {
		if err := b.store.AddBan(ctx, ban); err != nil {
			errs = append(errs, err)
		}
	}
	return b.storeErr("add", errs)
}

// Remove lifts the ban on exactly prefix and reports whether there was one.
// If the store fails, the ban is lifted in memory and the error wraps
// ErrNotPersisted.
func (b *Bans) Remove(ctx context.Context, prefix netip.Prefix) (bool, error) {
	if !prefix.IsValid() {
		return false, fmt.Errorf("iplist: unban: %w", ErrInvalidPrefix)
	}
	prefix = normalize(prefix)
	b.mu.Lock()
	defer b.mu.Unlock()
	_, had := b.entries[prefix]
	if had {
		delete(b.entries, prefix)
		delete(b.delta, prefix)
		cur := b.snap.Load()
		dead := cur.dead
		if idx, inBase := cur.base.index(prefix); inBase && !bitSet(dead, idx) {
			dead = cloneBits(dead, len(cur.base.bans))
			setBit(dead, idx)
			b.garbage++
		}
		b.m.removed.Inc()
		b.publishDelta(dead, cur.next)
	}
	if b.store == nil {
		return had, nil
	}
	stored, err := b.store.RemoveBan(ctx, prefix)
	if err != nil {
		return had, b.storeErr("remove", []error{err})
	}
	return had || stored, nil
}

// Expire drops the bans that expired at or before now and returns how many
// it dropped. It scans all bans, but only when the earliest expiry is due.
// Expired bans never match Lookup, so Expire only reclaims memory and keeps
// Len, List and metrics current; expired rows in the store are left to its
// own pruning (store.PruneExpired).
func (b *Bans) Expire(now time.Time) int {
	if s := b.snap.Load(); s.next.IsZero() || now.Before(s.next) {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.snap.Load()
	n, inDelta := 0, false
	for p, ban := range b.entries {
		if ban.ActiveAt(now) {
			continue
		}
		delete(b.entries, p)
		if _, ok := b.delta[p]; ok {
			delete(b.delta, p)
			inDelta = true
		}
		if _, inBase := cur.base.index(p); inBase {
			b.garbage++ // never matches again: no dead bit needed
		}
		n++
	}
	if n > 0 {
		b.m.expired.Add(float64(n))
	}
	if n > 0 || inDelta {
		b.publishDelta(cur.dead, b.nextExpiry())
		return n
	}
	// Nothing was due after all (a due ban was removed): refresh next.
	s := *cur
	s.next = b.nextExpiry()
	b.snap.Store(&s)
	return 0
}

// Run calls Expire every ExpireInterval until ctx is done.
func (b *Bans) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.ExpireInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n := b.Expire(b.now()); n > 0 {
				b.log.Debug("bans expired", "count", n)
			}
		}
	}
}

// maxSourceLabels caps the distinct source label values of
// levee_bans_added_total, so that free-form sources from an API cannot
// explode the metric's cardinality.
const maxSourceLabels = 16

// sourceLabel returns the metric label for a ban source: the source itself
// for the first maxSourceLabels distinct sources, "other" after. Called with
// mu held.
func (b *Bans) sourceLabel(src string) string {
	if b.sources[src] {
		return src
	}
	if len(b.sources) >= maxSourceLabels {
		return "other"
	}
	if b.sources == nil {
		b.sources = map[string]bool{}
	}
	b.sources[src] = true
	return src
}

func (b *Bans) storeErr(op string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	b.m.storeErrors.Add(float64(len(errs)))
	err := fmt.Errorf("iplist: %s ban: %w: %w", op, ErrNotPersisted, errors.Join(errs...))
	b.log.Error("ban store write failed; ban state will not survive a restart", "op", op, "err", err)
	return err
}

// compactAt is the delta size plus base garbage above which everything is
// rebuilt into a new base: about sqrt(n), which balances the cost of
// rebuilding the delta on every change against that of full rebuilds.
func compactAt(n int) int {
	return max(64, int(math.Sqrt(float64(n))))
}

// publishDelta publishes the current base with a delta rebuilt from b.delta,
// or rebuilds everything when the delta and garbage have grown too large.
// next is the earliest expiry to record; it may be early (a removed ban's),
// never late. Called with mu held.
func (b *Bans) publishDelta(dead []uint64, next time.Time) {
	if len(b.delta)+b.garbage > compactAt(len(b.entries)) {
		b.rebuildAll()
		return
	}
	cur := b.snap.Load()
	bans := make([]Ban, 0, len(b.delta))
	for _, ban := range b.delta {
		bans = append(bans, ban)
	}
	s := &banSnapshot{
		base:  cur.base,
		delta: buildLayer(bans),
		dead:  dead,
		count: len(b.entries),
		next:  next,
	}
	b.snap.Store(s)
	b.m.active.Set(float64(s.count))
}

// rebuildAll compiles every ban into a new base with an empty delta.
// Called with mu held (or before b is shared).
func (b *Bans) rebuildAll() {
	bans := make([]Ban, 0, len(b.entries))
	for _, ban := range b.entries {
		bans = append(bans, ban)
	}
	s := &banSnapshot{
		base:  buildLayer(bans),
		delta: buildLayer(nil),
		count: len(b.entries),
		next:  b.nextExpiry(),
	}
	b.delta = map[netip.Prefix]Ban{} // not clear(): a cleared map keeps its size, and publishDelta iterates it
	b.garbage = 0
	b.snap.Store(s)
	b.m.active.Set(float64(s.count))
}

// nextExpiry returns the earliest expiry among the bans held, zero if none
// expires. Called with mu held.
func (b *Bans) nextExpiry() time.Time {
	var next time.Time
	for _, ban := range b.entries {
		if !ban.Expires.IsZero() && (next.IsZero() || ban.Expires.Before(next)) {
			next = ban.Expires
		}
	}
	return next
}

func compareBans(x, y Ban) int {
	if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits())
}

// buildLayer sorts bans and compiles them. Sorted by address then length,
// every prefix comes after the prefixes containing it, so a stack of open
// prefixes yields each one's outer ban.
func buildLayer(bans []Ban) banLayer {
	slices.SortFunc(bans, compareBans)
	l := banLayer{bans: bans, outer: make([]int32, len(bans))}
	var stack []int32
	var tb Builder
	tb.Grow(len(bans), 0)
	for i, ban := range bans {
		for len(stack) > 0 && !bans[stack[len(stack)-1]].Prefix.Contains(ban.Prefix.Addr()) {
			stack = stack[:len(stack)-1]
		}
		l.outer[i] = -1
		if len(stack) > 0 {
			l.outer[i] = stack[len(stack)-1]
		}
		stack = append(stack, int32(i))
		_ = tb.Add(ban.Prefix, uint32(i)) // valid: checked on the way in
	}
	l.table = tb.Build()
	return l
}

// index returns the position of the ban on exactly p in the layer.
func (l *banLayer) index(p netip.Prefix) (int, bool) {
	return slices.BinarySearchFunc(l.bans, p, func(b Ban, p netip.Prefix) int {
		return compareBans(b, Ban{Prefix: p})
	})
}

func bitSet(bits []uint64, i int) bool {
	return bits != nil && bits[i>>6]&(1<<(uint(i)&63)) != 0
}

func setBit(bits []uint64, i int) { bits[i>>6] |= 1 << (uint(i) & 63) }

// cloneBits returns a copy of bits sized for n entries (bits may be nil).
func cloneBits(bits []uint64, n int) []uint64 {
	c := make([]uint64, (n+63)/64)
	copy(c, bits)
	return c
}
