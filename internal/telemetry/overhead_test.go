package telemetry

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkCleanPathOverhead measures what recording costs on a minimal
// HTTP request path: a fasthttp server on 127.0.0.1 answering "ok" to
// fasthttp clients in the same process. Rounds of 2000 requests alternate
// between a bare handler and one that builds an Event and calls Record
// (with the per-second Tick running), so that load changes on a shared
// machine hit both alike. It reports CPU time per request of each mode
// and overhead-% = telemetry/bare - 1. The real shield does much more per
// request (decision engine, a second connection to the origin), so the
// ratio there is lower.
func BenchmarkCleanPathOverhead(b *testing.B) {
	rec, err := New(Config{}, Deps{})
	if err != nil {
		b.Fatal(err)
	}
	var record atomic.Bool
	handler := func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString("ok")
		if !record.Load() {
			return
		}
		var ev Event
		a, _ := netip.AddrFromSlice(ctx.RemoteIP())
		ev.Client = a.Unmap()
		ev.Path = ctx.Path()
		ev.QueryShape = QueryShape(ctx.QueryArgs().QueryString())
		ev.UserAgent = ctx.UserAgent()
		ev.NewConn = ctx.ConnRequestNum() == 1
		ev.Status = 200
		ev.Latency = time.Since(ctx.Time())
		rec.Record(&ev)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: handler}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = srv.Serve(ln) }()
	stop := make(chan struct{})
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				rec.Tick(now)
			}
		}
	}()
	defer func() {
		close(stop)
		_ = srv.Shutdown()
		wg.Wait()
	}()
	client := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 16}
	uri := "http://" + ln.Addr().String() + "/static/app.js?v=3&lang=en"
	const workers, round = 4, 2000
	run := func(n int) {
		var cw sync.WaitGroup
		for w := range workers {
			cw.Add(1)
			go func() {
				defer cw.Done()
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI(uri)
				req.Header.SetUserAgent("Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0")
				for i := w; i < n; i += workers {
					if err := client.Do(req, resp); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		cw.Wait()
	}
	run(round) // warm up connections
	b.ReportAllocs()
	b.ResetTimer()
	var cpu [2]time.Duration
	var reqs [2]int
	for done, r := 0, 0; done < b.N; r++ {
		mode := r % 2
		record.Store(mode == 1)
		n := min(round, b.N-done)
		c0 := processCPU()
		run(n)
		cpu[mode] += processCPU() - c0
		reqs[mode] += n
		done += n
	}
	if reqs[0] > 0 && reqs[1] > 0 {
		bare := float64(cpu[0].Nanoseconds()) / float64(reqs[0])
		with := float64(cpu[1].Nanoseconds()) / float64(reqs[1])
		b.ReportMetric(bare, "bare-cpu-ns/op")
		b.ReportMetric(with, "telemetry-cpu-ns/op")
		b.ReportMetric(100*(with/bare-1), "overhead-%")
	}
}
