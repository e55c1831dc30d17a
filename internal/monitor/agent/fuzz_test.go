package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzSpoolFile opens a spool whose file holds arbitrary bytes (a crash or
// disk corruption) and checks the agent recovers: no panic, only whole
// lines are read, and appending and acknowledging still work.
func FuzzSpoolFile(f *testing.F) {
	f.Add([]byte(`{"id":"a-1","target":"site","vantage":"a","at":"2026-01-01T00:00:00Z","ok":true,"timings":{"total_ns":5}}` + "\n"))
	f.Add([]byte(`{"id":"a-1"}` + "\n" + `{"id":"a-2","tar`))
	f.Add([]byte("\n\n\x00garbage\n{"))
	f.Fuzz(func(t *testing.T, content []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "spool.jsonl"), content, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := OpenSpool(dir, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Append(res(7)); err != nil {
			t.Fatal(err)
		}
		rs, end, err := s.Peek(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 || rs[len(rs)-1].ID != "a-7" {
			t.Fatalf("appended result not read back last: %v", rs)
		}
		if err := s.Ack(end); err != nil {
			t.Fatal(err)
		}
		if s.Pending() != 0 {
			t.Fatalf("pending %d after acknowledging everything", s.Pending())
		}
	})
}
