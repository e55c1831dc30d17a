// Package admin serves the operator API of a running shield on its own
// listener (loopback by default): JSON endpoints for status, stats and
// reload, and Prometheus metrics. Every request must carry the bearer
// token, compared in constant time; the token is never logged.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Backend is what the API operates on; the shield implements it.
type Backend interface {
	// Status is a summary: version, uptime, mode, listeners, sites.
	Status() any
	// Stats are counters and table sizes.
	Stats() any
	// Reload re-reads and applies the configuration; an invalid one is
	// refused and the running one stays.
	Reload() error
}

// Config configures the API server.
type Config struct {
	Token         string
	PublicMetrics bool
}

// Server is the admin HTTP server. Register extra routes with Handle before
// Serve. It is safe for concurrent use once serving.
type Server struct {
	cfg Config
	mux *http.ServeMux
	srv *http.Server
	log *slog.Logger
}

// New returns a Server for b. gatherer provides /metrics.
func New(cfg Config, b Backend, gatherer prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if len(cfg.Token) < 16 {
		return nil, errors.New("admin: a bearer token of at least 16 characters is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), log: log}
	s.mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, b.Status()) })
	s.mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, 200, b.Stats()) })
	s.mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Reload(); err != nil {
			WriteJSON(w, http.StatusUnprocessableEntity, map[string]any{"ok": false, "error": err.Error()})
			return
		}
		WriteJSON(w, 200, map[string]any{"ok": true})
	})
	mh := promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})
	s.mux.Handle("GET /metrics", mh)
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Handle registers an extra route (pattern as in http.ServeMux), behind the
// same authentication.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// ServeHTTP authenticates, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !(s.cfg.PublicMetrics && r.URL.Path == "/metrics") && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="levee-admin"`)
		WriteJSON(w, http.StatusUnauthorized, map[string]any{"error": "missing or wrong bearer token"})
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorized(r *http.Request) bool {
	const prefix = "Bearer "
	h := r.Header.Get("Authorization")
	if len(h) <= len(prefix) || h[:len(prefix)] != prefix {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), []byte(s.cfg.Token)) == 1
}

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	err := s.srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops the server gracefully.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// WriteJSON writes v as indented JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ReadJSON decodes a JSON request body of at most 1 MiB into v, rejecting
// unknown fields.
func ReadJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("invalid JSON body: " + err.Error())
	}
	return nil
}
