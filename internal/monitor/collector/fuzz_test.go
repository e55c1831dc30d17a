package collector

import (
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/api"
)

// FuzzIngestBody posts arbitrary bodies to the agent results endpoint: the
// collector must answer 200 with a complete ack, or a 4xx, and never panic.
func FuzzIngestBody(f *testing.F) {
	f.Add(`{"results":[{"id":"a1-1","target":"site","at":"2026-01-01T00:00:00Z","ok":true}]}`)
	f.Add(`{"results":[{"id":"","target":"site"}]}`)
	f.Add(`{"results":null}`)
	f.Add(`[1,2,3]`)
	c := newIdle(f, "")
	f.Fuzz(func(t *testing.T, body string) {
		req := httptest.NewRequest("POST", api.ResultsPath, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+agentTokenPrefix+"a1")
		rec := httptest.NewRecorder()
		c.Handler().ServeHTTP(rec, req)
		if rec.Code != 200 && (rec.Code < 400 || rec.Code >= 500) {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
	})
}

// TestCollectorStopsCleanly runs a probing collector and checks that
// stopping it leaves no goroutines behind.
func TestCollectorStopsCleanly(t *testing.T) {
	o := startOrigin(t, "")
	before := runtime.NumGoroutine()
	dir := t.TempDir()
	h := startCollector(t, dir, "", config(dir+"/data", "", "http", "http://"+o.addr+"/", 50*time.Millisecond, 40*time.Millisecond))
	waitFor(t, 5*time.Second, "some probes", func() bool { return len(h.c.tracker.Status(time.Now())) > 0 })
	get(t, h.url()+"/")
	h.stop()
	waitFor(t, 5*time.Second, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before+1 })
}
