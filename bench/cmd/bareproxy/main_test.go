package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func TestRefusesNonLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"-listen", "0.0.0.0:0", "-upstream", "127.0.0.1:1"},
		{"-listen", "127.0.0.1:0", "-upstream", "192.0.2.1:80"},
		{"-listen", "127.0.0.1:0", "-upstream", "example.com:80"},
		{"-listen", "127.0.0.1:0"},
	} {
		if err := run(args, io.Discard); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}

func TestProxies(t *testing.T) {
	origin := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok "+r.URL.Path)
	})}
	oln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go origin.Serve(oln)
	defer origin.Close()
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go serve(pln, oln.Addr().String())
	defer pln.Close()
	resp, err := http.Get("http://" + pln.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(b), "ok /x") {
		t.Fatalf("%d %q", resp.StatusCode, b)
	}
}
