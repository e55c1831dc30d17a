package detect

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

var epoch = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// population is a deterministic synthetic site audience.
type population struct {
	rng      *rand.Rand
	users    []netip.Addr
	uas      [][]byte
	paths    [][]byte
	uaZipf   *rand.Zipf
	pathZipf *rand.Zipf
	shapes   []uint64
	fresh    uint32 // counter for never-seen visitors
}

func newPopulation(seed uint64) *population {
	rng := rand.New(rand.NewPCG(seed, seed^0xabcdef))
	p := &population{rng: rng}
	for i := range 3000 {
		// 150 /24s inside 100.64.0.0/10.
		p.users = append(p.users, netip.AddrFrom4([4]byte{100, 64 + byte(i%150/250), byte(i % 150), byte(1 + i/150)}))
	}
	for i := range 30 {
		p.uas = append(p.uas, fmt.Appendf(nil, "Mozilla/5.0 (Browser %d) Gecko/2010 Firefox/%d.0", i, 100+i))
	}
	for i := range 300 {
		p.paths = append(p.paths, fmt.Appendf(nil, "/page/%d", i))
	}
	for i := range 10 {
		p.shapes = append(p.shapes, telemetry.QueryShape(fmt.Appendf(nil, "q%d=1&page=2", i)))
	}
	p.uaZipf = rand.NewZipf(rng, 1.2, 1, uint64(len(p.uas)-1))
	p.pathZipf = rand.NewZipf(rng, 1.1, 1, uint64(len(p.paths)-1))
	return p
}

// normal fills e with a legitimate request. About 1 % of requests come
// from visitors never seen before.
func (p *population) normal(e *telemetry.Event) {
	*e = telemetry.Event{}
	if p.rng.IntN(100) == 0 {
		p.fresh++
		e.Client = netip.AddrFrom4([4]byte{100, 100 + byte(p.fresh>>16), byte(p.fresh >> 8), byte(p.fresh)})
	} else {
		e.Client = p.users[p.rng.IntN(len(p.users))]
	}
	b := e.Client.As4()
	e.ASN = 64500 + uint32(b[2]%20)
	e.Country = [2]byte{'A' + b[2]%8, 'Z'}
	ua := int(p.uaZipf.Uint64())
	e.UserAgent = p.uas[ua]
	e.HeaderOrder = uint64(ua%6) + 1
	e.Fingerprint = uint64(ua%5) + 100
	e.Path = p.paths[p.pathZipf.Uint64()]
	if p.rng.IntN(10) < 3 {
		e.QueryShape = p.shapes[p.rng.IntN(len(p.shapes))]
	}
	e.Status = 200
	if p.rng.IntN(100) == 0 {
		e.Status = 404
	}
	e.Latency = time.Duration(10+p.rng.IntN(30)) * time.Millisecond
	e.NewConn = p.rng.IntN(10) == 0
}

// bot fills e with a request from a large botnet (addresses spread over
// 20.0.0.0/8, new to the site) that otherwise looks normal.
func (p *population) bot(e *telemetry.Event) {
	p.normal(e)
	n := p.rng.Uint32N(4000)
	e.Client = netip.AddrFrom4([4]byte{20, byte(n >> 8), byte(n * 37), byte(n)})
	e.ASN = 64600 + n%50
	e.NewConn = true
}

// sim drives a Recorder and a Detector with a fake clock.
type sim struct {
	t      testing.TB
	rec    *telemetry.Recorder
	det    *Detector
	now    time.Time
	events []Event
	ev     telemetry.Event
}

func newSim(t testing.TB, cfg Config) *sim {
	t.Helper()
	rec, err := telemetry.New(telemetry.Config{Shards: 2}, telemetry.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	det, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{t: t, rec: rec, det: det, now: epoch}
	s.rec.Tick(s.now)
	return s
}

// second records n requests made by gen, ticks and observes. It returns
// the events of this second.
func (s *sim) second(n int, gen func(i int, e *telemetry.Event)) []Event {
	for i := range n {
		gen(i, &s.ev)
		s.rec.Record(&s.ev)
	}
	s.now = s.now.Add(time.Second)
	sec := s.rec.Tick(s.now)
	evs := s.det.Observe(s.now, &sec)
	s.events = append(s.events, evs...)
	return evs
}

// poisson returns a Poisson-distributed count with mean lambda (normal
// approximation, deterministic through rng).
func poisson(rng *rand.Rand, lambda float64) int {
	n := int(math.Round(lambda + math.Sqrt(lambda)*rng.NormFloat64()))
	if n < 0 {
		return 0
	}
	return n
}

// warm runs d of normal traffic at rate requests per second.
func (s *sim) warm(p *population, d time.Duration, rate float64) {
	for range int(d / time.Second) {
		s.second(poisson(p.rng, rate), func(_ int, e *telemetry.Event) { p.normal(e) })
	}
}

func (s *sim) find(typ EventType) *Event {
	for i := range s.events {
		if s.events[i].Type == typ {
			return &s.events[i]
		}
	}
	return nil
}
