package challenge

import (
	"sync"
	"sync/atomic"
)

// RevokeConfig bounds how a clearance token may be used before it is
// revoked: the "one solved token shared by a botnet" case.
type RevokeConfig struct {
	// MaxForeignPrefixes: an authentic token presented from this many
	// distinct network prefixes other than its own is revoked. Default 3.
	MaxForeignPrefixes int `yaml:"max_foreign_prefixes"`
	// MaxRequests in one Window from one token (all prefixes) revokes it.
	// Default 1200 (20 requests a second over a minute).
	MaxRequests int `yaml:"max_requests"`
	// Window for MaxRequests, seconds. Default 60.
	WindowSeconds int `yaml:"window_seconds"`
	// Slots in the usage sketch (rounded up to a power of two). Default 65536.
	Slots int `yaml:"slots"`
	// RevokedCapacity: revoked ids held (rounded up to a power of two).
	// Default 65536.
	RevokedCapacity int `yaml:"revoked_capacity"`
}

func (c *RevokeConfig) defaults() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.MaxForeignPrefixes, 3)
	def(&c.MaxRequests, 1200)
	def(&c.WindowSeconds, 60)
	def(&c.Slots, 1<<16)
	def(&c.RevokedCapacity, 1<<16)
}

const maxTrackedPrefixes = 8

type usage struct {
	id      uint64
	window  int64 // start of the current window, unix seconds
	count   uint32
	nPrefix uint8
	prefix  [maxTrackedPrefixes]uint32 // hashes of distinct foreign prefixes
}

// Revoker counts, per token id, requests per window and distinct foreign
// network prefixes in a bounded direct-mapped sketch, and keeps revoked ids
// in a bounded open-addressing table until they expire. A slot collision
// resets the older token's counts (the sketch forgets, it never blames the
// wrong token).
//
// The zero value is not usable; build one with [NewRevoker]. A Revoker is
// safe for concurrent use; Revoked is lock-free.
type Revoker struct {
	cfg   RevokeConfig
	mask  uint64
	locks [256]sync.Mutex
	slots []usage

	rmask    uint64
	revoked  []revokedSlot
	rmu      sync.Mutex
	nRevoke  atomic.Uint64
	onRevoke func(id uint64, expires int64)
}

type revokedSlot struct {
	id      atomic.Uint64
	expires atomic.Int64
}

func pow2(n int) int {
	p := 1
	for p < n {
		p <<= 1
	}
	return p
}

// NewRevoker builds a Revoker; zero fields of cfg take their defaults.
func NewRevoker(cfg RevokeConfig) *Revoker {
	cfg.defaults()
	n, rn := pow2(cfg.Slots), pow2(cfg.RevokedCapacity)
	return &Revoker{cfg: cfg, mask: uint64(n - 1), slots: make([]usage, n),
		rmask: uint64(rn - 1), revoked: make([]revokedSlot, rn)}
}

func mix(id uint64) uint64 {
	id ^= id >> 33
	id *= 0xff51afd7ed558ccd
	id ^= id >> 33
	return id
}

const probe = 8

// Revoked reports whether id was revoked and has not expired yet.
func (r *Revoker) Revoked(now int64, id uint64) bool {
	h := mix(id)
	for i := range uint64(probe) {
		s := &r.revoked[(h+i)&r.rmask]
		if s.id.Load() == id {
			return s.expires.Load() > now
		}
	}
	return false
}

// Revoke adds id until expires (unix seconds) and reports whether it was
// not revoked before. When the probe window is full the entry closest to
// expiry is replaced.
func (r *Revoker) Revoke(now, expires int64, id uint64) bool {
	h := mix(id)
	r.rmu.Lock()
	defer r.rmu.Unlock()
	var victim *revokedSlot
	for i := range uint64(probe) {
		s := &r.revoked[(h+i)&r.rmask]
		if s.id.Load() == id {
			old := s.expires.Load()
			s.expires.Store(max(expires, old))
			return old <= now
		}
		if victim == nil || s.expires.Load() < victim.expires.Load() {
			victim = s
		}
	}
	r.nRevoke.Add(1)
	victim.id.Store(0)
	victim.expires.Store(expires)
	victim.id.Store(id)
	return true
}

// Count is the number of revocations made.
func (r *Revoker) Count() uint64 { return r.nRevoke.Load() }

// Observe records one request with token id from its own network and
// reports whether the token is revoked now (it was already, or this request
// crossed the rate limit). expires is the token's expiry.
func (r *Revoker) Observe(now, expires int64, id uint64) bool {
	return r.observe(now, expires, id, 0, false)
}

// ObserveForeign records that the authentic token id was presented from
// another network (prefixHash identifies it) and reports whether the token
// is revoked now.
func (r *Revoker) ObserveForeign(now, expires int64, id uint64, prefixHash uint32) bool {
	return r.observe(now, expires, id, prefixHash, true)
}

func (r *Revoker) observe(now, expires int64, id uint64, ph uint32, foreign bool) bool {
	if r.Revoked(now, id) {
		return true
	}
	h := mix(id)
	idx := h & r.mask
	mu := &r.locks[idx&255]
	mu.Lock()
	u := &r.slots[idx]
	if u.id != id {
		*u = usage{id: id, window: now}
	}
	if now-u.window >= int64(r.cfg.WindowSeconds) {
		u.window, u.count = now, 0
	}
	u.count++
	revoke := u.count > uint32(r.cfg.MaxRequests)
	if foreign {
		seen := false
		for _, p := range u.prefix[:u.nPrefix] {
			if p == ph {
				seen = true
				break
			}
		}
		if !seen && u.nPrefix < maxTrackedPrefixes {
			u.prefix[u.nPrefix] = ph
			u.nPrefix++
		}
		revoke = revoke || int(u.nPrefix) >= r.cfg.MaxForeignPrefixes
	}
	mu.Unlock()
	if revoke && r.Revoke(now, expires, id) && r.onRevoke != nil {
		r.onRevoke(id, expires)
	}
	return revoke
}
