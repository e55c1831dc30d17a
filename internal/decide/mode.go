package decide

import (
	"fmt"
	"strings"
	"time"
)

// Mode is the shield's escalation level.
type Mode uint8

// Modes. The zero value is Normal.
const (
	// Normal applies the configured limits.
	Normal Mode = iota
	// Elevated halves every rate limit (rate and burst).
	Elevated
	// UnderAttack challenges unverified clients when challenges are
	// available; until then it divides every rate limit by four.
	UnderAttack
)

var modeNames = [...]string{"normal", "elevated", "under-attack"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "unknown"
}

// ParseMode parses "normal", "elevated" or "under-attack" (also
// "under_attack").
func ParseMode(s string) (Mode, error) {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), "_", "-") {
	case "normal":
		return Normal, nil
	case "elevated":
		return Elevated, nil
	case "under-attack":
		return UnderAttack, nil
	}
	return 0, fmt.Errorf("unknown mode %q: want normal, elevated or under-attack", s)
}

// factor is the multiplier applied to rate limits in m.
func (m Mode) factor() float64 {
	switch m {
	case Elevated:
		return 0.5
	case UnderAttack:
		return 0.25
	}
	return 1
}

// ModeState is the current mode and where it comes from.
type ModeState struct {
	Mode Mode `json:"-"`
	// Name is Mode as text, for JSON.
	Name string `json:"mode"`
	// Source is "manual", "detector" or "" (normal by default).
	Source string `json:"source,omitempty"`
	// Until is when a manual override or automatic escalation ends (zero:
	// until changed).
	Until  time.Time `json:"until,omitempty"`
	Reason string    `json:"reason,omitempty"`
}

type modeHolder struct {
	manual, auto ModeState
}

// SetMode sets a manual override until the given time (zero: until set
// again). A manual override wins over automatic escalation while it lasts;
// SetMode(Normal, ...) with source "manual" forces normal.
func (e *Engine) SetMode(st ModeState) {
	e.modeMu.Lock()
	defer e.modeMu.Unlock()
	st.Name = st.Mode.String()
	h := *e.mode.Load()
	if st.Source == "detector" {
		h.auto = st
	} else {
		st.Source = "manual"
		h.manual = st
	}
	e.mode.Store(&h)
}

// ClearManualMode ends a manual override, returning to automatic control.
func (e *Engine) ClearManualMode() {
	e.modeMu.Lock()
	defer e.modeMu.Unlock()
	h := *e.mode.Load()
	h.manual = ModeState{}
	e.mode.Store(&h)
}

// ModeAt returns the mode in force at now: an unexpired manual override,
// else an unexpired automatic escalation, else Normal.
func (e *Engine) ModeAt(now time.Time) ModeState {
	h := e.mode.Load()
	if h.manual.Source != "" && (h.manual.Until.IsZero() || now.Before(h.manual.Until)) {
		return h.manual
	}
	if h.auto.Source != "" && h.auto.Mode != Normal && (h.auto.Until.IsZero() || now.Before(h.auto.Until)) {
		return h.auto
	}
	return ModeState{Mode: Normal, Name: Normal.String()}
}

// modeNow is the cheap hot-path form of ModeAt (unix nanoseconds).
func (e *Engine) modeNow(now int64) Mode {
	h := e.mode.Load()
	if h.manual.Source != "" && (h.manual.Until.IsZero() || now < h.manual.Until.UnixNano()) {
		return h.manual.Mode
	}
	if h.auto.Source != "" && (h.auto.Until.IsZero() || now < h.auto.Until.UnixNano()) {
		return h.auto.Mode
	}
	return Normal
}
