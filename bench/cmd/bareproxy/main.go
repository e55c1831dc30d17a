// Command bareproxy is the smallest useful reverse proxy on fasthttp: one
// HostClient with streamed response bodies, no header rewriting, no
// protections. bench/run.sh runs it (BENCH_BARE=1) beside Levee, nginx and
// HAProxy as a floor: what Go and fasthttp cost on this machine before any
// of Levee's own work.
//
// Safety: it listens and forwards on loopback addresses only.
//
//	bareproxy -listen 127.0.0.1:8001 -upstream 127.0.0.1:8080
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"

	"github.com/valyala/fasthttp"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bareproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8001", "loopback IP:PORT to listen on")
	up := fs.String("upstream", "", "loopback IP:PORT of the origin (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, a := range []string{*listen, *up} {
		if err := loopback(a); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	return serve(ln, *up)
}

// loopback accepts IP:PORT with a loopback IP only.
func loopback(hostport string) error {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return fmt.Errorf("%q: want a loopback IP:PORT: %v", hostport, err)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("%q: not a loopback address (127.0.0.0/8, ::1): refused", hostport)
	}
	return nil
}

func serve(ln net.Listener, upstream string) error {
	c := &fasthttp.HostClient{Addr: upstream, MaxConns: 1024, StreamResponseBody: true}
	h := func(ctx *fasthttp.RequestCtx) {
		if err := c.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
	}
	return (&fasthttp.Server{Handler: h}).Serve(ln)
}
