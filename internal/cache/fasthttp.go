package cache

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// Adapters for the shield's fasthttp data plane. *fasthttp.RequestHeader
// already implements HeaderPeeker: build a Request from a RequestCtx as
//
//	r := cache.Request{Method: ctx.Method(), Host: ctx.Host(), Path: ctx.URI().PathOriginal(),
//		Query: ctx.URI().QueryString(), Header: &ctx.Request.Header}
//
// (PathOriginal keeps the path as sent; use Path() for the normalized one.)

// FromFastHTTP fills dst from an origin response, for Store or a Fetch
// callback. The header fields are copied into dst's own buffer, which is
// reused when dst is; the body aliases resp.Body() and must not be used
// after resp is released (Store copies what it keeps).
func FromFastHTTP(dst *Response, resp *fasthttp.Response) {
	dst.Status = resp.StatusCode()
	dst.Header = dst.Header[:0]
	dst.arena = dst.arena[:0]
	for k, v := range resp.Header.All() {
		dst.arena = append(dst.arena, k...)
		dst.arena = append(dst.arena, v...)
	}
	// Second pass: slice the final arena (appending may have moved it).
	off := 0
	for k, v := range resp.Header.All() {
		n := off + len(k)
		m := n + len(v)
		dst.Header = append(dst.Header, Field{Name: dst.arena[off:n:n], Value: dst.arena[n:m:m]})
		off = m
	}
	dst.Body = resp.Body()
}

// WriteFastHTTP writes e as the response, with an Age header for now. The
// body is not copied: entries are immutable.
func (e *Entry) WriteFastHTTP(now time.Time, resp *fasthttp.Response) {
	resp.SetStatusCode(e.Status)
	for _, f := range e.Header {
		resp.Header.AddBytesKV(f.Name, f.Value)
	}
	var buf [20]byte
	resp.Header.SetBytesV("Age", strconv.AppendInt(buf[:0], e.Age(now), 10))
	resp.SetBodyRaw(e.Body)
}
