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
	"time"
)

func (p *Prober) http(ctx context.Context) Result {
	var r Result
	start := time.Now()
	var dnsStart, connStart, tlsStart time.Time
	trace := &httptrace.ClientTrace{
		DNSStart:          func(httptrace.DNSStartInfo) { dnsStart = time.Now() },
		DNSDone:           func(httptrace.DNSDoneInfo) { r.Timings.DNS = time.Since(dnsStart) },
		ConnectStart:      func(string, string) { connStart = time.Now() },
		ConnectDone:       func(string, string, error) { r.Timings.Connect = time.Since(connStart) },
		TLSHandshakeStart: func() { tlsStart = time.Now() },
		TLSHandshakeDone: func(tls.ConnectionState, error) {
			r.Timings.TLS = time.Since(tlsStart)
		},
		GotFirstResponseByte: func() { r.Timings.FirstByte = time.Since(start) },
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
