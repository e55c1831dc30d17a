package limit

import (
	"encoding/binary"
	"hash/maphash"
	"math/bits"
	"math/rand/v2"
	"net/netip"
)

// keySeed and mixSeed seed every key hash of this process. Keys are
// therefore stable within one process and unpredictable from outside it, so a
// client cannot choose addresses or header values that collide with another
// client's key.
var (
	keySeed = maphash.MakeSeed()
	mixSeed = [4]uint64{rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64()}
)

// Address family tags mixed into address keys, so that an IPv4 address and
// the IPv6 address with the same 16-byte form never share a key.
const (
	famInvalid = 0
	fam4       = 4
	fam6       = 6
)

// KeyAddr returns the key of address a grouped by its first prefixBits bits,
// under the limit limitID. Addresses in the same prefix share a key: with
// prefixBits 24, 192.0.2.1 and 192.0.2.200 give the same key; with 32 they do
// not. prefixBits counts within the address family (at most 32 for IPv4, 128
// for IPv6); larger values mean the whole address, negative values 0.
// IPv4-mapped IPv6 addresses (::ffff:192.0.2.1) are treated as IPv4 and
// zones are ignored. The zero Addr has one key per limitID.
//
// KeyAddr does not allocate and is safe for concurrent use.
func KeyAddr(limitID uint32, a netip.Addr, prefixBits int) uint64 {
	var hi, lo uint64
	fam, width := uint64(famInvalid), 0
	switch {
	case a.Is4():
		b4 := a.As4()
		fam, width = fam4, 32
		lo = uint64(binary.BigEndian.Uint32(b4[:]))
	case a.Is6():
		b16 := a.As16()
		hi = binary.BigEndian.Uint64(b16[:8])
		lo = binary.BigEndian.Uint64(b16[8:])
		fam, width = fam6, 128
		if hi == 0 && lo>>32 == 0xffff { // IPv4-mapped: treat as IPv4
			fam, width = fam4, 32
			lo &= 0xffffffff
		}
	}
	n := min(max(prefixBits, 0), width)
	// Keep the first n bits of the address. An IPv4 address is kept in the
	// last 32 bits of lo.
	keep := n
	if fam == fam4 {
		keep += 96
	}
	hi, lo = maskPrefix(hi, lo, keep)
	return hash3(hi, lo, uint64(limitID)<<16|fam<<8|uint64(n))
}

// hash3 is a seeded hash of three words in the style of wyhash: two
// 64x64->128-bit multiplications folded to 64 bits. It is several times
// faster than hashing the same 24 bytes with maphash.Bytes.
func hash3(a, b, c uint64) uint64 {
	x := mum(a^mixSeed[0], b^mixSeed[1])
	return mum(x^c^mixSeed[2], c^mixSeed[3]^0x9e3779b97f4a7c15)
}

// mum multiplies a and b to 128 bits and folds the halves.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

// maskPrefix keeps the first n (0..128) bits of the 128-bit value hi:lo.
func maskPrefix(hi, lo uint64, n int) (uint64, uint64) {
	switch {
	case n <= 0:
		return 0, 0
	case n < 64:
		return hi &^ (^uint64(0) >> n), 0
	case n == 64:
		return hi, 0
	case n < 128:
		return hi, lo &^ (^uint64(0) >> (n - 64))
	}
	return hi, lo
}

// KeyBytes returns the key of the value b (a header, cookie or route) under
// the limit limitID. It does not allocate and is safe for concurrent use.
func KeyBytes(limitID uint32, b []byte) uint64 {
	return withID(limitID, maphash.Bytes(keySeed, b))
}

// KeyString is KeyBytes for a string.
func KeyString(limitID uint32, s string) uint64 {
	return withID(limitID, maphash.String(keySeed, s))
}

// KeyCombine returns the key of a combination of two keys, for example an
// address key and a route key, under the limit limitID. The order of a and
// b matters. It does not allocate and is safe for concurrent use.
func KeyCombine(limitID uint32, a, b uint64) uint64 {
	return hash3(a, b, uint64(limitID)<<32|0xc0b1)
}

// Note for all key builders: the table ignores bit 0 of a key (it holds the
// CLOCK reference bit there), so keys are effectively 63-bit hashes. With 4
// million live keys the chance that any two share a key is about 1e-6.

// withID mixes a limit id into a value hash. For a fixed id the mapping is a
// bijection of h, so distinct values keep distinct keys.
func withID(limitID uint32, h uint64) uint64 {
	h ^= uint64(limitID) * 0x9e3779b97f4a7c15
	// splitmix64 finaliser: a bijection with full avalanche.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
