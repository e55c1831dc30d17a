package shield

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/levee-dev/levee/internal/admission"
)

// The address history (known clients) is kept in the store as one snapshot
// row, so that returning visitors stay known across a restart: a restart in
// the middle of an attack must not demote every regular to a stranger.
var historySchema = []string{
	`CREATE TABLE history_snapshot (
		id    INTEGER PRIMARY KEY CHECK (id = 1),
		data  BLOB NOT NULL,
		saved INTEGER NOT NULL
	) STRICT;`,
}

// historySaveEvery is how often the housekeeping loop saves the history; it
// is also saved on shutdown.
const historySaveEvery = 5 * time.Minute

// openHistory creates the address history and loads the snapshot saved by
// the previous run. An unreadable snapshot is reported and skipped: the
// history is a cache of who came before, and starting without it loses
// priority for returning visitors, nothing else.
func (s *Shield) openHistory(ctx context.Context) error {
	h, err := admission.NewHistory(admission.HistoryConfig{})
	if err != nil {
		return err
	}
	if err := s.store.EnsureSchema(ctx, "history", historySchema); err != nil {
		return fmt.Errorf("address history: %w", err)
	}
	var data []byte
	var saved int64
	err = s.store.DB().QueryRowContext(ctx, `SELECT data, saved FROM history_snapshot WHERE id = 1`).Scan(&data, &saved)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("address history: read snapshot from %s: %w", s.store.Path(), err)
	default:
		if err := h.LoadSnapshot(data); err != nil {
			s.log.Warn("address history: snapshot unreadable, starting with an empty history", "store", s.store.Path(), "err", err)
		} else {
			s.log.Info("address history loaded", "bytes", len(data), "saved", time.Unix(0, saved).UTC().Format(time.RFC3339))
		}
	}
	s.history = h
	return nil
}

// saveHistory writes the history's current snapshot to the store.
func (s *Shield) saveHistory(ctx context.Context, now time.Time) error {
	data := s.history.AppendSnapshot(nil)
	_, err := s.store.DB().ExecContext(ctx, `INSERT INTO history_snapshot (id, data, saved) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET data = excluded.data, saved = excluded.saved`, data, now.UnixNano())
	if err != nil {
		return fmt.Errorf("address history: save to %s: %w", s.store.Path(), err)
	}
	return nil
}
