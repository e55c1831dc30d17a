package limit

import (
	"sync/atomic"
	"time"
)

// Single is the GCRA state of one key on its own, updated lock-free with a
// compare-and-swap. Use it for a limit that every request hits, such as the
// global or per-site limit: in a Table such a key would serialise all cores
// on one shard lock.
//
// The zero value is a fully recovered key, ready to use (times are Unix
// nanoseconds, so 0 is long past). A Single is safe for concurrent use and
// must not be copied after first use.
type Single struct {
	_   noCopy
	tat atomic.Int64
}

// Allow is AllowAt with the current wall-clock time.
func (s *Single) Allow(l Limit) (ok bool, retryAfter time.Duration) {
	return s.AllowNAt(time.Now().UnixNano(), l, 1)
}

// AllowAt is Table.AllowAt for this single key.
func (s *Single) AllowAt(now int64, l Limit) (ok bool, retryAfter time.Duration) {
	return s.AllowNAt(now, l, 1)
}

// AllowNAt is Table.AllowNAt for this single key.
func (s *Single) AllowNAt(now int64, l Limit, n int) (ok bool, retryAfter time.Duration) {
	interval, burst := l.gcra()
	if interval == 0 || n <= 0 {
		return true, 0
	}
	if int64(n) > burst {
		return false, Never
	}
	inc, tau := interval*int64(n), interval*burst
	for {
		old := s.tat.Load()
		nt := max(old, now) + inc
		if nt-now > tau {
			return false, time.Duration(nt - now - tau)
		}
		if s.tat.CompareAndSwap(old, nt) {
			return true, 0
		}
	}
}

// noCopy makes go vet's copylocks check flag copies of a Single.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
