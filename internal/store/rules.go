package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Rule is a runtime rule added through the admin API or by a detector. Its
// body is opaque JSON owned by the decision engine. It is a plain value; the
// zero Rule is rejected by PutRule (empty name).
type Rule struct {
	Name    string
	Body    json.RawMessage
	Created time.Time
	Expires time.Time // zero: never expires
}

// PutRule inserts r or replaces the rule with the same name. A zero Created
// is set to the current time.
func (s *Store) PutRule(ctx context.Context, r Rule) error {
	if r.Name == "" {
		return errors.New("store: put rule: empty name")
	}
	if !json.Valid(r.Body) {
		return fmt.Errorf("store: put rule %q: body is not valid JSON", r.Name)
	}
	if r.Created.IsZero() {
		r.Created = time.Now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO rules (name, body, created, expires) VALUES (?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET body = excluded.body, created = excluded.created, expires = excluded.expires`,
		r.Name, string(r.Body), unixNano(r.Created), unixNano(r.Expires))
	if err != nil {
		return fmt.Errorf("store: put rule %q: %w", r.Name, err)
	}
	return nil
}

// ListRules returns the rules active at now, ordered by name.
func (s *Store) ListRules(ctx context.Context, now time.Time) ([]Rule, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, body, created, expires FROM rules
		WHERE expires = 0 OR expires > ? ORDER BY name`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("store: list rules: %w", err)
	}
	defer rows.Close()
	var out []Rule
	for rows.Next() {
		var (
			r                Rule
			body             string
			created, expires int64
		)
		if err := rows.Scan(&r.Name, &body, &created, &expires); err != nil {
			return nil, fmt.Errorf("store: list rules: %w", err)
		}
		r.Body = json.RawMessage(body)
		r.Created, r.Expires = fromUnixNano(created), fromUnixNano(expires)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list rules: %w", err)
	}
	return out, nil
}

// DeleteRule deletes the rule called name and reports whether it existed.
func (s *Store) DeleteRule(ctx context.Context, name string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM rules WHERE name = ?`, name)
	if err != nil {
		return false, fmt.Errorf("store: delete rule %q: %w", name, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("store: delete rule %q: %w", name, err)
	}
	return n > 0, nil
}
