package iplist

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// touch moves the file's mtime forward so that a rewrite of the same size is
// seen as a change even on coarse-grained file systems.
func touch(t *testing.T, path string, d time.Duration) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime().Add(d), fi.ModTime().Add(d)); err != nil {
		t.Fatal(err)
	}
}

// gathered returns every sample of reg as "name{label=value,...}" -> value.
func gathered(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue()
			if m.GetCounter() != nil {
				v = m.GetCounter().GetValue()
			}
			out[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func TestSetReloads(t *testing.T) {
	dir := t.TempDir()
	static := filepath.Join(dir, "allow.txt")
	feed := filepath.Join(dir, "drop.json")
	writeFile(t, static, "192.0.2.0/24\n")
	drop, _ := os.ReadFile("testdata/drop_v4.json")
	writeFile(t, feed, string(drop))

	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	s, err := NewSet(SetConfig{Lists: []ListConfig{
		{Name: "static", Path: static},
		{Path: feed, Lenient: true, Format: "spamhaus-json"},
	}}, SetDeps{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ma := netip.MustParseAddr
	check := func(addr, want string) {
		t.Helper()
		got, ok := s.Lookup(ma(addr))
		if got != want || ok != (want != "") || s.Contains(ma(addr)) != ok {
			t.Errorf("Lookup(%s) = %q,%v; want %q", addr, got, ok, want)
		}
	}
	check("192.0.2.9", "static")
	check("1.10.16.1", "drop.json")
	check("203.0.113.1", "")

	// Unchanged files are not re-read by Poll.
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, reg)[`levee_iplist_reloads_total{list=static,result=ok}`]; got != 1 {
		t.Errorf("static read %v times; want 1", got)
	}

	// A changed file is re-read and swapped in.
	writeFile(t, static, "192.0.2.0/24\n203.0.113.0/24\n")
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	check("203.0.113.1", "static")

	// A bad rewrite of a strict list keeps its previous contents and is
	// logged once, however often we poll.
	writeFile(t, static, "192.0.2.0/24\n203.0.113.0/24\nbogus line\n")
	for i := 0; i < 3; i++ {
		err := s.Poll()
		if i == 0 && (err == nil || !strings.Contains(err.Error(), static+":3")) {
			t.Errorf("Poll err = %v; want file:line of the bad line", err)
		}
	}
	check("203.0.113.1", "static")
	if n := strings.Count(logs.String(), "list reload failed"); n != 1 {
		t.Errorf("failure logged %d times; want 1\n%s", n, logs.String())
	}

	// Fixing the file recovers.
	writeFile(t, static, "198.51.100.0/24\n")
	touch(t, static, time.Second)
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	check("203.0.113.1", "")
	check("198.51.100.1", "static")

	// A lenient feed with junk loads the good lines and counts the bad.
	writeFile(t, feed, "{\"cidr\":\"5.134.128.0/19\"}\nnot json\n")
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	check("1.10.16.1", "")
	check("5.134.128.1", "drop.json")
	if got := gathered(t, reg)[`levee_iplist_skipped_lines_total{list=drop.json}`]; got != 1 {
		t.Errorf("skipped metric %v; want 1", got)
	}

	// A vanished file keeps its contents too.
	os.Remove(feed)
	if err := s.Poll(); err == nil {
		t.Error("Poll with a missing file returned nil")
	}
	check("5.134.128.1", "drop.json")

	// Reload re-reads everything; the missing file still fails.
	if err := s.Reload(); err == nil {
		t.Error("Reload with a missing file returned nil")
	}
	if got := gathered(t, reg)[`levee_iplist_reloads_total{list=static,result=ok}`]; got != 4 {
		t.Errorf("static read %v times; want 4", got)
	}
	if got := s.Lists(); len(got) != 2 || got[0] != "static" || got[1] != "drop.json" {
		t.Errorf("Lists() = %v", got)
	}
	st := s.Status()
	if len(st) != 2 || st[0].Name != "static" || st[0].Prefixes != 1 || st[0].Error != "" || st[0].Format != "plain" || st[0].Loaded.IsZero() {
		t.Errorf("Status()[0] = %+v", st[0])
	}
	if st[1].Prefixes != 1 || st[1].Skipped != 1 || st[1].Format != "spamhaus-json" || !strings.Contains(st[1].Error, "no such file") {
		t.Errorf("Status()[1] = %+v; want the last good contents and the current error", st[1])
	}
}

func TestSetOverlap(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a, "10.0.0.0/8\n10.1.0.0/16\n")
	writeFile(t, b, "10.1.0.0/16\n10.1.2.0/24\n")
	s, err := NewSet(SetConfig{Lists: []ListConfig{{Path: a}, {Path: b}}}, SetDeps{})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]string{"10.9.0.1": "a", "10.1.9.1": "b", "10.1.2.3": "b"} {
		if got, _ := s.Lookup(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Lookup(%s) = %q; want %q", addr, got, want)
		}
	}
	if s.Table().Len() != 3 {
		t.Errorf("table has %d prefixes; want 3", s.Table().Len())
	}
}

func TestSetConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.txt")
	bad := filepath.Join(dir, "bad.txt")
	writeFile(t, good, "192.0.2.1\n")
	writeFile(t, bad, "192.0.2.1\n\n192.0.2.999\n")
	for _, tc := range []struct {
		name  string
		lists []ListConfig
		want  string
	}{
		{"no path", []ListConfig{{Name: "x"}}, "path is required"},
		{"duplicate", []ListConfig{{Path: good}, {Path: good}}, "duplicate list name"},
		{"format", []ListConfig{{Path: good, Format: "csv"}}, "unknown list format"},
		{"missing", []ListConfig{{Path: filepath.Join(dir, "nope")}}, "no such file"},
		{"bad line", []ListConfig{{Path: bad}}, bad + ":3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := SetConfig{Lists: tc.lists}
			_, err := NewSet(cfg, SetDeps{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want it to contain %q", err, tc.want)
			}
			// Validate catches configuration mistakes without reading files.
			verr := cfg.Validate()
			if fileProblem := tc.name == "missing" || tc.name == "bad line"; (verr == nil) != fileProblem {
				t.Errorf("Validate() = %v", verr)
			}
		})
	}
	// The same bad file is fine as a lenient feed.
	if _, err := NewSet(SetConfig{Lists: []ListConfig{{Path: bad, Lenient: true}}}, SetDeps{}); err != nil {
		t.Errorf("lenient: %v", err)
	}
}

func TestSetRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.txt")
	writeFile(t, path, "192.0.2.1\n")
	s, err := NewSet(SetConfig{Lists: []ListConfig{{Path: path}}, Interval: 5 * time.Millisecond}, SetDeps{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	writeFile(t, path, "192.0.2.1\n192.0.2.2\n")
	a := netip.MustParseAddr("192.0.2.2")
	for !s.Contains(a) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
	if !s.Contains(a) {
		t.Fatal("Run did not pick up the change within 10s")
	}
}

func TestSetLookupAllocs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.txt")
	writeFile(t, path, "192.0.2.0/24\n2001:db8::/32\n")
	s, err := NewSet(SetConfig{Lists: []ListConfig{{Path: path}}}, SetDeps{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")
	if n := testing.AllocsPerRun(1000, func() { s.Lookup(a); s.Contains(b) }); n != 0 {
		t.Fatalf("Set lookups allocate %v times; want 0", n)
	}
}

func TestSetLenientFeedMissingAtStart(t *testing.T) {
	dir := t.TempDir()
	feed := filepath.Join(dir, "feed.netset")
	logs := &syncBuffer{}
	s, err := NewSet(SetConfig{Lists: []ListConfig{{Path: feed, Lenient: true}}}, SetDeps{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatalf("NewSet with a missing lenient feed: %v", err)
	}
	if s.Table().Len() != 0 || !strings.Contains(logs.String(), "no such file") {
		t.Errorf("table has %d prefixes, log %q; want empty and the error logged", s.Table().Len(), logs.String())
	}
	writeFile(t, feed, "# FireHOL\n45.9.148.0/24\n")
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if got, ok := s.Lookup(netip.MustParseAddr("45.9.148.7")); !ok || got != "feed.netset" {
		t.Errorf("after the feed appeared: Lookup = %q, %v", got, ok)
	}
}

// TestSetCollectorFollowsCurrentSet: one collector registered once shows
// the lists of whichever Set is current at scrape time, so a replaced Set
// (a configuration reload) is reflected without re-registering, and shows
// nothing while there is no Set.
func TestSetCollectorFollowsCurrentSet(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")
	writeFile(t, a, "192.0.2.0/24\n")
	writeFile(t, b, "198.51.100.0/24\n203.0.113.0/24\nbogus\n")
	var cur atomic.Pointer[Set]
	reg := prometheus.NewRegistry()
	if err := reg.Register(NewSetCollector(cur.Load)); err != nil {
		t.Fatal(err)
	}
	for k := range gathered(t, reg) {
		if strings.HasPrefix(k, "levee_iplist_") {
			t.Fatalf("series %s with no Set", k)
		}
	}
	s1, err := NewSet(SetConfig{Lists: []ListConfig{{Name: "a", Path: a}}}, SetDeps{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(s1)
	m := gathered(t, reg)
	if m[`levee_iplist_prefixes{list=a}`] != 1 || m[`levee_iplist_reloads_total{list=a,result=ok}`] != 1 ||
		m[`levee_iplist_last_success_timestamp_seconds{list=a}`] < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Fatalf("first set: %v", m)
	}
	s2, err := NewSet(SetConfig{Lists: []ListConfig{{Name: "a", Path: a}, {Name: "b", Path: b, Lenient: true}}}, SetDeps{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Store(s2)
	m = gathered(t, reg)
	if m[`levee_iplist_prefixes{list=b}`] != 2 || m[`levee_iplist_skipped_lines_total{list=b}`] != 1 || m[`levee_iplist_prefixes{list=a}`] != 1 {
		t.Fatalf("second set: %v", m)
	}
	// A change to a file of the current Set shows at the next scrape.
	writeFile(t, a, "192.0.2.0/24\n192.0.3.0/24\n10.0.0.0/8\n")
	touch(t, a, time.Second)
	if err := s2.Poll(); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, reg)[`levee_iplist_prefixes{list=a}`]; got != 3 {
		t.Fatalf("after a poll: a has %v prefixes; want 3", got)
	}
	// A missing file counts as a failed read.
	os.Remove(b)
	_ = s2.Poll()
	if got := gathered(t, reg)[`levee_iplist_reloads_total{list=b,result=error}`]; got != 1 {
		t.Fatalf("failed reads of b: %v; want 1", got)
	}
	// Back to a Set without b: its series go away.
	cur.Store(s1)
	if _, ok := gathered(t, reg)[`levee_iplist_prefixes{list=b}`]; ok {
		t.Fatal("series of a list no longer in use")
	}
}

// TestSetStatusDoesNotWaitForLoad: Status (and so a metrics scrape) returns
// the last published state while a load holds the Set's lock.
func TestSetStatusDoesNotWaitForLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.txt")
	writeFile(t, path, "192.0.2.0/24\n")
	s, err := NewSet(SetConfig{Lists: []ListConfig{{Path: path}}}, SetDeps{})
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	done := make(chan []ListStatus, 1)
	go func() { done <- s.Status() }()
	select {
	case st := <-done:
		if len(st) != 1 || st[0].Prefixes != 1 {
			t.Errorf("Status() = %+v", st)
		}
	case <-time.After(5 * time.Second):
		t.Error("Status waited for the load lock")
	}
	s.mu.Unlock()
}
