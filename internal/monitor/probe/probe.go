// Package probe runs one availability check against a target (HTTP(S), TCP
// connect, TLS handshake, DNS query), measures where the time went and
// classifies any failure (refused, reset, timeout, DNS failure, TLS error,
// bad status, ...). It also schedules probes on a jittered interval.
//
// Probes are what a vantage point does; the collector and the agent both use
// this package. Nothing here keeps state between probes.
package probe

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// Kind is the protocol a probe speaks.
type Kind string

// Probe kinds.
const (
	KindHTTP Kind = "http"
	KindTCP  Kind = "tcp"
	KindTLS  Kind = "tls"
	KindDNS  Kind = "dns"
)

// Failure classifies why a probe failed. The empty Failure means success.
type Failure string

// Failure classes, from the vantage point's view.
const (
	FailNone      Failure = ""
	FailRefused   Failure = "refused"     // TCP RST to SYN: nothing listens
	FailReset     Failure = "reset"       // connection reset or closed mid-exchange
	FailTimeout   Failure = "timeout"     // no answer within the timeout
	FailDNS       Failure = "dns"         // name resolution failed
	FailTLS       Failure = "tls"         // handshake or certificate error
	FailStatus    Failure = "bad_status"  // HTTP status not in the expected set
	FailBody      Failure = "bad_body"    // HTTP body condition not met
	FailDNSRcode  Failure = "dns_rcode"   // DNS answered with an unexpected rcode
	FailDNSAnswer Failure = "dns_answer"  // DNS answer did not contain the expected value
	FailCert      Failure = "cert_expiry" // certificate expires within the configured minimum
	FailOther     Failure = "error"       // anything else (unreachable network, ...)
)

// Hard reports whether f is a deterministic, immediate failure (the service
// or its name or certificate is gone or broken) as opposed to a soft one
// (timeouts, resets) that congestion or an attack typically produces.
func (f Failure) Hard() bool {
	switch f {
	case FailRefused, FailDNS, FailTLS, FailStatus, FailBody, FailDNSRcode, FailDNSAnswer, FailCert:
		return true
	}
	return false
}

// Spec says what to probe and what counts as success. It is part of the
// collector configuration and of the plan sent to agents. The zero Spec is
// invalid; call Validate (New does) before use.
type Spec struct {
	// Kind is http, tcp, tls or dns. Required.
	Kind Kind `yaml:"kind" json:"kind"`
	// URL is the http(s) URL to fetch (kind http).
	URL string `yaml:"url,omitempty" json:"url,omitempty"`
	// Method is the HTTP method. Default GET.
	Method string `yaml:"method,omitempty" json:"method,omitempty"`
	// ExpectStatus lists acceptable HTTP status codes. Default: any 2xx or 3xx.
	ExpectStatus []int `yaml:"expect_status,omitempty" json:"expect_status,omitempty"`
	// BodyContains, if set, must occur in the first MaxBody bytes of the body.
	BodyContains string `yaml:"body_contains,omitempty" json:"body_contains,omitempty"`
	// BodyNotContains, if set, must not occur in the first MaxBody bytes.
	BodyNotContains string `yaml:"body_not_contains,omitempty" json:"body_not_contains,omitempty"`
	// Address is host:port for tcp and tls probes.
	Address string `yaml:"address,omitempty" json:"address,omitempty"`
	// ServerName overrides the TLS server name (tls, https). Default: the host.
	ServerName string `yaml:"server_name,omitempty" json:"server_name,omitempty"`
	// InsecureSkipVerify disables certificate verification (tls, https);
	// expiry is still measured. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty" json:"insecure_skip_verify,omitempty"`
	// CertMinDays fails a tls/https probe whose leaf certificate expires in
	// fewer days. Default 0 (only an expired certificate fails).
	CertMinDays int `yaml:"cert_min_days,omitempty" json:"cert_min_days,omitempty"`
	// Server is the DNS server host:port to query (kind dns). Required for dns.
	Server string `yaml:"server,omitempty" json:"server,omitempty"`
	// Query is the DNS name to query (kind dns).
	Query string `yaml:"query,omitempty" json:"query,omitempty"`
	// Type is the DNS query type (A, AAAA, CNAME, MX, TXT, NS, SOA). Default A.
	Type string `yaml:"type,omitempty" json:"type,omitempty"`
	// ExpectRcode is the expected DNS rcode name. Default NOERROR.
	ExpectRcode string `yaml:"expect_rcode,omitempty" json:"expect_rcode,omitempty"`
	// ExpectAnswer, if set, must occur in the text of one answer record.
	ExpectAnswer string `yaml:"expect_answer,omitempty" json:"expect_answer,omitempty"`
}

// MaxBody is how much of an HTTP body is read for body conditions.
const MaxBody = 64 << 10

// Validate fills defaults into s and reports the first problem.
func (s *Spec) Validate() error {
	switch s.Kind {
	case KindHTTP:
		u, err := url.Parse(s.URL)
		if err != nil {
			return fmt.Errorf("probe: url %q: %w", s.URL, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("probe: url %q: want http:// or https:// with a host", s.URL)
		}
		if s.Method == "" {
			s.Method = "GET"
		}
		s.Method = strings.ToUpper(s.Method)
		for _, c := range s.ExpectStatus {
			if c < 100 || c > 599 {
				return fmt.Errorf("probe: expect_status %d: not an HTTP status", c)
			}
		}
	case KindTCP, KindTLS:
		if s.Address == "" || !strings.Contains(s.Address, ":") {
			return fmt.Errorf("probe: %s probe needs address host:port, got %q", s.Kind, s.Address)
		}
	case KindDNS:
		if s.Server == "" || !strings.Contains(s.Server, ":") {
			return fmt.Errorf("probe: dns probe needs server host:port, got %q", s.Server)
		}
		if s.Query == "" {
			return fmt.Errorf("probe: dns probe needs a query name")
		}
		if s.Type == "" {
			s.Type = "A"
		}
		s.Type = strings.ToUpper(s.Type)
		if _, ok := dnsTypes[s.Type]; !ok {
			return fmt.Errorf("probe: dns type %q: want one of A, AAAA, CNAME, MX, TXT, NS, SOA", s.Type)
		}
		if s.ExpectRcode == "" {
			s.ExpectRcode = "NOERROR"
		}
		s.ExpectRcode = strings.ToUpper(s.ExpectRcode)
		if _, ok := rcodes[s.ExpectRcode]; !ok {
			return fmt.Errorf("probe: expect_rcode %q: unknown rcode", s.ExpectRcode)
		}
	case "":
		return fmt.Errorf("probe: kind missing: want http, tcp, tls or dns")
	default:
		return fmt.Errorf("probe: kind %q: want http, tcp, tls or dns", s.Kind)
	}
	if s.CertMinDays < 0 {
		return fmt.Errorf("probe: cert_min_days %d: must be >= 0", s.CertMinDays)
	}
	return nil
}

// Timings is the latency breakdown of one probe. Phases that did not happen
// (no DNS lookup for an IP literal, no TLS for plain HTTP) are zero.
// Durations are encoded in JSON as integer nanoseconds.
type Timings struct {
	DNS       time.Duration `json:"dns_ns,omitempty"`
	Connect   time.Duration `json:"connect_ns,omitempty"`
	TLS       time.Duration `json:"tls_ns,omitempty"`
	FirstByte time.Duration `json:"first_byte_ns,omitempty"`
	Total     time.Duration `json:"total_ns"`
}

// Result is the outcome of one probe. Results are values; the zero Result
// is a successful probe of nothing at the zero time.
type Result struct {
	// ID identifies the result for idempotent ingestion (vantage-unique).
	ID string `json:"id"`
	// Target is the configured target name.
	Target string `json:"target"`
	// Vantage is the name of the vantage point that ran the probe.
	Vantage string `json:"vantage"`
	// At is when the probe started.
	At time.Time `json:"at"`
	// OK is true when every condition held.
	OK bool `json:"ok"`
	// Failure classifies a failed probe; empty when OK.
	Failure Failure `json:"failure,omitempty"`
	// Detail is a short human-readable reason for a failure.
	Detail string `json:"detail,omitempty"`
	// Status is the HTTP status code, or the DNS rcode for dns probes.
	Status int `json:"status,omitempty"`
	// Timings is the latency breakdown.
	Timings Timings `json:"timings"`
	// CertExpiry is the leaf certificate's NotAfter (tls, https).
	CertExpiry time.Time `json:"cert_expiry,omitzero"`
}

// Prober runs probes for one validated Spec. It is safe for concurrent use;
// the zero Prober is not usable, build one with New.
type Prober struct {
	spec    Spec
	timeout time.Duration
	dial    DialFunc
}

// DialFunc opens a connection, like net.Dialer.DialContext.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// WithDial returns a copy of p whose http, tcp and tls probes connect with
// dial (for example to bind a source address). DNS probes are unaffected.
func (p *Prober) WithDial(dial DialFunc) *Prober {
	c := *p
	c.dial = dial
	return &c
}

func (p *Prober) dialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if p.dial != nil {
		return p.dial(ctx, network, address)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, address)
}

// DefaultTimeout is the probe timeout when none is given.
const DefaultTimeout = 5 * time.Second

// New validates spec and returns a Prober that gives up after timeout
// (DefaultTimeout when <= 0).
func New(spec Spec, timeout time.Duration) (*Prober, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Prober{spec: spec, timeout: timeout}, nil
}

// Spec returns the validated spec with defaults filled.
func (p *Prober) Spec() Spec { return p.spec }

// ProbeAt runs one probe that is recorded as started at now. The probe ends
// by p's timeout or ctx, whichever is first. ID, Target and Vantage are left
// for the caller to fill.
func (p *Prober) ProbeAt(ctx context.Context, now time.Time) Result {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	var r Result
	switch p.spec.Kind {
	case KindHTTP:
		r = p.http(ctx)
	case KindTCP:
		r = p.tcp(ctx)
	case KindTLS:
		r = p.tls(ctx)
	case KindDNS:
		r = p.dns(ctx)
	}
	r.At = now
	if r.Timings.Total == 0 {
		r.Timings.Total = time.Since(start)
	}
	r.OK = r.Failure == FailNone
	return r
}

// Probe is ProbeAt(ctx, time.Now()).
func (p *Prober) Probe(ctx context.Context) Result { return p.ProbeAt(ctx, time.Now()) }

func fail(r Result, f Failure, detail string) Result {
	r.Failure, r.Detail = f, detail
	return r
}
