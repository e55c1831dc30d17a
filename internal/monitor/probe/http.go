package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"sync"
	"time"
)

func (p *Prober) http(ctx context.Context) Result {
	var r Result
	start := time.Now()
	// The transport may still run trace hooks from its dialing goroutine
	// after Do returned (on timeout), so the hooks write under a lock.
	var (
		mu                            sync.Mutex
		tm                            Timings
		dnsStart, connStart, tlsStart time.Time
	)
	set := func(f func()) {
		mu.Lock()
		f()
		mu.Unlock()
	}
	timings := func() Timings {
		mu.Lock()
		defer mu.Unlock()
		return tm
	}
	trace := &httptrace.ClientTrace{
		DNSStart:          func(httptrace.DNSStartInfo) { set(func() { dnsStart = time.Now() }) },
		DNSDone:           func(httptrace.DNSDoneInfo) { set(func() { tm.DNS = time.Since(dnsStart) }) },
		ConnectStart:      func(string, string) { set(func() { connStart = time.Now() }) },
		ConnectDone:       func(string, string, error) { set(func() { tm.Connect = time.Since(connStart) }) },
		TLSHandshakeStart: func() { set(func() { tlsStart = time.Now() }) },
		TLSHandshakeDone: func(tls.ConnectionState, error) {
			set(func() { tm.TLS = time.Since(tlsStart) })
		},
		GotFirstResponseByte: func() { set(func() { tm.FirstByte = time.Since(start) }) },
	}
	u, _ := url.Parse(p.spec.URL) // validated
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            p.dialContext,
		TLSClientConfig:        p.tlsConfig(u.Hostname()),
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), p.spec.Method, p.spec.URL, nil)
	if err != nil {
		return fail(r, FailOther, short(err))
	}
	req.Header.Set("User-Agent", "levee-monitor/1")
	resp, err := client.Do(req)
	r.Timings = timings()
	if err != nil {
		r.Timings.Total = time.Since(start)
		f := Classify(err)
		if f == FailOther && u.Scheme == "https" && r.Timings.TLS > 0 {
			f = FailTLS
		}
		return fail(r, f, short(err))
	}
	defer resp.Body.Close()
	r.Status = resp.StatusCode
	var body []byte
	if p.spec.BodyContains != "" || p.spec.BodyNotContains != "" {
		body, err = io.ReadAll(io.LimitReader(resp.Body, MaxBody))
	} else {
		_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, MaxBody))
	}
	r.Timings = timings()
	r.Timings.Total = time.Since(start)
	if err != nil {
		return fail(r, Classify(err), "reading body: "+short(err))
	}
	if resp.TLS != nil {
		if r = p.checkCert(r, *resp.TLS, time.Now()); r.Failure != FailNone {
			return r
		}
	}
	if !p.statusOK(resp.StatusCode) {
		return fail(r, FailStatus, fmt.Sprintf("status %d", resp.StatusCode))
	}
	if s := p.spec.BodyContains; s != "" && !bytes.Contains(body, []byte(s)) {
		return fail(r, FailBody, fmt.Sprintf("body does not contain %q", s))
	}
	if s := p.spec.BodyNotContains; s != "" && bytes.Contains(body, []byte(s)) {
		return fail(r, FailBody, fmt.Sprintf("body contains %q", s))
	}
	return r
}

func (p *Prober) statusOK(code int) bool {
	if len(p.spec.ExpectStatus) == 0 {
		return code >= 200 && code < 400
	}
	return slices.Contains(p.spec.ExpectStatus, code)
}
