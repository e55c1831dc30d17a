package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// quietTLS starts a TLS test server that does not log the handshake
// failures the tests provoke on purpose.
func quietTLS(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	return srv
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// blackhole accepts connections and never answers until the test ends.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(done)
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// resetter accepts connections and resets them at once.
func resetter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 1)
			_, _ = c.Read(buf)
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/down":
			w.WriteHeader(503)
		default:
			fmt.Fprint(w, "hello levee")
		}
	}))
	defer srv.Close()
	tlsSrv := quietTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "secure")
	}))
	defer tlsSrv.Close()

	tests := []struct {
		name string
		spec Spec
		want Failure
	}{
		{"ok", Spec{Kind: KindHTTP, URL: srv.URL + "/"}, FailNone},
		{"body ok", Spec{Kind: KindHTTP, URL: srv.URL + "/", BodyContains: "levee"}, FailNone},
		{"body missing", Spec{Kind: KindHTTP, URL: srv.URL + "/", BodyContains: "nginx"}, FailBody},
		{"body forbidden", Spec{Kind: KindHTTP, URL: srv.URL + "/", BodyNotContains: "hello"}, FailBody},
		{"bad status", Spec{Kind: KindHTTP, URL: srv.URL + "/down"}, FailStatus},
		{"expected 503", Spec{Kind: KindHTTP, URL: srv.URL + "/down", ExpectStatus: []int{503}}, FailNone},
		{"refused", Spec{Kind: KindHTTP, URL: "http://" + closedAddr(t) + "/"}, FailRefused},
		{"timeout", Spec{Kind: KindHTTP, URL: "http://" + blackhole(t) + "/"}, FailTimeout},
		{"reset", Spec{Kind: KindHTTP, URL: "http://" + resetter(t) + "/"}, FailReset},
		{"untrusted cert", Spec{Kind: KindHTTP, URL: tlsSrv.URL + "/"}, FailTLS},
		{"tls skip verify", Spec{Kind: KindHTTP, URL: tlsSrv.URL + "/", InsecureSkipVerify: true}, FailNone},
		{"cert too close", Spec{Kind: KindHTTP, URL: tlsSrv.URL + "/", InsecureSkipVerify: true, CertMinDays: 1 << 16}, FailCert},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := 3 * time.Second
			if tt.want == FailTimeout {
				timeout = 300 * time.Millisecond
			}
			p, err := New(tt.spec, timeout)
			if err != nil {
				t.Fatal(err)
			}
			r := p.Probe(context.Background())
			if r.Failure != tt.want || r.OK != (tt.want == FailNone) {
				t.Fatalf("failure = %q (%s), ok=%v; want %q", r.Failure, r.Detail, r.OK, tt.want)
			}
			if r.Timings.Total <= 0 {
				t.Errorf("total timing not measured: %+v", r.Timings)
			}
			if tt.want == FailNone && (r.Timings.Connect <= 0 || r.Timings.FirstByte <= 0) {
				t.Errorf("breakdown missing: %+v", r.Timings)
			}
			if strings.HasPrefix(tt.spec.URL, "https") && tt.want != FailTLS && r.CertExpiry.IsZero() {
				t.Errorf("https probe did not record certificate expiry")
			}
		})
	}
}

func TestTCPAndTLS(t *testing.T) {
	tlsSrv := quietTLS(http.NotFoundHandler())
	defer tlsSrv.Close()
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")
	tests := []struct {
		name string
		spec Spec
		want Failure
	}{
		{"tcp ok", Spec{Kind: KindTCP, Address: tlsAddr}, FailNone},
		{"tcp refused", Spec{Kind: KindTCP, Address: closedAddr(t)}, FailRefused},
		{"tls ok", Spec{Kind: KindTLS, Address: tlsAddr, InsecureSkipVerify: true}, FailNone},
		{"tls untrusted", Spec{Kind: KindTLS, Address: tlsAddr}, FailTLS},
		{"tls expiring", Spec{Kind: KindTLS, Address: tlsAddr, InsecureSkipVerify: true, CertMinDays: 1 << 16}, FailCert},
		{"tls timeout", Spec{Kind: KindTLS, Address: blackhole(t), InsecureSkipVerify: true}, FailTimeout},
		{"tls refused", Spec{Kind: KindTLS, Address: closedAddr(t)}, FailRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := 3 * time.Second
			if tt.want == FailTimeout {
				timeout = 300 * time.Millisecond
			}
			p, err := New(tt.spec, timeout)
			if err != nil {
				t.Fatal(err)
			}
			r := p.Probe(context.Background())
			if r.Failure != tt.want {
				t.Fatalf("failure = %q (%s); want %q", r.Failure, r.Detail, tt.want)
			}
			if tt.spec.Kind == KindTLS && tt.want == FailNone && (r.CertExpiry.IsZero() || r.Timings.TLS <= 0) {
				t.Errorf("tls probe: expiry %v, tls time %v", r.CertExpiry, r.Timings.TLS)
			}
		})
	}
}

// dnsServer serves example.test. A 192.0.2.7 on loopback UDP and NXDOMAIN for
// everything else.
func dnsServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		if req.Question[0].Name == "example.test." {
			rr, _ := dns.NewRR("example.test. 60 IN A 192.0.2.7")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestDNS(t *testing.T) {
	server := dnsServer(t)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	tests := []struct {
		name string
		spec Spec
		want Failure
	}{
		{"answer ok", Spec{Kind: KindDNS, Server: server, Query: "example.test", ExpectAnswer: "192.0.2.7"}, FailNone},
		{"answer wrong", Spec{Kind: KindDNS, Server: server, Query: "example.test", ExpectAnswer: "192.0.2.8"}, FailDNSAnswer},
		{"nxdomain", Spec{Kind: KindDNS, Server: server, Query: "missing.test"}, FailDNSRcode},
		{"nxdomain expected", Spec{Kind: KindDNS, Server: server, Query: "missing.test", ExpectRcode: "nxdomain"}, FailNone},
		{"server silent", Spec{Kind: KindDNS, Server: silent.LocalAddr().String(), Query: "example.test"}, FailTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := 3 * time.Second
			if tt.want == FailTimeout {
				timeout = 300 * time.Millisecond
			}
			p, err := New(tt.spec, timeout)
			if err != nil {
				t.Fatal(err)
			}
			r := p.Probe(context.Background())
			if r.Failure != tt.want {
				t.Fatalf("failure = %q (%s); want %q", r.Failure, r.Detail, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want Failure
	}{
		{nil, FailNone},
		{&net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}, FailDNS},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, FailRefused},
		{fmt.Errorf("read: %w", syscall.ECONNRESET), FailReset},
		{context.DeadlineExceeded, FailTimeout},
		{tls.RecordHeaderError{Msg: "bad"}, FailTLS},
		{errors.New("something odd"), FailOther},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	bad := []Spec{
		{},
		{Kind: "icmp"},
		{Kind: KindHTTP, URL: "ftp://x/"},
		{Kind: KindHTTP, URL: "http://x/", ExpectStatus: []int{99}},
		{Kind: KindTCP, Address: "nohostport"},
		{Kind: KindDNS, Server: "127.0.0.1:53"},
		{Kind: KindDNS, Server: "127.0.0.1:53", Query: "a", Type: "BOGUS"},
		{Kind: KindDNS, Server: "127.0.0.1:53", Query: "a", ExpectRcode: "MAYBE"},
		{Kind: KindTLS, Address: "a:1", CertMinDays: -1},
	}
	for _, s := range bad {
		if err := s.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want error", s)
		}
	}
	s := Spec{Kind: KindDNS, Server: "127.0.0.1:53", Query: "a"}
	if err := s.Validate(); err != nil || s.Type != "A" || s.ExpectRcode != "NOERROR" {
		t.Errorf("defaults not filled: %+v %v", s, err)
	}
}

func TestLoopRetriesFasterAfterFailure(t *testing.T) {
	p, err := New(Spec{Kind: KindTCP, Address: closedAddr(t)}, time.Second) // refusals return at once
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	var got []Result
	Loop(ctx, p, Schedule{Interval: 200 * time.Millisecond, Jitter: 0.05}, func(r Result) { got = append(got, r) })
	// First probe within 10 ms, then every ~100 ms (retry) instead of 200 ms.
	if len(got) < 5 {
		t.Fatalf("got %d probes in 700 ms with retry 100 ms, want >= 5", len(got))
	}
	for i, r := range got {
		// The probe in flight when the loop's context ends may report the
		// cancellation as a timeout.
		if i == len(got)-1 && r.Failure == FailTimeout {
			continue
		}
		if r.Failure != FailRefused {
			t.Fatalf("probe %d of %d: failure %q, want refused", i+1, len(got), r.Failure)
		}
	}
}

// TestHTTPTimingBreakdown checks every phase is measured: a name lookup
// (localhost, answered from /etc/hosts or the resolver's built-in loopback
// handling, never the network), connect, TLS and first byte.
func TestHTTPTimingBreakdown(t *testing.T) {
	srv := quietTLS(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		fmt.Fprint(w, "ok")
	}))
	defer srv.Close()
	port := srv.URL[strings.LastIndex(srv.URL, ":")+1:]
	p, err := New(Spec{Kind: KindHTTP, URL: "https://localhost:" + port + "/", InsecureSkipVerify: true}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := p.Probe(context.Background())
	if !r.OK {
		if r.Failure == FailDNS || r.Failure == FailRefused {
			t.Skipf("localhost does not resolve to the test server here: %s", r.Detail)
		}
		t.Fatalf("probe failed: %s %s", r.Failure, r.Detail)
	}
	tm := r.Timings
	if tm.DNS <= 0 || tm.Connect <= 0 || tm.TLS <= 0 || tm.FirstByte < 20*time.Millisecond || tm.Total < tm.FirstByte {
		t.Errorf("timings %+v: want every phase measured and first byte >= 20ms", tm)
	}
}
