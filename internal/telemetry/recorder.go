package telemetry

import (
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Recorder. The zero value is valid: every field has a
// default.
type Config struct {
	// Site names the site in metrics labels. Default "default".
	Site string `yaml:"site"`
	// Shards is the number of independently locked buckets; a power of two.
	// Default: 4*GOMAXPROCS rounded up to a power of two, at most 64.
	Shards int `yaml:"shards"`
	// TopK is how many values each shard monitors per attribute (Space-Saving
	// capacity) and how many a Second reports. Default 64.
	TopK int `yaml:"top_k"`
	// SourceTopK is TopK for AttrSource and AttrPrefix. Default 128.
	SourceTopK int `yaml:"source_top_k"`
	// SeenCapacity is how many addresses one generation of the "seen"
	// filter holds at about 1 % false positives (about 1.25 bytes each, two
	// generations). Default 1<<20.
	SeenCapacity int `yaml:"seen_capacity"`
	// ExactTopK turns off randomized admission in the top-k lists: every
	// new value then replaces the current minimum (classic Space-Saving,
	// counts never underestimate), which costs more during floods of
	// distinct values. Default false.
	ExactTopK bool `yaml:"exact_top_k"`
	// SeenPeriod is how long a generation of the seen filter stays current:
	// a source is "new" if it was not seen for between one and two periods.
	// Default 6h.
	SeenPeriod time.Duration `yaml:"seen_period"`
}

func (c *Config) fill() {
	if c.Site == "" {
		c.Site = "default"
	}
	if c.Shards == 0 {
		n := 4 * runtime.GOMAXPROCS(0)
		s := 1
		for s < n && s < 64 {
			s <<= 1
		}
		c.Shards = s
	}
	if c.TopK == 0 {
		c.TopK = 64
	}
	if c.SourceTopK == 0 {
		c.SourceTopK = 128
	}
	if c.SeenCapacity == 0 {
		c.SeenCapacity = 1 << 20
	}
	if c.SeenPeriod == 0 {
		c.SeenPeriod = 6 * time.Hour
	}
}

// Validate reports a configuration error. It is called by New after the
// defaults are filled.
func (c *Config) Validate() error {
	switch {
	case c.Shards < 1 || c.Shards > 1024 || c.Shards&(c.Shards-1) != 0:
		return fmt.Errorf("telemetry: shards %d: want a power of two in 1..1024", c.Shards)
	case c.TopK < 1 || c.TopK > 4096:
		return fmt.Errorf("telemetry: top_k %d: want 1..4096", c.TopK)
	case c.SourceTopK < 1 || c.SourceTopK > 65536:
		return fmt.Errorf("telemetry: source_top_k %d: want 1..65536", c.SourceTopK)
	case c.SeenCapacity < 1024 || c.SeenCapacity > 1<<30:
		return fmt.Errorf("telemetry: seen_capacity %d: want 1024..2^30", c.SeenCapacity)
	case c.SeenPeriod < time.Second:
		return fmt.Errorf("telemetry: seen_period %v: want at least 1s", c.SeenPeriod)
	}
	return nil
}

// Deps are a Recorder's optional dependencies.
type Deps struct {
	Registerer prometheus.Registerer // nil: no metrics
	Logger     *slog.Logger          // nil: discard
}

// bucket is one shard's counts for the current second.
type bucket struct {
	requests     uint64
	conns        uint64
	newSources   uint64
	seenAdds     uint64
	originErrors uint64
	verdicts     [NumVerdicts]uint64
	status       [6]uint64
	lat          [NumLatencyBuckets]uint64
	latSum       int64
	hll          hll
	top          [NumAttrs]spaceSaving
}

func newBucket(cfg *Config) *bucket {
	b := &bucket{}
	for a := range NumAttrs {
		k := cfg.TopK
		if a == AttrSource || a == AttrPrefix {
			k = cfg.SourceTopK
		}
		b.top[a] = newSpaceSaving(k, !cfg.ExactTopK)
	}
	return b
}

func (b *bucket) reset() {
	b.requests, b.conns, b.newSources, b.seenAdds, b.originErrors = 0, 0, 0, 0, 0
	b.verdicts = [NumVerdicts]uint64{}
	b.status = [6]uint64{}
	b.lat = [NumLatencyBuckets]uint64{}
	b.latSum = 0
	clear(b.hll[:])
	for a := range b.top {
		b.top[a].reset()
	}
}

type shard struct {
	mu    sync.Mutex
	cur   *bucket
	spare *bucket
	_     [40]byte // keep shards on separate cache lines
}

// Recorder accumulates one site's telemetry. Record and RecordConn are safe
// for concurrent use, lock a single shard for well under a microsecond and
// do not allocate. Tick must be called by one goroutine at a time (it is
// serialized internally). Memory is fixed at New (see MemoryBytes). The
// zero value is not usable; call New.
type Recorder struct {
	cfg    Config
	shards []shard
	seen   *seenFilter
	log    *slog.Logger
	m      *metrics

	tickMu sync.Mutex
	start  time.Time // start of the open bucket; zero until the first Tick
	totals totals    // guarded by tickMu, read by metrics under it
}

type totals struct {
	requests, conns, newSources, ticks uint64
}

// New returns a Recorder for one site.
func New(cfg Config, deps Deps) (*Recorder, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Recorder{
		cfg:    cfg,
		shards: make([]shard, cfg.Shards),
		seen:   newSeenFilter(cfg.SeenCapacity),
		log:    deps.Logger,
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for i := range r.shards {
		r.shards[i].cur = newBucket(&cfg)
		r.shards[i].spare = newBucket(&cfg)
	}
	m, err := newMetrics(deps.Registerer, r)
	if err != nil {
		return nil, fmt.Errorf("telemetry: register metrics for site %s: %w", cfg.Site, err)
	}
	r.m = m
	return r, nil
}

// Config returns the configuration with defaults filled.
func (r *Recorder) Config() Config { return r.cfg }

// MemoryBytes is the recorder's fixed memory: two buckets per shard (top-k
// entries of about 160 bytes with their index, a 4 KiB HyperLogLog) and the
// seen filter.
func (r *Recorder) MemoryBytes() int {
	per := hllM + 200
	for a := range NumAttrs {
		k := r.cfg.TopK
		if a == AttrSource || a == AttrPrefix {
			k = r.cfg.SourceTopK
		}
		t := newSpaceSaving(k, false)
		per += k*(sampleCap+16+12) + len(t.table)*16
	}
	return 2*len(r.shards)*per + r.seen.bytes()
}

// lock locks a shard, preferring the one chosen by key and moving on to
// the next free one under contention.
func (r *Recorder) lock(key uint64) *shard {
	mask := uint64(len(r.shards) - 1)
	i := key & mask
	for range len(r.shards) {
		sh := &r.shards[i]
		if sh.mu.TryLock() {
			return sh
		}
		i = (i + 1) & mask
	}
	sh := &r.shards[key&mask]
	sh.mu.Lock()
	return sh
}

type addrInfo struct {
	key, pkey uint64
	src, pfx  [16]byte
	n         int
}

func makeAddrInfo(a netip.Addr, ai *addrInfo) {
	a = a.Unmap()
	ai.key = addrKey(a)
	if a.Is4() {
		b := a.As4()
		copy(ai.src[:], b[:])
		copy(ai.pfx[:], b[:3])
		ai.n = 4
	} else {
		ai.src = a.As16()
		copy(ai.pfx[:8], ai.src[:8])
		ai.n = 16
	}
	ai.pkey = addrKey(netip.AddrFrom16(ai.pfx)) ^ uint64(ai.n)
}

// Record counts one request. It does not retain e.
func (r *Recorder) Record(e *Event) {
	var ai addrInfo
	valid := e.Client.IsValid()
	if valid {
		makeAddrInfo(e.Client, &ai)
	}
	var pathKey, uaKey uint64
	if len(e.Path) > 0 {
		pathKey = Hash(e.Path)
	}
	if len(e.UserAgent) > 0 {
		uaKey = Hash(e.UserAgent)
	}
	sh := r.lock(ai.key)
	b := sh.cur
	b.requests++
	v := e.Verdict
	if v >= NumVerdicts {
		v = VerdictPass
	}
	b.verdicts[v]++
	class := e.Status / 100
	if class > 5 {
		class = 0
	}
	b.status[class]++
	if e.Status >= 500 || v == VerdictError {
		b.originErrors++
	}
	if e.Status != 0 {
		b.lat[latencyBucket(e.Latency)]++
		b.latSum += int64(e.Latency)
	}
	if e.NewConn {
		b.conns++
	}
	if valid {
		r.recordSource(b, &ai)
	}
	var tmp [8]byte
	if e.ASN != 0 {
		putU64(&tmp, uint64(e.ASN))
		b.top[AttrASN].add(mix(uint64(e.ASN)|1<<40), tmp[4:])
	}
	if e.Country != [2]byte{} {
		b.top[AttrCountry].add(mix(uint64(e.Country[0])<<8|uint64(e.Country[1])|2<<40), e.Country[:])
	}
	if pathKey != 0 {
		b.top[AttrPath].add(pathKey, e.Path)
	}
	if e.QueryShape != 0 {
		putU64(&tmp, e.QueryShape)
		b.top[AttrQuery].add(mix(e.QueryShape), tmp[:])
	}
	if uaKey != 0 {
		b.top[AttrUserAgent].add(uaKey, e.UserAgent)
	}
	if e.HeaderOrder != 0 {
		putU64(&tmp, e.HeaderOrder)
		b.top[AttrHeaderOrder].add(mix(e.HeaderOrder), tmp[:])
	}
	if e.Fingerprint != 0 {
		putU64(&tmp, e.Fingerprint)
		b.top[AttrFingerprint].add(mix(e.Fingerprint), tmp[:])
	}
	sh.mu.Unlock()
}

// RecordConn counts a new connection from a that is not (yet) reported as a
// request with Event.NewConn: use it for connections refused or dropped
// before a request was read. The source counts towards distinct and new
// sources and the source and prefix top lists.
func (r *Recorder) RecordConn(a netip.Addr) {
	var ai addrInfo
	valid := a.IsValid()
	if valid {
		makeAddrInfo(a, &ai)
	}
	sh := r.lock(ai.key)
	sh.cur.conns++
	if valid {
		r.recordSource(sh.cur, &ai)
	}
	sh.mu.Unlock()
}

func (r *Recorder) recordSource(b *bucket, ai *addrInfo) {
	b.hll.add(ai.key)
	seen, added := r.seen.checkAdd(ai.key)
	if !seen {
		b.newSources++
	}
	if added {
		b.seenAdds++
	}
	b.top[AttrSource].add(ai.key, ai.src[:ai.n])
	b.top[AttrPrefix].add(ai.pkey, ai.pfx[:ai.n])
}

func putU64(b *[8]byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}

func getU64(b []byte) uint64 {
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v
}

// Tick closes the open bucket at now and returns it; the next bucket starts
// at now. The first Tick returns a Second whose Start equals End (a
// zero-length second with whatever was recorded before it). Tick also
// rotates the seen filter when due.
func (r *Recorder) Tick(now time.Time) Second {
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	t0 := time.Now()
	start := r.start
	if start.IsZero() {
		start = now
	}
	sec := Second{Start: start, End: now}
	var merged [NumAttrs]map[uint64]*Item
	for a := range merged {
		merged[a] = make(map[uint64]*Item)
	}
	var h hll
	var seenAdds uint64
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		b := sh.cur
		sh.cur = sh.spare
		sh.spare = b
		sh.mu.Unlock()

		sec.Requests += b.requests
		sec.Conns += b.conns
		sec.NewSources += b.newSources
		sec.OriginErrors += b.originErrors
		seenAdds += b.seenAdds
		for v := range b.verdicts {
			sec.Verdicts[v] += b.verdicts[v]
		}
		for c := range b.status {
			sec.Status[c] += b.status[c]
		}
		for l := range b.lat {
			sec.Latency[l] += b.lat[l]
		}
		sec.LatencySum += time.Duration(b.latSum)
		h.merge(&b.hll)
		for a := range NumAttrs {
			ss := &b.top[a]
			sec.TopFloor[a] += uint64(ss.minCount())
			for j := 0; j < ss.n; j++ {
				en := &ss.entries[j]
				it := merged[a][en.key]
				if it == nil {
					it = decodeItem(a, en, ss.sample(j))
					merged[a][en.key] = it
				}
				it.Count += uint64(ss.count(j))
				it.Err += uint64(en.err)
			}
		}
		b.reset()
	}
	sec.Sources = h.estimate()
	for a := range NumAttrs {
		k := r.cfg.TopK
		if a == AttrSource || a == AttrPrefix {
			// Shards partition sources (a source goes to the shard of its
			// hash unless that one is busy): the union of the shards'
			// lists is kept.
			k = r.cfg.SourceTopK * len(r.shards)
		}
		items := make([]Item, 0, len(merged[a]))
		for _, it := range merged[a] {
			items = append(items, *it)
		}
		sort.Slice(items, func(i, j int) bool {
			if items[i].Count != items[j].Count {
				return items[i].Count > items[j].Count
			}
			return items[i].Value < items[j].Value
		})
		if len(items) > k {
			items = items[:k]
		}
		sec.Top[a] = items
	}

	r.seen.inserted += seenAdds
	if r.seen.since == 0 {
		r.seen.since = now.UnixNano()
	}
	if r.seen.inserted >= uint64(r.cfg.SeenCapacity) || now.UnixNano()-r.seen.since >= int64(r.cfg.SeenPeriod) {
		r.seen.rotate(now.UnixNano())
		r.log.Debug("telemetry: seen filter rotated", "site", r.cfg.Site)
	}
	r.start = now
	r.totals.requests += sec.Requests
	r.totals.conns += sec.Conns
	r.totals.newSources += sec.NewSources
	r.totals.ticks++
	if r.m != nil {
		r.m.tickSeconds.Observe(time.Since(t0).Seconds())
	}
	return sec
}

func decodeItem(a Attr, en *ssEntry, s []byte) *Item {
	it := &Item{Key: en.key, Truncated: en.trunc}
	switch a {
	case AttrSource, AttrPrefix:
		var addr netip.Addr
		bitsLen := 32
		if en.n == 4 {
			addr = netip.AddrFrom4([4]byte(s))
		} else {
			addr = netip.AddrFrom16([16]byte(s))
			bitsLen = 128
		}
		if a == AttrPrefix {
			bitsLen = 24
			if en.n == 16 {
				bitsLen = 64
			}
		}
		it.Prefix = netip.PrefixFrom(addr, bitsLen)
		if a == AttrSource {
			it.Value = addr.String()
		} else {
			it.Value = it.Prefix.String()
		}
	case AttrASN:
		it.Num = getU64(s)
		it.Value = "AS" + strconv.FormatUint(it.Num, 10)
	case AttrQuery, AttrHeaderOrder, AttrFingerprint:
		it.Num = getU64(s)
		it.Value = fmt.Sprintf("%016x", it.Num)
	default:
		it.Value = string(s)
	}
	return it
}
