package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds on what one load run may do; Validate checks the config against
// them.
const (
	maxRate        = 10000            // requests per second
	maxLoadRun     = 10 * time.Minute // sending time
	maxTimeout     = time.Minute      // per request
	maxRequests    = 1_000_000        // per run
	maxInflightCap = 50000
)

// LoadConfig is one open-loop load run. Fill it and call Validate; zero
// fields that have a default take it there.
type LoadConfig struct {
	// Target is the http:// URL on a literal loopback address. Required.
	Target *url.URL
	// Rate is the offered load in requests per second, (0, 10000].
	Rate float64
	// Duration is how long requests are sent, (0, 10m]. Default 10s.
	Duration time.Duration
	// Timeout bounds each request, connect to last body byte. Default 5s.
	Timeout time.Duration
	// Sources are the loopback addresses ordinary requests come from, one
	// chosen at random per request. Required.
	Sources []netip.Addr
	// Verified are the addresses of the verified (known) class; a share
	// VerifiedShare of the requests, evenly spread, come from one of them.
	Verified      []netip.Addr
	VerifiedShare float64
	// ConnsPerSource is how many connections one source address may have
	// open (and keep alive between its requests), like a browser's six per
	// host. 0 turns keep-alive off: one connection per request. (The
	// -conns-per-source flag defaults to 6.)
	ConnsPerSource int
	// MaxInflight bounds the requests in flight at once; arrivals beyond it
	// are not sent and counted as skipped. Default 20000.
	MaxInflight int
	// Seed seeds the choice of source addresses. Default 1.
	Seed uint64
	// OriginAdmin, when set, is the origin emulator's admin URL: its queue
	// is flushed before the run and its counters are reported.
	OriginAdmin *url.URL
	// Label and Load only tag the result (front end name, multiple of the
	// origin's capacity).
	Label string
	Load  float64
}

// Validate checks bounds and that every address is loopback, and fills
// defaults.
func (c *LoadConfig) Validate() error {
	if c.Target == nil {
		return errors.New("overload: load: -target is required")
	}
	if _, err := parseLoopbackURL("-target", c.Target.String()); err != nil {
		return err
	}
	if c.OriginAdmin != nil {
		if _, err := parseLoopbackURL("-origin-admin", c.OriginAdmin.String()); err != nil {
			return err
		}
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 20000
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	switch {
	case !(c.Rate > 0 && c.Rate <= maxRate):
		return fmt.Errorf("overload: load: -rate %g out of range (0, %d]", c.Rate, maxRate)
	case c.Duration < 0 || c.Duration > maxLoadRun:
		return fmt.Errorf("overload: load: -duration %s out of range (0, %s]", c.Duration, maxLoadRun)
	case c.Timeout < 0 || c.Timeout > maxTimeout:
		return fmt.Errorf("overload: load: -timeout %s out of range (0, %s]", c.Timeout, maxTimeout)
	case c.Rate*c.Duration.Seconds() > maxRequests:
		return fmt.Errorf("overload: load: -rate x -duration = %.0f requests, more than %d", c.Rate*c.Duration.Seconds(), maxRequests)
	case c.Rate*c.Duration.Seconds() < 1:
		return fmt.Errorf("overload: load: -rate x -duration is less than one request")
	case c.MaxInflight < 1 || c.MaxInflight > maxInflightCap:
		return fmt.Errorf("overload: load: -max-inflight %d out of range [1, %d]", c.MaxInflight, maxInflightCap)
	case c.ConnsPerSource < 0 || c.ConnsPerSource > 1000:
		return fmt.Errorf("overload: load: -conns-per-source %d out of range [0, 1000]", c.ConnsPerSource)
	case len(c.Sources) == 0:
		return errors.New("overload: load: -sources is empty")
	case c.VerifiedShare < 0 || c.VerifiedShare > 1:
		return fmt.Errorf("overload: load: -verified-share %g out of range [0, 1]", c.VerifiedShare)
	case c.VerifiedShare > 0 && len(c.Verified) == 0:
		return errors.New("overload: load: -verified-share > 0 needs -verified addresses")
	}
	for _, a := range append(slices.Clip(c.Sources), c.Verified...) {
		if !isLoopback(a) {
			return fmt.Errorf("overload: load: refusing source %s: only loopback sources may be used", a)
		}
	}
	return nil
}

// outcome is how one request ended.
type outcome uint8

const (
	outNone    outcome = iota // not finished (interrupted run)
	outOK                     // 200
	outShed                   // 503 or 429
	outStatus                 // any other status
	outTimeout                // no complete answer within Timeout
	outConnErr                // refused, reset or closed without an answer
	outSkipped                // not sent: MaxInflight reached
)

type sample struct {
	lat      time.Duration // send to last body byte
	end      time.Duration // last body byte, since the run began
	late     time.Duration // actual send time minus scheduled time
	status   int16
	out      outcome
	verified bool
}

// LoadResult is what one load run measured. Latencies are in milliseconds.
type LoadResult struct {
	Label           string  `json:"label"`
	Load            float64 `json:"load"`
	Target          string  `json:"target"`
	OfferedRate     float64 `json:"offered_rps"`
	DurationS       float64 `json:"duration_s"`
	TimeoutS        float64 `json:"timeout_s"`
	Sources         int     `json:"sources"`
	VerifiedSources int     `json:"verified_sources"`
	ConnsPerSource  int     `json:"conns_per_source"`

	Sent        int            `json:"sent"`
	OK          int            `json:"ok"`
	Shed        int            `json:"shed"`
	OtherStatus int            `json:"other_status"`
	Timeouts    int            `json:"timeouts"`
	ConnErrors  int            `json:"conn_errors"`
	Skipped     int            `json:"skipped"`
	Unfinished  int            `json:"unfinished"`
	StatusCount map[string]int `json:"status"`
	LastError   string         `json:"last_error,omitempty"`
	ConnsOpened int64          `json:"conns_opened"`

	// Goodput counts the 200 answers completed within the sending window,
	// per second of it: late answers to requests a front end let queue do
	// not count.
	Goodput float64 `json:"goodput_rps"`
	OKLate  int     `json:"ok_after_window"`
	// Goodput2 is the goodput of the window's second half: an unprotected
	// origin's collapse takes a few seconds to build up (its queue must
	// first grow past the client timeout), so it shows there first.
	Goodput2 float64 `json:"goodput_second_half_rps"`
	P50ms    float64 `json:"admitted_p50_ms"`
	P90ms    float64 `json:"admitted_p90_ms"`
	P99ms    float64 `json:"admitted_p99_ms"`
	MaxMS    float64 `json:"admitted_max_ms"`
	ShedP99  float64 `json:"shed_p99_ms"`
	LateP99  float64 `json:"send_late_p99_ms"`
	LateMax  float64 `json:"send_late_max_ms"`
	VerP99   float64 `json:"verified_p99_ms"` // admitted p99 by class
	OthP99   float64 `json:"others_p99_ms"`
	VerSent  int     `json:"verified_sent"`
	VerOK    int     `json:"verified_ok"`
	VerShare float64 `json:"verified_ok_share"`
	OthSent  int     `json:"others_sent"`
	OthOK    int     `json:"others_ok"`

	Origin *OriginDelta `json:"origin,omitempty"`
}

// OriginDelta is the origin emulator's activity during a run (from its
// admin /stats before and after).
type OriginDelta struct {
	Capacity  float64 `json:"capacity_rps"`
	Flushed   int64   `json:"flushed_before"` // left over from the previous run
	Served    int64   `json:"served"`
	Wasted    int64   `json:"wasted"` // served after the client had gone
	ServiceMS float64 `json:"mean_service_ms"`
	EffCap    float64 `json:"effective_capacity_rps"` // workers / mean service time
	MaxQueued int64   `json:"max_queued"`
}

// RunLoad offers c.Rate requests per second for c.Duration, open loop: a
// request is sent at its scheduled time whether or not earlier ones were
// answered. It returns when every request has ended (each is bounded by
// c.Timeout) or ctx is done.
func RunLoad(ctx context.Context, c LoadConfig) (*LoadResult, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	// A hard bound on the whole run, whatever happens.
	ctx, cancel := context.WithTimeout(ctx, c.Duration+c.Timeout+10*time.Second)
	defer cancel()

	var delta *OriginDelta
	var before OriginStats
	if c.OriginAdmin != nil {
		var err error
		if delta, before, err = originPrepare(ctx, c.OriginAdmin); err != nil {
			return nil, err
		}
	}

	var conns atomic.Int64
	mkClient := func(src netip.Addr) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: c.Timeout}
		tr := &http.Transport{
			Proxy: nil, // never an environment proxy: the target is loopback
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				conn, err := d.DialContext(ctx, network, addr)
				if err == nil {
					conns.Add(1)
				}
				return conn, err
			},
			DisableCompression: true,
			IdleConnTimeout:    60 * time.Second,
		}
		if c.ConnsPerSource == 0 {
			tr.DisableKeepAlives = true
		} else {
			tr.MaxConnsPerHost = c.ConnsPerSource
			tr.MaxIdleConnsPerHost = c.ConnsPerSource
		}
		return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	normal := make([]*http.Client, len(c.Sources))
	verified := make([]*http.Client, len(c.Verified))
	for i, a := range c.Sources {
		normal[i] = mkClient(a)
	}
	for i, a := range c.Verified {
		verified[i] = mkClient(a)
	}
	defer func() {
		for _, cl := range append(normal, verified...) {
			cl.CloseIdleConnections()
		}
	}()

	n := int(c.Rate * c.Duration.Seconds())
	samples := make([]sample, n)
	rng := rand.New(rand.NewPCG(c.Seed, 0x6f7665726c6f6164))
	target := c.Target.String()
	var (
		wg       sync.WaitGroup
		inflight atomic.Int64
		lastErr  atomic.Value
	)
	begin := time.Now()
	for i := range n {
		at := begin.Add(time.Duration(float64(i) / c.Rate * float64(time.Second)))
		if w := time.Until(at); w > 0 {
			t := time.NewTimer(w)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			break
		}
		s := &samples[i]
		// Evenly spread: request i is verified when it crosses a multiple
		// of 1/VerifiedShare.
		s.verified = c.VerifiedShare > 0 && math.Floor(float64(i+1)*c.VerifiedShare) > math.Floor(float64(i)*c.VerifiedShare)
		var cl *http.Client
		if s.verified {
			cl = verified[rng.IntN(len(verified))]
		} else {
			cl = normal[rng.IntN(len(normal))]
		}
		if inflight.Load() >= int64(c.MaxInflight) {
			s.out = outSkipped
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			t0 := time.Now()
			s.late = t0.Sub(at)
			rctx, rcancel := context.WithTimeout(ctx, c.Timeout)
			defer rcancel()
			req, _ := http.NewRequestWithContext(rctx, http.MethodGet, target, nil)
			req.Header.Set("User-Agent", "levee-bench-overload")
			resp, err := cl.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			now := time.Now()
			s.lat = now.Sub(t0)
			s.end = now.Sub(begin)
			switch {
			case err != nil && ctx.Err() != nil:
				s.out = outNone // the whole run was interrupted
			case err != nil && (errors.Is(err, context.DeadlineExceeded) || isTimeout(err)):
				s.out = outTimeout
			case err != nil:
				s.out = outConnErr
				lastErr.Store(err.Error())
			default:
				s.status = int16(resp.StatusCode)
				switch resp.StatusCode {
				case http.StatusOK:
					s.out = outOK
				case http.StatusServiceUnavailable, http.StatusTooManyRequests:
					s.out = outShed
				default:
					s.out = outStatus
				}
			}
		}()
	}
	wg.Wait()

	r := summarize(c, samples, conns.Load())
	if v, ok := lastErr.Load().(string); ok {
		r.LastError = v
	}
	if delta != nil {
		after, err := originStats(ctx, c.OriginAdmin)
		if err != nil {
			return nil, err
		}
		delta.Served = after.Served - before.Served
		delta.Wasted = after.Wasted - before.Wasted
		delta.MaxQueued = after.MaxQueued
		if delta.Served > 0 {
			mean := time.Duration((after.BusyNanos - before.BusyNanos) / delta.Served)
			delta.ServiceMS = float64(mean) / 1e6
			delta.EffCap = float64(after.Workers) / mean.Seconds()
		}
		r.Origin = delta
	}
	return r, ctx.Err()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func summarize(c LoadConfig, samples []sample, conns int64) *LoadResult {
	r := &LoadResult{
		Label: c.Label, Load: c.Load, Target: c.Target.String(), OfferedRate: c.Rate,
		DurationS: c.Duration.Seconds(), TimeoutS: c.Timeout.Seconds(),
		Sources: len(c.Sources), VerifiedSources: len(c.Verified), ConnsPerSource: c.ConnsPerSource,
		StatusCount: map[string]int{}, ConnsOpened: conns,
	}
	var ok, okVer, okOth, shed, late []time.Duration
	ok2 := 0
	for i := range samples {
		s := &samples[i]
		if s.verified {
			r.VerSent++
		} else {
			r.OthSent++
		}
		if s.out != outSkipped {
			r.Sent++
			late = append(late, s.late)
		}
		if s.status != 0 {
			r.StatusCount[fmt.Sprint(s.status)]++
		}
		switch s.out {
		case outNone:
			r.Unfinished++
		case outOK:
			r.OK++
			if s.end > c.Duration {
				r.OKLate++
			} else if s.end > c.Duration/2 {
				ok2++
			}
			ok = append(ok, s.lat)
			if s.verified {
				r.VerOK++
				okVer = append(okVer, s.lat)
			} else {
				r.OthOK++
				okOth = append(okOth, s.lat)
			}
		case outShed:
			r.Shed++
			shed = append(shed, s.lat)
		case outStatus:
			r.OtherStatus++
		case outTimeout:
			r.Timeouts++
		case outConnErr:
			r.ConnErrors++
		case outSkipped:
			r.Skipped++
		}
	}
	r.Goodput = float64(r.OK-r.OKLate) / c.Duration.Seconds()
	r.Goodput2 = float64(ok2) / (c.Duration / 2).Seconds()
	r.P50ms = ms(percentile(ok, 0.50))
	r.P90ms = ms(percentile(ok, 0.90))
	r.P99ms = ms(percentile(ok, 0.99))
	r.MaxMS = ms(percentile(ok, 1))
	r.VerP99 = ms(percentile(okVer, 0.99))
	r.OthP99 = ms(percentile(okOth, 0.99))
	r.ShedP99 = ms(percentile(shed, 0.99))
	r.LateP99 = ms(percentile(late, 0.99))
	r.LateMax = ms(percentile(late, 1))
	if r.VerSent > 0 {
		r.VerShare = float64(r.VerOK) / float64(r.VerSent)
	}
	return r
}

// percentile returns the nearest-rank q-quantile of d (sorting it), 0 for
// none.
func percentile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	i := int(math.Ceil(q*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// originPrepare flushes the origin emulator's leftover queue, waits for its
// workers to be idle (at most 5 s) and returns the counters to diff against.
func originPrepare(ctx context.Context, admin *url.URL) (*OriginDelta, OriginStats, error) {
	d := &OriginDelta{}
	body, err := adminCall(ctx, http.MethodPost, admin.JoinPath("flush"))
	if err != nil {
		return nil, OriginStats{}, err
	}
	var f struct {
		Flushed int64 `json:"flushed"`
	}
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, OriginStats{}, fmt.Errorf("overload: origin admin /flush: %w", err)
	}
	d.Flushed = f.Flushed
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := originStats(ctx, admin)
		if err != nil {
			return nil, OriginStats{}, err
		}
		if st.InService == 0 && st.Queued == 0 || time.Now().After(deadline) {
			d.Capacity = st.Capacity
			return d, st, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func originStats(ctx context.Context, admin *url.URL) (OriginStats, error) {
	var st OriginStats
	body, err := adminCall(ctx, http.MethodGet, admin.JoinPath("stats"))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("overload: origin admin /stats: %w", err)
	}
	return st, nil
}

func adminCall(ctx context.Context, method string, u *url.URL) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return nil, err
	}
	cl := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("overload: origin admin %s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	if _, err := io.Copy(&b, io.LimitReader(resp.Body, 1<<20)); err != nil {
		return nil, fmt.Errorf("overload: origin admin %s %s: %w", method, u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("overload: origin admin %s %s: status %d", method, u, resp.StatusCode)
	}
	return b.Bytes(), nil
}
