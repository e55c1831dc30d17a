package outage_test

import (
	"fmt"
	"time"

	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/probe"
)

// Two vantage points see a service refuse connections at the same moment:
// the quorum agrees after two failures each, and the incident is a clean cut.
func ExampleTracker() {
	tr, _ := outage.New(outage.Config{Interval: 10 * time.Second})
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 6 {
		at := t0.Add(time.Duration(i) * 5 * time.Second)
		for _, v := range []string{"eu-1", "us-1"} {
			o := outage.Observation{Vantage: v, At: at, OK: i < 4, Latency: 20 * time.Millisecond}
			if !o.OK {
				o.Failure = probe.FailRefused
			}
			for _, ev := range tr.ObserveAt(at, "www", o) {
				if ev.Kind == outage.EventOpen {
					fmt.Println(ev.Kind, ev.Incident.Label, ev.At.Sub(t0), ev.Incident.Vantages)
				}
			}
		}
	}
	// Output: open clean_cut 25s [eu-1 us-1]
}
