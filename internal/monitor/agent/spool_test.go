package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

func res(i int) probe.Result {
	return probe.Result{ID: fmt.Sprintf("a-%d", i), Target: "site", Vantage: "a", At: time.Unix(int64(i), 0).UTC(), OK: true}
}

func TestSpoolOrderAckAndReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSpool(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := s.Append(res(i)); err != nil {
			t.Fatal(err)
		}
	}
	got, end, err := s.Peek(4)
	if err != nil || len(got) != 4 || got[0].ID != "a-0" || got[3].ID != "a-3" {
		t.Fatalf("peek %v %v", got, err)
	}
	// Not acknowledged yet: peeking again returns the same batch.
	again, _, _ := s.Peek(4)
	if again[0].ID != "a-0" {
		t.Fatalf("unacknowledged batch lost")
	}
	if err := s.Ack(end); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Reopen (agent restart): continues after the acknowledged batch.
	s, err = OpenSpool(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, end, _ = s.Peek(100)
	if len(got) != 6 || got[0].ID != "a-4" || got[5].ID != "a-9" {
		t.Fatalf("after reopen: %d results starting %v", len(got), got)
	}
	if err := s.Ack(end); err != nil {
		t.Fatal(err)
	}
	if s.Pending() != 0 {
		t.Errorf("pending %d after full ack", s.Pending())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "spool.jsonl")); fi.Size() != 0 {
		t.Errorf("spool file not truncated: %d bytes", fi.Size())
	}
	s.Close()
}

func TestSpoolPartialLineAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, _ := OpenSpool(dir, 0)
	s.Append(res(1))
	s.Close()
	f, _ := os.OpenFile(filepath.Join(dir, "spool.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"id":"a-2","tar`) // crash mid-append
	f.Close()
	s, err := OpenSpool(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Append(res(3))
	got, _, _ := s.Peek(10)
	if len(got) != 2 || got[0].ID != "a-1" || got[1].ID != "a-3" || s.Corrupt() != 0 {
		t.Fatalf("got %v, corrupt %d", got, s.Corrupt())
	}
}

func TestSpoolFull(t *testing.T) {
	s, _ := OpenSpool(t.TempDir(), 300)
	defer s.Close()
	var err error
	n := 0
	for ; n < 100 && err == nil; n++ {
		err = s.Append(res(n))
	}
	if err != ErrSpoolFull || n < 2 {
		t.Fatalf("after %d appends: %v", n, err)
	}
	_, end, _ := s.Peek(100)
	s.Ack(end)
	if err := s.Append(res(1000)); err != nil {
		t.Fatalf("append after ack: %v", err)
	}
}

func BenchmarkSpoolAppend(b *testing.B) {
	s, _ := OpenSpool(b.TempDir(), 1<<30)
	defer s.Close()
	r := res(1)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Append(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
