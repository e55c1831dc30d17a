package proxy

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/accesslog"
)

// TestAccessLogCapsRejectedLines: with a cap (NewAccessLogCapped), at most the cap of
// refused requests' lines are written per second (of writing, whatever the
// requests' own times: lines stamped seconds apart must not reset the
// count), shed requests count as refused, every passed request and every
// origin error is written, and the lines left out are reported.
func TestAccessLogCapsRejectedLines(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	var reported int64
	l := NewAccessLogCapped(&buf, nil, 3, func(n int64) { mu.Lock(); reported += n; mu.Unlock() })
	now := time.Now()
	write := func(at time.Time, v verdictIdx, path string) {
		l.Write(&accesslog.Entry{Format: accesslog.FormatJSON, Time: at, Client: netip.MustParseAddr("192.0.2.1"),
			Method: []byte("GET"), Path: []byte(path), Status: 429, Verdict: telemetryVerdict[v], HasVerdict: true}, refusedVerdict(v))
	}
	const flood = 1000
	start := time.Now()
	for i := range flood {
		at := now
		if i%2 == 1 {
			at = now.Add(-5 * time.Second) // e.g. a tarpitted stream logged late
		}
		v := vLimit
		if i%3 == 0 {
			v = vShed // origin protection turning requests away
		}
		write(at, v, "/flood")
		if i%100 == 0 {
			write(now, vPass, "/ok")
			write(now, vError, "/origin-down")
		}
	}
	windows := int(time.Since(start)/time.Second) + 2 // seconds the loop touched
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	written := strings.Count(out, `"path":"/flood"`)
	if written < 3 || written > 3*windows {
		t.Errorf("%d refused lines written over at most %d seconds, want 3 per second", written, windows)
	}
	if n := strings.Count(out, `"path":"/ok"`); n != 10 {
		t.Errorf("%d passed lines, want all 10", n)
	}
	if n := strings.Count(out, `"path":"/origin-down"`); n != 10 {
		t.Errorf("%d origin error lines, want all 10", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if int(reported)+written != flood {
		t.Errorf("reported %d left out + %d written, want %d", reported, written, flood)
	}
}

// TestAccessLogUncapped: without a cap every line is written.
func TestAccessLogUncapped(t *testing.T) {
	var buf bytes.Buffer
	l := NewAccessLog(&buf, nil)
	for range 50 {
		l.Write(&accesslog.Entry{Format: accesslog.FormatJSON, Time: time.Unix(1, 0), Verdict: telemetryVerdict[vLimit], HasVerdict: true}, true)
	}
	l.Close()
	if n := strings.Count(buf.String(), "\n"); n != 50 {
		t.Fatalf("%d lines, want 50", n)
	}
}
