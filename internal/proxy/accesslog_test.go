package proxy

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/accesslog"
	"github.com/levee-dev/levee/internal/telemetry"
)

// TestAccessLogCapsRejectedLines: with LimitRejected, at most the cap of
// rejected-request lines are written per second, every passed request is
// written, and the lines left out are reported.
func TestAccessLogCapsRejectedLines(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	var reported int64
	l := NewAccessLog(&buf, nil)
	l.LimitRejected(3, func(n int64) { mu.Lock(); reported += n; mu.Unlock() })
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	entry := func(at time.Time, v telemetry.Verdict, path string) *accesslog.Entry {
		return &accesslog.Entry{Format: accesslog.FormatJSON, Time: at, Client: netip.MustParseAddr("192.0.2.1"),
			Method: []byte("GET"), Path: []byte(path), Status: 429, Verdict: v, HasVerdict: true}
	}
	for i := range 10 {
		l.Write(entry(t0.Add(time.Duration(i)*time.Millisecond), telemetry.VerdictLimited, "/flood"))
		if i%2 == 0 {
			l.Write(entry(t0, telemetry.VerdictPass, "/ok"))
		}
	}
	for range 2 {
		l.Write(entry(t0.Add(time.Second), telemetry.VerdictBlocked, "/next-second"))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if n := strings.Count(out, `"path":"/flood"`); n != 3 {
		t.Errorf("%d rejected lines in the first second, want the cap of 3", n)
	}
	if n := strings.Count(out, `"path":"/ok"`); n != 5 {
		t.Errorf("%d passed lines, want all 5", n)
	}
	if n := strings.Count(out, `"path":"/next-second"`); n != 2 {
		t.Errorf("%d rejected lines in the next second, want 2", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if reported != 7 {
		t.Errorf("reported %d suppressed lines, want 7", reported)
	}
}

// TestAccessLogUncapped: without LimitRejected every line is written.
func TestAccessLogUncapped(t *testing.T) {
	var buf bytes.Buffer
	l := NewAccessLog(&buf, nil)
	for range 50 {
		l.Write(&accesslog.Entry{Format: accesslog.FormatJSON, Time: time.Unix(1, 0), Verdict: telemetry.VerdictLimited, HasVerdict: true})
	}
	l.Close()
	if n := strings.Count(buf.String(), "\n"); n != 50 {
		t.Fatalf("%d lines, want 50", n)
	}
}
