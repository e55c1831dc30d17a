// Package guard is the connection guard: the first and cheapest line of
// defense, applied when a TCP connection is accepted, before any TLS or HTTP
// work. It enforces a global cap on open connections, a per-address cap on
// concurrent connections, a per-address rate of new connections (GCRA), and
// an optional ban check; a refused connection is reset at once.
//
// Accepted connections are wrapped in *Conn, which releases the counters on
// Close and bounds every write with a deadline (slow-read defense).
package guard

import (
	"errors"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reason says why a connection was refused. The zero value, Admitted, means
// it was not.
type Reason uint8

// Reasons, in the order they are checked.
const (
	Admitted Reason = iota
	Banned
	GlobalCap
	PerIPCap
	PerIPRate
	TableFull
	PendingCap // PROXY protocol headers pending: half the global cap
	numReasons
)

var reasonNames = [numReasons]string{"admitted", "banned", "global_cap", "per_ip_cap", "per_ip_rate", "table_full", "pending_cap"}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// BanChecker reports whether an address is banned at time now. It is
// called on every accepted connection and must be fast and safe for
// concurrent use.
type BanChecker interface {
	Banned(addr netip.Addr, now time.Time) bool
}

// Config holds the guard's limits. Zero fields mean "no limit" except where
// noted; the shield fills them from config.Guard defaults.
type Config struct {
	// MaxConns caps open connections in total.
	MaxConns int
	// MaxConnsPerIP caps concurrent connections from one address.
	MaxConnsPerIP int
	// NewConnRate is new connections per second per address; Burst is the
	// number allowed back to back. Zero rate disables the check.
	NewConnRate  float64
	NewConnBurst int
	// WriteTimeout bounds each write to the client (slow-read defense).
	WriteTimeout time.Duration
	// MaxTracked bounds the per-address table. Default 262144 entries.
	MaxTracked int
}

// Guard admits or refuses connections. The zero value is not usable; create
// one with New. It is safe for concurrent use; Reconfigure swaps limits
// atomically.
type Guard struct {
	cfg  atomic.Pointer[Config]
	bans atomic.Pointer[banHolder]
	open atomic.Int64
	// pending counts connections admitted by AdmitPending (also in open).
	pending atomic.Int64
	seed    maphash.Seed
	shards  [numShards]shard
	m       *metrics
	log     *slog.Logger
}

type banHolder struct{ c BanChecker }

const numShards = 64

type shard struct {
	mu      sync.Mutex
	entries map[netip.Addr]*entry
	_       [40]byte // keep shards on separate cache lines
}

type entry struct {
	conns int32
	tat   int64 // GCRA theoretical arrival time of the next new connection, unix nanos
}

// New returns a Guard. reg may be nil (no metrics); log may be nil.
func New(cfg Config, reg prometheus.Registerer, log *slog.Logger) (*Guard, error) {
	if cfg.MaxConns < 0 || cfg.MaxConnsPerIP < 0 || cfg.NewConnRate < 0 || cfg.NewConnBurst < 0 {
		return nil, errors.New("guard: limits must not be negative")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Guard{seed: maphash.MakeSeed(), log: log}
	g.Reconfigure(cfg)
	for i := range g.shards {
		g.shards[i].entries = make(map[netip.Addr]*entry)
	}
	var err error
	if g.m, err = newMetrics(reg, g); err != nil {
		return nil, err
	}
	return g, nil
}

// Reconfigure replaces the limits; connections already open are kept.
func (g *Guard) Reconfigure(cfg Config) {
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = 1 << 18
	}
	if cfg.NewConnBurst < 1 {
		cfg.NewConnBurst = 1
	}
	g.cfg.Store(&cfg)
}

// SetBanChecker installs (or, with nil, removes) the ban check.
func (g *Guard) SetBanChecker(b BanChecker) {
	if b == nil {
		g.bans.Store(nil)
		return
	}
	g.bans.Store(&banHolder{c: b})
}

// Open returns the number of admitted connections not yet released.
func (g *Guard) Open() int64 { return g.open.Load() }

// Admit decides whether a new connection from addr may proceed, and if so
// counts it: every Admitted result must be paired with one Release(addr).
func (g *Guard) Admit(now time.Time, addr netip.Addr) Reason {
	addr = addr.Unmap()
	cfg := g.cfg.Load()
	if b := g.bans.Load(); b != nil && b.c.Banned(addr, now) {
		return g.refuse(Banned)
	}
	if cfg.MaxConns > 0 && g.open.Load() >= int64(cfg.MaxConns) {
		return g.refuse(GlobalCap)
	}
	if cfg.MaxConnsPerIP <= 0 && cfg.NewConnRate <= 0 {
		g.open.Add(1)
		g.m.admitted.Inc()
		return Admitted
	}
	sh := &g.shards[maphash.Comparable(g.seed, addr)%numShards]
	nowNs := now.UnixNano()
	sh.mu.Lock()
	e := sh.entries[addr]
	if e == nil {
		if len(sh.entries) >= cfg.MaxTracked/numShards {
			sh.sweepLocked(nowNs)
			if len(sh.entries) >= cfg.MaxTracked/numShards {
				sh.mu.Unlock()
				return g.refuse(TableFull)
			}
		}
		e = &entry{}
		sh.entries[addr] = e
	}
	if cfg.MaxConnsPerIP > 0 && int(e.conns) >= cfg.MaxConnsPerIP {
		sh.mu.Unlock()
		return g.refuse(PerIPCap)
	}
	if cfg.NewConnRate > 0 {
		// GCRA: emission interval T, tolerance tau = T*(burst-1).
		t := int64(float64(time.Second) / cfg.NewConnRate)
		tau := t * int64(cfg.NewConnBurst-1)
		tat := e.tat
		if tat < nowNs {
			tat = nowNs
		}
		if tat-nowNs > tau {
			if e.conns == 0 && e.tat <= nowNs {
				delete(sh.entries, addr)
			}
			sh.mu.Unlock()
			return g.refuse(PerIPRate)
		}
		e.tat = tat + t
	}
	e.conns++
	sh.mu.Unlock()
	g.open.Add(1)
	g.m.admitted.Inc()
	return Admitted
}

// AdmitPending admits a connection whose client is not known yet: on a
// PROXY protocol listener, until the header names the client, the peer is
// the load balancer, which carries everyone. It counts against the global
// cap (no ban, rate or per-address cap on the balancer), and pending
// connections together may hold at most half of it (PendingCap), so
// connections that never send their header cannot pile up past it nor
// starve the clients already admitted. Pair an Admitted result with
// ReleasePending once the header is read (then Admit the client).
func (g *Guard) AdmitPending() Reason {
	cfg := g.cfg.Load()
	if cfg.MaxConns > 0 {
		if g.open.Load() >= int64(cfg.MaxConns) {
			return g.refuse(GlobalCap)
		}
		if g.pending.Load() >= int64(max(cfg.MaxConns/2, 1)) {
			return g.refuse(PendingCap)
		}
	}
	g.open.Add(1)
	g.pending.Add(1)
	return Admitted
}

// ReleasePending undoes one Admitted result of AdmitPending.
func (g *Guard) ReleasePending() {
	g.pending.Add(-1)
	g.open.Add(-1)
}

// Release undoes one Admitted result for addr.
func (g *Guard) Release(addr netip.Addr) { g.ReleaseAt(time.Now(), addr) }

// ReleaseAt is Release with an explicit time (used to judge whether the
// address's rate state has recovered and can be forgotten).
func (g *Guard) ReleaseAt(now time.Time, addr netip.Addr) {
	addr = addr.Unmap()
	g.open.Add(-1)
	cfg := g.cfg.Load()
	if cfg.MaxConnsPerIP <= 0 && cfg.NewConnRate <= 0 {
		return
	}
	sh := &g.shards[maphash.Comparable(g.seed, addr)%numShards]
	sh.mu.Lock()
	if e := sh.entries[addr]; e != nil {
		if e.conns > 0 {
			e.conns--
		}
		if e.conns == 0 && e.tat <= now.UnixNano() {
			delete(sh.entries, addr)
		}
	}
	sh.mu.Unlock()
}

// sweepLocked drops entries that hold no connections and whose rate state
// has fully recovered (they carry no information).
func (sh *shard) sweepLocked(nowNs int64) {
	for a, e := range sh.entries {
		if e.conns == 0 && e.tat <= nowNs {
			delete(sh.entries, a)
		}
	}
}

// Sweep removes idle entries from all shards; the shield calls it
// periodically so the table does not hold stale rate state.
func (g *Guard) Sweep(now time.Time) {
	n := now.UnixNano()
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		sh.sweepLocked(n)
		sh.mu.Unlock()
	}
}

// Tracked returns the number of addresses in the per-address table.
func (g *Guard) Tracked() int {
	n := 0
	for i := range g.shards {
		sh := &g.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

func (g *Guard) refuse(r Reason) Reason {
	g.m.refused[r].Inc()
	return r
}

// Reject closes a refused connection as cheaply as possible: with SO_LINGER
// 0 the kernel sends RST and keeps no TIME_WAIT state.
func Reject(c net.Conn) {
	if tc, ok := c.(interface{ SetLinger(int) error }); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// AddrOf returns the IP of a net.Addr without allocating for TCP and UDP
// addresses.
func AddrOf(a net.Addr) netip.Addr {
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	case *net.UDPAddr:
		ip, _ := netip.AddrFromSlice(v.IP)
		return ip.Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
