package challenge

import (
	"net/http"
	"net/netip"
	"sync"
	"time"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// HTTPClearance checks the clearance cookie of a net/http request.
func (s *Service) HTTPClearance(r *http.Request, now time.Time, addr netip.Addr, fp Binding) (Claims, bool) {
	c, err := r.Cookie(s.cfg.CookieName)
	if err != nil {
		return Claims{}, false
	}
	return s.Clearance(now, []byte(c.Value), addr, fp)
}

// HTTPExempt reports whether the request is on the allowlist.
func (s *Service) HTTPExempt(r *http.Request, addr netip.Addr) bool {
	return s.Exempt([]byte(r.URL.Path), addr, []byte(r.UserAgent()))
}

// ServeChallenge answers w with the challenge page (403) or, for API
// clients, the static JSON answer.
func (s *Service) ServeChallenge(w http.ResponseWriter, r *http.Request, now time.Time, addr netip.Addr, fp Binding, difficulty uint8) {
	h := w.Header()
	setPageHeaders(h.Set)
	if WantsJSON([]byte(r.Header.Get("Accept"))) {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(s.cfg.APIStatus)
		w.Write(s.JSONBody())
		return
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	bp := bufPool.Get().(*[]byte)
	b := s.AppendPage((*bp)[:0], now, addr, fp, difficulty, []byte(r.Header.Get("Accept-Language")), []byte(r.URL.RequestURI()))
	w.WriteHeader(http.StatusForbidden)
	w.Write(b)
	*bp = b
	bufPool.Put(bp)
}

// ServeEndpoint answers a request for /.levee/challenge/verify or
// /.levee/nojs (see [Service.FastEndpoint]).
func (s *Service) ServeEndpoint(w http.ResponseWriter, r *http.Request, now time.Time, addr netip.Addr, fp Binding) {
	req := EndpointRequest{
		Path:           []byte(r.URL.Path),
		Post:           r.Method == http.MethodPost,
		AcceptLanguage: []byte(r.Header.Get("Accept-Language")),
		Accept:         []byte(r.Header.Get("Accept")),
	}
	if req.Post {
		r.Body = http.MaxBytesReader(w, r.Body, 4096)
		if err := r.ParseForm(); err != nil {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		req.Challenge, req.Nonce, req.Return = []byte(r.PostForm.Get("c")), []byte(r.PostForm.Get("n")), []byte(r.PostForm.Get("r"))
	} else {
		q := r.URL.Query()
		req.Challenge, req.Return = []byte(q.Get("c")), []byte(q.Get("r"))
	}
	h := w.Header()
	setPageHeaders(h.Set)
	bp := bufPool.Get().(*[]byte)
	rep := s.Endpoint((*bp)[:0], now, addr, fp, &req)
	switch {
	case rep.JSON:
		h.Set("Content-Type", "application/json")
	case rep.Status != 303:
		h.Set("Content-Type", "text/html; charset=utf-8")
	}
	if rep.Cookie != "" {
		h.Set("Set-Cookie", rep.Cookie)
	}
	if rep.Location != nil {
		h.Set("Location", string(rep.Location))
	}
	w.WriteHeader(rep.Status)
	w.Write(rep.Body)
	*bp = rep.Body
	bufPool.Put(bp)
}

// Gate is a net/http middleware: it serves the endpoints, lets cleared and
// allowlisted requests through to Next, and challenges the rest when
// Challenge says so.
//
// The zero value is not usable: Service and Next are required; nil funcs
// take the defaults documented on each field. A Gate is safe for concurrent
// use.
type Gate struct {
	Service *Service
	Next    http.Handler
	// Addr is the client's address. Default: parsed from r.RemoteAddr.
	Addr func(r *http.Request) netip.Addr
	// Fingerprint binding of the client's connection, see
	// [BindFingerprint]. Default: the zero Binding.
	Fingerprint func(r *http.Request) Binding
	// Challenge decides, for a request without clearance, whether to
	// challenge it and at what difficulty. Default: always, at the
	// configured default difficulty.
	Challenge func(r *http.Request) (difficulty uint8, challenge bool)
}

var _ http.Handler = (*Gate)(nil)

// ServeHTTP implements http.Handler.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	var addr netip.Addr
	if g.Addr != nil {
		addr = g.Addr(r)
	} else if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		addr = ap.Addr()
	}
	var fp Binding
	if g.Fingerprint != nil {
		fp = g.Fingerprint(r)
	}
	s := g.Service
	if IsEndpoint([]byte(r.URL.Path)) {
		s.ServeEndpoint(w, r, now, addr, fp)
		return
	}
	if _, ok := s.HTTPClearance(r, now, addr, fp); ok || s.HTTPExempt(r, addr) {
		g.Next.ServeHTTP(w, r)
		return
	}
	d, challenge := s.cfg.Difficulty.Default, true
	if g.Challenge != nil {
		d, challenge = g.Challenge(r)
	}
	if !challenge {
		g.Next.ServeHTTP(w, r)
		return
	}
	s.ServeChallenge(w, r, now, addr, fp, d)
}
