package challenge

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"
)

// Method says how a client earned its clearance token.
type Method uint8

// Methods. The zero value is not a valid method.
const (
	MethodPoW  Method = 1 // solved the proof-of-work page with JavaScript
	MethodNoJS Method = 2 // waited out the no-JavaScript meta refresh
)

func (m Method) String() string {
	switch m {
	case MethodPoW:
		return "pow"
	case MethodNoJS:
		return "nojs"
	}
	return "unknown"
}

// Claims is what a verified clearance token says. The zero value means "no
// valid token".
type Claims struct {
	ID      uint64 // random token id, the key for revocation
	KeyID   uint8  // id of the key that signed it
	Method  Method // how the client got it
	Expires int64  // unix seconds
}

// Result is the outcome of checking a token.
type Result uint8

// Results of [Signer.Check].
const (
	Valid        Result = iota
	Malformed           // not a token: wrong length, encoding or type
	UnknownKey          // key id not configured, or past its grace period
	BadSignature        // MAC mismatch: forged, or a different fingerprint
	Expired             // authentic but past its expiry
	WrongNetwork        // authentic, but presented from another network prefix
	numResults
)

var resultNames = [numResults]string{"valid", "malformed", "unknown_key", "bad_signature", "expired", "wrong_network"}

func (r Result) String() string {
	if r < numResults {
		return resultNames[r]
	}
	return "unknown"
}

// Wire formats, before base64url (no padding):
//
//	token:     'T' kid method id[8] expiry[4] prefix[9] mac[16]   (40 bytes)
//	challenge: 'C' kid difficulty id[8] issued[4] expiry[4] mac[16] (35 bytes)
//
// prefix is the client's network prefix: byte 0 is the prefix length, with
// 0x80 set for IPv6, then the first 8 address bytes (IPv4 uses 4). The MAC is
// HMAC-SHA256 truncated to 16 bytes over the bytes before it, followed by (for
// challenges) the client's encoded prefix, followed by the fingerprint.
const (
	tokenRaw     = 40
	tokenLen     = (tokenRaw*8 + 5) / 6 // 54
	chalRaw      = 35
	chalLen      = (chalRaw*8 + 5) / 6 // 47
	macLen       = 16
	prefixLen    = 9
	tagToken     = 'T'
	tagChallenge = 'C'
)

var b64 = base64.RawURLEncoding

// Key is one HMAC key of the key ring shared by all shield nodes.
type Key struct {
	// ID goes into every token so that verification picks the right key
	// during a rotation. Unique within the ring.
	ID uint8 `yaml:"id"`
	// Secret is the key, base64 (standard encoding), at least 32 bytes
	// decoded. Either Secret or SecretFile.
	Secret string `yaml:"secret"`
	// SecretFile holds the base64 secret (surrounding space ignored).
	SecretFile string `yaml:"secret_file"`
	// AcceptUntil ends the grace period of an old key: tokens it signed are
	// accepted until then. Required for every key but the first; the first
	// key signs and must leave it zero.
	AcceptUntil time.Time `yaml:"accept_until"`

	raw []byte
}

type ringKey struct {
	id    uint8
	until int64 // unix seconds; 0 = no end (the signing key)
	pool  sync.Pool
}

// macState is one HMAC instance with scratch space; pooled per key so that
// signing and verification allocate nothing.
type macState struct {
	h   hash.Hash
	in  [64]byte
	sum [sha256.Size]byte
}

// Signer issues and verifies clearance tokens and challenges with a ring of
// HMAC-SHA256 keys: the first key signs, older keys verify until the end of
// their grace period. Tokens are bound to the client's network prefix (/24
// and /64 by default) and to a fingerprint string (for example JA4).
//
// The zero value is not usable; build one with [NewSigner]. A Signer is safe
// for concurrent use.
type Signer struct {
	keys    [256]*ringKey
	signing *ringKey
	bits4   int
	bits6   int
}

// NewSigner builds a Signer. keys[0] signs; the others are accepted until
// their AcceptUntil. bits4 and bits6 are the prefix lengths that tokens are
// bound to (0 means 24 and 64; bits6 is at most 64).
func NewSigner(keys []Key, bits4, bits6 int) (*Signer, error) {
	if bits4 == 0 {
		bits4 = 24
	}
	if bits6 == 0 {
		bits6 = 64
	}
	if bits4 < 8 || bits4 > 32 || bits6 < 16 || bits6 > 64 {
		return nil, fmt.Errorf("challenge: prefix lengths /%d and /%d out of range (IPv4 8-32, IPv6 16-64)", bits4, bits6)
	}
	if len(keys) == 0 {
		return nil, errors.New("challenge: no signing key configured (set challenge.keys)")
	}
	s := &Signer{bits4: bits4, bits6: bits6}
	for i := range keys {
		k := &keys[i]
		raw, err := k.secret()
		if err != nil {
			return nil, err
		}
		if s.keys[k.ID] != nil {
			return nil, fmt.Errorf("challenge: key id %d configured twice", k.ID)
		}
		switch {
		case i == 0 && !k.AcceptUntil.IsZero():
			return nil, fmt.Errorf("challenge: key %d signs new tokens and cannot have accept_until", k.ID)
		case i > 0 && k.AcceptUntil.IsZero():
			return nil, fmt.Errorf("challenge: old key %d needs accept_until (end of its grace period)", k.ID)
		}
		rk := &ringKey{id: k.ID}
		if i > 0 {
			rk.until = k.AcceptUntil.Unix()
		}
		rk.pool.New = func() any { return &macState{h: hmac.New(sha256.New, raw)} }
		s.keys[k.ID] = rk
		if i == 0 {
			s.signing = rk
		}
	}
	return s, nil
}

func (k *Key) secret() ([]byte, error) {
	if k.raw != nil {
		return k.raw, nil
	}
	src, what := k.Secret, "secret"
	if k.SecretFile != "" {
		if k.Secret != "" {
			return nil, fmt.Errorf("challenge: key %d: set secret or secret_file, not both", k.ID)
		}
		b, err := os.ReadFile(k.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("challenge: key %d: %w", k.ID, err)
		}
		src, what = string(b), k.SecretFile
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(src))
	if err != nil {
		return nil, fmt.Errorf("challenge: key %d: %s is not base64: %w", k.ID, what, err)
	}
	if len(raw) < 32 {
		return nil, fmt.Errorf("challenge: key %d: %s decodes to %d bytes, need at least 32 (try: head -c 32 /dev/urandom | base64)", k.ID, what, len(raw))
	}
	k.raw = raw
	return raw, nil
}

// Prefix returns the network prefix a token issued to addr is bound to.
func (s *Signer) Prefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	bits := s.bits4
	if addr.Is6() {
		bits = s.bits6
	}
	p, _ := addr.Prefix(bits)
	return p
}

func (s *Signer) encodePrefix(dst []byte, addr netip.Addr) {
	addr = addr.Unmap()
	clear(dst[:prefixLen])
	switch {
	case addr.Is4():
		p, _ := addr.Prefix(s.bits4)
		a := p.Addr().As4()
		dst[0] = byte(s.bits4)
		copy(dst[1:], a[:])
	case addr.Is6():
		p, _ := addr.Prefix(s.bits6)
		a := p.Addr().As16()
		dst[0] = 0x80 | byte(s.bits6)
		copy(dst[1:], a[:8])
	}
}

// Binding is what tokens and challenges are bound to besides the network:
// a digest of the client's connection fingerprint (for example JA4). Compute
// it once per connection with [BindFingerprint]. The zero value binds to "no
// fingerprint".
type Binding [16]byte

// BindFingerprint digests a fingerprint string (SHA-256, first 16 bytes).
// An empty fingerprint gives the zero Binding.
func BindFingerprint(fp string) Binding {
	var b Binding
	if fp != "" {
		sum := sha256.Sum256([]byte(fp))
		copy(b[:], sum[:])
	}
	return b
}

// mac computes the truncated MAC of msg (already in st.in[:n]) plus fp. The
// message stays within one SHA-256 block (at most 55 bytes) so that the MAC
// costs two block computations.
func (st *macState) mac(n int, fp Binding) []byte {
	n += copy(st.in[n:], fp[:])
	st.h.Reset()
	st.h.Write(st.in[:n])
	return st.h.Sum(st.sum[:0])[:macLen]
}

// Issue signs a new clearance token for a client at addr with fingerprint
// fp, valid for ttl from now. The result is the cookie value.
func (s *Signer) Issue(now time.Time, addr netip.Addr, fp Binding, m Method, ttl time.Duration) string {
	var b [tokenRaw]byte
	s.appendToken(b[:0], now, addr, fp, m, ttl, rand.Uint64()|1)
	return b64.EncodeToString(b[:])
}

func (s *Signer) appendToken(b []byte, now time.Time, addr netip.Addr, fp Binding, m Method, ttl time.Duration, id uint64) []byte {
	k := s.signing
	b = b[:tokenRaw]
	b[0], b[1], b[2] = tagToken, k.id, byte(m)
	binary.BigEndian.PutUint64(b[3:], id)
	binary.BigEndian.PutUint32(b[11:], uint32(now.Add(ttl).Unix()))
	s.encodePrefix(b[15:24], addr)
	st := k.pool.Get().(*macState)
	n := copy(st.in[:], b[:24])
	copy(b[24:], st.mac(n, fp))
	k.pool.Put(st)
	return b
}

// Verify reports whether cookie is a valid clearance token for a client at
// addr with fingerprint fp. It allocates nothing.
func (s *Signer) Verify(now time.Time, cookie []byte, addr netip.Addr, fp Binding) (Claims, bool) {
	c, r := s.Check(now, cookie, addr, fp)
	return c, r == Valid
}

// Check is Verify with the reason for a rejection. For WrongNetwork the
// claims are filled (the token is authentic) so that the caller can count
// the foreign use against the token id.
func (s *Signer) Check(now time.Time, cookie []byte, addr netip.Addr, fp Binding) (Claims, Result) {
	if len(cookie) != tokenLen {
		return Claims{}, Malformed
	}
	var b [tokenRaw + 2]byte
	n, err := b64.Decode(b[:], cookie)
	if err != nil || n != tokenRaw || b[0] != tagToken {
		return Claims{}, Malformed
	}
	k := s.keys[b[1]]
	unix := now.Unix()
	if k == nil || (k.until != 0 && unix >= k.until) {
		return Claims{}, UnknownKey
	}
	st := k.pool.Get().(*macState)
	m := copy(st.in[:], b[:24])
	ok := hmac.Equal(st.mac(m, fp), b[24:tokenRaw])
	k.pool.Put(st)
	if !ok {
		return Claims{}, BadSignature
	}
	c := Claims{
		ID:      binary.BigEndian.Uint64(b[3:]),
		KeyID:   b[1],
		Method:  Method(b[2]),
		Expires: int64(binary.BigEndian.Uint32(b[11:])),
	}
	if unix >= c.Expires {
		return c, Expired
	}
	var p [prefixLen]byte
	s.encodePrefix(p[:], addr)
	if p != [prefixLen]byte(b[15:24]) {
		return c, WrongNetwork
	}
	return c, Valid
}

// Challenge is a decoded proof-of-work or no-JavaScript challenge.
type Challenge struct {
	ID         uint64
	Difficulty uint8 // leading zero bits required; 0 for a no-JS challenge
	Issued     int64 // unix seconds, rounded up
	Expires    int64 // unix seconds
}

// NewChallenge signs a challenge for a client at addr with fingerprint fp.
// It returns the encoded challenge (base64url, 47 bytes) appended to dst.
func (s *Signer) NewChallenge(dst []byte, now time.Time, addr netip.Addr, fp Binding, difficulty uint8, ttl time.Duration) []byte {
	k := s.signing
	var b [chalRaw]byte
	b[0], b[1], b[2] = tagChallenge, k.id, difficulty
	binary.BigEndian.PutUint64(b[3:], rand.Uint64()|1)
	// Issued is rounded up to the second, so that "Issued + delay" is never
	// earlier than the real issue time plus the delay.
	issued := now.Unix()
	if now.Nanosecond() > 0 {
		issued++
	}
	binary.BigEndian.PutUint32(b[11:], uint32(issued))
	binary.BigEndian.PutUint32(b[15:], uint32(now.Add(ttl).Unix()))
	st := k.pool.Get().(*macState)
	n := copy(st.in[:], b[:19])
	s.encodePrefix(st.in[n:], addr)
	copy(b[19:], st.mac(n+prefixLen, fp))
	k.pool.Put(st)
	return b64.AppendEncode(dst, b[:])
}

// Errors from [Signer.OpenChallenge] and the verification endpoints.
var (
	ErrMalformed = errors.New("challenge: malformed challenge")
	ErrForged    = errors.New("challenge: challenge not signed for this client")
	ErrExpired   = errors.New("challenge: challenge expired")
	ErrTooEarly  = errors.New("challenge: answered before the required delay")
	ErrReplayed  = errors.New("challenge: challenge already used")
	ErrWrongWork = errors.New("challenge: proof of work does not meet the difficulty")
	ErrBusy      = errors.New("challenge: replay set full, try again")
)

// OpenChallenge checks that enc is a challenge this ring signed for a client
// at addr with fingerprint fp, and that it has not expired. It allocates
// nothing.
func (s *Signer) OpenChallenge(now time.Time, enc []byte, addr netip.Addr, fp Binding) (Challenge, error) {
	if len(enc) != chalLen {
		return Challenge{}, ErrMalformed
	}
	var b [chalRaw + 2]byte
	n, err := b64.Decode(b[:], enc)
	if err != nil || n != chalRaw || b[0] != tagChallenge {
		return Challenge{}, ErrMalformed
	}
	k := s.keys[b[1]]
	unix := now.Unix()
	if k == nil || (k.until != 0 && unix >= k.until) {
		return Challenge{}, ErrForged
	}
	st := k.pool.Get().(*macState)
	m := copy(st.in[:], b[:19])
	s.encodePrefix(st.in[m:], addr)
	ok := hmac.Equal(st.mac(m+prefixLen, fp), b[19:chalRaw])
	k.pool.Put(st)
	if !ok {
		return Challenge{}, ErrForged
	}
	c := Challenge{
		ID:         binary.BigEndian.Uint64(b[3:]),
		Difficulty: b[2],
		Issued:     int64(binary.BigEndian.Uint32(b[11:])),
		Expires:    int64(binary.BigEndian.Uint32(b[15:])),
	}
	if unix >= c.Expires {
		return c, ErrExpired
	}
	return c, nil
}

// LeadingZeroBits of SHA-256(challenge || nonce): the proof of work. The
// browser searches for a decimal nonce; the server checks with one hash.
func LeadingZeroBits(challenge, nonce []byte) int {
	var buf [128]byte
	var sum [sha256.Size]byte
	if len(challenge)+len(nonce) <= len(buf) {
		n := copy(buf[:], challenge)
		n += copy(buf[n:], nonce)
		sum = sha256.Sum256(buf[:n])
	} else {
		h := sha256.New()
		h.Write(challenge)
		h.Write(nonce)
		h.Sum(sum[:0])
	}
	n := 0
	for _, x := range sum {
		if x == 0 {
			n += 8
			continue
		}
		for x&0x80 == 0 {
			n++
			x <<= 1
		}
		break
	}
	return n
}
