package probe_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

func ExampleProber() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	p, err := probe.New(probe.Spec{Kind: probe.KindHTTP, URL: srv.URL + "/health"}, 2*time.Second)
	if err != nil {
		fmt.Println(err)
		return
	}
	r := p.Probe(context.Background())
	fmt.Println(r.OK, r.Failure, r.Status, r.Timings.Total > 0)
	// Output: false bad_status 503 true
}
