package iplist

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// BansConfig configures Bans.
type BansConfig struct {
	// MaxBans bounds the number of bans held in memory; Add fails beyond it.
	// Default 1,000,000.
	MaxBans int `yaml:"max_bans"`
	// ExpireInterval is how often Run drops expired bans. Default 1s.
	ExpireInterval time.Duration `yaml:"expire_interval"`
}

// BansDeps are the collaborators of Bans. All fields are optional.
type BansDeps struct {
	Store      BanStore              // nil: bans live in memory only
	Logger     *slog.Logger          // nil: discard
	Registerer prometheus.Registerer // nil: metrics are not registered
	Now        func() time.Time      // nil: time.Now; used when loading and by Run
}

// Bans is the set of runtime bans. Every change (Add, Remove, expiry)
// compiles a new Table and publishes it atomically, so Lookup on the accept
// path takes no lock and allocates nothing, while writers serialize on a
// mutex and write through to the BanStore.
//
// Bans is safe for concurrent use. The zero value is not usable; call
// NewBans.
type Bans struct {
	cfg   BansConfig
	store BanStore
	log   *slog.Logger
	now   func() time.Time
	m     *bansMetrics

	mu      sync.Mutex // serializes writers
	entries map[netip.Prefix]Ban

	snap atomic.Pointer[banSnapshot]
}

// banSnapshot is one immutable published state.
type banSnapshot struct {
	table *Table
	bans  []Ban   // indexed by table value
	outer []int32 // outer[i]: index of the longest other ban containing bans[i], -1 if none
	next  time.Time
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
	b.publish()
	b.log.Info("bans loaded", "count", len(b.entries))
	return b, nil
}

// Lookup returns the most specific ban in force at now that contains addr.
// It is lock-free and allocation-free.
func (b *Bans) Lookup(addr netip.Addr, now time.Time) (Ban, bool) {
	s := b.snap.Load()
	v, ok := s.table.Lookup(addr)
	if !ok {
		return Ban{}, false
	}
	// The most specific ban may have expired since the last publish; fall
	// back to the bans containing it.
	for i := int32(v); i >= 0; i = s.outer[i] {
		if s.bans[i].ActiveAt(now) {
			return s.bans[i], true
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
func (b *Bans) Len() int { return len(b.snap.Load().bans) }

// List returns the bans in force at now, ordered by prefix.
func (b *Bans) List(now time.Time) []Ban {
	s := b.snap.Load()
	out := make([]Ban, 0, len(s.bans))
	for _, ban := range s.bans {
		if ban.ActiveAt(now) {
			out = append(out, ban)
		}
	}
	return out
}

// Add bans the given prefixes, replacing existing bans on the same prefixes,
// publishes the new table once, then writes the bans through to the store.
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
	for i := range bans {
		bans[i].Prefix = normalize(bans[i].Prefix)
		if bans[i].Created.IsZero() {
			bans[i].Created = now
		}
		b.entries[bans[i].Prefix] = bans[i]
		b.m.added.WithLabelValues(bans[i].Source).Inc()
	}
	b.publish()
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
		b.m.removed.Inc()
		b.publish()
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

// Expire drops the bans that expired at or before now and publishes a new
// table if any did. It returns how many were dropped. Expired bans never
// match Lookup, so Expire only reclaims memory and keeps List and metrics
// current; expired rows in the store are left to its own pruning.
func (b *Bans) Expire(now time.Time) int {
	if s := b.snap.Load(); s.next.IsZero() || now.Before(s.next) {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for p, ban := range b.entries {
		if !ban.ActiveAt(now) {
			delete(b.entries, p)
			n++
		}
	}
	if n > 0 {
		b.m.expired.Add(float64(n))
		b.publish()
	}
	return n
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

func (b *Bans) storeErr(op string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	b.m.storeErrors.Add(float64(len(errs)))
	err := fmt.Errorf("iplist: %s ban: %w: %w", op, ErrNotPersisted, errors.Join(errs...))
	b.log.Error("ban store write failed; ban state will not survive a restart", "op", op, "err", err)
	return err
}

// publish compiles entries into a new snapshot. Called with mu held (or
// before b is shared).
func (b *Bans) publish() {
	s := &banSnapshot{bans: make([]Ban, 0, len(b.entries))}
	for _, ban := range b.entries {
		s.bans = append(s.bans, ban)
	}
	// Sorted by address then length, every prefix comes after the prefixes
	// containing it, so a stack of open prefixes yields each one's outer ban.
	slices.SortFunc(s.bans, func(x, y Ban) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits())
	})
	s.outer = make([]int32, len(s.bans))
	var stack []int32
	var tb Builder
	tb.Grow(len(s.bans), 0)
	for i, ban := range s.bans {
		for len(stack) > 0 && !s.bans[stack[len(stack)-1]].Prefix.Contains(ban.Prefix.Addr()) {
			stack = stack[:len(stack)-1]
		}
		s.outer[i] = -1
		if len(stack) > 0 {
			s.outer[i] = stack[len(stack)-1]
		}
		stack = append(stack, int32(i))
		_ = tb.Add(ban.Prefix, uint32(i)) // valid: checked on the way in
		if !ban.Expires.IsZero() && (s.next.IsZero() || ban.Expires.Before(s.next)) {
			s.next = ban.Expires
		}
	}
	s.table = tb.Build()
	b.snap.Store(s)
	b.m.active.Set(float64(len(s.bans)))
}
