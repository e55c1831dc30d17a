package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

func (p *Prober) tcp(ctx context.Context) Result {
	var r Result
	start := time.Now()
	c, err := p.dialContext(ctx, "tcp", p.spec.Address)
	r.Timings.Connect = time.Since(start)
	if err != nil {
		return fail(r, Classify(err), short(err))
	}
	c.Close()
	r.Timings.Total = r.Timings.Connect
	return r
}

func (p *Prober) tls(ctx context.Context) Result {
	var r Result
	start := time.Now()
	c, err := p.dialContext(ctx, "tcp", p.spec.Address)
	r.Timings.Connect = time.Since(start)
	if err != nil {
		return fail(r, Classify(err), short(err))
	}
	defer c.Close()
	host, _, _ := net.SplitHostPort(p.spec.Address)
	tc := tls.Client(c, p.tlsConfig(host))
	hs := time.Now()
	err = tc.HandshakeContext(ctx)
	r.Timings.TLS = time.Since(hs)
	r.Timings.Total = time.Since(start)
	if err != nil {
		return fail(r, tlsFailure(err), short(err))
	}
	return p.checkCert(r, tc.ConnectionState(), time.Now())
}

func (p *Prober) tlsConfig(host string) *tls.Config {
	name := p.spec.ServerName
	if name == "" {
		name = host
	}
	return &tls.Config{ServerName: name, InsecureSkipVerify: p.spec.InsecureSkipVerify} //nolint:gosec // operator's choice, documented
}

// tlsFailure classifies a handshake error: timeouts and resets keep their
// class, everything else is a TLS error.
func tlsFailure(err error) Failure {
	switch f := Classify(err); f {
	case FailTimeout, FailReset, FailRefused:
		return f
	}
	return FailTLS
}

// checkCert records the leaf expiry and fails r when it is too close.
func (p *Prober) checkCert(r Result, st tls.ConnectionState, now time.Time) Result {
	if len(st.PeerCertificates) == 0 {
		return r
	}
	r.CertExpiry = st.PeerCertificates[0].NotAfter
	left := r.CertExpiry.Sub(now)
	if left <= 0 {
		return fail(r, FailTLS, "certificate expired at "+r.CertExpiry.UTC().Format(time.RFC3339))
	}
	if days := left.Hours() / 24; days < float64(p.spec.CertMinDays) {
		return fail(r, FailCert, fmt.Sprintf("certificate expires in %.1f days (minimum %d)", left.Hours()/24, p.spec.CertMinDays))
	}
	return r
}
