// Package cache is an in-memory HTTP micro-cache for an origin under load.
//
// It stores cacheable GET responses (HEAD requests are answered from them)
// within a byte budget (sharded LRU), keyed by method, host, path and a
// normalized query (configured parameters removed, the rest sorted) plus the
// request headers the response Varies on. It honours Cache-Control (no-store, private, no-cache,
// max-age, s-maxage, must-revalidate), Expires and Age, does not store
// responses that set cookies, keeps expired entries for a configured time to
// serve them stale when the origin fails or the admission gate sheds, and
// coalesces concurrent misses of one key into one origin fetch.
//
// The API does not depend on an HTTP library: a Request is a few byte
// slices and a HeaderPeeker (which *fasthttp.RequestHeader implements), a
// Response a status, header fields and a body.
package cache

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levee-dev/levee/internal/bytesize"
)

// Config configures a Cache. Zero fields take the documented defaults; the
// zero value is the default configuration.
type Config struct {
	// Name labels the cache in metrics. Default "default".
	Name string `yaml:"name"`
	// MaxBytes is the memory budget for stored responses (keys, headers,
	// bodies and a fixed per-entry overhead). Default 64 MiB.
	MaxBytes bytesize.Size `yaml:"max_bytes"`
	// MaxEntryBytes is the largest response stored. Default MaxBytes/64,
	// at most 8 MiB.
	MaxEntryBytes bytesize.Size `yaml:"max_entry_bytes"`
	// Shards is the number of independently locked LRU shards. Default 16.
	Shards int `yaml:"shards"`
	// IgnoreParams are query parameters left out of cache keys: exact names
	// or prefixes ending in '*' ("utm_*"). Default none.
	IgnoreParams []string `yaml:"ignore_params"`
	// KeepParams, when set, are the only query parameters kept in cache
	// keys (same syntax); it overrides IgnoreParams. A site whose pages
	// read no query parameters can set it to a name it never uses, so that
	// random query strings cannot bust the cache.
	KeepParams []string `yaml:"keep_params"`
	// Statuses are the cacheable status codes. Default 200, 301, 404.
	Statuses []int `yaml:"statuses"`
	// DefaultTTL is the freshness of a cacheable response without
	// Cache-Control max-age/s-maxage or Expires (micro-caching). Zero
	// means the default 1s; negative stores no such responses.
	DefaultTTL time.Duration `yaml:"default_ttl"`
	// NotFoundTTL caps the freshness of 404 responses. Default 5s.
	NotFoundTTL time.Duration `yaml:"not_found_ttl"`
	// MaxTTL caps every freshness. Default 1h.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// StaleFor is how long past its freshness an entry is kept to be
	// served stale (origin errors, shed requests), unless it said
	// must-revalidate. Zero means the default 60s; negative disables.
	StaleFor time.Duration `yaml:"stale_for"`
	// CacheSetCookie stores responses that carry Set-Cookie, without the
	// Set-Cookie headers. Default false: such responses are not stored.
	CacheSetCookie bool `yaml:"cache_set_cookie"`
	// BypassCookies: requests carrying a cookie with one of these names
	// (exact or prefix with '*', e.g. "wordpress_logged_in_*") neither
	// read nor fill the cache. Requests with Authorization always bypass
	// it. Default none.
	BypassCookies []string `yaml:"bypass_cookies"`
	// MaxVariants bounds the variants stored for one URL whose response
	// Varies on request headers; beyond it new variants are not stored.
	// Accept-Encoding values are reduced to the set of known codings first,
	// so they make at most 32 variants. Default 16.
	MaxVariants int `yaml:"max_variants"`
	// CoalesceWait bounds how long a request waits for another request's
	// fetch of the same key before fetching itself. Default 5s.
	CoalesceWait time.Duration `yaml:"coalesce_wait"`
}

func (c *Config) fill() {
	if c.Name == "" {
		c.Name = "default"
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 64 << 20
	}
	if c.MaxEntryBytes == 0 {
		c.MaxEntryBytes = min(c.MaxBytes/64, 8<<20)
	}
	if c.Shards == 0 {
		c.Shards = 16
	}
	if c.Statuses == nil {
		c.Statuses = []int{200, 301, 404}
	}
	if c.DefaultTTL == 0 {
		c.DefaultTTL = time.Second
	}
	if c.NotFoundTTL == 0 {
		c.NotFoundTTL = 5 * time.Second
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = time.Hour
	}
	if c.StaleFor == 0 {
		c.StaleFor = time.Minute
	}
	if c.CoalesceWait == 0 {
		c.CoalesceWait = 5 * time.Second
	}
	if c.MaxVariants == 0 {
		c.MaxVariants = 16
	}
}

// WithDefaults returns c with its zero fields set to their defaults, as New
// uses it (for validating a configuration before the cache exists).
func (c Config) WithDefaults() Config {
	c.fill()
	return c
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	switch {
	case c.MaxBytes < 0:
		return fmt.Errorf("max_bytes %d: must be >= 0", c.MaxBytes)
	case c.MaxEntryBytes < 0 || c.MaxEntryBytes > c.MaxBytes:
		return fmt.Errorf("max_entry_bytes %d: must be within [0, max_bytes %d]", c.MaxEntryBytes, c.MaxBytes)
	case c.Shards < 1 || c.Shards > 4096:
		return fmt.Errorf("shards %d: must be within [1, 4096]", c.Shards)
	case c.MaxTTL <= 0:
		return fmt.Errorf("max_ttl %v: must be > 0", c.MaxTTL)
	case c.NotFoundTTL < 0:
		return fmt.Errorf("not_found_ttl %v: must be >= 0", c.NotFoundTTL)
	case c.MaxVariants < 1:
		return fmt.Errorf("max_variants %d: must be >= 1", c.MaxVariants)
	case c.CoalesceWait < 0:
		return fmt.Errorf("coalesce_wait %v: must be >= 0", c.CoalesceWait)
	}
	for _, s := range c.Statuses {
		if s < 100 || s > 599 {
			return fmt.Errorf("statuses: %d is not an HTTP status", s)
		}
	}
	for _, p := range append(append(append([]string(nil), c.IgnoreParams...), c.KeepParams...), c.BypassCookies...) {
		if p == "" || p == "*" {
			return fmt.Errorf("parameter or cookie name %q: must not be empty", p)
		}
	}
	return nil
}

// State is the outcome of a lookup; the zero value is Miss.
type State uint8

const (
	// Miss: nothing usable stored.
	Miss State = iota
	// Hit: a fresh entry; serve it.
	Hit
	// Stale: an expired entry still within StaleFor; serve it only if the
	// origin cannot answer (error, timeout, shed by the admission gate),
	// and call NoteStaleServed when doing so.
	Stale
	// Bypass: the request must not use the cache (method, credentials,
	// bypass cookie).
	Bypass
	// Coalesced: Fetch returned an entry fetched by a concurrent request.
	Coalesced
)

func (s State) String() string {
	return [...]string{"miss", "hit", "stale", "bypass", "coalesced"}[s]
}

// Entry is a stored response. It is immutable once returned: readers may
// use it after it has been evicted.
type Entry struct {
	Status int
	// Header holds the stored header fields (no hop-by-hop headers, Age or
	// Set-Cookie); the slices point into one shared block.
	Header []Field
	Body   []byte
	// Stored is when the response was stored, Expires the end of its
	// freshness, StaleUntil the end of its use as a stale answer.
	Stored, Expires, StaleUntil time.Time

	key        []byte
	hash       uint64 // of key; the map key
	primary    uint64 // hash of the primary key (without Vary'd values)
	spec       *varySpec
	size       int64
	prev, next *Entry // LRU links, under the shard lock
}

// Age returns the value of the Age header to send with the entry at now,
// in whole seconds.
func (e *Entry) Age(now time.Time) int64 {
	if d := now.Sub(e.Stored); d > 0 {
		return int64(d / time.Second)
	}
	return 0
}

const entryOverhead = 256 // bytes per entry for the struct, map slot and field slice headers

type shard struct {
	mu         sync.Mutex
	m          map[uint64]*Entry
	vary       map[uint64]*varySpec // primary key hash -> Vary'd header names
	flights    map[uint64]*flight
	head, tail *Entry // most recently used at head
	bytes      int64
	st         shardStats
	_          [64]byte
}

// varySpec is what a primary key's responses Vary on, and how many
// variants of it are stored.
type varySpec struct {
	names    []string
	variants int
}

type shardStats struct {
	hits, misses, stale, stores, evictions, coalesced, variantsFull uint64
}

// Cache is the micro-cache.
//
// Use New; the zero value is not usable. A Cache is safe for concurrent
// use. Get on a hit does not allocate.
type Cache struct {
	cfg           Config
	filter        queryFilter
	bypassCookies paramMatcher
	statuses      [600]bool
	seed          maphash.Seed
	shards        []shard
	budget        int64 // per shard
	scratch       sync.Pool
	staleServed   atomic.Uint64
	bypassN       atomic.Uint64
	reg           prometheus.Registerer
	coll          prometheus.Collector
}

type scratch struct {
	buf   []byte
	parts [][]byte
}

// New returns an empty Cache.
func New(cfg Config, reg prometheus.Registerer) (*Cache, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cache %s: %w", cfg.Name, err)
	}
	c := &Cache{
		cfg:           cfg,
		filter:        queryFilter{ignore: newParamMatcher(cfg.IgnoreParams), keep: newParamMatcher(cfg.KeepParams)},
		bypassCookies: newParamMatcher(cfg.BypassCookies),
		seed:          maphash.MakeSeed(),
		shards:        make([]shard, cfg.Shards),
		budget:        int64(cfg.MaxBytes) / int64(cfg.Shards),
	}
	for _, s := range cfg.Statuses {
		c.statuses[s] = true
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.m = make(map[uint64]*Entry)
		sh.vary = make(map[uint64]*varySpec)
		sh.flights = make(map[uint64]*flight)
	}
	c.scratch.New = func() any { return &scratch{buf: make([]byte, 0, 512), parts: make([][]byte, 0, 16)} }
	if reg != nil {
		coll := newCollector(c)
		if err := reg.Register(coll); err != nil {
			return nil, fmt.Errorf("cache %s: metrics: %w", cfg.Name, err)
		}
		c.reg, c.coll = reg, coll
	}
	return c, nil
}

// Unregister removes the cache's metrics from the Registerer it was built
// with (before building its replacement on reload).
func (c *Cache) Unregister() {
	if c.reg != nil {
		c.reg.Unregister(c.coll)
		c.reg = nil
	}
}

// bypass reports whether r must not use the cache, and whether it carries
// credentials.
func (c *Cache) bypass(r *Request) bool {
	if !bytes.Equal(r.Method, []byte("GET")) && !bytes.Equal(r.Method, []byte("HEAD")) {
		return true
	}
	if r.Header == nil {
		return false
	}
	if r.Header.Peek("Authorization") != nil {
		return true
	}
	return !c.bypassCookies.empty() && hasCookie(r.Header.Peek("Cookie"), &c.bypassCookies)
}

// primary builds the primary key of r into s.buf and returns its hash and
// shard.
func (c *Cache) primary(r *Request, s *scratch) (uint64, *shard) {
	s.buf, s.parts = c.filter.appendPrimaryKey(s.buf[:0], r, s.parts)
	h := maphash.Bytes(c.seed, s.buf)
	return h, &c.shards[h%uint64(len(c.shards))]
}

// lookup finds the entry for r in sh, with the primary key in s.buf.
// Called with sh.mu held; s.buf may be extended with Vary'd values.
func (c *Cache) lookup(sh *shard, ph uint64, r *Request, s *scratch) *Entry {
	h := ph
	if spec := sh.vary[ph]; spec != nil {
		s.buf = appendVary(s.buf, spec.names, r.Header)
		h = maphash.Bytes(c.seed, s.buf)
	}
	e := sh.m[h]
	if e == nil || !bytes.Equal(e.key, s.buf) {
		return nil
	}
	return e
}

// Get looks r up at now. On Hit and Stale it returns the entry.
func (c *Cache) Get(now time.Time, r *Request) (*Entry, State) {
	return c.get(now, r, true)
}

// get is Get; count=false leaves the lookup counters alone (a coalesced
// request's second look).
func (c *Cache) get(now time.Time, r *Request, count bool) (*Entry, State) {
	if c.bypass(r) {
		c.bypassN.Add(1)
		return nil, Bypass
	}
	e, st := c.find(now, r, count && !isHEAD(r))
	if st == Miss && isHEAD(r) {
		// A HEAD request can be answered from the GET entry (without its
		// body: HTTP servers send none for HEAD).
		g := *r
		g.Method = methodGET
		if ge, gst := c.find(now, &g, false); gst != Miss {
			e, st = ge, gst
		}
		if count {
			c.count(now, r, st)
		}
	}
	return e, st
}

var methodGET = []byte("GET")

func isHEAD(r *Request) bool { return bytes.Equal(r.Method, []byte("HEAD")) }

// count adds one lookup result to the counters of r's shard.
func (c *Cache) count(now time.Time, r *Request, st State) {
	s := c.scratch.Get().(*scratch)
	_, sh := c.primary(r, s)
	c.scratch.Put(s)
	sh.mu.Lock()
	switch st {
	case Hit:
		sh.st.hits++
	case Stale:
		sh.st.stale++
	default:
		sh.st.misses++
	}
	sh.mu.Unlock()
}

// find looks r up; count adds the result to the counters.
func (c *Cache) find(now time.Time, r *Request, count bool) (*Entry, State) {
	s := c.scratch.Get().(*scratch)
	ph, sh := c.primary(r, s)
	sh.mu.Lock()
	e := c.lookup(sh, ph, r, s)
	st := Miss
	switch {
	case e == nil:
	case now.Before(e.Expires):
		st = Hit
		sh.touch(e)
	case now.Before(e.StaleUntil):
		st = Stale
	default:
		sh.remove(e)
		e = nil
	}
	switch {
	case !count:
	case st == Hit:
		sh.st.hits++
	case st == Stale:
		sh.st.stale++
	default:
		sh.st.misses++
	}
	sh.mu.Unlock()
	c.scratch.Put(s)
	return e, st
}

// NoteStaleServed counts a stale entry actually served.
func (c *Cache) NoteStaleServed() { c.staleServed.Add(1) }

// Store offers the origin's response to r at now. It returns the stored
// entry, or nil if the response is not cacheable (then the caller sends
// its own copy).
func (c *Cache) Store(now time.Time, r *Request, resp *Response) *Entry {
	if c.bypass(r) || isHEAD(r) {
		// A HEAD answer has no body, and its Content-Length (not stored:
		// recomputed from the body when served) would come out as 0. HEAD
		// requests are answered from the GET entry instead.
		return nil
	}
	p, ok := c.decide(now, resp)
	if !ok {
		return nil
	}
	s := c.scratch.Get().(*scratch)
	defer c.scratch.Put(s)
	ph, sh := c.primary(r, s)
	if p.vary != nil {
		s.buf = appendVary(s.buf, p.vary, r.Header)
	}
	e := newEntry(resp, s.buf)
	if e.size > int64(c.cfg.MaxEntryBytes) || e.size > c.budget {
		return nil
	}
	e.hash = ph
	if p.vary != nil {
		e.hash = maphash.Bytes(c.seed, s.buf)
	}
	e.Stored = now
	e.Expires = now.Add(p.ttl)
	e.StaleUntil = e.Expires.Add(max(p.staleFor, 0))

	e.primary = ph

	sh.mu.Lock()
	if prev := sh.m[e.hash]; prev != nil {
		sh.remove(prev)
	}
	spec := sh.vary[ph]
	if spec != nil && !equalStrings(spec.names, p.vary) {
		// The Vary set changed: the variants stored under the old set
		// are unreachable now; they age out through the LRU.
		delete(sh.vary, ph)
		spec = nil
	}
	if p.vary != nil {
		if spec == nil {
			spec = &varySpec{names: p.vary}
			sh.vary[ph] = spec
		}
		if spec.variants >= c.cfg.MaxVariants {
			// A flood of distinct values of a Vary'd header must not
			// fill the cache with variants of one page.
			sh.st.variantsFull++
			sh.mu.Unlock()
			return nil
		}
		spec.variants++
		e.spec = spec
	}
	sh.m[e.hash] = e
	sh.pushFront(e)
	sh.bytes += e.size
	sh.st.stores++
	for sh.bytes > c.budget && sh.tail != nil {
		sh.remove(sh.tail)
		sh.st.evictions++
	}
	sh.mu.Unlock()
	return e
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// newEntry copies the stored parts of resp and the key into one block.
func newEntry(resp *Response, key []byte) *Entry {
	n := len(key) + len(resp.Body)
	nf := 0
	conn := resp.Get("Connection")
	for i := range resp.Header {
		f := &resp.Header[i]
		if storedHeader(f.Name, conn) {
			n += len(f.Name) + len(f.Value)
			nf++
		}
	}
	block := make([]byte, 0, n)
	e := &Entry{Status: resp.Status, Header: make([]Field, 0, nf)}
	take := func(b []byte) []byte {
		start := len(block)
		block = append(block, b...)
		return block[start:len(block):len(block)]
	}
	e.key = take(key)
	for i := range resp.Header {
		f := &resp.Header[i]
		if storedHeader(f.Name, conn) {
			e.Header = append(e.Header, Field{Name: take(f.Name), Value: take(f.Value)})
		}
	}
	e.Body = take(resp.Body)
	e.size = int64(n) + entryOverhead + int64(nf)*48
	return e
}

func (sh *shard) pushFront(e *Entry) {
	e.prev, e.next = nil, sh.head
	if sh.head != nil {
		sh.head.prev = e
	} else {
		sh.tail = e
	}
	sh.head = e
}

func (sh *shard) unlink(e *Entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (sh *shard) touch(e *Entry) {
	if sh.head != e {
		sh.unlink(e)
		sh.pushFront(e)
	}
}

func (sh *shard) remove(e *Entry) {
	sh.unlink(e)
	if sh.m[e.hash] == e {
		delete(sh.m, e.hash)
	}
	sh.bytes -= e.size
	if e.spec != nil {
		e.spec.variants--
		if e.spec.variants == 0 && sh.vary[e.primary] == e.spec {
			delete(sh.vary, e.primary)
		}
	}
}

// Stats is a snapshot of the cache's counters (a plain value).
type Stats struct {
	Entries                                                   int
	Bytes                                                     int64
	Hits, Misses, Stale, Bypass, Stores, Evictions, Coalesced uint64
	StaleServed                                               uint64
	// VariantsFull counts responses not stored because their URL had
	// MaxVariants variants already.
	VariantsFull uint64
	// VaryKeys is the number of URLs with a Vary record.
	VaryKeys int
}

// Stats returns a snapshot.
func (c *Cache) Stats() Stats {
	var s Stats
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		s.Entries += len(sh.m)
		s.Bytes += sh.bytes
		s.Hits += sh.st.hits
		s.Misses += sh.st.misses
		s.Stale += sh.st.stale
		s.Stores += sh.st.stores
		s.Evictions += sh.st.evictions
		s.Coalesced += sh.st.coalesced
		s.VariantsFull += sh.st.variantsFull
		s.VaryKeys += len(sh.vary)
		sh.mu.Unlock()
	}
	s.StaleServed = c.staleServed.Load()
	s.Bypass = c.bypassN.Load()
	return s
}

// NetHTTPHeader adapts an http.Header to HeaderPeeker (for net/http
// servers and tests; it allocates).
type NetHTTPHeader http.Header

// Peek implements HeaderPeeker.
func (h NetHTTPHeader) Peek(name string) []byte {
	v := http.Header(h).Values(name)
	if len(v) == 0 {
		return nil
	}
	if len(v) == 1 {
		return []byte(v[0])
	}
	var b []byte
	for i, s := range v {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, s...)
	}
	return b
}
