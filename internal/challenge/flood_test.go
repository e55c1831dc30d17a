package challenge

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// floodHandler challenges every request, as in under-attack mode.
func floodHandler(s *Service, d uint8) fasthttp.RequestHandler {
	bind := BindFingerprint("t13d1516h2_8daaf6152771_e5627efa2ab1")
	return func(ctx *fasthttp.RequestCtx) {
		now := time.Now()
		addr, _ := netip.AddrFromSlice(ctx.RemoteIP())
		addr = addr.Unmap()
		if IsEndpoint(ctx.Path()) {
			s.FastEndpoint(ctx, now, addr, bind)
			return
		}
		if _, ok := s.FastClearance(ctx, now, addr, bind); ok {
			ctx.SetBodyString("origin")
			return
		}
		s.FastChallenge(ctx, now, addr, bind, d)
	}
}

// BenchmarkFastChallenge is the handler cost of one challenge page (a fresh
// signed challenge in the prebuilt page), without the network.
func BenchmarkFastChallenge(b *testing.B) {
	s := newService(b, nil)
	h := floodHandler(s, 18)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}, nil)
		ctx.Request.SetRequestURI("/article/42?ref=home")
		ctx.Request.Header.Set("Accept-Language", "en-US,en;q=0.9")
		for pb.Next() {
			ctx.Response.Reset()
			h(&ctx)
		}
	})
}

// TestFloodChallengePage measures challenge pages served per second by a
// fasthttp server on loopback under a flood: wrk if installed, otherwise a
// bounded Go client. Opt-in: LEVEE_FLOOD_SECONDS=10 go test -run Flood -v
func TestFloodChallengePage(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("LEVEE_FLOOD_SECONDS"))
	if secs <= 0 {
		t.Skip("set LEVEE_FLOOD_SECONDS=10 to flood the challenge page on loopback")
	}
	secs = min(secs, 60)
	s := newService(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: floodHandler(s, 18), NoDefaultDate: true}
	go srv.Serve(ln)
	defer srv.Shutdown()
	url := "http://" + ln.Addr().String() + "/article/42"

	if wrk, err := exec.LookPath("wrk"); err == nil && os.Getenv("LEVEE_FLOOD_GO") == "" {
		cpu := processCPU()
		out, err := exec.Command(wrk, "-t1", "-c64", "-d"+strconv.Itoa(secs)+"s", "--latency", url).CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		cpu = processCPU() - cpu
		t.Logf("wrk -t1 -c64 -d%ds against the challenge page:\n%s", secs, out)
		if m := regexp.MustCompile(`(\d+) requests in`).FindSubmatch(out); m != nil {
			n, _ := strconv.Atoi(string(m[1]))
			t.Logf("server CPU (this process, wrk is another): %v for %d pages = %.1f µs per page", cpu.Round(time.Millisecond), n, float64(cpu.Microseconds())/float64(n))
		}
		if !strings.Contains(string(out), "Non-2xx or 3xx responses") {
			t.Error("wrk saw no 403 challenge responses")
		}
		return
	}
	var n, bytes atomic.Int64
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	c := &fasthttp.Client{MaxConnsPerHost: 64}
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			for time.Now().Before(deadline) {
				if err := c.Do(req, resp); err != nil || resp.StatusCode() != 403 {
					t.Errorf("flood request: %v %d", err, resp.StatusCode())
					return
				}
				n.Add(1)
				bytes.Add(int64(len(resp.Body())))
			}
		}()
	}
	wg.Wait()
	t.Logf("Go client, 64 connections, %ds: %d challenge pages, %.0f/s, %.1f MB/s", secs, n.Load(),
		float64(n.Load())/float64(secs), float64(bytes.Load())/float64(secs)/1e6)
}

func BenchmarkFastChallengeSerial(b *testing.B) {
	s := newService(b, nil)
	h := floodHandler(s, 18)
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}, nil)
	ctx.Request.SetRequestURI("/article/42?ref=home")
	ctx.Request.Header.Set("Accept-Language", "en-US,en;q=0.9")
	serialCPU(b, func() {
		ctx.Response.Reset()
		h(&ctx)
	})
}
