package cache

import (
	"context"
	"time"
)

// flight is one origin fetch in progress for a primary key.
type flight struct {
	done chan struct{}
}

// Fetch returns the response to r, fetching it from the origin with fetch
// at most once at a time per key: while one request fetches, concurrent
// requests for the same key wait (up to ctx and CoalesceWait) and then take
// the stored entry (State Coalesced). A waiter whose fetcher's response was
// not stored (uncacheable, error, or a different Vary variant) fetches
// itself. The fetcher's own response is returned as an Entry (State Miss)
// whether or not it was stored. Call Fetch after Get returned Miss or Stale;
// for a request that bypasses the cache Fetch just calls fetch (State
// Bypass).
func (c *Cache) Fetch(ctx context.Context, now time.Time, r *Request, fetch func() (*Response, error)) (*Entry, State, error) {
	if c.bypass(r) || isHEAD(r) {
		// Never coalesced with (or stored for) other clients. HEAD
		// answers are not stored (see Store), so waiters on a HEAD flight
		// would find nothing and fetch again anyway.
		resp, err := fetch()
		if err != nil {
			return nil, Bypass, err
		}
		return c.entryFor(now, r, resp), Bypass, nil
	}
	s := c.scratch.Get().(*scratch)
	ph, sh := c.primary(r, s)
	c.scratch.Put(s)

	sh.mu.Lock()
	f := sh.flights[ph]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		sh.flights[ph] = f
		sh.mu.Unlock()
		return c.lead(now, r, ph, sh, f, fetch)
	}
	sh.st.coalesced++
	sh.mu.Unlock()

	t := time.NewTimer(c.cfg.CoalesceWait)
	select {
	case <-f.done:
		t.Stop()
		if e, st := c.get(now, r, false); st == Hit {
			return e, Coalesced, nil
		}
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		return nil, Miss, ctx.Err()
	}
	resp, err := fetch()
	if err != nil {
		return nil, Miss, err
	}
	return c.entryFor(now, r, resp), Miss, nil
}

func (c *Cache) lead(now time.Time, r *Request, ph uint64, sh *shard, f *flight, fetch func() (*Response, error)) (e *Entry, st State, err error) {
	defer func() {
		sh.mu.Lock()
		delete(sh.flights, ph)
		sh.mu.Unlock()
		close(f.done)
	}()
	resp, err := fetch()
	if err != nil {
		return nil, Miss, err
	}
	return c.entryFor(now, r, resp), Miss, nil
}

// entryFor stores resp if it is cacheable and returns it as an Entry either
// way.
func (c *Cache) entryFor(now time.Time, r *Request, resp *Response) *Entry {
	if e := c.Store(now, r, resp); e != nil {
		return e
	}
	e := newEntry(resp, nil)
	e.Stored, e.Expires, e.StaleUntil = now, now, now
	// Hop-by-hop and Set-Cookie fields were left out by newEntry; the
	// requester itself must get its Set-Cookie back.
	for i := range resp.Header {
		if equalFold(resp.Header[i].Name, "set-cookie") {
			e.Header = append(e.Header, Field{Name: resp.Header[i].Name, Value: resp.Header[i].Value})
		}
	}
	return e
}

// Fetching reports whether an origin fetch for r's URL is in progress. A
// caller holding a Stale entry can then serve it at once instead of waiting
// for that fetch (stale-while-revalidate under load).
func (c *Cache) Fetching(r *Request) bool {
	if c.bypass(r) {
		return false
	}
	s := c.scratch.Get().(*scratch)
	ph, sh := c.primary(r, s)
	c.scratch.Put(s)
	sh.mu.Lock()
	f := sh.flights[ph]
	sh.mu.Unlock()
	return f != nil
}
