package incident

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/detect"
	_ "modernc.org/sqlite"
)

func TestStores(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "levee.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sq, err := NewSQLiteStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewSQLiteStore(ctx, db); err != nil {
		t.Fatalf("second NewSQLiteStore on the same database: %v", err)
	}
	for _, tc := range []struct {
		name string
		s    Store
	}{{"memory", &MemStore{}}, {"sqlite", sq}} {
		t.Run(tc.name, func(t *testing.T) {
			base := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
			mk := func(id, site string, start time.Duration) *Incident {
				return &Incident{ID: id, Site: site, Start: base.Add(start), Kinds: []string{"request_surge"},
					PeakRequests: 1000, Rules: []detect.Mitigation{{Name: "auto-x"}}, Timeline: []Point{{T: base, Seconds: 1, Requests: 5}}}
			}
			a, b, c := mk("a", "www", 0), mk("b", "api", time.Hour), mk("c", "www", 2*time.Hour)
			for _, inc := range []*Incident{a, b, c} {
				if err := tc.s.Save(ctx, inc); err != nil {
					t.Fatal(err)
				}
			}
			// An update of an incident in progress replaces it.
			a.End = base.Add(10 * time.Minute)
			a.Requests = 42
			if err := tc.s.Save(ctx, a); err != nil {
				t.Fatal(err)
			}
			got, err := tc.s.Get(ctx, "a")
			if err != nil || got.Requests != 42 || !got.End.Equal(a.End) || len(got.Rules) != 1 || len(got.Timeline) != 1 {
				t.Fatalf("Get: %v %+v", err, got)
			}
			if _, err := tc.s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Get unknown: %v", err)
			}
			tests := []struct {
				opt  ListOptions
				want string
			}{
				{ListOptions{}, "cba"},
				{ListOptions{Site: "www"}, "ca"},
				{ListOptions{Since: base.Add(30 * time.Minute)}, "cb"},
				{ListOptions{Limit: 1}, "c"},
			}
			for _, lt := range tests {
				list, err := tc.s.List(ctx, lt.opt)
				if err != nil {
					t.Fatal(err)
				}
				ids := ""
				for _, s := range list {
					ids += s.ID
				}
				if ids != lt.want {
					t.Errorf("List(%+v) = %s, want %s", lt.opt, ids, lt.want)
				}
			}
			list, _ := tc.s.List(ctx, ListOptions{Site: "www"})
			if s := list[1]; s.Requests != 42 || s.Rules != 1 || s.PeakRequests != 1000 || s.Kinds[0] != "request_surge" {
				t.Errorf("summary %+v", s)
			}
		})
	}
}
