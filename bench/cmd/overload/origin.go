package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// OriginConfig is an origin emulator's capacity. Zero fields take the
// documented defaults.
type OriginConfig struct {
	// Workers is the number of requests served at once. Default 4.
	Workers int
	// Service is how long each request holds a worker. Default 20ms.
	Service time.Duration
	// Body is the response body. Default "ok\n".
	Body string
}

// Origin emulates an application server of fixed capacity: Workers requests
// are served at once, each holding its worker for Service; every other
// request waits, first come first served, in an unbounded queue. Like a
// thread-pool server it does the work of a queued request even when the
// client has gone in the meantime: that is what makes an unprotected origin
// collapse under overload (it ends up serving only requests nobody waits
// for any more).
//
// Use NewOrigin; the zero value is not usable. An Origin is safe for
// concurrent use.
type Origin struct {
	cfg  OriginConfig
	sem  chan struct{}
	body []byte

	mu    sync.Mutex
	flush chan struct{} // closed by Flush; replaced by a fresh one

	queued    atomic.Int64 // waiting for a worker now
	inService atomic.Int64
	maxQueued atomic.Int64
	served    atomic.Int64 // requests that held a worker
	wasted    atomic.Int64 // ...whose client had gone by the time the work was done
	flushed   atomic.Int64 // dropped from the queue by Flush
	busyNanos atomic.Int64 // total time workers were held
}

var _ http.Handler = (*Origin)(nil)

// NewOrigin fills defaults and returns an idle origin.
func NewOrigin(cfg OriginConfig) (*Origin, error) {
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Service == 0 {
		cfg.Service = 20 * time.Millisecond
	}
	if cfg.Body == "" {
		cfg.Body = "ok\n"
	}
	switch {
	case cfg.Workers < 1 || cfg.Workers > 10000:
		return nil, fmt.Errorf("overload: origin: -workers %d out of range [1, 10000]", cfg.Workers)
	case cfg.Service < time.Microsecond || cfg.Service > time.Minute:
		return nil, fmt.Errorf("overload: origin: -service %s out of range [1us, 1m]", cfg.Service)
	}
	return &Origin{cfg: cfg, sem: make(chan struct{}, cfg.Workers), body: []byte(cfg.Body), flush: make(chan struct{})}, nil
}

// Capacity is the nominal capacity in requests per second.
func (o *Origin) Capacity() float64 {
	return float64(o.cfg.Workers) / o.cfg.Service.Seconds()
}

func (o *Origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	flush := o.flush
	o.mu.Unlock()
	q := o.queued.Add(1)
	for m := o.maxQueued.Load(); q > m && !o.maxQueued.CompareAndSwap(m, q); m = o.maxQueued.Load() {
	}
	select {
	case o.sem <- struct{}{}:
	case <-flush:
		o.queued.Add(-1)
		o.flushed.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	o.queued.Add(-1)
	o.inService.Add(1)
	start := time.Now()
	time.Sleep(o.cfg.Service)
	busy := time.Since(start)
	o.inService.Add(-1)
	<-o.sem
	o.busyNanos.Add(int64(busy))
	o.served.Add(1)
	if r.Context().Err() != nil {
		o.wasted.Add(1)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(o.body)
}

// Flush drops every request waiting for a worker (they are answered 503
// without doing the work) and returns how many were dropped. Requests that
// hold a worker finish normally. The bench calls it between load levels so
// that each level starts with an empty origin, as if it had been restarted:
// after a collapse the queue holds only requests whose clients gave up.
func (o *Origin) Flush() int64 {
	before := o.flushed.Load()
	o.mu.Lock()
	close(o.flush)
	o.flush = make(chan struct{})
	o.mu.Unlock()
	// Waiters see the closed channel promptly; give them a moment to count.
	deadline := time.Now().Add(time.Second)
	for o.queued.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return o.flushed.Load() - before
}

// OriginStats is a snapshot of an origin's counters (JSON on the admin
// listener's /stats).
type OriginStats struct {
	Workers   int     `json:"workers"`
	ServiceMS float64 `json:"service_ms"`
	Capacity  float64 `json:"capacity_rps"`
	Queued    int64   `json:"queued"`
	InService int64   `json:"in_service"`
	MaxQueued int64   `json:"max_queued"`
	Served    int64   `json:"served"`
	Wasted    int64   `json:"wasted"`
	Flushed   int64   `json:"flushed"`
	BusyNanos int64   `json:"busy_ns"`
}

// Stats returns the current counters.
func (o *Origin) Stats() OriginStats {
	return OriginStats{
		Workers: o.cfg.Workers, ServiceMS: float64(o.cfg.Service) / 1e6, Capacity: o.Capacity(),
		Queued: o.queued.Load(), InService: o.inService.Load(), MaxQueued: o.maxQueued.Load(),
		Served: o.served.Load(), Wasted: o.wasted.Load(), Flushed: o.flushed.Load(), BusyNanos: o.busyNanos.Load(),
	}
}

// ResetMax restarts the max_queued high-water mark.
func (o *Origin) ResetMax() { o.maxQueued.Store(o.queued.Load()) }

// AdminHandler serves GET /stats (JSON OriginStats) and POST /flush (Flush,
// then reset the high-water mark; answers {"flushed": N}). It is meant for a
// separate loopback listener that the proxies under test do not reach.
func (o *Origin) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(o.Stats())
	})
	mux.HandleFunc("POST /flush", func(w http.ResponseWriter, r *http.Request) {
		n := o.Flush()
		o.ResetMax()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"flushed\":%d}\n", n)
	})
	return mux
}
