package collector

import (
	"context"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/outage"
)

// TestE2EAgentBuffersAcrossCollectorRestart stops the collector while an
// agent keeps probing, restarts it on the same address and data directory,
// and checks that every result the agent produced is stored exactly once,
// at its probe time.
func TestE2EAgentBuffersAcrossCollectorRestart(t *testing.T) {
	o := startOrigin(t, "")
	dir := t.TempDir()
	cfg := config(dir+"/data", "", "tcp", o.addr, e2eInterval, e2eTimeout, "a1")
	h := startCollector(t, dir, "", cfg, "a1")
	ag := startAgent(t, "a1", h.url(), nil)
	waitFor(t, 5*time.Second, "first agent results", func() bool {
		rs, _ := h.c.Store().Results(context.Background(), "site", time.Now().Add(-time.Hour), time.Now().Add(time.Minute), 1000)
		return countVantage(rs, "a1") >= 3
	})
	addr := h.addr
	h.stop()
	down := time.Now()
	waitFor(t, 5*time.Second, "results to pile up in the agent's spool", func() bool { return ag.a.Spool().Pending() > 0 })
	time.Sleep(2 * time.Second)
	pending := ag.a.Spool().Pending()
	up := time.Now()
	h = startCollector(t, dir, addr, cfg, "a1")
	waitFor(t, 10*time.Second, "spool to drain", func() bool { return ag.a.Spool().Pending() == 0 })
	drained := time.Since(up)
	ag.stop()
	// Anything produced between the last flush and the stop is still in the
	// spool: send it with a fresh agent on the same data directory is not
	// needed here because stop() happens after the drain; flush what is left.
	rs, err := h.c.Store().Results(context.Background(), "site", time.Now().Add(-time.Hour), time.Now().Add(time.Minute), 100000)
	if err != nil {
		t.Fatal(err)
	}
	stored := countVantage(rs, "a1")
	produced := ag.probes(t)
	left := ag.a.Spool().Pending()
	inOutage := 0
	seen := map[string]bool{}
	for _, r := range rs {
		if r.Vantage != "a1" {
			continue
		}
		if seen[r.ID] {
			t.Errorf("result %s stored twice", r.ID)
		}
		seen[r.ID] = true
		if r.At.After(down) && r.At.Before(up) {
			inOutage++
		}
	}
	t.Logf("buffering: %d bytes spooled while the collector was down for %s; drained %s after restart; agent produced %d results, collector stored %d (%d stamped during the outage), %d bytes left in spool",
		pending, up.Sub(down).Round(time.Millisecond), drained.Round(time.Millisecond), produced, stored, inOutage, left)
	// The collector's own absence is not the target's outage: replayed
	// results are history, and the restart raises no incident.
	if incs, _ := h.c.Store().Incidents(context.Background(), "", time.Time{}, 10, false); len(incs) != 0 {
		t.Errorf("collector restart produced incidents: %+v", incs[0])
	}
	if inOutage < 5 {
		t.Errorf("only %d results stamped during the outage reached the collector", inOutage)
	}
	// Results produced after the last flush (between drain and stop) may
	// still be spooled; everything else must be stored.
	if stored+int(leftResults(t, ag)) < produced {
		t.Errorf("lost results: produced %d, stored %d, spooled %d", produced, stored, leftResults(t, ag))
	}
}

// leftResults counts results still in the agent's spool.
func leftResults(t *testing.T, ag *agentHarness) int {
	rs, _, err := ag.a.Spool().Peek(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	return len(rs)
}

// TestE2EOpenIncidentSurvivesCollectorRestart: an incident open when the
// collector stops is restored on start and closes once the target is
// healthy, instead of being lost or duplicated.
func TestE2EOpenIncidentSurvivesCollectorRestart(t *testing.T) {
	o := startOrigin(t, "")
	dir := t.TempDir()
	cfg := config(dir+"/data", "", "tcp", o.addr, 100*time.Millisecond, 80*time.Millisecond)
	h := startCollector(t, dir, "", cfg)
	waitFor(t, 5*time.Second, "target up", func() bool {
		st := h.c.tracker.Status(time.Now())
		return len(st) == 1 && st[0].State == outage.Up
	})
	o.stop()
	var id string
	waitFor(t, 5*time.Second, "incident", func() bool {
		if st := h.c.tracker.Status(time.Now())[0]; st.Incident != nil {
			id = st.Incident.ID
			return true
		}
		return false
	})
	h.stop()
	o = startOrigin(t, o.addr)
	h = startCollector(t, dir, "", cfg)
	if st := h.c.tracker.Status(time.Now())[0]; st.Incident == nil || st.Incident.ID != id {
		t.Fatalf("incident %s not restored: %+v", id, st.Incident)
	}
	waitFor(t, 10*time.Second, "restored incident to close", func() bool {
		inc, err := h.c.Store().Incident(context.Background(), id)
		return err == nil && !inc.Open()
	})
	incs, _ := h.c.Store().Incidents(context.Background(), "", time.Time{}, 10, false)
	if len(incs) != 1 {
		t.Errorf("%d incidents after restart, want the one restored", len(incs))
	}
}
