package challenge

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Deps are the Service's collaborators. All optional.
type Deps struct {
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
	// Logger for configuration events (nothing is logged per request); nil
	// discards.
	Logger *slog.Logger
	// Replay remembers used challenge ids. Default: an in-memory
	// [ReplaySet] of Config.ReplayCapacity ids (per node). A fleet that
	// balances one client over several nodes plugs a shared one in here.
	Replay Replay
	// OnRevoke, if set, is called (outside any lock, at most once per
	// revocation) when a token is revoked here, so that the fleet can
	// publish it; peers apply it with Revoker().Revoke.
	OnRevoke func(id uint64, expires int64)
}

// Replay is the single-use store for challenge ids: Use fails with
// ErrReplayed for an id already used and not yet expired, or ErrBusy when
// it cannot take more. [ReplaySet] implements it in memory.
type Replay interface {
	Use(now, expires int64, id uint64) error
}

var _ Replay = (*ReplaySet)(nil)

// Service serves challenges and checks clearance tokens. It is the
// protocol-independent core; fasthttp.go and nethttp.go adapt it.
//
// The zero value is not usable; build one with [New]. A Service is safe for
// concurrent use.
type Service struct {
	cfg     Config
	signer  *Signer
	replay  Replay
	revoker *Revoker
	pages   *pageSet
	defLang int
	delay   time.Duration

	allowPaths [][]byte
	allowNets  []netip.Prefix
	allowUAs   [][]byte

	m   *metrics
	log *slog.Logger
}

// New builds a Service from cfg (defaults applied, then validated).
func New(cfg Config, deps Deps) (*Service, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	signer, err := NewSigner(cfg.Keys, cfg.PrefixV4, cfg.PrefixV6)
	if err != nil {
		return nil, err
	}
	s := &Service{
		cfg:     cfg,
		signer:  signer,
		replay:  deps.Replay,
		revoker: NewRevoker(cfg.Revoke),
		pages:   buildPages(&cfg),
		defLang: langIndex(cfg.Language),
		delay:   cfg.NoJSDelay,
		log:     deps.Logger,
	}
	if s.log == nil {
		s.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if s.replay == nil {
		s.replay = NewReplaySet(cfg.ReplayCapacity)
	}
	s.revoker.onRevoke = deps.OnRevoke
	for _, p := range cfg.Allow.Paths {
		s.allowPaths = append(s.allowPaths, []byte(p))
	}
	for _, c := range cfg.Allow.CIDRs {
		p, _ := parseCIDR(c)
		s.allowNets = append(s.allowNets, p)
	}
	for _, ua := range cfg.Allow.UserAgents {
		s.allowUAs = append(s.allowUAs, []byte(ua))
	}
	if s.m, err = newMetrics(s, deps.Registerer); err != nil {
		return nil, fmt.Errorf("challenge: register metrics: %w", err)
	}
	s.log.Info("challenge: ready", "keys", len(cfg.Keys), "signing_key", cfg.Keys[0].ID,
		"difficulty", cfg.Difficulty.Default, "nojs_delay", cfg.NoJSDelay, "token_ttl", cfg.TokenTTL)
	return s, nil
}

// Signer returns the token signer (for tests and tools).
func (s *Service) Signer() *Signer { return s.signer }

// Revoker returns the revocation state, for an admin API to revoke by id.
func (s *Service) Revoker() *Revoker { return s.revoker }

// CookieName is the clearance cookie's name.
func (s *Service) CookieName() string { return s.cfg.CookieName }

// IsEndpoint reports whether path belongs to the package (/.levee/...):
// such requests go to the Endpoint adapters, never to the origin.
func IsEndpoint(path []byte) bool { return bytes.HasPrefix(path, []byte(PathPrefix)) }

// Exempt reports whether a request is on the allowlist (path prefix,
// client network or User-Agent substring) and must not be challenged.
func (s *Service) Exempt(path []byte, addr netip.Addr, userAgent []byte) bool {
	for _, p := range s.allowPaths {
		if bytes.HasPrefix(path, p) {
			return true
		}
	}
	addr = addr.Unmap()
	for _, n := range s.allowNets {
		if n.Contains(addr) {
			return true
		}
	}
	for _, ua := range s.allowUAs {
		if bytes.Contains(userAgent, ua) {
			return true
		}
	}
	return false
}

// Difficulty is the proof-of-work difficulty for the shield's mode and a
// client risk level (0 = nothing known against it), capped at the
// configured maximum.
func (s *Service) Difficulty(mode string, risk int) uint8 {
	d, ok := s.cfg.Difficulty.Modes[mode]
	if !ok {
		d = s.cfg.Difficulty.Default
	}
	v := int(d) + max(risk, 0)*int(s.cfg.Difficulty.RiskStep)
	return uint8(min(v, int(s.cfg.Difficulty.Max)))
}

// Clearance checks the clearance cookie value of a request from addr with
// fingerprint fp: signature, key, expiry, network binding and revocation.
// It counts the use against the token (rate and foreign networks) and
// revokes a token that crosses the limits. The decision engine treats a
// cleared request as verified. It allocates nothing.
func (s *Service) Clearance(now time.Time, cookie []byte, addr netip.Addr, fp Binding) (Claims, bool) {
	if len(cookie) == 0 {
		return Claims{}, false
	}
	c, r := s.signer.Check(now, cookie, addr, fp)
	unix := now.Unix()
	switch r {
	case Valid:
		if s.revoker.Observe(unix, c.Expires, c.ID) {
			s.m.checked[numResults].Inc()
			return Claims{}, false
		}
		s.m.checked[Valid].Inc()
		return c, true
	case WrongNetwork:
		s.revoker.ObserveForeign(unix, c.Expires, c.ID, s.prefixHash(addr))
	}
	s.m.checked[r].Inc()
	return Claims{}, false
}

func (s *Service) prefixHash(addr netip.Addr) uint32 {
	var p [prefixLen]byte
	s.signer.encodePrefix(p[:], addr)
	h := uint32(2166136261)
	for _, b := range p {
		h = (h ^ uint32(b)) * 16777619
	}
	return h
}

// WantsJSON reports whether a client asked for JSON and not HTML (API
// clients): they get a short JSON answer instead of the page.
func WantsJSON(accept []byte) bool {
	return bytes.Contains(accept, []byte("application/json")) && !bytes.Contains(accept, []byte("text/html"))
}

// AppendPage appends the challenge page for a client to dst: a freshly
// signed challenge of the given difficulty inserted into the prebuilt page
// of the client's language. requestURI is where the client goes once it
// passes (only local paths are kept). Serve it with [PageHeaders] and
// status 403.
func (s *Service) AppendPage(dst []byte, now time.Time, addr netip.Addr, fp Binding, difficulty uint8, acceptLanguage, requestURI []byte) []byte {
	var cb [chalLen + 8]byte
	v := slotValues{
		chal: s.signer.NewChallenge(cb[:0], now, addr, fp, min(difficulty, 32), s.cfg.ChallengeTTL),
		ret:  safeReturn(requestURI),
	}
	s.m.pages[0].Inc()
	return s.pages.challenge[pickLanguage(acceptLanguage, s.defLang)][min(difficulty, 32)].append(dst, &v)
}

// JSONBody is the static answer for API clients (serve with status
// [Service.APIStatus] and [PageHeaders] but Content-Type application/json).
func (s *Service) JSONBody() []byte {
	s.m.pages[1].Inc()
	return s.pages.json
}

// APIStatus is the HTTP status for JSON answers (403 or 429).
func (s *Service) APIStatus() int { return s.cfg.APIStatus }

// PageHeaders are the headers of every challenge response besides
// Content-Type: never cached by intermediaries, never framed, no external
// resources.
var PageHeaders = [][2]string{
	{"Cache-Control", "no-store, private, max-age=0"},
	{"X-Robots-Tag", "noindex"},
	{"X-Frame-Options", "DENY"},
	{"Referrer-Policy", "same-origin"},
	{"Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; worker-src blob:; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"},
}

// Reply is what an endpoint request gets back.
type Reply struct {
	Status   int
	Cookie   string // Set-Cookie header value; empty for none
	Location []byte // redirect target; nil for none
	JSON     bool   // Body is JSON, not HTML
	Body     []byte // the dst passed to Endpoint, extended
}

// EndpointRequest is the part of a request that the endpoints read.
type EndpointRequest struct {
	Path           []byte // /.levee/challenge/verify or /.levee/nojs
	Post           bool   // method is POST
	Challenge      []byte // form or query value "c"
	Nonce          []byte // form value "n" (proof of work)
	Return         []byte // form or query value "r"
	AcceptLanguage []byte
	Accept         []byte
}

// Endpoint answers a request to one of the package's endpoints from a
// client at addr with fingerprint fp, appending any body to dst.
func (s *Service) Endpoint(dst []byte, now time.Time, addr netip.Addr, fp Binding, r *EndpointRequest) Reply {
	lang := pickLanguage(r.AcceptLanguage, s.defLang)
	ret := safeReturn(r.Return)
	var (
		method Method
		err    error
		c      Challenge
	)
	switch {
	case bytes.Equal(r.Path, []byte(PathVerify)) && r.Post:
		method = MethodPoW
		c, err = s.signer.OpenChallenge(now, r.Challenge, addr, fp)
		if err == nil && (c.Difficulty == 0 || !validNonce(r.Nonce) || LeadingZeroBits(r.Challenge, r.Nonce) < int(c.Difficulty)) {
			err = ErrWrongWork
		}
	case bytes.Equal(r.Path, []byte(PathNoJS)):
		method = MethodNoJS
		c, err = s.signer.OpenChallenge(now, r.Challenge, addr, fp)
		if err == nil {
			if left := time.Unix(c.Issued, 0).Add(s.delay).Sub(now); left > 0 {
				s.m.answer(method, ErrTooEarly)
				v := slotValues{chal: r.Challenge, ret: ret, wait: int((left + time.Second - 1) / time.Second)}
				return Reply{Status: 403, Body: s.pages.wait[lang].append(dst, &v)}
			}
		}
	default:
		return Reply{Status: 404, Body: append(dst, "not found\n"...)}
	}
	if err == nil {
		err = s.replay.Use(now.Unix(), c.Expires, c.ID)
	}
	s.m.answer(method, err)
	if err != nil {
		if WantsJSON(r.Accept) {
			return Reply{Status: s.cfg.APIStatus, JSON: true, Body: append(dst, s.pages.jsonBusy...)}
		}
		v := slotValues{ret: ret}
		return Reply{Status: 403, Body: s.pages.denied[lang].append(dst, &v)}
	}
	ttl := s.cfg.TokenTTL
	if method == MethodNoJS {
		ttl = s.cfg.NoJSTokenTTL
	}
	return Reply{Status: 303, Cookie: s.cookie(s.signer.Issue(now, addr, fp, method, ttl), ttl), Location: ret, Body: dst}
}

func validNonce(n []byte) bool {
	if len(n) == 0 || len(n) > 20 {
		return false
	}
	for _, c := range n {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (s *Service) cookie(token string, ttl time.Duration) string {
	c := s.cfg.CookieName + "=" + token + "; Path=/; Max-Age=" + strconv.Itoa(int(ttl/time.Second)) + "; HttpOnly; SameSite=Lax"
	if s.cfg.CookieDomain != "" {
		c += "; Domain=" + s.cfg.CookieDomain
	}
	if !s.cfg.InsecureCookie {
		c += "; Secure"
	}
	return c
}

// errReason maps an answer error to its metric label.
func errReason(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrForged):
		return "forged"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrTooEarly):
		return "too_early"
	case errors.Is(err, ErrReplayed):
		return "replayed"
	case errors.Is(err, ErrWrongWork):
		return "wrong_work"
	case errors.Is(err, ErrBusy):
		return "busy"
	}
	return "other"
}
