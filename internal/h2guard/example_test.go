package h2guard_test

import (
	"crypto/tls"
	"log"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http2"

	"github.com/levee-dev/levee/internal/h2guard"
)

// serveH2 shows where the guard sits: after the TLS handshake negotiated
// "h2", around the conn handed to the x/net/http2 server.
func serveH2(ln net.Listener, tlsCfg *tls.Config, handler http.Handler, g *h2guard.Guard) {
	srv := h2guard.ServerConfig(g.Config())
	base := h2guard.BaseConfig(g.Config())
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			tc := tls.Server(c, tlsCfg)
			if err := tc.Handshake(); err != nil || tc.ConnectionState().NegotiatedProtocol != "h2" {
				c.Close()
				return
			}
			gc := g.Wrap(tc)
			defer gc.Close()
			srv.ServeConn(gc, &http2.ServeConnOpts{Handler: handler, BaseConfig: base})
		}()
	}
}

func ExampleGuard_Wrap() {
	g, err := h2guard.New(h2guard.Config{MaxClientResets: 200}, h2guard.Deps{
		Registerer: prometheus.NewRegistry(),
		OnAbuse: func(c *h2guard.Conn, r h2guard.Reason) {
			// count and ban c.RemoteAddr() here; must not block
			log.Printf("h2 abuse from %s: %s (%+v)", c.RemoteAddr(), r, c.Stats())
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = serveH2
	_ = g
}
