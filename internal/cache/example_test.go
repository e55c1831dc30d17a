package cache_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/levee-dev/levee/internal/cache"
)

func ExampleCache() {
	c, err := cache.New(cache.Config{IgnoreParams: []string{"utm_*", "cb"}}, nil)
	if err != nil {
		panic(err)
	}
	now := time.Unix(1_700_000_000, 0)
	req := func(q string) *cache.Request {
		return &cache.Request{Method: []byte("GET"), Host: []byte("example.com"), Path: []byte("/news"),
			Query: []byte(q), Header: cache.NetHTTPHeader(http.Header{})}
	}
	origin := func() (*cache.Response, error) {
		return &cache.Response{Status: 200, Body: []byte("front page"),
			Header: []cache.Field{{Name: []byte("Cache-Control"), Value: []byte("max-age=10")}}}, nil
	}

	// Miss: one coalesced fetch from the origin, stored.
	if _, st := c.Get(now, req("cb=123")); st == cache.Miss {
		e, _, _ := c.Fetch(context.Background(), now, req("cb=123"), origin)
		fmt.Println("fetched:", string(e.Body))
	}
	// A cache-busting variant of the same page is a hit.
	e, st := c.Get(now.Add(time.Second), req("utm_source=x&cb=999"))
	fmt.Println(st, string(e.Body))
	// After 10s it is stale: serve it only if the origin fails or the
	// admission gate sheds the request.
	_, st = c.Get(now.Add(15*time.Second), req(""))
	fmt.Println(st)
	// Output:
	// fetched: front page
	// hit front page
	// stale
}
