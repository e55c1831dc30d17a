package h2guard

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "levee h2guard test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

type abuseEvent struct {
	remote string
	reason Reason
	stats  Stats
}

// testServer is an x/net/http2 server on a loopback TLS listener serving
// every connection through a Guard.
type testServer struct {
	t      *testing.T
	addr   string
	pool   *x509.CertPool
	guard  *Guard
	reg    *prometheus.Registry
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	abuses []abuseEvent
	// attackHandled counts handler runs for /attack requests.
	attackHandled atomic.Int64
}

func startServer(t *testing.T, cfg Config) *testServer {
	t.Helper()
	cert, pool := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{t: t, addr: ln.Addr().String(), pool: pool, ln: ln, conns: map[net.Conn]struct{}{}, reg: prometheus.NewRegistry()}
	s.guard, err = New(cfg, Deps{Registerer: s.reg, OnAbuse: func(c *Conn, r Reason) {
		s.mu.Lock()
		s.abuses = append(s.abuses, abuseEvent{c.RemoteAddr().String(), r, c.Stats()})
		s.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	h2 := ServerConfig(s.guard.Config())
	base := BaseConfig(s.guard.Config())
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/attack":
			s.attackHandled.Add(1)
		case "/reject":
			// Answer before reading the body, as a challenge or a 413 does.
			http.Error(w, "rejected", http.StatusForbidden)
			return
		}
		if r.TLS == nil || r.TLS.NegotiatedProtocol != "h2" {
			http.Error(w, "no TLS state", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				tc := tls.Server(c, tlsCfg)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := tc.HandshakeContext(ctx)
				cancel()
				if err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
					return
				}
				gc := s.guard.Wrap(tc)
				defer gc.Close()
				h2.ServeConn(gc, &http2.ServeConnOpts{Handler: handler, BaseConfig: base})
			}()
		}
	}()
	return s
}

func (s *testServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *testServer) abuseEvents() []abuseEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]abuseEvent(nil), s.abuses...)
}

func (s *testServer) abuseReasons() []Reason {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Reason
	for _, a := range s.abuses {
		out = append(out, a.reason)
	}
	return out
}

// checkGoroutines fails the test if goroutines started during it are still
// running shortly after it ends.
func checkGoroutines(t *testing.T) func() {
	before := runtime.NumGoroutine()
	return func() {
		deadline := time.Now().Add(3 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<16)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutine leak: %d before, %d after\n%s", before, n, buf)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// rawClient is a hand-driven HTTP/2 client for attack patterns.
type rawClient struct {
	conn   *tls.Conn
	fr     *http2.Framer
	wmu    sync.Mutex
	enc    *hpack.Encoder
	encBuf bytes.Buffer

	done     chan struct{} // closed when the read loop ends
	settled  chan struct{} // closed once the server's SETTINGS was acknowledged
	goAway   *http2.GoAwayFrame
	goAwayAt time.Time
	readErr  error
	rsts     atomic.Int64 // RST_STREAM frames received
	noErrRST atomic.Int64 // of which NO_ERROR
}

func dialRaw(t *testing.T, s *testServer) *rawClient {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", s.addr,
		&tls.Config{RootCAs: s.pool, NextProtos: []string{"h2"}, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN = %q", p)
	}
	c := &rawClient{conn: conn, fr: http2.NewFramer(conn, conn), done: make(chan struct{}), settled: make(chan struct{})}
	c.fr.AllowIllegalWrites = true
	c.enc = hpack.NewEncoder(&c.encBuf)
	conn.SetDeadline(time.Now().Add(10 * time.Second)) // hard bound on the whole attack
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	go c.readLoop()
	// Wait for the SETTINGS exchange, so that our ACK cannot land between a
	// HEADERS frame and its CONTINUATION frames later.
	select {
	case <-c.settled:
	case <-time.After(5 * time.Second):
		t.Fatal("no SETTINGS from the server")
	}
	return c
}

func (c *rawClient) readLoop() {
	defer close(c.done)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.readErr = err
			return
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			if c.goAway == nil {
				c.goAway = &http2.GoAwayFrame{FrameHeader: f.FrameHeader, LastStreamID: f.LastStreamID, ErrCode: f.ErrCode}
				c.goAwayAt = time.Now()
			}
		case *http2.RSTStreamFrame:
			c.rsts.Add(1)
			if f.ErrCode == http2.ErrCodeNo {
				c.noErrRST.Add(1)
			}
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.wmu.Lock()
				c.fr.WriteSettingsAck()
				c.wmu.Unlock()
				select {
				case <-c.settled:
				default:
					close(c.settled)
				}
			}
		}
	}
}

// headerBlock encodes a GET request for path.
func (c *rawClient) headerBlock(path string, extra ...string) []byte {
	c.encBuf.Reset()
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", path}} {
		c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	for i := 0; i+1 < len(extra); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: extra[i], Value: extra[i+1], Sensitive: true})
	}
	return bytes.Clone(c.encBuf.Bytes())
}

// write runs fn under the write lock and reports whether it succeeded.
func (c *rawClient) write(fn func() error) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return fn() == nil
}

// waitCutOff waits until the server closed the connection and returns
// whether a GOAWAY(ENHANCE_YOUR_CALM) arrived before the close.
func (c *rawClient) waitCutOff(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(8 * time.Second):
		t.Fatal("connection not closed by the server within 8s")
	}
	c.conn.Close()
	if c.goAway == nil {
		t.Fatalf("connection closed without GOAWAY (read error %v)", c.readErr)
	}
	if c.goAway.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY code %v, want ENHANCE_YOUR_CALM", c.goAway.ErrCode)
	}
	if !errors.Is(c.readErr, io.EOF) && !isNetClosed(c.readErr) {
		t.Logf("read loop ended with %v (after GOAWAY)", c.readErr)
	}
}

func isNetClosed(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "reset by peer")
}

func normalClient(s *testServer) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http2.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1"},
		},
	}
}

func TestRapidResetIsCutOff(t *testing.T) {
	defer checkGoroutines(t)()
	s := startServer(t, Config{})
	defer s.close()

	// (b) A well-behaved client on its own connection, started once the
	// attack is under way.
	var normalErr error
	var normalTook time.Duration
	attackStarted := make(chan struct{})
	startNormal := sync.OnceFunc(func() { close(attackStarted) })
	defer startNormal() // also on early failure, so the goroutine ends
	var okCount int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-attackStarted
		normalStart := time.Now()
		defer func() { normalTook = time.Since(normalStart) }()
		hc := normalClient(s)
		defer hc.Transport.(*http2.Transport).CloseIdleConnections()
		for i := range 200 {
			resp, err := hc.Get("https://" + s.addr + "/normal")
			if err != nil {
				normalErr = err
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(body) != "ok" {
				normalErr = errors.New("request " + string(rune('0'+i%10)) + ": " + resp.Status + " " + string(body))
				return
			}
			okCount++
		}
	}()

	// (a) The attacker: HEADERS then RST_STREAM(CANCEL), as fast as it can,
	// at most 10,000 streams or 5 s.
	c := dialRaw(t, s)
	start := time.Now()
	sent := 0
	for id := uint32(1); sent < 10000 && time.Since(start) < 5*time.Second; id += 2 {
		block := c.headerBlock("/attack")
		if !c.write(func() error {
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
				return err
			}
			return c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}) {
			break
		}
		sent++
		if sent == 20 {
			startNormal()
		}
		select {
		case <-c.done:
		default:
			continue
		}
		break
	}
	startNormal()
	c.waitCutOff(t)
	// The client's writes land in socket buffers, so "sent" says little;
	// what counts is how many streams the server processed.
	t.Logf("attacker wrote %d HEADERS+RST pairs; GOAWAY after %v, last stream %d; %d handlers ran",
		sent, c.goAwayAt.Sub(start).Round(time.Millisecond), c.goAway.LastStreamID, s.attackHandled.Load())
	if c.goAway.LastStreamID > 2*150+1 {
		t.Fatalf("server processed streams up to %d before GOAWAY, want about 2*101+1", c.goAway.LastStreamID)
	}
	if n := s.attackHandled.Load(); n > 150 {
		t.Fatalf("%d attack handlers ran, want at most about 101", n)
	}
	if got := s.abuseReasons(); len(got) != 1 || got[0] != ReasonRapidReset {
		t.Fatalf("OnAbuse reasons = %v, want [rapid_reset] (our accounting, not the x/net defense)", got)
	}
	if st := s.abuseEvents()[0].stats; st.Streams != 101 || st.ClientResets != 101 || st.ServerResets != 0 {
		t.Fatalf("Stats at cut-off = %+v, want 101 streams and 101 client resets", st)
	}
	if s.abuseEvents()[0].remote != c.conn.LocalAddr().String() {
		t.Fatalf("OnAbuse remote %s, want the attacker %s", s.abuseEvents()[0].remote, c.conn.LocalAddr())
	}
	if v := testutil.ToFloat64(s.guard.m.abuse.WithLabelValues(string(ReasonRapidReset))); v != 1 {
		t.Fatalf("abuse metric = %v", v)
	}

	wg.Wait()
	if normalErr != nil || okCount != 200 {
		t.Fatalf("normal client: %d/200 ok, err %v", okCount, normalErr)
	}
	t.Logf("normal client: 200/200 OK in %v, started during the attack", normalTook.Round(time.Millisecond))
}

func TestContinuationFloodIsCutOff(t *testing.T) {
	defer checkGoroutines(t)()
	s := startServer(t, Config{})
	defer s.close()
	c := dialRaw(t, s)

	// A valid header block split into many small fragments: HEADERS
	// without END_HEADERS, then CONTINUATION frames, never END_HEADERS.
	var extra []string
	for i := range 200 {
		extra = append(extra, "x-filler-"+string(rune('a'+i%26)), strings.Repeat("v", 20))
	}
	block := c.headerBlock("/cont", extra...)
	const frag = 24
	if !c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:frag], EndStream: true})
	}) {
		t.Fatal("write HEADERS failed")
	}
	sent := 0
	for off := frag; off+frag <= len(block) && sent < 1000; off += frag {
		if !c.write(func() error { return c.fr.WriteContinuation(1, false, block[off:off+frag]) }) {
			break
		}
		sent++
	}
	c.waitCutOff(t)
	t.Logf("sent %d CONTINUATION frames of %d bytes", sent, frag)
	if got := s.abuseReasons(); len(got) != 1 || got[0] != ReasonContinuationFlood {
		t.Fatalf("OnAbuse reasons = %v, want [continuation_flood]", got)
	}
	if st := s.abuseEvents()[0].stats; st.Continuations != 33 {
		t.Fatalf("Stats at cut-off = %+v, want 33 CONTINUATION frames", st)
	}
}

func TestMadeYouResetIsCutOff(t *testing.T) {
	defer checkGoroutines(t)()
	s := startServer(t, Config{})
	defer s.close()
	c := dialRaw(t, s)

	// Each stream is opened legitimately (HEADERS without END_STREAM, so it
	// stays open for a body) and then provoked with WINDOW_UPDATE(0), which
	// the server must answer with RST_STREAM(PROTOCOL_ERROR). The client
	// never sends RST_STREAM itself.
	sent := 0
	for id := uint32(1); sent < 2000; id += 2 {
		block := c.headerBlock("/myr")
		if !c.write(func() error {
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true}); err != nil {
				return err
			}
			return c.fr.WriteWindowUpdate(id, 0)
		}) {
			break
		}
		sent++
		select {
		case <-c.done:
		default:
			// Pace a little so the server answers each provocation.
			if sent%20 == 0 {
				time.Sleep(time.Millisecond)
			}
			continue
		}
		break
	}
	c.waitCutOff(t)
	t.Logf("sent %d provocations, received %d RST_STREAM before GOAWAY", sent, c.rsts.Load())
	if got := s.abuseReasons(); len(got) != 1 || got[0] != ReasonServerResets {
		t.Fatalf("OnAbuse reasons = %v, want [server_resets]", got)
	}
	if st := s.abuseEvents()[0].stats; st.ServerResets != 101 || st.ClientResets != 0 {
		t.Fatalf("Stats at cut-off = %+v, want 101 server resets", st)
	}
	if n := c.rsts.Load(); n < 100 {
		t.Fatalf("only %d server resets seen before cut-off", n)
	}
}

// TestNormalTrafficNotTripped runs ordinary requests, including many
// cancelled ones under the reset budget, and checks nothing trips.
func TestNormalTrafficNotTripped(t *testing.T) {
	defer checkGoroutines(t)()
	s := startServer(t, Config{})
	defer s.close()
	hc := normalClient(s)
	defer hc.Transport.(*http2.Transport).CloseIdleConnections()
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+s.addr+"/x", nil)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		cancel() // may make the transport send RST_STREAM(CANCEL)
		resp.Body.Close()
	}
	for range 50 {
		resp, err := hc.Get("https://" + s.addr + "/y")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if got := s.abuseReasons(); len(got) != 0 {
		t.Fatalf("normal traffic tripped: %v", got)
	}
	if v := testutil.ToFloat64(s.guard.m.conns); v < 1 {
		t.Fatalf("connections metric = %v", v)
	}
}

// TestEarlyResponsesNotCountedAsServerResets: a handler that answers
// before the request body is complete makes the server send
// RST_STREAM(NO_ERROR); many of them must not look like MadeYouReset.
func TestEarlyResponsesNotCountedAsServerResets(t *testing.T) {
	defer checkGoroutines(t)()
	s := startServer(t, Config{})
	defer s.close()
	c := dialRaw(t, s)
	defer c.conn.Close()
	const total, batch = 300, 50
	id := uint32(1)
	for sent := 0; sent < total; sent += batch {
		for range batch {
			block := c.headerBlock("/reject")
			if !c.write(func() error {
				// No END_STREAM: the client still "has a body to send".
				return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
			}) {
				t.Fatal("write failed")
			}
			id += 2
		}
		deadline := time.Now().Add(5 * time.Second)
		for c.noErrRST.Load() < int64(sent+batch) {
			if time.Now().After(deadline) {
				t.Fatalf("got %d RST_STREAM(NO_ERROR), want %d", c.noErrRST.Load(), sent+batch)
			}
			select {
			case <-c.done:
				t.Fatalf("connection closed (GOAWAY %v, err %v)", c.goAway, c.readErr)
			case <-time.After(2 * time.Millisecond):
			}
		}
	}
	if got := s.abuseReasons(); len(got) != 0 {
		t.Fatalf("early responses tripped: %v", got)
	}
	if n := c.rsts.Load(); n != total {
		t.Fatalf("%d RST_STREAM frames, want %d NO_ERROR ones", n, total)
	}
}

// TestControlFloodsAreCutOff sends PING, SETTINGS and empty DATA floods on
// the wire; each must end in GOAWAY(ENHANCE_YOUR_CALM) from our budget.
func TestControlFloodsAreCutOff(t *testing.T) {
	defer checkGoroutines(t)()
	s := startServer(t, Config{})
	defer s.close()
	cases := []struct {
		want  Reason
		flood func(c *rawClient, i int) error
		setup func(c *rawClient) error
	}{
		{ReasonPingFlood, func(c *rawClient, i int) error { return c.fr.WritePing(false, [8]byte{byte(i)}) }, nil},
		{ReasonSettingsFlood, func(c *rawClient, i int) error { return c.fr.WriteSettings() }, nil},
		{ReasonEmptyDataFlood, func(c *rawClient, i int) error { return c.fr.WriteData(1, false, nil) },
			func(c *rawClient) error {
				// A POST whose body never comes, only empty DATA frames.
				c.encBuf.Reset()
				for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "https"}, {":authority", "127.0.0.1"}, {":path", "/upload"}} {
					c.enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
				}
				return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.encBuf.Bytes(), EndHeaders: true})
			}},
	}
	for _, tc := range cases {
		t.Run(string(tc.want), func(t *testing.T) {
			c := dialRaw(t, s)
			if tc.setup != nil && !c.write(func() error { return tc.setup(c) }) {
				t.Fatal("setup write failed")
			}
			for i := 0; i < 1000; i++ {
				if !c.write(func() error { return tc.flood(c, i) }) {
					break
				}
			}
			c.waitCutOff(t)
		})
	}
	got := s.abuseReasons()
	if len(got) != 3 || got[0] != ReasonPingFlood || got[1] != ReasonSettingsFlood || got[2] != ReasonEmptyDataFlood {
		t.Fatalf("OnAbuse reasons = %v", got)
	}
}
