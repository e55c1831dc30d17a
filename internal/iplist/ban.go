package iplist

import (
	"context"
	"net/netip"
	"time"
)

// Ban is one runtime ban: clients inside Prefix are refused until Expires.
// It is a plain value; the zero Ban has an invalid Prefix and is rejected by
// Bans.Add.
type Ban struct {
	Prefix  netip.Prefix // masked; a single address is a /32 or /128
	Reason  string       // shown to operators and in logs
	Source  string       // who banned: "cli", "api", "detector", ...
	Created time.Time
	Expires time.Time // zero: never expires
}

// ActiveAt reports whether the ban is in force at now.
func (b Ban) ActiveAt(now time.Time) bool {
	return b.Expires.IsZero() || now.Before(b.Expires)
}

// BanStore persists bans so that they survive a restart. The embedded store
// (internal/store) implements it; Bans writes every change through to it.
// Implementations must be safe for concurrent use.
type BanStore interface {
	// AddBan inserts the ban or replaces the one with the same prefix.
	AddBan(ctx context.Context, b Ban) error
	// RemoveBan deletes the ban on prefix and reports whether there was one.
	RemoveBan(ctx context.Context, prefix netip.Prefix) (bool, error)
	// ListBans returns the bans active at now.
	ListBans(ctx context.Context, now time.Time) ([]Ban, error)
}
