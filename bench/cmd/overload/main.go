// Command overload measures how a front end protects an origin of fixed
// capacity under overload. It has three subcommands:
//
//	overload origin -listen 127.0.0.1:8080 -admin 127.0.0.1:8081 -workers 4 -service 20ms
//	overload load -target http://127.0.0.1:8000/ -rate 400 -duration 10s -origin-admin http://127.0.0.1:8081/
//	overload table results.txt
//
// origin is an origin emulator: -workers requests served at once, each
// taking -service, the rest waiting in an unbounded first-come-first-served
// queue; it does queued work even for clients that have gone, as a
// thread-pool application server does. Its admin listener serves GET /stats
// and POST /flush (drop the leftover queue between runs).
//
// load is an open-loop load generator: -rate requests per second for
// -duration, each from a loopback source address picked at random from
// -sources (bound with net.Dialer.LocalAddr, so per-address limits see a
// many-source flood), a share -verified-share of them from the verified
// class's addresses (-verified). Each source keeps up to -conns-per-source
// keep-alive connections, like a browser. It prints a human summary and a
// line "RESULT {json}": offered rate, goodput (200s per second), p50/p99
// latency of the 200 answers, shed (503/429), timeouts and errors, and the
// verified class's success share.
//
// table prints the RESULT lines of several runs as one Markdown table.
//
// Safety: every address it connects to, listens on or binds is loopback
// (127.0.0.0/8, ::1), given as a literal IP; anything else is refused. A
// load run is bounded (at most 10000 req/s, 10 minutes, 1e6 requests, a
// per-request timeout of at most a minute) and stops by itself; the origin
// exits after -lifetime.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

const usage = `usage:
  overload origin -listen 127.0.0.1:PORT [-admin 127.0.0.1:PORT] [-workers 4] [-service 20ms]
  overload load -target http://127.0.0.1:PORT/ -rate N [-duration 10s] [flags]
  overload table [-capacity N] [FILE...]
run "overload SUBCOMMAND -h" for the flags`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errors.New("overload: a subcommand is required")
	}
	switch args[0] {
	case "origin":
		return runOrigin(ctx, args[1:], stdout, stderr)
	case "load":
		return runLoadCmd(ctx, args[1:], stdout, stderr)
	case "table":
		return runTable(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, usage)
		return nil
	}
	fmt.Fprintln(stderr, usage)
	return fmt.Errorf("overload: unknown subcommand %q", args[0])
}

func runOrigin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("overload origin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "", "loopback IP:PORT to serve on (required; port 0 picks one)")
	admin := fs.String("admin", "", "loopback IP:PORT for GET /stats and POST /flush (default: none)")
	workers := fs.Int("workers", 4, "requests served at once")
	service := fs.Duration("service", 20*time.Millisecond, "time each request holds a worker")
	lifetime := fs.Duration("lifetime", time.Hour, "exit after this long (at most 24h)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("overload: origin: unexpected arguments %q", fs.Args())
	}
	if *listen == "" {
		fs.Usage()
		return errors.New("overload: origin: -listen is required")
	}
	if *lifetime <= 0 || *lifetime > 24*time.Hour {
		return fmt.Errorf("overload: origin: -lifetime %s out of range (0, 24h]", *lifetime)
	}
	addr, err := parseLoopbackListen("-listen", *listen)
	if err != nil {
		return err
	}
	o, err := NewOrigin(OriginConfig{Workers: *workers, Service: *service})
	if err != nil {
		return err
	}
	srvs := []*http.Server{}
	serve := func(addr string, h http.Handler) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("overload: origin: %w", err)
		}
		s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
		srvs = append(srvs, s)
		go s.Serve(ln)
		return ln.Addr().String(), nil
	}
	defer func() {
		for _, s := range srvs {
			s.Close()
		}
	}()
	got, err := serve(addr, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "origin: http://%s/ %d workers x %s = %.0f req/s, unbounded FIFO queue\n", got, *workers, *service, o.Capacity())
	if *admin != "" {
		aaddr, err := parseLoopbackListen("-admin", *admin)
		if err != nil {
			return err
		}
		if got, err = serve(aaddr, o.AdminHandler()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "origin admin: http://%s/stats, POST http://%s/flush\n", got, got)
	}
	select {
	case <-ctx.Done():
	case <-time.After(*lifetime):
		fmt.Fprintf(stderr, "origin: -lifetime %s reached, exiting\n", *lifetime)
	}
	st := o.Stats()
	fmt.Fprintf(stdout, "origin: served %d (%d after the client had gone), flushed %d, max queue %d\n", st.Served, st.Wasted, st.Flushed, st.MaxQueued)
	return nil
}

func runLoadCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("overload load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "http://IP:PORT/path on a loopback IP (required)")
	rate := fs.Float64("rate", 0, "offered requests per second (required, at most 10000)")
	duration := fs.Duration("duration", 10*time.Second, "how long to send (at most 10m)")
	timeout := fs.Duration("timeout", 5*time.Second, "per-request timeout, connect to last byte (at most 1m)")
	sources := fs.String("sources", "127.0.1.1-127.0.8.254", "loopback source addresses of ordinary requests: ranges, CIDRs, addresses, comma-separated")
	verified := fs.String("verified", "127.0.12.0/24", "source addresses of the verified class")
	verShare := fs.Float64("verified-share", 0.1, "share of requests from the verified class")
	perSource := fs.Int("conns-per-source", 6, "keep-alive connections one source may hold (0: a new connection per request)")
	maxInflight := fs.Int("max-inflight", 20000, "requests in flight at most; later arrivals are skipped and counted")
	seed := fs.Uint64("seed", 1, "seed for the choice of source addresses")
	admin := fs.String("origin-admin", "", "origin emulator admin URL (http://127.0.0.1:PORT/): flush its queue first, report its counters")
	label := fs.String("label", "", "front end name for the result")
	load := fs.Float64("load", 0, "offered load as a multiple of the origin's capacity, for the result")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("overload: load: unexpected arguments %q", fs.Args())
	}
	if *target == "" {
		fs.Usage()
		return errors.New("overload: load: -target is required")
	}
	c := LoadConfig{Rate: *rate, Duration: *duration, Timeout: *timeout, VerifiedShare: *verShare,
		ConnsPerSource: *perSource, MaxInflight: *maxInflight, Seed: *seed, Label: *label, Load: *load}
	var err error
	if c.Target, err = parseLoopbackURL("-target", *target); err != nil {
		return err
	}
	if *admin != "" {
		if c.OriginAdmin, err = parseLoopbackURL("-origin-admin", *admin); err != nil {
			return err
		}
	}
	if c.Sources, err = parseSources("-sources", *sources); err != nil {
		return err
	}
	if *verShare > 0 {
		if c.Verified, err = parseSources("-verified", *verified); err != nil {
			return err
		}
	}
	if c.Duration <= 0 || c.Timeout <= 0 {
		return errors.New("overload: load: -duration and -timeout must be positive")
	}
	r, err := RunLoad(ctx, c)
	if r == nil {
		return err
	}
	printLoad(stdout, r)
	return err
}

func printLoad(w io.Writer, r *LoadResult) {
	fmt.Fprintf(w, "%s %gx: offered %.0f req/s for %.0f s to %s from %d sources (+%d verified), %d keep-alive conns per source, timeout %.0f s\n",
		r.Label, r.Load, r.OfferedRate, r.DurationS, r.Target, r.Sources, r.VerifiedSources, r.ConnsPerSource, r.TimeoutS)
	fmt.Fprintf(w, "  goodput %.1f req/s (200s completed within the %.0f s window; %d more after it), %.1f req/s in its second half; admitted p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms\n", r.Goodput, r.DurationS, r.OKLate, r.Goodput2, r.P50ms, r.P90ms, r.P99ms, r.MaxMS)
	fmt.Fprintf(w, "  sent %d: ok %d, shed %d (p99 %.1f ms), other status %d, timeouts %d, connection errors %d, skipped %d, unfinished %d; statuses %v\n",
		r.Sent, r.OK, r.Shed, r.ShedP99, r.OtherStatus, r.Timeouts, r.ConnErrors, r.Skipped, r.Unfinished, r.StatusCount)
	fmt.Fprintf(w, "  verified %d/%d ok (%.1f%%, p99 %.1f ms), others %d/%d ok (p99 %.1f ms); %d connections opened; sending late p99 %.1f ms, max %.1f ms\n",
		r.VerOK, r.VerSent, 100*r.VerShare, r.VerP99, r.OthOK, r.OthSent, r.OthP99, r.ConnsOpened, r.LateP99, r.LateMax)
	if r.LastError != "" {
		fmt.Fprintf(w, "  last connection error: %s\n", r.LastError)
	}
	if o := r.Origin; o != nil {
		fmt.Fprintf(w, "  origin: served %d (%d for clients already gone), mean service %.1f ms (effective capacity %.0f req/s), max queue %d; %d leftover requests flushed before the run\n",
			o.Served, o.Wasted, o.ServiceMS, o.EffCap, o.MaxQueued, o.Flushed)
	}
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s%s\n", resultPrefix, b)
}

func runTable(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("overload table", flag.ContinueOnError)
	fs.SetOutput(stderr)
	capacity := fs.Float64("capacity", 0, "origin capacity in req/s (default: from the results' origin counters)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var all []LoadResult
	read := func(r io.Reader) error {
		rs, err := readResults(r)
		all = append(all, rs...)
		return err
	}
	if fs.NArg() == 0 {
		if err := read(os.Stdin); err != nil {
			return err
		}
	}
	for _, p := range fs.Args() {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("overload: table: %w", err)
		}
		err = read(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("overload: table: %s: %w", p, err)
		}
	}
	if len(all) == 0 {
		return errors.New("overload: table: no RESULT lines found")
	}
	writeTable(stdout, all, *capacity)
	if base := unloadedP99(all); base > 0 {
		fmt.Fprintf(stdout, "\nx unloaded: p99 / %.1f ms, the lowest unloaded p99 of the run (see bench/README.md)\n", base)
	}
	return nil
}
