package store

import (
	"context"
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
