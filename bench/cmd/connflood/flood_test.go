package main

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{in: "127.0.0.1:8080", want: "127.0.0.1:8080"},
		{in: "127.9.8.7:1", want: "127.9.8.7:1"},
		{in: "[::1]:8080", want: "[::1]:8080"},
		{in: "[::ffff:127.0.0.1]:80", want: "127.0.0.1:80"},
		{in: "http://127.0.0.1:9000/", want: "127.0.0.1:9000"},
		{in: "http://127.0.0.1/x", want: "127.0.0.1:80"},
		{in: "10.0.0.1:80", wantErr: "only loopback"},
		{in: "[2001:db8::1]:80", wantErr: "only loopback"},
		{in: "192.0.2.1:80", wantErr: "only loopback"},
		{in: "http://192.0.2.1:80/", wantErr: "only loopback"},
		{in: "localhost:80", wantErr: "literal loopback"},
		{in: "example.com:80", wantErr: "literal loopback"},
		{in: "https://127.0.0.1:443/", wantErr: "only http://"},
		{in: "127.0.0.1:0", wantErr: "no port"},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseTarget(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseTarget(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
}

func TestParseSrc(t *testing.T) {
	v4 := netip.MustParseAddrPort("127.0.0.1:80")
	v6 := netip.MustParseAddrPort("[::1]:80")
	if a, err := ParseSrc("", v4); err != nil || a.IsValid() {
		t.Errorf("empty src = %v, %v; want invalid, nil", a, err)
	}
	if a, err := ParseSrc("127.0.0.66", v4); err != nil || a != netip.MustParseAddr("127.0.0.66") {
		t.Errorf("127.0.0.66 = %v, %v", a, err)
	}
	for _, bad := range []struct {
		src     string
		target  netip.AddrPort
		wantErr string
	}{
		{"10.1.1.1", v4, "only loopback"},
		{"127.0.0.66", v6, "different address families"},
		{"::1", v4, "different address families"},
		{"nope", v4, "-src"},
	} {
		if _, err := ParseSrc(bad.src, bad.target); err == nil || !strings.Contains(err.Error(), bad.wantErr) {
			t.Errorf("ParseSrc(%q, %v) error = %v; want one containing %q", bad.src, bad.target, err, bad.wantErr)
		}
	}
}

func TestValidateBounds(t *testing.T) {
	ok := Config{Target: netip.MustParseAddrPort("127.0.0.1:80"), Duration: time.Second, Workers: 1, MaxRequests: 1}
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"non-loopback target", func(c *Config) { c.Target = netip.MustParseAddrPort("198.51.100.1:80") }, "refusing target"},
		{"non-loopback source", func(c *Config) { c.Src = netip.MustParseAddr("198.51.100.2") }, "refusing source"},
		{"no duration", func(c *Config) { c.Duration = 0 }, "-duration"},
		{"too long", func(c *Config) { c.Duration = time.Hour }, "-duration"},
		{"no workers", func(c *Config) { c.Workers = 0 }, "-conns"},
		{"too many workers", func(c *Config) { c.Workers = 5000 }, "-conns"},
		{"no requests", func(c *Config) { c.MaxRequests = 0 }, "-max-requests"},
		{"too many requests", func(c *Config) { c.MaxRequests = 1e9 }, "-max-requests"},
	}
	for _, tt := range tests {
		c := ok
		tt.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate() = %v; want error containing %q", tt.name, err, tt.want)
		}
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%s: Run accepted an invalid config", tt.name)
		}
	}
	c := ok
	if err := c.Validate(); err != nil || c.Timeout != 2*time.Second || c.Host != "127.0.0.1:80" {
		t.Errorf("Validate() = %v, timeout %s, host %q; want nil, 2s, 127.0.0.1:80", err, c.Timeout, c.Host)
	}
}

func TestRunRefusesNonLoopbackFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	err := run([]string{"-target", "203.0.113.5:80", "-duration", "1s"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "only loopback") {
		t.Fatalf("run with a public target = %v; want a loopback refusal", err)
	}
	if out.Len() != 0 {
		t.Fatalf("run printed results for a refused target: %q", out.String())
	}
}

func TestParseStatus(t *testing.T) {
	tests := map[string]int{
		"HTTP/1.1 200 OK\r\n":                200,
		"HTTP/1.0 503 Service Unavailable\n": 503,
		"HTTP/1.1 429\r\n":                   429,
		"HTTP/1.1 099 x\r\n":                 0,
		"HTTP/1.1 2x0 x\r\n":                 0,
		"SSH-2.0-OpenSSH\r\n":                0,
		"HTTP/1.1\r\n":                       0,
	}
	for in, want := range tests {
		if got := parseStatus([]byte(in)); got != want {
			t.Errorf("parseStatus(%q) = %d; want %d", in, got, want)
		}
	}
}

// TestRunCounts floods a loopback server that resets every third
// connection, answers 200 to the next and 429 to the one after, and checks
// every attempt is classified, and that -src is the peer address it sees.
func TestRunCounts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu    sync.Mutex
		peers = map[netip.Addr]int{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			mu.Lock()
			peers[ap.Addr().Unmap()]++
			mu.Unlock()
			wg.Add(1)
			go func(i int, c *net.TCPConn) {
				defer wg.Done()
				defer c.Close()
				if i%3 == 0 {
					_ = c.SetLinger(0)
					return
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				status := "200 OK"
				if i%3 == 2 {
					status = "429 Too Many Requests"
				}
				_, _ = c.Write([]byte("HTTP/1.1 " + status + "\r\nContent-Length: 0\r\n\r\n"))
				_, _ = br.ReadByte() // wait for the client's close
			}(i, c.(*net.TCPConn))
		}
	}()
	target := ln.Addr().(*net.TCPAddr).AddrPort()
	src := netip.MustParseAddr("127.0.0.66")
	r, err := Run(context.Background(), Config{Target: target, Src: src, Duration: 30 * time.Second, Workers: 4, MaxRequests: 300})
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	wg.Wait()
	if r.Attempts != 300 {
		t.Errorf("attempts = %d; want 300 (the -max-requests bound)", r.Attempts)
	}
	if r.Reset != 100 || r.Status[200] != 100 || r.Status[429] != 100 {
		t.Errorf("reset %d, 200s %d, 429s %d; want 100 each (closed %d, timeouts %d/%d, other %d %q)",
			r.Reset, r.Status[200], r.Status[429], r.Closed, r.ConnTimeout, r.Timeout, r.Other, r.LastOther)
	}
	if r.Refused() != 100 || r.Answered() != 200 {
		t.Errorf("Refused() = %d, Answered() = %d; want 100, 200", r.Refused(), r.Answered())
	}
	if len(peers) != 1 || peers[src] != 300 {
		t.Errorf("server saw peers %v; want 300 connections from %s", peers, src)
	}
	var out bytes.Buffer
	report(&out, Config{Target: target, Src: src, Workers: 4}, r)
	for _, want := range []string{"RESULT ", " attempts=300 ", " refused=100 ", " answered=200 ", " status_200=100", " status_429=100"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRunStopsOnDuration checks the time bound against a server that never
// answers: the run ends near -duration with the waits counted as cut short.
func TestRunStopsOnDuration(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	start := time.Now()
	r, err := Run(context.Background(), Config{Target: ln.Addr().(*net.TCPAddr).AddrPort(), Duration: 300 * time.Millisecond, Workers: 2, MaxRequests: 1000, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("run took %s; want about 300ms", el)
	}
	if r.Attempts != 2 || r.Interrupted != 2 {
		t.Errorf("attempts %d, interrupted %d; want 2, 2 (result %+v)", r.Attempts, r.Interrupted, *r)
	}
	ln.Close()
	mu.Lock()
	for _, c := range held {
		c.Close()
	}
	mu.Unlock()
}
