package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseLoopbackURL(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "http://127.0.0.1:8080/", want: "http://127.0.0.1:8080/"},
		{in: "http://127.9.8.7:1", want: "http://127.9.8.7:1/"},
		{in: "http://[::1]:8080/x", want: "http://[::1]:8080/x"},
		{in: "http://[::ffff:127.0.0.1]:80/", want: "http://127.0.0.1:80/"},
		{in: "http://10.0.0.1:80/", wantErr: "refusing"},
		{in: "http://192.0.2.1:80/", wantErr: "refusing"},
		{in: "http://[2001:db8::1]:80/", wantErr: "refusing"},
		{in: "http://0.0.0.0:80/", wantErr: "refusing"},
		{in: "http://localhost:80/", wantErr: "literal loopback IP"},
		{in: "http://example.com:80/", wantErr: "literal loopback IP"},
		{in: "https://127.0.0.1:443/", wantErr: "only http://"},
		{in: "http://127.0.0.1/", wantErr: "port"},
	}
	for _, tt := range tests {
		u, err := parseLoopbackURL("-target", tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseLoopbackURL(%q) = %v, %v; want error containing %q", tt.in, u, err, tt.wantErr)
			}
			continue
		}
		if err != nil || u.String() != tt.want {
			t.Errorf("parseLoopbackURL(%q) = %v, %v; want %s", tt.in, u, err, tt.want)
		}
	}
}

func TestParseSources(t *testing.T) {
	tests := []struct {
		in      string
		n       int
		first   string
		wantErr string
	}{
		{in: "127.0.1.1-127.0.8.254", n: 8 * 254, first: "127.0.1.1"},
		{in: "127.0.12.0/24", n: 254, first: "127.0.12.1"},
		{in: "127.0.0.255-127.0.1.1", n: 1, first: "127.0.1.1"}, // .255 and .0 left out
		{in: "127.0.0.2, 127.0.0.2,127.0.0.3", n: 2, first: "127.0.0.2"},
		{in: "::1", n: 1, first: "::1"},
		{in: "10.0.0.1", wantErr: "refusing"},
		{in: "127.0.0.1-128.0.0.1", wantErr: "refusing"},
		{in: "126.255.255.1-127.0.0.1", wantErr: "refusing"},
		{in: "192.168.0.0/24", wantErr: "refusing"},
		{in: "2001:db8::/64", wantErr: "::1"},
		{in: "127.0.0.0/8", wantErr: "at most a /16"},
		{in: "127.0.0.9-127.0.0.1", wantErr: "range"},
		{in: "", wantErr: "no usable"},
	}
	for _, tt := range tests {
		got, err := parseSources("-sources", tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseSources(%q) = %d addresses, %v; want error containing %q", tt.in, len(got), err, tt.wantErr)
			}
			continue
		}
		if err != nil || len(got) != tt.n || got[0].String() != tt.first {
			t.Errorf("parseSources(%q) = %d addresses (first %v), %v; want %d from %s", tt.in, len(got), got, err, tt.n, tt.first)
		}
	}
}

// TestRefusesNonLoopback: the subcommands refuse any target, source, admin
// or listen address outside loopback before sending or binding anything.
func TestRefusesNonLoopback(t *testing.T) {
	cases := [][]string{
		{"load", "-target", "http://192.0.2.1:80/", "-rate", "1", "-duration", "1s"},
		{"load", "-target", "http://localhost:80/", "-rate", "1", "-duration", "1s"},
		{"load", "-target", "http://127.0.0.1:9/", "-sources", "10.0.0.1", "-rate", "1", "-duration", "1s"},
		{"load", "-target", "http://127.0.0.1:9/", "-verified", "192.0.2.0/24", "-rate", "1", "-duration", "1s"},
		{"load", "-target", "http://127.0.0.1:9/", "-origin-admin", "http://192.0.2.1:80/", "-rate", "1", "-duration", "1s"},
		{"origin", "-listen", "0.0.0.0:0"},
		{"origin", "-listen", ":0"},
		{"origin", "-listen", "127.0.0.1:0", "-admin", "192.0.2.1:80"},
	}
	for _, args := range cases {
		var out, errb bytes.Buffer
		err := run(context.Background(), args, &out, &errb)
		if err == nil || !(strings.Contains(err.Error(), "refusing") || strings.Contains(err.Error(), "literal loopback")) {
			t.Errorf("overload %s: err = %v; want a refusal", strings.Join(args, " "), err)
		}
		if strings.Contains(out.String(), "RESULT") {
			t.Errorf("overload %s ran: %s", strings.Join(args, " "), out.String())
		}
	}
	// The library entry point checks too, whatever built the config.
	c := LoadConfig{Target: &url.URL{Scheme: "http", Host: "127.0.0.1:9", Path: "/"}, Rate: 1, Duration: time.Second,
		Sources: []netip.Addr{netip.MustParseAddr("198.51.100.1")}}
	if _, err := RunLoad(context.Background(), c); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("RunLoad with a non-loopback source: %v; want a refusal", err)
	}
	c.Sources = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	c.Target = &url.URL{Scheme: "http", Host: "198.51.100.1:80", Path: "/"}
	if _, err := RunLoad(context.Background(), c); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("RunLoad with a non-loopback target: %v; want a refusal", err)
	}
}

func TestLoadBounds(t *testing.T) {
	ok := func() LoadConfig {
		return LoadConfig{Target: &url.URL{Scheme: "http", Host: "127.0.0.1:9", Path: "/"}, Rate: 10, Duration: time.Second,
			Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}
	}
	for _, tt := range []struct {
		name string
		mod  func(*LoadConfig)
		want string
	}{
		{"rate", func(c *LoadConfig) { c.Rate = maxRate + 1 }, "-rate"},
		{"zero rate", func(c *LoadConfig) { c.Rate = 0 }, "-rate"},
		{"duration", func(c *LoadConfig) { c.Duration = maxLoadRun + time.Second }, "-duration"},
		{"timeout", func(c *LoadConfig) { c.Timeout = 2 * time.Minute }, "-timeout"},
		{"requests", func(c *LoadConfig) { c.Rate, c.Duration = 5000, 5*time.Minute }, "requests"},
		{"inflight", func(c *LoadConfig) { c.MaxInflight = maxInflightCap + 1 }, "-max-inflight"},
		{"verified", func(c *LoadConfig) { c.VerifiedShare = 0.1 }, "-verified"},
	} {
		c := ok()
		tt.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v; want an error about %s", tt.name, err, tt.want)
		}
	}
	c := ok()
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
}

// serve starts h on a loopback port and returns its address.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	return serveWith(t, &http.Server{Handler: h})
}

func serveWith(t *testing.T, srv *http.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestOriginCapacity: 20 requests at once through 2 workers x 20 ms take
// 10 rounds of service (>= 200 ms) and all succeed.
func TestOriginCapacity(t *testing.T) {
	o, err := NewOrigin(OriginConfig{Workers: 2, Service: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if o.Capacity() != 100 {
		t.Fatalf("Capacity() = %g, want 100", o.Capacity())
	}
	addr := serve(t, o)
	var wg sync.WaitGroup
	var okN atomic.Int64
	start := time.Now()
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) == "ok\n" {
				okN.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if okN.Load() != 20 {
		t.Fatalf("%d/20 answered 200 ok", okN.Load())
	}
	if el < 195*time.Millisecond {
		t.Errorf("20 requests through 2 workers x 20 ms took %s, want >= 200 ms: more than 2 served at once", el)
	}
	st := o.Stats()
	if st.Served != 20 || st.MaxQueued < 2 || st.Queued != 0 || st.InService != 0 {
		t.Errorf("stats = %+v; want 20 served, a queue, nothing left", st)
	}
	if mean := time.Duration(st.BusyNanos / st.Served); mean < 20*time.Millisecond {
		t.Errorf("mean service %s < 20 ms", mean)
	}
}

// TestOriginFlushAndWasted: Flush drops queued requests (503, no work);
// work for a client that has gone is counted as wasted.
func TestOriginFlushAndWasted(t *testing.T) {
	o, _ := NewOrigin(OriginConfig{Workers: 1, Service: time.Second})
	addr := serve(t, o)
	o.sem <- struct{}{} // the only worker is busy until the test releases it
	status := make(chan int, 3)
	for range 3 {
		go func() {
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				status <- 0
				return
			}
			resp.Body.Close()
			status <- resp.StatusCode
		}()
	}
	waitFor(t, func() bool { return o.Stats().Queued == 3 })
	if n := o.Flush(); n != 3 {
		t.Fatalf("Flush() = %d, want 3", n)
	}
	for range 3 {
		if got := <-status; got != 503 {
			t.Fatalf("flushed request answered %d, want 503", got)
		}
	}
	<-o.sem
	if st := o.Stats(); st.Served != 0 || st.Flushed != 3 || st.MaxQueued != 3 {
		t.Errorf("stats %+v; want nothing served, 3 flushed, max queue 3", st)
	}

	// A client that gives up while its request is served (1 s).
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("request answered within 50 ms by a 1 s origin")
	}
	waitFor(t, func() bool { return o.Stats().Served == 1 })
	if st := o.Stats(); st.Wasted != 1 {
		t.Errorf("stats %+v; want the one served request counted as wasted", st)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLoadAccounting: a server whose answers are decided by arrival order
// (503, 429, hang past the timeout, 502, 200 in turn) gets exactly the
// counts back; every request came from a configured source; the verified
// share is exact; keep-alive reuses connections.
func TestLoadAccounting(t *testing.T) {
	var n, newConns atomic.Int64
	var allOK atomic.Bool
	var mu sync.Mutex
	var verSeen int
	var strangers []string
	verified := netip.MustParsePrefix("127.0.12.0/24")
	normal := netip.MustParsePrefix("127.0.1.0/24")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap := netip.MustParseAddrPort(r.RemoteAddr)
		mu.Lock()
		switch {
		case verified.Contains(ap.Addr()):
			verSeen++
		case !normal.Contains(ap.Addr()):
			strangers = append(strangers, r.RemoteAddr)
		}
		mu.Unlock()
		if allOK.Load() {
			io.WriteString(w, "ok")
			return
		}
		switch n.Add(1) % 5 {
		case 0:
			w.WriteHeader(503)
		case 1:
			w.WriteHeader(429)
		case 2:
			select { // until the client gives up
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		case 3:
			w.WriteHeader(502)
		case 4:
			io.WriteString(w, "ok")
		}
	})
	addr := serveWith(t, &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}})
	target, _ := parseLoopbackURL("-target", "http://"+addr+"/")
	src, _ := parseSources("-sources", "127.0.1.1-127.0.1.20")
	ver, _ := parseSources("-verified", "127.0.12.1-127.0.12.3")
	c := LoadConfig{Target: target, Rate: 200, Duration: 250 * time.Millisecond, Timeout: 1500 * time.Millisecond, // long enough for a quick answer on a loaded machine
		Sources: src, Verified: ver, VerifiedShare: 0.1, ConnsPerSource: 6, Label: "test", Load: 1}
	r, err := RunLoad(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 50 || r.OK != 10 || r.Shed != 20 || r.OtherStatus != 10 || r.Timeouts != 10 || r.ConnErrors != 0 || r.Skipped != 0 || r.Unfinished != 0 {
		t.Errorf("result %+v; want 50 sent: 10 ok, 20 shed, 10 other status, 10 timeouts", r)
	}
	if r.StatusCount["200"] != 10 || r.StatusCount["503"] != 10 || r.StatusCount["429"] != 10 || r.StatusCount["502"] != 10 {
		t.Errorf("statuses %v", r.StatusCount)
	}
	mu.Lock()
	seen, bad := verSeen, strangers
	mu.Unlock()
	if r.VerSent != 5 || r.OthSent != 45 || seen != 5 {
		t.Errorf("verified sent %d (server saw %d), others %d; want 5 (10%%) and 45", r.VerSent, seen, r.OthSent)
	}
	if len(bad) > 0 {
		t.Errorf("requests from outside the configured sources: %v", bad)
	}
	if r.ConnsOpened != newConns.Load() || r.ConnsOpened >= 50 {
		t.Errorf("client opened %d connections, server saw %d, for 50 requests; want equal and fewer (keep-alive)", r.ConnsOpened, newConns.Load())
	}
	if r.OK > 0 && (r.P50ms <= 0 || r.P99ms < r.P50ms) {
		t.Errorf("latencies p50 %g p99 %g", r.P50ms, r.P99ms)
	}

	// Without keep-alive every request opens its own connection.
	allOK.Store(true)
	newConns.Store(0)
	c.ConnsPerSource, c.Duration, c.VerifiedShare, c.Verified = 0, 50*time.Millisecond, 0, nil
	r, err = RunLoad(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 10 || r.OK != 10 || r.ConnsOpened != 10 || newConns.Load() != 10 {
		t.Errorf("no keep-alive: sent %d, ok %d, opened %d, server saw %d; want 10 each", r.Sent, r.OK, r.ConnsOpened, newConns.Load())
	}

	// The printed result round-trips through the table.
	var out bytes.Buffer
	printLoad(&out, r)
	rs, err := readResults(&out)
	if err != nil || len(rs) != 1 || rs[0].Sent != 10 {
		t.Fatalf("readResults = %+v, %v", rs, err)
	}
}

func TestTable(t *testing.T) {
	in := `noise
RESULT {"label":"levee","load":0.25,"offered_rps":50,"ok":500,"goodput_rps":50,"admitted_p99_ms":20,"verified_sent":50,"verified_ok":50,"verified_ok_share":1,"others_sent":450,"others_ok":450,"origin":{"capacity_rps":200,"wasted":0}}
RESULT {"label":"levee","load":4,"offered_rps":800,"ok":1900,"goodput_rps":190,"goodput_second_half_rps":194,"admitted_p99_ms":60,"shed":6000,"timeouts":3,"conn_errors":1,"verified_sent":800,"verified_ok":792,"verified_ok_share":0.99,"others_sent":7200,"others_ok":1108,"origin":{"capacity_rps":200,"wasted":2}}
{"label":"no proxy","load":0.25,"ok":500,"goodput_rps":50,"admitted_p99_ms":40,"verified_sent":50,"verified_ok":50,"verified_ok_share":1}
{"label":"no proxy","load":4,"offered_rps":800,"goodput_rps":0,"timeouts":8000,"verified_sent":800,"others_sent":7200}
`
	rs, err := readResults(strings.NewReader(in))
	if err != nil || len(rs) != 4 {
		t.Fatalf("readResults: %d, %v", len(rs), err)
	}
	var out bytes.Buffer
	writeTable(&out, rs, 0)
	s := out.String()
	for _, want := range []string{
		"| levee | 0.25x (unloaded) | 50 | 50 (25%) |",
		"| 20.0 (1.0x) |",
		"| no proxy | 0.25x (unloaded) | 0 | 50 (25%) | 0 (0%) | 0.0 | 40.0 (2.0x) |", // one reference for all
		"| levee | 4x | 800 | 190 (95%) | 194 (97%) | 0.0 | 60.0 (3.0x) | 6000 | 3 | 1 | 99.0% | 2 |",
		"| no proxy | 4x | 800 | 0 (0%) | 0 (0%) | - | - | 0 | 8000 | 0 | 0.0% | - |",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
}
