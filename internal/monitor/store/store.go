// Package store keeps the monitor's history in an embedded SQLite database
// (modernc.org/sqlite, pure Go): raw probe results for a retention window,
// per-minute and per-hour aggregates for long history, and incidents.
// Ingestion is idempotent by result id; retention jobs bound disk use.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/probe"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"
)

// Config says where the database lives and how long data is kept.
type Config struct {
	// Path is the SQLite file. Required.
	Path string
	// RawRetention keeps raw results this long. Default 7 days.
	RawRetention time.Duration
	// MinuteRetention keeps per-minute aggregates this long. Default 30 days.
	MinuteRetention time.Duration
	// HourRetention keeps per-hour aggregates and incidents this long.
	// Default 400 days.
	HourRetention time.Duration
}

// Defaults for Config.
const (
	DefaultRawRetention    = 7 * 24 * time.Hour
	DefaultMinuteRetention = 30 * 24 * time.Hour
	DefaultHourRetention   = 400 * 24 * time.Hour
)

// Store is the monitor database. It is safe for concurrent use; the zero
// Store is not usable, build one with Open.
type Store struct {
	db  *sql.DB
	cfg Config
	log *slog.Logger
}

const schema = `
CREATE TABLE IF NOT EXISTS results (
	id TEXT PRIMARY KEY,
	target TEXT NOT NULL,
	vantage TEXT NOT NULL,
	at INTEGER NOT NULL,
	ok INTEGER NOT NULL,
	failure TEXT NOT NULL,
	detail TEXT NOT NULL,
	status INTEGER NOT NULL,
	dns_ns INTEGER NOT NULL,
	connect_ns INTEGER NOT NULL,
	tls_ns INTEGER NOT NULL,
	first_byte_ns INTEGER NOT NULL,
	total_ns INTEGER NOT NULL,
	cert_expiry INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS results_target_at ON results(target, at);
CREATE INDEX IF NOT EXISTS results_at ON results(at);
CREATE TABLE IF NOT EXISTS agg_minute (
	target TEXT NOT NULL, vantage TEXT NOT NULL, bucket INTEGER NOT NULL,
	n INTEGER NOT NULL, n_ok INTEGER NOT NULL, lat_sum INTEGER NOT NULL, lat_max INTEGER NOT NULL,
	PRIMARY KEY (target, vantage, bucket)
);
CREATE TABLE IF NOT EXISTS agg_hour (
	target TEXT NOT NULL, vantage TEXT NOT NULL, bucket INTEGER NOT NULL,
	n INTEGER NOT NULL, n_ok INTEGER NOT NULL, lat_sum INTEGER NOT NULL, lat_max INTEGER NOT NULL,
	PRIMARY KEY (target, vantage, bucket)
);
CREATE INDEX IF NOT EXISTS agg_minute_bucket ON agg_minute(bucket);
CREATE INDEX IF NOT EXISTS agg_hour_bucket ON agg_hour(bucket);
CREATE TABLE IF NOT EXISTS incidents (
	id TEXT PRIMARY KEY,
	target TEXT NOT NULL,
	start INTEGER NOT NULL,
	closed INTEGER NOT NULL,
	body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_target_start ON incidents(target, start);
`

// Open opens (creating if needed) the database at cfg.Path in WAL mode with
// a busy timeout. log may be nil.
func Open(cfg Config, log *slog.Logger) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("store: path is empty")
	}
	if cfg.RawRetention <= 0 {
		cfg.RawRetention = DefaultRawRetention
	}
	if cfg.MinuteRetention <= 0 {
		cfg.MinuteRetention = DefaultMinuteRetention
	}
	if cfg.HourRetention <= 0 {
		cfg.HourRetention = DefaultHourRetention
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("store: create directory for %s: %w", cfg.Path, err)
	}
	dsn := "file:" + cfg.Path + "?_pragma=busy_timeout(10000)&_pragma=auto_vacuum(incremental)" +
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", cfg.Path, err)
	}
	db.SetMaxOpenConns(4)
	if _, err := db.Exec(schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: create schema in %s: %w", cfg.Path, err)
	}
	return &Store{db: db, cfg: cfg, log: log}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Config returns the effective configuration.
func (s *Store) Config() Config { return s.cfg }

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// AddResults stores results in one transaction, skipping ids already stored
// and results older than the raw retention at now. It returns, per result,
// whether it was new (and so counted in the aggregates).
func (s *Store) AddResults(ctx context.Context, now time.Time, rs []probe.Result) ([]bool, error) {
	fresh := make([]bool, len(rs))
	if len(rs) == 0 {
		return fresh, nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	ins, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO results
		(id, target, vantage, at, ok, failure, detail, status, dns_ns, connect_ns, tls_ns, first_byte_ns, total_ns, cert_expiry)
		VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`)
	if err != nil {
		return nil, fmt.Errorf("store: prepare insert: %w", err)
	}
	defer ins.Close()
	var aggs [2]*sql.Stmt
	for i, table := range []string{"agg_minute", "agg_hour"} {
		aggs[i], err = tx.PrepareContext(ctx, `INSERT INTO `+table+` (target, vantage, bucket, n, n_ok, lat_sum, lat_max)
			VALUES (?,?,?,1,?,?,?)
			ON CONFLICT (target, vantage, bucket) DO UPDATE SET
			n = n + 1, n_ok = n_ok + excluded.n_ok, lat_sum = lat_sum + excluded.lat_sum,
			lat_max = max(lat_max, excluded.lat_max)`)
		if err != nil {
			return nil, fmt.Errorf("store: prepare %s: %w", table, err)
		}
		defer aggs[i].Close()
	}
	cutoff := now.Add(-s.cfg.RawRetention)
	for i, r := range rs {
		if r.ID == "" || r.At.Before(cutoff) {
			continue
		}
		ok := 0
		var lat int64
		if r.OK {
			ok, lat = 1, int64(r.Timings.Total)
		}
		res, err := ins.ExecContext(ctx, r.ID, r.Target, r.Vantage, ms(r.At), ok, string(r.Failure), r.Detail, r.Status,
			int64(r.Timings.DNS), int64(r.Timings.Connect), int64(r.Timings.TLS), int64(r.Timings.FirstByte),
			int64(r.Timings.Total), ms(r.CertExpiry))
		if err != nil {
			return nil, fmt.Errorf("store: insert result %s: %w", r.ID, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue
		}
		fresh[i] = true
		for j, step := range []time.Duration{time.Minute, time.Hour} {
			bucket := r.At.Truncate(step).UnixMilli()
			if _, err := aggs[j].ExecContext(ctx, r.Target, r.Vantage, bucket, ok, lat, lat); err != nil {
				return nil, fmt.Errorf("store: aggregate result %s: %w", r.ID, err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("store: commit results: %w", err)
	}
	return fresh, nil
}

// Results returns raw results of target (all targets when empty) with
// from <= at < to, newest first, at most limit (default 1000).
func (s *Store) Results(ctx context.Context, target string, from, to time.Time, limit int) ([]probe.Result, error) {
	if limit <= 0 {
		limit = 1000
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, target, vantage, at, ok, failure, detail, status,
		dns_ns, connect_ns, tls_ns, first_byte_ns, total_ns, cert_expiry FROM results
		WHERE (?1 = '' OR target = ?1) AND at >= ?2 AND at < ?3 ORDER BY at DESC LIMIT ?4`,
		target, ms(from), ms(to), limit)
	if err != nil {
		return nil, fmt.Errorf("store: query results: %w", err)
	}
	defer rows.Close()
	var out []probe.Result
	for rows.Next() {
		var r probe.Result
		var at, cert int64
		var ok int
		var failure string
		var t [5]int64
		if err := rows.Scan(&r.ID, &r.Target, &r.Vantage, &at, &ok, &failure, &r.Detail, &r.Status,
			&t[0], &t[1], &t[2], &t[3], &t[4], &cert); err != nil {
			return nil, fmt.Errorf("store: scan result: %w", err)
		}
		r.At, r.OK, r.Failure, r.CertExpiry = fromMS(at), ok == 1, probe.Failure(failure), fromMS(cert)
		r.Timings = probe.Timings{DNS: time.Duration(t[0]), Connect: time.Duration(t[1]), TLS: time.Duration(t[2]),
			FirstByte: time.Duration(t[3]), Total: time.Duration(t[4])}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Bucket is an aggregate over a time step, across vantage points.
type Bucket struct {
	Start time.Time `json:"start"`
	// N probes, of which OK succeeded.
	N  int64 `json:"n"`
	OK int64 `json:"ok"`
	// MeanLatency and MaxLatency are over successful probes.
	MeanLatency time.Duration `json:"mean_latency_ns"`
	MaxLatency  time.Duration `json:"max_latency_ns"`
}

// Series returns buckets of step (>= 1 minute; steps of an hour or more
// read the hourly table) for target with from <= start < to, oldest first.
// Buckets without probes are omitted.
func (s *Store) Series(ctx context.Context, target string, from, to time.Time, step time.Duration) ([]Bucket, error) {
	table := "agg_minute"
	if step >= time.Hour {
		table = "agg_hour"
	}
	if step < time.Minute {
		step = time.Minute
	}
	stepMS := step.Milliseconds()
	rows, err := s.db.QueryContext(ctx, `SELECT (bucket / ?1) * ?1 AS b, sum(n), sum(n_ok), sum(lat_sum), max(lat_max)
		FROM `+table+` WHERE target = ?2 AND bucket >= ?3 AND bucket < ?4 GROUP BY b ORDER BY b`,
		stepMS, target, ms(from), ms(to))
	if err != nil {
		return nil, fmt.Errorf("store: query series: %w", err)
	}
	defer rows.Close()
	var out []Bucket
	for rows.Next() {
		var b Bucket
		var start, sum, mx int64
		if err := rows.Scan(&start, &b.N, &b.OK, &sum, &mx); err != nil {
			return nil, fmt.Errorf("store: scan series: %w", err)
		}
		b.Start = fromMS(start)
		if b.OK > 0 {
			b.MeanLatency = time.Duration(sum / b.OK)
		}
		b.MaxLatency = time.Duration(mx)
		out = append(out, b)
	}
	return out, rows.Err()
}

// RecentOK returns up to n latencies of the newest successful results per
// (target, vantage) since the given time, oldest first; used to warm
// baselines after a restart.
func (s *Store) RecentOK(ctx context.Context, since time.Time, n int) (map[[2]string][]time.Duration, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT target, vantage, total_ns FROM (
		SELECT target, vantage, total_ns, at, row_number() OVER (PARTITION BY target, vantage ORDER BY at DESC) AS rn
		FROM results WHERE ok = 1 AND at >= ?1) WHERE rn <= ?2 ORDER BY at`, ms(since), n)
	if err != nil {
		return nil, fmt.Errorf("store: query recent results: %w", err)
	}
	defer rows.Close()
	out := map[[2]string][]time.Duration{}
	for rows.Next() {
		var t, v string
		var d int64
		if err := rows.Scan(&t, &v, &d); err != nil {
			return nil, fmt.Errorf("store: scan recent result: %w", err)
		}
		k := [2]string{t, v}
		out[k] = append(out[k], time.Duration(d))
	}
	return out, rows.Err()
}

// SaveIncident inserts or replaces an incident.
func (s *Store) SaveIncident(ctx context.Context, inc outage.Incident) error {
	body, err := json.Marshal(inc)
	if err != nil {
		return fmt.Errorf("store: encode incident %s: %w", inc.ID, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO incidents (id, target, start, closed, body) VALUES (?,?,?,?,?)
		ON CONFLICT (id) DO UPDATE SET closed = excluded.closed, body = excluded.body`,
		inc.ID, inc.Target, ms(inc.Start), ms(inc.Closed), string(body))
	if err != nil {
		return fmt.Errorf("store: save incident %s: %w", inc.ID, err)
	}
	return nil
}

// ErrNotFound is returned for an unknown incident id.
var ErrNotFound = errors.New("store: not found")

// Incident returns one incident by id.
func (s *Store) Incident(ctx context.Context, id string) (outage.Incident, error) {
	var body string
	err := s.db.QueryRowContext(ctx, `SELECT body FROM incidents WHERE id = ?`, id).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return outage.Incident{}, ErrNotFound
	}
	if err != nil {
		return outage.Incident{}, fmt.Errorf("store: load incident %s: %w", id, err)
	}
	var inc outage.Incident
	if err := json.Unmarshal([]byte(body), &inc); err != nil {
		return outage.Incident{}, fmt.Errorf("store: decode incident %s: %w", id, err)
	}
	return inc, nil
}

// Incidents returns incidents of target (all when empty) that started at or
// after since, newest first, at most limit (default 100). With openOnly only
// incidents not closed are returned.
func (s *Store) Incidents(ctx context.Context, target string, since time.Time, limit int, openOnly bool) ([]outage.Incident, error) {
	if limit <= 0 {
		limit = 100
	}
	rows, err := s.db.QueryContext(ctx, `SELECT body FROM incidents
		WHERE (?1 = '' OR target = ?1) AND start >= ?2 AND (?3 = 0 OR closed = 0) ORDER BY start DESC LIMIT ?4`,
		target, ms(since), openOnly, limit)
	if err != nil {
		return nil, fmt.Errorf("store: query incidents: %w", err)
	}
	defer rows.Close()
	var out []outage.Incident
	for rows.Next() {
		var body string
		if err := rows.Scan(&body); err != nil {
			return nil, fmt.Errorf("store: scan incident: %w", err)
		}
		var inc outage.Incident
		if err := json.Unmarshal([]byte(body), &inc); err != nil {
			return nil, fmt.Errorf("store: decode incident: %w", err)
		}
		out = append(out, inc)
	}
	return out, rows.Err()
}

// PruneStats reports what a Prune removed.
type PruneStats struct {
	Results, Minutes, Hours, Incidents int64
}

// PruneAt deletes data older than the retention windows at now and returns
// freed pages to the file system (incremental vacuum), so disk use stays
// bounded.
func (s *Store) PruneAt(ctx context.Context, now time.Time) (PruneStats, error) {
	var st PruneStats
	steps := []struct {
		q   string
		arg time.Time
		n   *int64
	}{
		{`DELETE FROM results WHERE at < ?`, now.Add(-s.cfg.RawRetention), &st.Results},
		{`DELETE FROM agg_minute WHERE bucket < ?`, now.Add(-s.cfg.MinuteRetention), &st.Minutes},
		{`DELETE FROM agg_hour WHERE bucket < ?`, now.Add(-s.cfg.HourRetention), &st.Hours},
		{`DELETE FROM incidents WHERE closed != 0 AND start < ?`, now.Add(-s.cfg.HourRetention), &st.Incidents},
	}
	for _, step := range steps {
		res, err := s.db.ExecContext(ctx, step.q, ms(step.arg))
		if err != nil {
			return st, fmt.Errorf("store: prune: %w", err)
		}
		*step.n, _ = res.RowsAffected()
	}
	if _, err := s.db.ExecContext(ctx, `PRAGMA incremental_vacuum`); err != nil {
		return st, fmt.Errorf("store: incremental vacuum: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return st, fmt.Errorf("store: wal checkpoint: %w", err)
	}
	s.log.Debug("pruned monitor history", "results", st.Results, "minutes", st.Minutes, "hours", st.Hours, "incidents", st.Incidents)
	return st, nil
}

// SizeBytes is the size of the database file plus its WAL.
func (s *Store) SizeBytes() int64 {
	var n int64
	for _, p := range []string{s.cfg.Path, s.cfg.Path + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// FirstSeen is when target's history starts (zero when there is none), to
// the minute while minute aggregates reach back that far: the denominator
// for uptime.
func (s *Store) FirstSeen(ctx context.Context, target string) (time.Time, error) {
	var minute, hour sql.NullInt64
	if err := s.db.QueryRowContext(ctx, `SELECT (SELECT min(bucket) FROM agg_minute WHERE target = ?1),
		(SELECT min(bucket) FROM agg_hour WHERE target = ?1)`, target).Scan(&minute, &hour); err != nil {
		return time.Time{}, fmt.Errorf("store: first seen: %w", err)
	}
	switch {
	case minute.Valid && (!hour.Valid || hour.Int64 > minute.Int64-time.Hour.Milliseconds()):
		return fromMS(minute.Int64), nil
	case hour.Valid:
		return fromMS(hour.Int64), nil
	}
	return time.Time{}, nil
}
