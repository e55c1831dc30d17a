package challenge

import "sync"

const replayShards = 64

// ReplaySet remembers used challenge ids until their expiry, so that each
// challenge is answered once. It holds at most a fixed number of ids: when a
// shard is full it first drops expired ids, and if none expired it refuses
// new ones (fail closed: the client gets a fresh challenge). Entering an id
// needs a valid answer to a signed challenge, so an attacker fills it only as
// fast as it solves challenges.
//
// The zero value is not usable; build one with [NewReplaySet]. A ReplaySet is
// safe for concurrent use.
type ReplaySet struct {
	perShard int
	shards   [replayShards]replayShard
}

type replayShard struct {
	mu  sync.Mutex
	ids map[uint64]int64 // id -> expiry, unix seconds
	_   [40]byte         // keep shards on separate cache lines
}

// NewReplaySet holds up to capacity ids (at least 64).
func NewReplaySet(capacity int) *ReplaySet {
	per := max(capacity/replayShards, 1)
	r := &ReplaySet{perShard: per}
	for i := range r.shards {
		r.shards[i].ids = make(map[uint64]int64, min(per, 1024))
	}
	return r
}

// Use marks id as used until expires (unix seconds). It returns ErrReplayed
// if id was used before, ErrBusy if the set is full of unexpired ids.
func (r *ReplaySet) Use(now, expires int64, id uint64) error {
	sh := &r.shards[(id*0x9E3779B97F4A7C15)>>58]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if exp, ok := sh.ids[id]; ok && exp > now {
		return ErrReplayed
	}
	if len(sh.ids) >= r.perShard {
		for k, exp := range sh.ids {
			if exp <= now {
				delete(sh.ids, k)
			}
		}
		if len(sh.ids) >= r.perShard {
			return ErrBusy
		}
	}
	sh.ids[id] = expires
	return nil
}

// Len is the number of ids held (expired ones included until swept).
func (r *ReplaySet) Len() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.ids)
		sh.mu.Unlock()
	}
	return n
}
