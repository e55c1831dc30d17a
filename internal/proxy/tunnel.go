package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// tunnel proxies an Upgrade request (WebSocket, h2c upgrade is not offered):
// it forwards the request head on a fresh origin connection and, on 101,
// splices the two connections until either side closes or the tunnel idles
// out. Any other answer is relayed as a normal response.
func (p *Proxy) tunnel(ctx *fasthttp.RequestCtx, st *State, site *Site, peer netip.Addr, trusted bool) {
	start := time.Now()
	b := site.Pool.Pick(nil)
	dialTimeout := site.Pool.ConnectTimeout()
	if dialTimeout <= 0 {
		dialTimeout = st.Config.ConnectTimeout
	}
	up, err := net.DialTimeout("tcp", b.Addr, dialTimeout)
	if err != nil {
		site.m.dialErr.Inc()
		writePage(ctx, pageBadGateway)
		site.m.count(vError, 502)
		return
	}
	req := &ctx.Request
	upgrade := append([]byte(nil), req.Header.Peek(fasthttp.HeaderUpgrade)...)
	prepareRequest(&req.Header, peer, trusted, ctx.IsTLS(), site.RewriteHost)
	req.Header.Set(fasthttp.HeaderConnection, "Upgrade")
	req.Header.SetBytesV(fasthttp.HeaderUpgrade, upgrade)
	idle := st.Config.TunnelIdleTimeout
	_ = up.SetDeadline(time.Now().Add(dialTimeout + idle))
	if _, err := up.Write(req.Header.Header()); err != nil {
		up.Close()
		writePage(ctx, pageBadGateway)
		site.m.count(vError, 502)
		return
	}
	br := bufio.NewReader(up)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		up.Close()
		pg := pageBadGateway
		if isTimeout(err) {
			pg = pageGatewayTimeout
		}
		writePage(ctx, pg)
		site.m.count(vError, pg.status)
		return
	}
	site.m.latency.Observe(time.Since(start).Seconds())
	if resp.StatusCode != http.StatusSwitchingProtocols {
		// Relay the refusal as an ordinary response and drop the origin conn.
		ctx.Response.SetStatusCode(resp.StatusCode)
		for k, vs := range resp.Header {
			if k == "Connection" || k == "Keep-Alive" || k == "Upgrade" || k == "Transfer-Encoding" {
				continue
			}
			for _, v := range vs {
				ctx.Response.Header.Add(k, v)
			}
		}
		ctx.Response.SetBodyStream(&closingBody{r: resp.Body, c: up}, int(resp.ContentLength))
		site.m.count(vPass, resp.StatusCode)
		return
	}
	site.m.count(vPass, 101)
	head := make([]byte, 0, 512)
	head = append(head, "HTTP/1.1 101 Switching Protocols\r\n"...)
	for k, vs := range resp.Header {
		for _, v := range vs {
			head = append(append(append(append(head, k...), ": "...), v...), "\r\n"...)
		}
	}
	head = append(head, "\r\n"...)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		defer up.Close()
		if _, err := c.Write(head); err != nil {
			return
		}
		_ = up.SetDeadline(time.Time{})
		splice(c, up, br, idle)
	})
}

// splice copies both ways until one side is done, refreshing an idle
// deadline on each read. upBuf holds bytes the origin sent after its 101.
func splice(client, up net.Conn, upBuf *bufio.Reader, idle time.Duration) {
	var wg sync.WaitGroup
	wg.Add(2)
	cp := func(dst, src net.Conn, r io.Reader) {
		defer wg.Done()
		buf := make([]byte, 32<<10)
		for {
			_ = src.SetReadDeadline(time.Now().Add(idle))
			n, err := r.Read(buf)
			if n > 0 {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// Propagate EOF as a half-close where possible, then unblock the
		// other direction.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = src.SetReadDeadline(time.Now())
		_ = dst.SetReadDeadline(time.Now().Add(time.Second))
	}
	go cp(up, client, client)
	go cp(client, up, upBuf)
	wg.Wait()
}

type closingBody struct {
	r io.ReadCloser
	c net.Conn
}

func (b *closingBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *closingBody) Close() error {
	b.r.Close()
	return b.c.Close()
}
