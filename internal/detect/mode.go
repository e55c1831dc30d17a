package detect

import (
	"fmt"
	"time"
)

// Mode is a site's escalation mode. The decision engine reads it: elevated
// tightens limits; under-attack challenges unverified clients where
// challenges exist and otherwise applies its strictest limits.
type Mode uint8

// Modes, in escalation order. The zero value is ModeNormal.
const (
	ModeNormal Mode = iota
	ModeElevated
	ModeUnderAttack
)

var modeNames = []string{"normal", "elevated", "under_attack"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "unknown"
}

// ParseMode accepts "normal", "elevated", "under_attack" and
// "under-attack".
func ParseMode(s string) (Mode, error) {
	if s == "under-attack" {
		return ModeUnderAttack, nil
	}
	for i, n := range modeNames {
		if n == s {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("detect: unknown mode %q (want normal, elevated or under-attack)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// SetOverride forces the mode until the given time (zero: until
// ClearOverride), whatever the detector decides (`levee mode under-attack
// --for 30m`). Overriding to normal during an attack keeps the generated
// rules but stops mode-based tightening.
func (d *Detector) SetOverride(m Mode, until time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.override = override{set: true, mode: m, until: until}
	d.log.Info("detect: mode override", "site", d.cfg.Site, "mode", m, "until", until)
}

// ClearOverride returns the mode to the detector's own decision.
func (d *Detector) ClearOverride() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.override = override{}
}

// Mode returns the effective mode at now: the override while it lasts,
// else the automatic mode.
func (d *Detector) Mode(now time.Time) Mode {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.modeLocked(now)
}

func (d *Detector) modeLocked(now time.Time) Mode {
	if d.override.set && (d.override.until.IsZero() || now.Before(d.override.until)) {
		return d.override.mode
	}
	return d.autoMode
}
