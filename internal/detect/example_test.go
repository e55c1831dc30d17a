package detect_test

import (
	"fmt"
	"time"

	"github.com/levee-dev/levee/internal/detect"
	"github.com/levee-dev/levee/internal/telemetry"
)

// A detector fed one telemetry second per tick: 60 quiet seconds, then a
// flood whose requests all carry one user agent.
func ExampleDetector() {
	det, err := detect.New(detect.Config{Site: "www", WarmUp: 30 * time.Second}, detect.Deps{})
	if err != nil {
		panic(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	second := func(i int, requests uint64, top []telemetry.Item) telemetry.Second {
		sec := telemetry.Second{Start: t0.Add(time.Duration(i) * time.Second), End: t0.Add(time.Duration(i+1) * time.Second),
			Requests: requests, Sources: 50}
		sec.Top[telemetry.AttrUserAgent] = top
		return sec
	}
	browser := telemetry.Item{Key: 1, Value: "Mozilla/5.0", Count: 100}
	for i := range 60 {
		sec := second(i, 100, []telemetry.Item{browser})
		det.Observe(sec.End, &sec)
	}
	bot := telemetry.Item{Key: 2, Value: "EvilBot/1.0", Count: 5000}
	sec := second(60, 5100, []telemetry.Item{bot, browser})
	for _, ev := range det.Observe(sec.End, &sec) {
		fmt.Println(ev.Type, ev.Kinds, ev.Mode)
	}
	for _, r := range det.Active(sec.End) {
		fmt.Println(r.Action.Kind, r.Match.String(), r.TTL(sec.End))
	}
	// Output:
	// attack_start request_surge under_attack
	// mitigation request_surge under_attack
	// mode_change request_surge under_attack
	// block user_agent = "EvilBot/1.0" 10m0s
}
