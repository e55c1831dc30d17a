package telemetry

import (
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkCleanPathOverhead measures what recording costs on a minimal
// HTTP request path: a fasthttp server on 127.0.0.1 answering "ok" to a
// fasthttp client in the same process, with and without building an Event
// and calling Record (plus a once-per-second Tick). Compare cpu-ns/op of
// the two sub-benchmarks: the difference over "bare" is the overhead ratio.
// The real shield does much more per request (decision engine, a second
// connection to the origin), so this ratio is an upper bound.
func BenchmarkCleanPathOverhead(b *testing.B) {
	for _, withTelemetry := range []bool{false, true} {
		name := "bare"
		if withTelemetry {
			name = "telemetry"
		}
		b.Run(name, func(b *testing.B) {
			rec, err := New(Config{}, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			handler := func(ctx *fasthttp.RequestCtx) {
				ctx.SetBodyString("ok")
				if !withTelemetry {
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
			wg.Add(1)
			go func() { defer wg.Done(); _ = srv.Serve(ln) }()
			stop := make(chan struct{})
			if withTelemetry {
				wg.Add(1)
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
			}
			client := &fasthttp.HostClient{Addr: ln.Addr().String(), MaxConns: 16}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				req.SetRequestURI("http://" + ln.Addr().String() + "/static/app.js?v=3&lang=en")
				req.Header.SetUserAgent("Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0")
				for pb.Next() {
					if err := client.Do(req, resp); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportCPU(b, cpu)
			b.StopTimer()
			close(stop)
			_ = srv.Shutdown()
			wg.Wait()
		})
	}
}
