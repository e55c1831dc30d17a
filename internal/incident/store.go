package incident

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// ErrNotFound is returned by Get for an unknown ID.
var ErrNotFound = errors.New("incident: not found")

// ListOptions filter List. The zero value lists everything, newest first.
type ListOptions struct {
	Site  string    // "" = all sites
	Since time.Time // incidents that started at or after; zero = any
	Limit int       // 0 = no limit
}

// Store persists incidents. Save replaces an incident with the same ID
// (snapshots of an incident in progress are saved repeatedly).
type Store interface {
	Save(ctx context.Context, inc *Incident) error
	Get(ctx context.Context, id string) (*Incident, error)
	List(ctx context.Context, opt ListOptions) ([]Summary, error)
}

var (
	_ Store = (*MemStore)(nil)
	_ Store = (*SQLiteStore)(nil)
)

// MemStore keeps incidents in memory. Safe for concurrent use. The zero
// value is an empty store.
type MemStore struct {
	mu  sync.Mutex
	all map[string][]byte // JSON, so callers never share memory with the store
}

// Save implements Store.
func (m *MemStore) Save(_ context.Context, inc *Incident) error {
	b, err := json.Marshal(inc)
	if err != nil {
		return fmt.Errorf("incident: marshal %s: %w", inc.ID, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.all == nil {
		m.all = map[string][]byte{}
	}
	m.all[inc.ID] = b
	return nil
}

// Get implements Store.
func (m *MemStore) Get(_ context.Context, id string) (*Incident, error) {
	m.mu.Lock()
	b, ok := m.all[id]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("incident %s: %w", id, ErrNotFound)
	}
	var inc Incident
	if err := json.Unmarshal(b, &inc); err != nil {
		return nil, fmt.Errorf("incident: unmarshal %s: %w", id, err)
	}
	return &inc, nil
}

// List implements Store.
func (m *MemStore) List(ctx context.Context, opt ListOptions) ([]Summary, error) {
	m.mu.Lock()
	ids := make([]string, 0, len(m.all))
	for id := range m.all {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var out []Summary
	for _, id := range ids {
		inc, err := m.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if (opt.Site != "" && inc.Site != opt.Site) || (!opt.Since.IsZero() && inc.Start.Before(opt.Since)) {
			continue
		}
		out = append(out, inc.Summary())
	}
	sortSummaries(out)
	if opt.Limit > 0 && len(out) > opt.Limit {
		out = out[:opt.Limit]
	}
	return out, nil
}

func sortSummaries(s []Summary) {
	sort.Slice(s, func(i, j int) bool {
		if !s[i].Start.Equal(s[j].Start) {
			return s[i].Start.After(s[j].Start)
		}
		return s[i].ID > s[j].ID
	})
}

// SQLiteStore keeps incidents in an SQLite database (table `incidents`: id,
// site, start and end in Unix nanoseconds, the summary and the full record
// as JSON). It works on any *sql.DB opened with the modernc.org/sqlite
// driver, such as the one of internal/store. Safe for concurrent use as
// far as the *sql.DB is.
type SQLiteStore struct {
	db *sql.DB
}

const schema = `CREATE TABLE IF NOT EXISTS incidents (
	id      TEXT PRIMARY KEY,
	site    TEXT NOT NULL,
	start   INTEGER NOT NULL,
	end     INTEGER NOT NULL DEFAULT 0,
	summary TEXT NOT NULL,
	data    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_start ON incidents(start);`

// NewSQLiteStore creates the incidents table if it does not exist.
func NewSQLiteStore(ctx context.Context, db *sql.DB) (*SQLiteStore, error) {
	if _, err := db.ExecContext(ctx, schema); err != nil {
		return nil, fmt.Errorf("incident: create table incidents: %w", err)
	}
	return &SQLiteStore{db: db}, nil
}

// Save implements Store.
func (s *SQLiteStore) Save(ctx context.Context, inc *Incident) error {
	data, err := json.Marshal(inc)
	if err != nil {
		return fmt.Errorf("incident: marshal %s: %w", inc.ID, err)
	}
	sum, err := json.Marshal(inc.Summary())
	if err != nil {
		return fmt.Errorf("incident: marshal summary %s: %w", inc.ID, err)
	}
	var end int64
	if !inc.End.IsZero() {
		end = inc.End.UnixNano()
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO incidents (id, site, start, end, summary, data) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET site = excluded.site, start = excluded.start, end = excluded.end,
		summary = excluded.summary, data = excluded.data`,
		inc.ID, inc.Site, inc.Start.UnixNano(), end, string(sum), string(data))
	if err != nil {
		return fmt.Errorf("incident: save %s: %w", inc.ID, err)
	}
	return nil
}

// Get implements Store.
func (s *SQLiteStore) Get(ctx context.Context, id string) (*Incident, error) {
	var data string
	err := s.db.QueryRowContext(ctx, `SELECT data FROM incidents WHERE id = ?`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("incident %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("incident: get %s: %w", id, err)
	}
	var inc Incident
	if err := json.Unmarshal([]byte(data), &inc); err != nil {
		return nil, fmt.Errorf("incident: unmarshal %s: %w", id, err)
	}
	return &inc, nil
}

// List implements Store.
func (s *SQLiteStore) List(ctx context.Context, opt ListOptions) ([]Summary, error) {
	q := `SELECT summary FROM incidents WHERE (? = '' OR site = ?) AND start >= ? ORDER BY start DESC, id DESC`
	args := []any{opt.Site, opt.Site, int64(0)}
	if !opt.Since.IsZero() {
		args[2] = opt.Since.UnixNano()
	}
	if opt.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, opt.Limit)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("incident: list: %w", err)
	}
	defer rows.Close()
	var out []Summary
	for rows.Next() {
		var js string
		if err := rows.Scan(&js); err != nil {
			return nil, fmt.Errorf("incident: list: %w", err)
		}
		var sum Summary
		if err := json.Unmarshal([]byte(js), &sum); err != nil {
			return nil, fmt.Errorf("incident: list: unmarshal: %w", err)
		}
		out = append(out, sum)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("incident: list: %w", err)
	}
	return out, nil
}
