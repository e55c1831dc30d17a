package outage

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/monitor/probe"
)

// evidence accumulates what one vantage point saw during an incident.
type evidence struct {
	fails    map[probe.Failure]int
	nFail    int
	nOK      int
	runs     int // separate runs of at least minRun consecutive failures
	cur      int // length of the current failure run
	inFail   bool
	lastFail time.Time
	lat      Baseline // latencies of successes during the incident
}

// incState is an open incident plus the evidence behind its label.
type incState struct {
	inc          *Incident
	ev           map[string]*evidence
	onset        map[string]time.Time     // when each affected vantage went bad
	beforeLat    map[string]time.Duration // median latency just before the start
	hadDown      bool
	allDown      bool // all active vantage points were down at once
	partial      bool // down by quorum while some active vantage point was not
	healthySince time.Time
	// minRun is how many consecutive failures make a run (DownAfter): a
	// lone failure is a blip, not a cycle.
	minRun int
}

func (st *incState) record(o Observation) {
	e := st.ev[o.Vantage]
	if e == nil {
		e = &evidence{fails: map[probe.Failure]int{}, lat: Baseline{size: 256}}
		st.ev[o.Vantage] = e
	}
	if o.OK {
		e.nOK++
		e.inFail, e.cur = false, 0
		e.lat.Add(o.Latency)
		return
	}
	e.nFail++
	e.fails[o.Failure]++
	e.lastFail = o.At
	e.inFail = true
	e.cur++
	if e.cur == max(1, st.minRun) {
		e.runs++
	}
}

// agreement updates allDown and partial while the target is down by
// quorum. A vantage point agrees when it is down or failing; one that has not
// probed since the incident started is still pending, and one that was
// affected earlier in the incident and answers again is recovering: neither
// agrees nor contradicts. Only a vantage point never affected in this
// incident that answers contradicts (the failure is partial).
func (st *incState) agreement(active []*vantage) {
	contra := 0
	for _, v := range active {
		_, affected := st.onset[v.name]
		if !affected && v.state != Down && v.fails == 0 && !v.last.Before(st.inc.Start) {
			contra++
		}
	}
	if contra == 0 {
		st.allDown = true
	} else {
		st.partial = true
	}
}

func (st *incState) affect(v *vantage, now time.Time) {
	if st.onset == nil {
		st.onset = map[string]time.Time{}
	}
	if _, ok := st.onset[v.name]; ok {
		return
	}
	on := v.since
	if on.IsZero() {
		on = now
	}
	st.onset[v.name] = on
	if st.inc.Onsets == nil {
		st.inc.Onsets = map[string]time.Time{}
	}
	st.inc.Onsets[v.name] = on
	st.inc.Vantages = append(st.inc.Vantages, v.name)
	sort.Strings(st.inc.Vantages)
}

func (st *incState) before(v *vantage, start time.Time) {
	if st.beforeLat == nil {
		st.beforeLat = map[string]time.Duration{}
	}
	st.beforeLat[v.name] = v.latencyBefore(start)
}

// ratio is a latency as a multiple of a baseline median (0 if unknown).
func ratio(d, base time.Duration) float64 {
	if base <= 0 || d <= 0 {
		return 0
	}
	return float64(d) / float64(base)
}

// classify labels the open incident at now. It returns "" to keep the
// current label (healthy, waiting out the recovery window).
func (t *target) classify(now time.Time, active []*vantage, g State, nElevated int) (Label, []string) {
	st := t.open
	c := &t.cfg
	var (
		nFail, hard, soft, maxRuns int
		runsAt                     string
		classes                    = map[probe.Failure]int{}
		maxRatio                   float64
		ratioAt                    string
		ratioLat, ratioBase        time.Duration
		recentFail                 int
	)
	for _, v := range active {
		e := st.ev[v.name]
		if e == nil {
			continue
		}
		nFail += e.nFail
		for f, n := range e.fails {
			classes[f] += n
			if f.Hard() {
				hard += n
			}
			if f == probe.FailTimeout || f == probe.FailReset {
				soft += n
			}
		}
		if e.runs > maxRuns {
			maxRuns, runsAt = e.runs, v.name
		}
		if e.nFail > 0 && now.Sub(e.lastFail) < c.QuietWindow {
			recentFail++
		}
		if v.base.Len() >= c.BaselineMin && e.lat.Len() > 0 {
			med := e.lat.Quantile(0.5)
			if r := ratio(med, v.base.Quantile(0.5)); r > maxRatio && med > c.MinSlow {
				maxRatio, ratioAt, ratioLat, ratioBase = r, v.name, med, v.base.Quantile(0.5)
			}
		}
	}
	var ev []string
	classLine := func() string {
		keys := make([]string, 0, len(classes))
		for f := range classes {
			keys = append(keys, string(f))
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, fmt.Sprintf("%d %s", classes[probe.Failure(k)], k))
		}
		return "failures: " + strings.Join(parts, ", ")
	}
	// Attack signals.
	var attack []string
	if maxRuns >= 2 {
		attack = append(attack, fmt.Sprintf("intermittent: %d separate failure runs at %s", maxRuns, runsAt))
	}
	if nFail > 0 && float64(soft) >= 0.5*float64(nFail) {
		attack = append(attack, fmt.Sprintf("timeouts rather than refusals: %d of %d failures are timeouts or resets", soft, nFail))
	}
	if maxRatio >= c.AttackFactor {
		attack = append(attack, fmt.Sprintf("latency inflated %.1fx over baseline at %s (median %s vs %s)",
			maxRatio, ratioAt, ratioLat.Round(time.Millisecond), ratioBase.Round(100*time.Microsecond)))
	}
	if st.partial {
		attack = append(attack, "partial: some vantage points stayed up while others were down")
	}
	failing := g == Down || t.quorum(recentFail, len(active))
	if failing {
		if st.hadDown {
			if cut := t.cleanCut(now, active, nFail, hard, maxRuns); cut != nil {
				return LabelCleanCut, append(cut, classLine())
			}
			if len(attack) >= 2 {
				return LabelAttack, append(attack, classLine())
			}
			ev = append(ev, fmt.Sprintf("down by quorum (%d vantage points affected)", len(st.inc.Vantages)))
			if nFail > 0 {
				ev = append(ev, classLine())
			}
			return LabelOutage, append(ev, attack...)
		}
		if len(attack) >= 2 {
			return LabelAttack, append(attack, classLine())
		}
		ev = append(ev, "failures below the down quorum while latency is high")
		if nFail > 0 {
			ev = append(ev, classLine())
		}
		return LabelDegraded, append(ev, attack...)
	}
	if recentFail > 0 {
		// Failures below the quorum, but not quiet yet: too early to say
		// recovering; keep the current label.
		return "", nil
	}
	elevated := g == Degraded || t.quorum(nElevated, len(active))
	if !elevated {
		return "", nil
	}
	cur := latencyLine(active, c)
	if st.hadDown || st.inc.Label == LabelAttack || st.inc.Label == LabelRecovering {
		quiet := "no failures yet"
		if last := lastFailure(st); !last.IsZero() {
			quiet = fmt.Sprintf("no failures for %s", now.Sub(last).Round(time.Millisecond))
		}
		return LabelRecovering, []string{quiet, cur, "latency still above baseline: not clear it is fully mitigated"}
	}
	return LabelDegraded, append([]string{"available, no failures", cur}, attack...)
}

// cleanCut returns the evidence for a clean cut, or nil when the incident is
// not one.
func (t *target) cleanCut(now time.Time, active []*vantage, nFail, hard, maxRuns int) []string {
	st := t.open
	if !st.allDown || nFail == 0 || float64(hard) < 0.8*float64(nFail) || maxRuns > 1 {
		return nil
	}
	var first, last time.Time
	for _, on := range st.onset {
		if first.IsZero() || on.Before(first) {
			first = on
		}
		if on.After(last) {
			last = on
		}
	}
	spread := last.Sub(first)
	if spread > 2*t.cfg.Interval {
		return nil
	}
	ev := []string{
		fmt.Sprintf("%d of %d vantage points down at once (%s), none answering", len(st.onset), len(active), strings.Join(st.inc.Vantages, ", ")),
		fmt.Sprintf("onsets within %s", spread.Round(time.Millisecond)),
		fmt.Sprintf("%d of %d failures are refusals, DNS, TLS or HTTP errors", hard, nFail),
		"step change: no success between failures",
	}
	worst := 0.0
	for _, v := range active {
		before := st.beforeLat[v.name]
		if before <= t.cfg.MinSlow {
			continue // fast answers are no build-up, whatever the ratio
		}
		if r := ratio(before, v.base.Quantile(0.5)); r > worst {
			worst = r
		}
	}
	if worst >= t.cfg.AttackFactor {
		return nil // latency built up before the cut: not a step change
	}
	if worst > 0 {
		ev = append(ev, fmt.Sprintf("latency just before: %.1fx baseline", worst))
	}
	return ev
}

func lastFailure(st *incState) time.Time {
	var last time.Time
	for _, e := range st.ev {
		if e.lastFail.After(last) {
			last = e.lastFail
		}
	}
	return last
}

// latencyLine describes current latency against baseline per vantage point.
func latencyLine(active []*vantage, c *Config) string {
	parts := make([]string, 0, len(active))
	for _, v := range active {
		if v.lastLatency == 0 {
			continue
		}
		if b := v.base.Quantile(0.5); v.base.Len() >= c.BaselineMin && b > 0 {
			parts = append(parts, fmt.Sprintf("%s %s (%.1fx baseline)", v.name, v.lastLatency.Round(time.Millisecond), ratio(v.lastLatency, b)))
		} else {
			parts = append(parts, fmt.Sprintf("%s %s", v.name, v.lastLatency.Round(time.Millisecond)))
		}
	}
	slices.Sort(parts)
	return "latency now: " + strings.Join(parts, "; ")
}
