package store

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/probe"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "monitor.db")
	}
	s, err := Open(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func result(id string, at time.Time, ok bool, lat time.Duration) probe.Result {
	r := probe.Result{ID: id, Target: "site", Vantage: "local", At: at, OK: ok, Timings: probe.Timings{Total: lat}}
	if !ok {
		r.Failure, r.Detail = probe.FailRefused, "connection refused"
	}
	return r
}

func TestIdempotentIngestAndAggregates(t *testing.T) {
	s := open(t, Config{})
	ctx := context.Background()
	rs := []probe.Result{
		result("a", t0, true, 10*time.Millisecond),
		result("b", t0.Add(10*time.Second), true, 30*time.Millisecond),
		result("c", t0.Add(20*time.Second), false, time.Millisecond),
		result("d", t0.Add(70*time.Second), true, 20*time.Millisecond),
	}
	fresh, err := s.AddResults(ctx, t0, rs)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range fresh {
		if !f {
			t.Errorf("result %d not stored as new", i)
		}
	}
	// Replay (a lost ack): nothing new, aggregates unchanged.
	fresh, err = s.AddResults(ctx, t0, rs[:3])
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range fresh {
		if f {
			t.Errorf("replayed result %d counted again", i)
		}
	}
	got, err := s.Results(ctx, "site", t0, t0.Add(time.Hour), 0)
	if err != nil || len(got) != 4 {
		t.Fatalf("results %d, %v", len(got), err)
	}
	if got[0].ID != "d" || got[3].Timings.Total != 10*time.Millisecond || got[1].Failure != probe.FailRefused {
		t.Errorf("results not round-tripped: %+v", got)
	}
	mins, err := s.Series(ctx, "site", t0, t0.Add(time.Hour), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	want := []Bucket{
		{Start: t0, N: 3, OK: 2, MeanLatency: 20 * time.Millisecond, MaxLatency: 30 * time.Millisecond},
		{Start: t0.Add(time.Minute), N: 1, OK: 1, MeanLatency: 20 * time.Millisecond, MaxLatency: 20 * time.Millisecond},
	}
	if fmt.Sprint(mins) != fmt.Sprint(want) {
		t.Errorf("minute series\n got %v\nwant %v", mins, want)
	}
	hours, err := s.Series(ctx, "site", t0, t0.Add(time.Hour), time.Hour)
	if err != nil || len(hours) != 1 || hours[0].N != 4 || hours[0].OK != 3 {
		t.Errorf("hour series %v %v", hours, err)
	}
	fives, err := s.Series(ctx, "site", t0, t0.Add(time.Hour), 5*time.Minute)
	if err != nil || len(fives) != 1 || fives[0].N != 4 {
		t.Errorf("5-minute series %v %v", fives, err)
	}
}

func TestTooOldResultsAreNotStored(t *testing.T) {
	s := open(t, Config{RawRetention: time.Hour})
	fresh, err := s.AddResults(context.Background(), t0, []probe.Result{result("old", t0.Add(-2*time.Hour), true, time.Millisecond)})
	if err != nil || fresh[0] {
		t.Fatalf("result older than retention stored: %v %v", fresh, err)
	}
}

func TestIncidents(t *testing.T) {
	s := open(t, Config{})
	ctx := context.Background()
	inc := outage.Incident{ID: "site-1", Target: "site", Start: t0, Detected: t0.Add(5 * time.Second), Peak: outage.Down,
		Label: outage.LabelCleanCut, Vantages: []string{"local"},
		Timeline: []outage.Classification{{At: t0, Label: outage.LabelCleanCut, Evidence: []string{"x"}}}}
	if err := s.SaveIncident(ctx, inc); err != nil {
		t.Fatal(err)
	}
	open, err := s.Incidents(ctx, "", time.Time{}, 0, true)
	if err != nil || len(open) != 1 {
		t.Fatalf("open incidents %v %v", open, err)
	}
	inc.End, inc.Closed = t0.Add(time.Minute), t0.Add(2*time.Minute)
	if err := s.SaveIncident(ctx, inc); err != nil {
		t.Fatal(err)
	}
	if open, _ := s.Incidents(ctx, "", time.Time{}, 0, true); len(open) != 0 {
		t.Errorf("closed incident still open")
	}
	got, err := s.Incident(ctx, "site-1")
	if err != nil || !got.End.Equal(inc.End) || got.Peak != outage.Down || got.Timeline[0].Evidence[0] != "x" {
		t.Errorf("incident round trip: %+v %v", got, err)
	}
	if _, err := s.Incident(ctx, "nope"); err != ErrNotFound {
		t.Errorf("missing incident: %v", err)
	}
	if l, _ := s.Incidents(ctx, "other", time.Time{}, 0, false); len(l) != 0 {
		t.Errorf("target filter ignored")
	}
}

func TestRecentOK(t *testing.T) {
	s := open(t, Config{})
	var rs []probe.Result
	for i := range 50 {
		rs = append(rs, result(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second), i%10 != 0, time.Duration(i)*time.Millisecond))
	}
	if _, err := s.AddResults(context.Background(), t0, rs); err != nil {
		t.Fatal(err)
	}
	got, err := s.RecentOK(context.Background(), t0, 5)
	if err != nil {
		t.Fatal(err)
	}
	l := got[[2]string{"site", "local"}]
	if fmt.Sprint(l) != "[45ms 46ms 47ms 48ms 49ms]" {
		t.Errorf("recent %v", l)
	}
}

// TestPruneBoundsDisk fills the store with a week of results, prunes them
// away and checks rows are gone and the file shrank.
func TestPruneBoundsDisk(t *testing.T) {
	s := open(t, Config{RawRetention: 24 * time.Hour, MinuteRetention: 48 * time.Hour, HourRetention: 72 * time.Hour})
	ctx := context.Background()
	start := t0.Add(-20 * time.Hour)
	var rs []probe.Result
	for i := range 20000 {
		rs = append(rs, result(fmt.Sprintf("r%d", i), start.Add(time.Duration(i)*3*time.Second), true, time.Millisecond))
	}
	if _, err := s.AddResults(ctx, t0, rs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PruneAt(ctx, t0); err != nil {
		t.Fatal(err)
	}
	full := s.SizeBytes()
	later := t0.Add(5 * 24 * time.Hour)
	st, err := s.PruneAt(ctx, later)
	if err != nil {
		t.Fatal(err)
	}
	if st.Results != 20000 || st.Minutes == 0 || st.Hours == 0 {
		t.Errorf("prune stats %+v", st)
	}
	after := s.SizeBytes()
	t.Logf("db size with 20000 results %d bytes, after retention %d bytes", full, after)
	if after*4 > full {
		t.Errorf("file did not shrink: %d -> %d bytes", full, after)
	}
}

func BenchmarkAddResults(b *testing.B) {
	s := open(b, Config{})
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := seq.Add(1)
			r := result(fmt.Sprint(i), t0.Add(time.Duration(i)*time.Millisecond), true, time.Millisecond)
			if _, err := s.AddResults(context.Background(), t0, []probe.Result{r}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
