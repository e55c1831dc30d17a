package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRefusesNonLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", "0.0.0.0:0", "-upstream", "127.0.0.1:1"},
		{"-listen", "127.0.0.1:0", "-upstream", "192.0.2.1:80"},
		{"-listen", "127.0.0.1:0", "-upstream", "example.com:80"},
		{"-listen", "[::1]:0", "-upstream", "127.0.0.1:1"},
		{"-listen", "127.0.0.1:0"},
	} {
		if err := run(args, io.Discard, nil); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

// startProxy runs evproxy with extra flags in front of an origin that
// echoes the request path and the headers the proxy adds.
func startProxy(t *testing.T, flags ...string) string {
	t.Helper()
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s xff=%s via=%s", r.URL.Path, r.Header.Get("X-Forwarded-For"), r.Header.Get("Via"))
	})}
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go origin.Serve(oln)
	t.Cleanup(func() { origin.Close() })
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	// The loop has no stop: it ends with the test binary.
	go func() {
		errc <- run(append([]string{"-listen", "127.0.0.1:0", "-upstream", oln.Addr().String()}, flags...), io.Discard, ready)
	}()
	select {
	case addr := <-ready:
		return addr
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("evproxy did not start")
	}
	return ""
}

func TestProxies(t *testing.T) {
	for _, flags := range [][]string{nil, {"-defer"}, {"-rawpoll"}, {"-defer", "-rawpoll"}} {
		t.Run(strings.Join(append([]string{"opts"}, flags...), " "), func(t *testing.T) {
			addr := startProxy(t, flags...)
			resp, err := http.Get("http://" + addr + "/x")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "ok /x xff=127.0.0.1 via=1.1 levee"; resp.StatusCode != 200 || string(b) != want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, b, want)
			}
		})
	}
}

// TestPipelinedRequestsAnsweredInOrder sends three requests in one write:
// each is forwarded only after the previous response, in order.
func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	addr := startProxy(t, "-noheaders")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for _, p := range []string{"/a", "/b", "/c"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := "ok " + p + " xff= via="; string(b) != want {
			t.Fatalf("got %q, want %q", b, want)
		}
	}
}
