package outage

import (
	"fmt"
	"sort"
	"time"
)

// Label classifies an incident.
type Label string

// Labels, with the evidence the classifier lists for each.
const (
	// LabelCleanCut: all vantage points fail at once with refusals, DNS or TLS
	// errors; a step change with no latency build-up and no intermittency.
	LabelCleanCut Label = "clean_cut"
	// LabelAttack: intermittent cycles of failure, timeouts rather than
	// refusals, latency inflated several times over baseline, partial or
	// vantage-dependent failure (at least two of these).
	LabelAttack Label = "attack_pattern"
	// LabelDegraded: available, but latency well above baseline.
	LabelDegraded Label = "degraded"
	// LabelRecovering: failures stopped, latency still elevated ("not clear it
	// is fully mitigated").
	LabelRecovering Label = "recovering"
	// LabelOutage: down, without enough evidence for a more specific label.
	LabelOutage Label = "outage"
)

// Classification is one entry in an incident's classification timeline.
type Classification struct {
	At       time.Time `json:"at"`
	Label    Label     `json:"label"`
	Evidence []string  `json:"evidence"`
}

// Incident is one period during which a target was down or degraded by
// quorum. Incidents are values; copies returned by the Tracker are not
// shared with it.
type Incident struct {
	// ID is "<target>-<start unix ms>".
	ID     string `json:"id"`
	Target string `json:"target"`
	// Start is when the first affected vantage point saw the first failure
	// (or the first slow answer) of the streak that opened the incident.
	Start time.Time `json:"start"`
	// Detected is when the quorum agreed and the incident opened.
	Detected time.Time `json:"detected"`
	// End is when the target became healthy again; zero while open.
	End time.Time `json:"end,omitzero"`
	// Closed is when the incident was closed (End plus the recovery window).
	Closed time.Time `json:"closed,omitzero"`
	// Peak is the worst global state during the incident.
	Peak State `json:"peak"`
	// Vantages lists the vantage points that were down or degraded.
	Vantages []string `json:"vantages"`
	// Onsets says when each affected vantage point went bad (its first
	// failure or slow answer of the streak): where it started, and how fast
	// it spread.
	Onsets map[string]time.Time `json:"onsets,omitempty"`
	// Label is the current (or final) classification.
	Label Label `json:"label"`
	// Evidence is the evidence for Label as of the last evaluation.
	Evidence []string `json:"evidence"`
	// Timeline lists every classification, oldest first, each with the
	// evidence at the time it was made.
	Timeline []Classification `json:"timeline"`
}

// Open reports whether the incident has not ended.
func (i Incident) Open() bool { return i.Closed.IsZero() }

// Duration is End-Start, or now-Start while open.
func (i Incident) Duration(now time.Time) time.Duration {
	if !i.End.IsZero() {
		return i.End.Sub(i.Start)
	}
	return now.Sub(i.Start)
}

func (i *Incident) clone() *Incident {
	c := *i
	c.Vantages = append([]string(nil), i.Vantages...)
	c.Timeline = append([]Classification(nil), i.Timeline...)
	c.Evidence = append([]string(nil), i.Evidence...)
	if i.Onsets != nil {
		c.Onsets = make(map[string]time.Time, len(i.Onsets))
		for k, v := range i.Onsets {
			c.Onsets[k] = v
		}
	}
	return &c
}

// Rank places inc among history (incidents of the same target; inc itself
// may be included) by duration, longest first, counting only incidents that
// started within window before now. It returns inc's 1-based rank and the
// number of incidents compared, and a phrase such as "longest outage in the
// last 90 days" or "3rd longest of 7 in the last 90 days".
func Rank(inc Incident, history []Incident, window time.Duration, now time.Time) (rank, total int, phrase string) {
	d := inc.Duration(now)
	var durs []time.Duration
	seen := false
	for _, h := range history {
		if h.Target != inc.Target || h.Start.Before(now.Add(-window)) {
			continue
		}
		if h.ID == inc.ID {
			seen = true
			continue
		}
		durs = append(durs, h.Duration(now))
	}
	_ = seen
	sort.Slice(durs, func(a, b int) bool { return durs[a] > durs[b] })
	rank = 1
	for _, o := range durs {
		if o > d {
			rank++
		}
	}
	total = len(durs) + 1
	days := int(window.Hours() / 24)
	switch {
	case total == 1:
		phrase = fmt.Sprintf("only incident in the last %d days", days)
	case rank == 1:
		phrase = fmt.Sprintf("longest of %d incidents in the last %d days", total, days)
	default:
		phrase = fmt.Sprintf("%s longest of %d incidents in the last %d days", ordinal(rank), total, days)
	}
	return rank, total, phrase
}

func ordinal(n int) string {
	suf := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suf = "st"
	case n%10 == 2:
		suf = "nd"
	case n%10 == 3:
		suf = "rd"
	}
	return fmt.Sprintf("%d%s", n, suf)
}

// EventKind says what an Event reports.
type EventKind string

// Event kinds.
const (
	// EventVantageState: one vantage point's state for a target changed.
	EventVantageState EventKind = "vantage_state"
	// EventState: a target's global (quorum) state changed.
	EventState EventKind = "state"
	// EventOpen: an incident opened.
	EventOpen EventKind = "open"
	// EventClassified: an open incident's classification changed.
	EventClassified EventKind = "classification"
	// EventClose: an incident closed.
	EventClose EventKind = "close"
)

// Event is something the Tracker noticed. Incident is set for open,
// classification and close events and is a copy.
type Event struct {
	Kind     EventKind `json:"kind"`
	Target   string    `json:"target"`
	Vantage  string    `json:"vantage,omitempty"`
	At       time.Time `json:"at"`
	From     State     `json:"from"`
	To       State     `json:"to"`
	Incident *Incident `json:"incident,omitempty"`
}
