// Command connflood measures how a server turns away a flood of short
// connections from one source: each of -conns workers connects (optionally
// from the loopback address -src), sends one GET / HTTP/1.1, reads the status
// line or sees the reset, closes with RST, and repeats, until -duration
// passes or -max-requests attempts were made.
//
// It prints attempts/s, refused-or-reset/s and answered/s by status, then
// one machine-readable line starting with "RESULT".
//
// Safety: it only targets loopback addresses (127.0.0.0/8, ::1) and refuses
// anything else; it is bounded in time (at most 10 minutes) and count.
//
//	connflood -target 127.0.0.1:8080 -src 127.0.0.66 -conns 64 -duration 5s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("connflood", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "loopback IP:PORT or http://IP:PORT/ to flood (required; 127.0.0.0/8 or [::1] only)")
	src := fs.String("src", "", "loopback source address to bind, e.g. 127.0.0.66 (default: chosen by the kernel)")
	host := fs.String("host", "", "Host header (default: the target address)")
	duration := fs.Duration("duration", 5*time.Second, "how long to run (at most 10m)")
	conns := fs.Int("conns", 64, "connections in flight at once (at most 4096)")
	maxReq := fs.Int64("max-requests", 10_000_000, "stop after this many connection attempts (at most 1e8)")
	timeout := fs.Duration("timeout", 2*time.Second, "bound on each connect and each response wait")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("connflood: unexpected arguments %q", fs.Args())
	}
	if *target == "" {
		fs.Usage()
		return fmt.Errorf("connflood: -target is required")
	}
	t, err := ParseTarget(*target)
	if err != nil {
		return err
	}
	s, err := ParseSrc(*src, t)
	if err != nil {
		return err
	}
	cfg := Config{Target: t, Src: s, Host: *host, Duration: *duration, Workers: *conns, MaxRequests: *maxReq, Timeout: *timeout}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	report(stdout, cfg, r)
	return nil
}

func report(w io.Writer, c Config, r *Result) {
	sec := r.Elapsed.Seconds()
	if sec <= 0 {
		sec = 1e-9
	}
	from := "kernel-chosen source"
	if c.Src.IsValid() {
		from = c.Src.String()
	}
	rate := func(n int64) float64 { return float64(n) / sec }
	fmt.Fprintf(w, "connflood: %s from %s, %d workers, %.2fs\n", c.Target, from, c.Workers, sec)
	fmt.Fprintf(w, "  attempts          %10d  %10.0f/s\n", r.Attempts, rate(r.Attempts))
	fmt.Fprintf(w, "  refused or reset  %10d  %10.0f/s  (reset %d, closed %d, connect refused %d)\n",
		r.Refused(), rate(r.Refused()), r.Reset, r.Closed, r.ConnRefused)
	fmt.Fprintf(w, "  answered          %10d  %10.0f/s\n", r.Answered(), rate(r.Answered()))
	var kv strings.Builder
	for code, n := range r.Status {
		if n == 0 {
			continue
		}
		label := fmt.Sprint(code)
		if code == 0 {
			label = "unparsable"
		}
		fmt.Fprintf(w, "    status %-10s %10d  %10.0f/s\n", label, n, rate(n))
		fmt.Fprintf(&kv, " status_%d=%d", code, n)
	}
	fmt.Fprintf(w, "  connect timeouts  %10d\n  answer timeouts   %10d\n  other errors      %10d\n  cut by run end    %10d\n",
		r.ConnTimeout, r.Timeout, r.Other, r.Interrupted)
	if r.LastOther != "" {
		fmt.Fprintf(w, "  last other error: %s\n", r.LastOther)
	}
	fmt.Fprintf(w, "RESULT elapsed_s=%.3f attempts=%d refused=%d reset=%d closed=%d connect_refused=%d answered=%d connect_timeout=%d timeout=%d other=%d interrupted=%d%s\n",
		sec, r.Attempts, r.Refused(), r.Reset, r.Closed, r.ConnRefused, r.Answered(), r.ConnTimeout, r.Timeout, r.Other, r.Interrupted, kv.String())
}
