package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations[i] brings the schema from version i to i+1. The schema version
// is kept in PRAGMA user_version. Append only; never edit a released step.
var migrations = []string{
	// 1: bans and runtime rules. Times are Unix nanoseconds, 0 = never.
	`CREATE TABLE bans (
		prefix  TEXT PRIMARY KEY,
		reason  TEXT NOT NULL,
		source  TEXT NOT NULL,
		created INTEGER NOT NULL,
		expires INTEGER NOT NULL
	) STRICT;
	CREATE INDEX bans_expires ON bans(expires) WHERE expires != 0;
	CREATE TABLE rules (
		name    TEXT PRIMARY KEY,
		body    TEXT NOT NULL CHECK (json_valid(body)),
		created INTEGER NOT NULL,
		expires INTEGER NOT NULL
	) STRICT;
	CREATE INDEX rules_expires ON rules(expires) WHERE expires != 0;`,
	// 2: schema versions of the components that keep their own tables.
	`CREATE TABLE component_schema (
		component TEXT PRIMARY KEY,
		version   INTEGER NOT NULL
	) STRICT;`,
}

// SchemaVersion is the schema version this build of levee writes.
var SchemaVersion = len(migrations)

// migrate applies the missing migrations in one transaction.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: migrate %s: %w", s.path, err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("store: migrate %s: read schema version: %w", s.path, err)
	}
	if v > len(migrations) {
		return fmt.Errorf("store: %s has schema version %d but this levee knows only up to %d: it was written by a newer levee; run that version, or move the file aside to start with an empty store", s.path, v, len(migrations))
	}
	if v == len(migrations) {
		return nil
	}
	for i := v; i < len(migrations); i++ {
		if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
			return fmt.Errorf("store: migrate %s to schema version %d: %w", s.path, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		return fmt.Errorf("store: migrate %s: set schema version: %w", s.path, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: migrate %s: commit: %w", s.path, err)
	}
	s.log.Info("store schema migrated", "path", s.path, "from", v, "to", len(migrations))
	return nil
}

// EnsureSchema brings the tables owned by another package (incidents,
// monitor history, ...) up to date, so that it can keep its state in this
// store without changing this package. steps[i] moves the component's schema
// from version i to i+1; like the store's own migrations they are append
// only. All missing steps run in one transaction, which is rolled back if
// any fails. A store whose component version is newer than len(steps) is
// refused. Name component's tables with its name as a prefix to avoid
// clashes; use DB for queries.
func (s *Store) EnsureSchema(ctx context.Context, component string, steps []string) error {
	if component == "" {
		return fmt.Errorf("store: ensure schema: empty component name")
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("store: ensure schema %s: %w", component, err)
	}
	defer tx.Rollback()
	var v int
	err = tx.QueryRowContext(ctx, `SELECT version FROM component_schema WHERE component = ?`, component).Scan(&v)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("store: ensure schema %s: %w", component, err)
	}
	if v > len(steps) {
		return fmt.Errorf("store: %s: component %s has schema version %d but this levee knows only up to %d: it was written by a newer levee; run that version, or move the file aside to start with an empty store", s.path, component, v, len(steps))
	}
	if v == len(steps) {
		return nil
	}
	for i := v; i < len(steps); i++ {
		if _, err := tx.ExecContext(ctx, steps[i]); err != nil {
			return fmt.Errorf("store: migrate component %s to schema version %d: %w", component, i+1, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO component_schema (component, version) VALUES (?, ?)
		ON CONFLICT (component) DO UPDATE SET version = excluded.version`, component, len(steps)); err != nil {
		return fmt.Errorf("store: ensure schema %s: record version: %w", component, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: ensure schema %s: commit: %w", component, err)
	}
	s.log.Info("store component schema migrated", "component", component, "from", v, "to", len(steps))
	return nil
}

// DB returns the underlying database for components that keep their own
// tables (see EnsureSchema). Do not close it; call Store.Close.
func (s *Store) DB() *sql.DB { return s.db }
