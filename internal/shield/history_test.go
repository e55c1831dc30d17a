package shield

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/store"
)

// TestAddressHistorySurvivesRestart: a client known from its address
// history is still known after a restart (the history is saved to the
// store on shutdown and loaded on start); an unreadable snapshot is skipped
// with a warning, not a failed start.
func TestAddressHistorySurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	conf := fmt.Sprintf("listen: [{address: \"127.0.0.1:0\"}]\nsites: [{upstreams: [{url: \"http://127.0.0.1:1\"}]}]\ndata_dir: %s\n", dir)
	shutdown := func(s *Shield) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	addr := netip.MustParseAddr("127.0.40.7")
	now := time.Now()
	s1 := startShield(t, conf)
	for _, ago := range []time.Duration{20 * time.Minute, 15 * time.Minute, time.Minute} {
		s1.history.Good(now.Add(-ago), addr)
	}
	if !s1.history.Known(now, addr) {
		t.Fatal("not known before the restart")
	}
	shutdown(s1)

	s2 := startShield(t, conf)
	if !s2.history.Known(now, addr) {
		t.Fatal("a known client was forgotten across a restart")
	}
	if s2.history.Known(now, netip.MustParseAddr("127.0.40.8")) {
		t.Fatal("an unseen client is known")
	}
	shutdown(s2)

	// A damaged snapshot: the next start warns and begins empty.
	st, err := store.Open(filepath.Join(dir, "levee.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB().Exec(`UPDATE history_snapshot SET data = x'00' WHERE id = 1`); err != nil {
		t.Fatal(err)
	}
	st.Close()
	s3 := startShield(t, conf)
	if s3.history.Known(now, addr) {
		t.Fatal("known from a damaged snapshot")
	}
}
