package store

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/levee-dev/levee/internal/iplist"
)

var _ iplist.BanStore = (*Store)(nil)

// AddBan inserts b, or replaces the ban with the same prefix. A zero
// Created is set to the current time.
func (s *Store) AddBan(ctx context.Context, b iplist.Ban) error {
	if !b.Prefix.IsValid() {
		return fmt.Errorf("store: add ban: invalid prefix")
	}
	if b.Created.IsZero() {
		b.Created = time.Now()
	}
	p := b.Prefix.Masked()
	_, err := s.db.ExecContext(ctx, `INSERT INTO bans (prefix, reason, source, created, expires) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (prefix) DO UPDATE SET reason = excluded.reason, source = excluded.source,
			created = excluded.created, expires = excluded.expires`,
		p.String(), b.Reason, b.Source, unixNano(b.Created), unixNano(b.Expires))
	if err != nil {
		return fmt.Errorf("store: add ban %s: %w", p, err)
	}
	return nil
}

// RemoveBan deletes the ban on prefix and reports whether one existed.
func (s *Store) RemoveBan(ctx context.Context, prefix netip.Prefix) (bool, error) {
	p := prefix.Masked()
	res, err := s.db.ExecContext(ctx, `DELETE FROM bans WHERE prefix = ?`, p.String())
	if err != nil {
		return false, fmt.Errorf("store: remove ban %s: %w", p, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: remove ban %s: %w", p, err)
	}
	return n > 0, nil
}

// ListBans returns the bans active at now, ordered by prefix text.
func (s *Store) ListBans(ctx context.Context, now time.Time) ([]iplist.Ban, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT prefix, reason, source, created, expires FROM bans
		WHERE expires = 0 OR expires > ? ORDER BY prefix`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("store: list bans: %w", err)
	}
	defer rows.Close()
	var out []iplist.Ban
	for rows.Next() {
		var (
			ps               string
			b                iplist.Ban
			created, expires int64
		)
		if err := rows.Scan(&ps, &b.Reason, &b.Source, &created, &expires); err != nil {
			return nil, fmt.Errorf("store: list bans: %w", err)
		}
		if b.Prefix, err = netip.ParsePrefix(ps); err != nil {
			return nil, fmt.Errorf("store: list bans: row %q in %s: %w", ps, s.path, err)
		}
		b.Created, b.Expires = fromUnixNano(created), fromUnixNano(expires)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list bans: %w", err)
	}
	return out, nil
}

// PruneExpired deletes the bans and rules that expired at or before now and
// returns how many rows it deleted.
func (s *Store) PruneExpired(ctx context.Context, now time.Time) (int64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("store: prune: %w", err)
	}
	defer tx.Rollback()
	var total int64
	for _, table := range []string{"bans", "rules"} {
		res, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE expires != 0 AND expires <= ?`, now.UnixNano())
		if err != nil {
			return 0, fmt.Errorf("store: prune %s: %w", table, err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: prune: commit: %w", err)
	}
	return total, nil
}
