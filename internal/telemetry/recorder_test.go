package telemetry

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestRecorder(t testing.TB, cfg Config) *Recorder {
	t.Helper()
	r, err := New(cfg, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{}, true},
		{"shards not power of two", Config{Shards: 3}, false},
		{"topk too big", Config{TopK: 5000}, false},
		{"seen capacity too small", Config{SeenCapacity: 10}, false},
		{"seen period too short", Config{SeenPeriod: time.Millisecond}, false},
		{"explicit", Config{Shards: 2, TopK: 8, SourceTopK: 16, SeenCapacity: 4096, SeenPeriod: time.Hour}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, Deps{})
			if (err == nil) != tc.ok {
				t.Fatalf("New(%+v) error %v, want ok=%v", tc.cfg, err, tc.ok)
			}
		})
	}
}

func TestRecordTick(t *testing.T) {
	r := newTestRecorder(t, Config{Shards: 4, TopK: 8, SourceTopK: 8})
	r.Tick(t0)
	ev := func(ip string, path, ua string, v Verdict, status uint16, lat time.Duration) *Event {
		return &Event{Client: netip.MustParseAddr(ip), Path: []byte(path), UserAgent: []byte(ua),
			Verdict: v, Status: status, Latency: lat, ASN: 64500, Country: [2]byte{'D', 'E'},
			QueryShape: QueryShape([]byte("a=1")), HeaderOrder: 77, Fingerprint: 99}
	}
	for i := range 10 {
		r.Record(ev("192.0.2.1", "/", "ua-a", VerdictPass, 200, time.Duration(i+1)*time.Millisecond))
	}
	for range 5 {
		r.Record(ev("192.0.2.2", "/login", "ua-b", VerdictBlocked, 0, 0))
	}
	r.Record(ev("2001:db8::1", "/x", "ua-a", VerdictError, 502, 0))
	r.Record(&Event{Client: netip.MustParseAddr("198.51.100.7"), NewConn: true, Status: 503})
	r.RecordConn(netip.MustParseAddr("198.51.100.8"))

	sec := r.Tick(t0.Add(time.Second))
	if sec.Duration() != time.Second {
		t.Fatalf("duration %v", sec.Duration())
	}
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"requests", sec.Requests, 17},
		{"pass", sec.Verdicts[VerdictPass], 11},
		{"blocked", sec.Verdicts[VerdictBlocked], 5},
		{"mitigated", sec.Mitigated(), 5},
		{"passed", sec.Passed(), 12},
		{"2xx", sec.Status[2], 10},
		{"no response", sec.Status[0], 5},
		{"5xx", sec.Status[5], 2},
		{"origin errors", sec.OriginErrors, 2},
		{"answered", sec.Answered(), 12},
		{"conns", sec.Conns, 2},
		{"sources", sec.Sources, 5},
		{"new sources", sec.NewSources, 5},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	top := func(a Attr) Item {
		if len(sec.Top[a]) == 0 {
			t.Fatalf("no top %v", a)
		}
		return sec.Top[a][0]
	}
	if it := top(AttrSource); it.Value != "192.0.2.1" || it.Count != 10 || it.Prefix != netip.MustParsePrefix("192.0.2.1/32") {
		t.Errorf("top source %+v", it)
	}
	if it := top(AttrPrefix); it.Value != "192.0.2.0/24" || it.Count != 15 {
		t.Errorf("top prefix %+v", it)
	}
	if it := top(AttrPath); it.Value != "/" || it.Count != 10 {
		t.Errorf("top path %+v", it)
	}
	if it := top(AttrUserAgent); it.Value != "ua-a" || it.Count != 11 {
		t.Errorf("top ua %+v", it)
	}
	if it := top(AttrASN); it.Value != "AS64500" || it.Num != 64500 || it.Count != 16 {
		t.Errorf("top asn %+v", it)
	}
	if it := top(AttrCountry); it.Value != "DE" {
		t.Errorf("top country %+v", it)
	}
	if it := top(AttrHeaderOrder); it.Num != 77 {
		t.Errorf("top header order %+v", it)
	}
	if it := top(AttrFingerprint); it.Num != 99 || it.Value != "0000000000000063" {
		t.Errorf("top fingerprint %+v", it)
	}
	if it := top(AttrQuery); it.Num != QueryShape([]byte("a=2")) {
		t.Errorf("top query %+v", it)
	}
	var v6 bool
	for _, it := range sec.Top[AttrPrefix] {
		if it.Value == "2001:db8::/64" {
			v6 = true
		}
	}
	if !v6 {
		t.Errorf("no IPv6 /64 in %+v", sec.Top[AttrPrefix])
	}
	if q := sec.LatencyQuantile(0.5); q < 4*time.Millisecond || q > 8200*time.Microsecond {
		t.Errorf("p50 latency %v", q)
	}

	// The next second starts empty; old sources are no longer new.
	r.Record(ev("192.0.2.1", "/", "ua-a", VerdictPass, 200, time.Millisecond))
	r.Record(ev("203.0.113.9", "/", "ua-a", VerdictPass, 200, time.Millisecond))
	sec = r.Tick(t0.Add(2 * time.Second))
	if sec.Requests != 2 || sec.NewSources != 1 || sec.Sources != 2 || sec.Conns != 0 {
		t.Fatalf("second 2: requests %d new sources %d sources %d conns %d", sec.Requests, sec.NewSources, sec.Sources, sec.Conns)
	}
}

func TestLongValuesTruncated(t *testing.T) {
	r := newTestRecorder(t, Config{Shards: 1})
	long := make([]byte, 300)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	r.Record(&Event{UserAgent: long})
	sec := r.Tick(t0)
	it := sec.Top[AttrUserAgent][0]
	if !it.Truncated || it.Value != string(long[:sampleCap]) {
		t.Fatalf("item %+v", it)
	}
}

func TestSeenRotationByCapacity(t *testing.T) {
	r := newTestRecorder(t, Config{Shards: 1, SeenCapacity: 1024, SeenPeriod: time.Hour})
	now := t0
	r.Tick(now)
	// 3 batches of 1024 distinct sources: each fills a generation and
	// forces a rotation; the first batch is forgotten after two rotations.
	batch := func(b int) uint64 {
		for i := range 1024 {
			r.RecordConn(netip.AddrFrom4([4]byte{10, byte(b), byte(i >> 8), byte(i)}))
		}
		now = now.Add(time.Second)
		return r.Tick(now).NewSources
	}
	if n := batch(0); n < 1000 {
		t.Fatalf("batch 0: %d new", n)
	}
	if n := batch(0); n > 20 {
		t.Fatalf("batch 0 again right after: %d new", n)
	}
	batch(1)
	batch(2)
	if n := batch(0); n < 900 {
		t.Fatalf("batch 0 after two rotations: %d new, want most forgotten", n)
	}
}

func TestRecordAllocs(t *testing.T) {
	r := newTestRecorder(t, Config{})
	e := &Event{Client: netip.MustParseAddr("192.0.2.1"), Path: []byte("/a/b"), UserAgent: []byte("Mozilla/5.0"),
		HeaderOrder: 1, Fingerprint: 2, ASN: 3, Country: [2]byte{'F', 'R'}, QueryShape: 4, Status: 200, Latency: time.Millisecond, NewConn: true}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		e.Client = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		r.Record(e)
	})
	if allocs != 0 {
		t.Fatalf("Record allocates %.1f times per call", allocs)
	}
	allocs = testing.AllocsPerRun(1000, func() { r.RecordConn(e.Client) })
	if allocs != 0 {
		t.Fatalf("RecordConn allocates %.1f times per call", allocs)
	}
}

func TestConcurrentRecordAndTick(t *testing.T) {
	r := newTestRecorder(t, Config{Shards: 4})
	const workers, per = 4, 5000
	var wg sync.WaitGroup
	var total uint64
	done := make(chan struct{})
	var tickWG sync.WaitGroup
	tickWG.Add(1)
	go func() {
		defer tickWG.Done()
		now := t0
		for {
			select {
			case <-done:
				return
			default:
			}
			now = now.Add(time.Second)
			total += r.Tick(now).Requests
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := &Event{Path: []byte(fmt.Sprintf("/w%d", w))}
			for i := range per {
				e.Client = netip.AddrFrom4([4]byte{10, byte(w), byte(i >> 8), byte(i)})
				r.Record(e)
			}
		}()
	}
	wg.Wait()
	close(done)
	tickWG.Wait()
	total += r.Tick(t0.Add(time.Hour)).Requests
	if total != workers*per {
		t.Fatalf("counted %d requests, recorded %d", total, workers*per)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	r, err := New(Config{Site: "a"}, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	r.Record(&Event{NewConn: true})
	r.Tick(t0)
	if got := testutil.ToFloat64(prometheusCollector(t, reg, "levee_telemetry_requests_total")); got != 1 {
		t.Fatalf("levee_telemetry_requests_total = %v", got)
	}
	if _, err := New(Config{Site: "a"}, Deps{Registerer: reg}); err == nil {
		t.Fatal("second recorder with the same site registered without error")
	}
	if _, err := New(Config{Site: "b"}, Deps{Registerer: reg}); err != nil {
		t.Fatalf("second site: %v", err)
	}
}

func prometheusCollector(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := mf.GetMetric()[0].GetCounter().GetValue()
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return v })
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}

func TestQueryShape(t *testing.T) {
	tests := []struct {
		a, b string
		same bool
	}{
		{"a=1&b=2", "a=9&b=", true},
		{"a=1&b=2", "b=2&a=1", false},
		{"a", "a=", true},
		{"a=1", "a=1&b=1", false},
		{"q=x=y", "q=z", true},
	}
	for _, tc := range tests {
		ha, hb := QueryShape([]byte(tc.a)), QueryShape([]byte(tc.b))
		if (ha == hb) != tc.same {
			t.Errorf("QueryShape(%q)=%x QueryShape(%q)=%x, want same=%v", tc.a, ha, tc.b, hb, tc.same)
		}
	}
	if QueryShape(nil) != 0 {
		t.Error("empty query shape not 0")
	}
}

func FuzzQueryShape(f *testing.F) {
	f.Add([]byte("a=1&b=2"))
	f.Add([]byte("&&=="))
	f.Fuzz(func(t *testing.T, q []byte) {
		h := QueryShape(q)
		if (h == 0) != (len(q) == 0) {
			t.Fatalf("QueryShape(%q) = %x", q, h)
		}
	})
}
