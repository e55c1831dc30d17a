package admission

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"sync"
	"time"
)

// CookieConfig configures known-client cookies. Key is required; other zero
// fields take the documented defaults.
type CookieConfig struct {
	// Name is the cookie name. Default "levee_known".
	Name string `yaml:"name"`
	// Key signs new cookies; at least 32 bytes. Required.
	Key []byte `yaml:"key"`
	// OldKeys still verify cookies (key rotation). Default none.
	OldKeys [][]byte `yaml:"old_keys"`
	// MaxAge is how long a cookie stays valid after issue. Default 30 days.
	MaxAge time.Duration `yaml:"max_age"`
	// MinAge is how old a cookie must be to count: a cookie obtained during
	// an attack should not grant priority in that attack. Default 0; the
	// caller can also compare IssuedAt with the attack's start.
	MinAge time.Duration `yaml:"min_age"`
}

const (
	tokenVersion = 1
	tokenRaw     = 1 + 8 + 8 + 16 // version, issued (unix s), random id, MAC
	tokenLen     = (tokenRaw*8 + 5) / 6
	macLen       = 16
)

// Cookies issues and verifies known-client tokens: base64url of
// version | issue time | 8 random bytes | HMAC-SHA256 (truncated to 16
// bytes) over those and the client's /24 (IPv4) or /64 (IPv6) prefix. A
// token is only valid from the network it was issued to.
//
// Use NewCookies; the zero value is not usable. Cookies is safe for
// concurrent use; Verify does not allocate.
type Cookies struct {
	cfg  CookieConfig
	macs []sync.Pool // one per key, Key first
}

type macState struct {
	h   hash.Hash
	in  [1 + 8 + 8 + 17]byte
	sum [sha256.Size]byte
}

var errShortKey = errors.New("key must be at least 32 bytes")

// NewCookies validates cfg and returns Cookies.
func NewCookies(cfg CookieConfig) (*Cookies, error) {
	if cfg.Name == "" {
		cfg.Name = "levee_known"
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = 30 * 24 * time.Hour
	}
	switch {
	case cfg.MaxAge < 0:
		return nil, fmt.Errorf("admission: cookies: max_age %v: must be > 0", cfg.MaxAge)
	case cfg.MinAge < 0 || cfg.MinAge >= cfg.MaxAge:
		return nil, fmt.Errorf("admission: cookies: min_age %v: must be within [0, max_age %v)", cfg.MinAge, cfg.MaxAge)
	}
	keys := append([][]byte{cfg.Key}, cfg.OldKeys...)
	c := &Cookies{cfg: cfg, macs: make([]sync.Pool, len(keys))}
	for i, k := range keys {
		if len(k) < 32 {
			return nil, fmt.Errorf("admission: cookies: key %d: %w", i, errShortKey)
		}
		k := append([]byte(nil), k...)
		c.macs[i].New = func() any { return &macState{h: hmac.New(sha256.New, k)} }
	}
	return c, nil
}

// Name returns the cookie name.
func (c *Cookies) Name() string { return c.cfg.Name }

// MaxAge returns the cookie lifetime (for the cookie's Max-Age attribute).
func (c *Cookies) MaxAge() time.Duration { return c.cfg.MaxAge }

// putPrefix writes the client's network (family byte + 16 bytes) into b.
func putPrefix(b []byte, addr netip.Addr) {
	addr = addr.Unmap()
	bits, fam := 64, byte(6)
	if addr.Is4() {
		bits, fam = 24, 4
	}
	p, err := addr.Prefix(bits)
	a16 := p.Addr().As16()
	if err != nil {
		a16 = [16]byte{}
		fam = 0
	}
	b[0] = fam
	copy(b[1:], a16[:])
}

// mac computes the MAC of raw[:17] for addr with key i into m.sum.
func (c *Cookies) mac(i int, raw []byte, addr netip.Addr) *macState {
	m := c.macs[i].Get().(*macState)
	copy(m.in[:17], raw[:17])
	putPrefix(m.in[17:], addr)
	m.h.Reset()
	m.h.Write(m.in[:])
	m.h.Sum(m.sum[:0])
	return m
}

// MinAge returns the age a cookie needs to count (see Check).
func (c *Cookies) MinAge() time.Duration { return c.cfg.MinAge }

// Issue returns a new cookie value for a client at addr.
func (c *Cookies) Issue(now time.Time, addr netip.Addr) string {
	return string(c.AppendIssue(nil, now, addr))
}

// AppendIssue appends a new cookie value (tokenLen bytes) for a client at
// addr to dst. With room in dst it does not allocate.
func (c *Cookies) AppendIssue(dst []byte, now time.Time, addr netip.Addr) []byte {
	var id [8]byte
	rand.Read(id[:])
	return c.appendIssue(dst, now, addr, id)
}

func (c *Cookies) issue(now time.Time, addr netip.Addr, id [8]byte) string {
	return string(c.appendIssue(nil, now, addr, id))
}

func (c *Cookies) appendIssue(dst []byte, now time.Time, addr netip.Addr, id [8]byte) []byte {
	var raw [tokenRaw]byte
	raw[0] = tokenVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(now.Unix()))
	copy(raw[9:17], id[:])
	m := c.mac(0, raw[:], addr)
	copy(raw[17:], m.sum[:macLen])
	c.macs[0].Put(m)
	return base64.RawURLEncoding.AppendEncode(dst, raw[:])
}

// Verify reports whether cookie is a valid token for addr at now, issued at
// least MinAge and at most MaxAge ago.
func (c *Cookies) Verify(now time.Time, addr netip.Addr, cookie []byte) bool {
	_, ok := c.IssuedAt(now, addr, cookie)
	return ok
}

// IssuedAt verifies cookie like Verify and returns its issue time.
func (c *Cookies) IssuedAt(now time.Time, addr netip.Addr, cookie []byte) (time.Time, bool) {
	issued, valid, known := c.check(now, addr, cookie)
	if !valid || !known {
		return time.Time{}, false
	}
	return time.Unix(issued, 0), true
}

// Check verifies cookie for addr at now. valid: it is authentic, from
// addr's network and not older than MaxAge; known: it is valid and at least
// MinAge old (what Verify reports). A valid cookie that is not known yet
// must be kept, not replaced by a new one, or it would never grow old
// enough. Check does not allocate.
func (c *Cookies) Check(now time.Time, addr netip.Addr, cookie []byte) (valid, known bool) {
	_, valid, known = c.check(now, addr, cookie)
	return valid, known
}

func (c *Cookies) check(now time.Time, addr netip.Addr, cookie []byte) (issued int64, valid, known bool) {
	var raw [tokenRaw]byte
	if len(cookie) != tokenLen {
		return 0, false, false
	}
	if n, err := base64.RawURLEncoding.Decode(raw[:], cookie); err != nil || n != tokenRaw || raw[0] != tokenVersion {
		return 0, false, false
	}
	issued = int64(binary.BigEndian.Uint64(raw[1:9]))
	age := now.Unix() - issued
	if issued <= 0 || age < 0 || age > int64(c.cfg.MaxAge/time.Second) {
		return 0, false, false
	}
	for i := range c.macs {
		m := c.mac(i, raw[:], addr)
		ok := hmac.Equal(m.sum[:macLen], raw[17:])
		c.macs[i].Put(m)
		if ok {
			return issued, true, age >= int64(c.cfg.MinAge/time.Second)
		}
	}
	return 0, false, false
}

// HistoryConfig configures a History. Zero fields take the documented
// defaults; the zero value is the default configuration.
type HistoryConfig struct {
	// Entries is the table capacity in addresses (IPv4 addresses, IPv6
	// /64s), rounded up to a multiple of 8. Default 65536 (about 1.5 MiB).
	Entries int `yaml:"entries"`
	// MinSeen is the number of good requests, on distinct seconds, an
	// address needs to be known. Default 3.
	MinSeen int `yaml:"min_seen"`
	// MinSpan is how long before now an address must first have been seen
	// to be known. Default 10 minutes.
	MinSpan time.Duration `yaml:"min_span"`
	// TTL forgets an address not seen for this long. Default 7 days.
	TTL time.Duration `yaml:"ttl"`
}

// History is a bounded table of addresses seen in normal times without bad
// verdicts. Call Good for requests that passed every check while no attack
// is going on, Bad for any bad verdict; Known then tells, during an attack,
// whether a client was a returning visitor before it. The table is
// 8-way set associative: a full set replaces an expired entry, else one with
// a bad verdict, else the least seen of the addresses not yet known; known
// addresses are only replaced once they expire, so a flood of new addresses
// cannot push out established visitors (a newcomer to a set full of known
// addresses is not recorded).
//
// Use NewHistory; the zero value is not usable. A History is safe for
// concurrent use and does not allocate after NewHistory.
type History struct {
	cfg   HistoryConfig
	sets  [][8]histSlot
	locks []paddedMutex
}

type histSlot struct {
	key   uint64 // IPv4 address or IPv6 /64; 0 = empty
	first uint32 // unix seconds
	last  uint32
	seen  uint16
	fam   uint8 // 4 or 6
	bad   bool
}

type paddedMutex struct {
	sync.Mutex
	_ [56]byte
}

// NewHistory returns an empty History.
func NewHistory(cfg HistoryConfig) (*History, error) {
	if cfg.Entries == 0 {
		cfg.Entries = 65536
	}
	if cfg.MinSeen == 0 {
		cfg.MinSeen = 3
	}
	if cfg.MinSpan == 0 {
		cfg.MinSpan = 10 * time.Minute
	}
	if cfg.TTL == 0 {
		cfg.TTL = 7 * 24 * time.Hour
	}
	switch {
	case cfg.Entries < 8 || cfg.Entries > 1<<28:
		return nil, fmt.Errorf("admission: history: entries %d: must be within [8, 2^28]", cfg.Entries)
	case cfg.MinSeen < 1 || cfg.MinSeen > 65535:
		return nil, fmt.Errorf("admission: history: min_seen %d: must be within [1, 65535]", cfg.MinSeen)
	case cfg.MinSpan < 0 || cfg.TTL <= cfg.MinSpan:
		return nil, fmt.Errorf("admission: history: ttl %v must be > min_span %v >= 0", cfg.TTL, cfg.MinSpan)
	}
	n := (cfg.Entries + 7) / 8
	return &History{cfg: cfg, sets: make([][8]histSlot, n), locks: make([]paddedMutex, min(n, 256))}, nil
}

func histKey(addr netip.Addr) (uint64, uint8, bool) {
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		a := addr.As4()
		return uint64(binary.BigEndian.Uint32(a[:])) | 1<<32, 4, true
	case addr.Is6():
		a := addr.As16()
		k := binary.BigEndian.Uint64(a[:8])
		if k == 0 {
			k = 1 // ::/64 still gets a non-empty key
		}
		return k, 6, true
	}
	return 0, 0, false
}

func (h *History) set(key uint64, fam uint8) (int, *paddedMutex) {
	x := key ^ uint64(fam)<<56
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	i := int(x % uint64(len(h.sets)))
	return i, &h.locks[i%len(h.locks)]
}

func (h *History) find(s *[8]histSlot, key uint64, fam uint8) *histSlot {
	for j := range s {
		if s[j].key == key && s[j].fam == fam {
			return &s[j]
		}
	}
	return nil
}

// victim picks the slot to replace in a full set: an empty or expired one,
// else a bad one, else the least seen, least recently seen address that is
// not yet known. Known addresses are never replaced by newcomers: nil.
func (h *History) victim(s *[8]histSlot, now uint32) *histSlot {
	ttl := int64(h.cfg.TTL / time.Second)
	var best *histSlot
	for j := range s {
		e := &s[j]
		if e.key == 0 || since(now, e.last) > ttl {
			return e
		}
		if e.bad {
			best = e
			continue
		}
		if int(e.seen) >= h.cfg.MinSeen || (best != nil && best.bad) {
			continue
		}
		if best == nil || e.seen < best.seen || (e.seen == best.seen && e.last < best.last) {
			best = e
		}
	}
	return best
}

// since returns now-then in seconds, negative if the clock went back.
func since(now, then uint32) int64 { return int64(now) - int64(then) }

func (h *History) record(now time.Time, addr netip.Addr, bad bool) {
	key, fam, ok := histKey(addr)
	if !ok {
		return
	}
	t := uint32(now.Unix())
	i, mu := h.set(key, fam)
	mu.Lock()
	s := &h.sets[i]
	e := h.find(s, key, fam)
	if e != nil && since(t, e.last) > int64(h.cfg.TTL/time.Second) {
		*e = histSlot{} // forgotten: starts over
		e = nil
	}
	if e == nil {
		if e = h.victim(s, t); e == nil {
			mu.Unlock() // the set is full of known addresses
			return
		}
		*e = histSlot{key: key, fam: fam, first: t, last: t}
	}
	if bad {
		e.bad = true
	} else if (e.seen == 0 || t > e.last) && e.seen < 65535 {
		e.seen++
	}
	e.last = max(e.last, t)
	mu.Unlock()
}

// Good records a request from addr that passed every check, in normal
// times.
func (h *History) Good(now time.Time, addr netip.Addr) { h.record(now, addr, false) }

// Bad records a bad verdict for addr: it is not known until forgotten.
func (h *History) Bad(now time.Time, addr netip.Addr) { h.record(now, addr, true) }

// Known reports whether addr has been seen MinSeen times, first at least
// MinSpan ago, last within TTL, without a bad verdict.
func (h *History) Known(now time.Time, addr netip.Addr) bool {
	key, fam, ok := histKey(addr)
	if !ok {
		return false
	}
	t := uint32(now.Unix())
	i, mu := h.set(key, fam)
	mu.Lock()
	e := h.find(&h.sets[i], key, fam)
	known := e != nil && !e.bad && int(e.seen) >= h.cfg.MinSeen &&
		since(t, e.first) >= int64(h.cfg.MinSpan/time.Second) && since(t, e.last) <= int64(h.cfg.TTL/time.Second)
	mu.Unlock()
	return known
}

// Snapshot format: "LVH1", uint32 entry count, then per entry 20 bytes:
// key uint64, first uint32, last uint32, seen uint16, family byte, bad byte.
// Big endian. It lets the history outlive a restart (the embedded store
// keeps the bytes).
const (
	snapshotMagic = "LVH1"
	snapshotEntry = 20
)

// AppendSnapshot appends the table's live entries to dst.
func (h *History) AppendSnapshot(dst []byte) []byte {
	start := len(dst)
	dst = append(dst, snapshotMagic...)
	dst = binary.BigEndian.AppendUint32(dst, 0)
	var n uint32
	for i := range h.sets {
		mu := &h.locks[i%len(h.locks)]
		mu.Lock()
		for _, e := range h.sets[i] {
			if e.key == 0 {
				continue
			}
			dst = binary.BigEndian.AppendUint64(dst, e.key)
			dst = binary.BigEndian.AppendUint32(dst, e.first)
			dst = binary.BigEndian.AppendUint32(dst, e.last)
			dst = binary.BigEndian.AppendUint16(dst, e.seen)
			bad := byte(0)
			if e.bad {
				bad = 1
			}
			dst = append(dst, e.fam, bad)
			n++
		}
		mu.Unlock()
	}
	binary.BigEndian.PutUint32(dst[start+4:], n)
	return dst
}

// LoadSnapshot adds the entries of a snapshot made by AppendSnapshot (from a
// table of any size) to h. Entries already present are overwritten; an entry
// whose set is full of known addresses is dropped, as in Good. It rejects a
// malformed snapshot without changing h.
func (h *History) LoadSnapshot(b []byte) error {
	if len(b) < 8 || string(b[:4]) != snapshotMagic {
		return errors.New("admission: history snapshot: bad header")
	}
	n := binary.BigEndian.Uint32(b[4:8])
	body := b[8:]
	if uint64(len(body)) != uint64(n)*snapshotEntry {
		return fmt.Errorf("admission: history snapshot: %d bytes for %d entries", len(body), n)
	}
	for p := body; len(p) > 0; p = p[snapshotEntry:] {
		fam, bad := p[18], p[19]
		if (fam != 4 && fam != 6) || bad > 1 || binary.BigEndian.Uint64(p) == 0 {
			return errors.New("admission: history snapshot: bad entry")
		}
		if fam == 4 && binary.BigEndian.Uint64(p)>>32 != 1 {
			return errors.New("admission: history snapshot: bad IPv4 key")
		}
	}
	for p := body; len(p) > 0; p = p[snapshotEntry:] {
		e := histSlot{
			key:   binary.BigEndian.Uint64(p),
			first: binary.BigEndian.Uint32(p[8:]),
			last:  binary.BigEndian.Uint32(p[12:]),
			seen:  binary.BigEndian.Uint16(p[16:]),
			fam:   p[18],
			bad:   p[19] == 1,
		}
		i, mu := h.set(e.key, e.fam)
		mu.Lock()
		s := &h.sets[i]
		slot := h.find(s, e.key, e.fam)
		if slot == nil {
			slot = h.victim(s, e.last)
		}
		if slot != nil {
			*slot = e
		}
		mu.Unlock()
	}
	return nil
}
