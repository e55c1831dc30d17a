package cache

import (
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func TestFastHTTPRoundTrip(t *testing.T) {
	c := newCache(t, Config{})
	var origin fasthttp.Response
	origin.SetStatusCode(200)
	origin.Header.Set("Content-Type", "text/html")
	origin.Header.Set("Cache-Control", "max-age=60")
	origin.Header.Set("X-Origin", "a")
	origin.SetBodyString("<p>hi</p>")

	var rq fasthttp.Request
	rq.SetRequestURI("http://example.com/page?b=1&a=2")
	r := &Request{Method: rq.Header.Method(), Host: rq.Host(), Path: rq.URI().PathOriginal(), Query: rq.URI().QueryString(), Header: &rq.Header}

	var resp Response
	FromFastHTTP(&resp, &origin)
	if c.Store(t0, r, &resp) == nil {
		t.Fatal("not stored")
	}
	rq2 := fasthttp.Request{}
	rq2.SetRequestURI("http://example.com/page?a=2&b=1")
	r2 := &Request{Method: rq2.Header.Method(), Host: rq2.Host(), Path: rq2.URI().PathOriginal(), Query: rq2.URI().QueryString(), Header: &rq2.Header}
	e, st := c.Get(t0.Add(3*time.Second), r2)
	if st != Hit {
		t.Fatalf("%v", st)
	}
	var out fasthttp.Response
	e.WriteFastHTTP(t0.Add(3*time.Second), &out)
	if out.StatusCode() != 200 || string(out.Body()) != "<p>hi</p>" || string(out.Header.ContentType()) != "text/html" ||
		string(out.Header.Peek("X-Origin")) != "a" || string(out.Header.Peek("Age")) != "3" {
		t.Fatalf("response:\n%s", out.String())
	}
}
