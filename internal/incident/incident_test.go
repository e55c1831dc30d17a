package incident

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/detect"
	"github.com/levee-dev/levee/internal/telemetry"
)

var epoch = time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)

type fakeGeo struct{}

func (fakeGeo) Lookup(a netip.Addr) telemetry.Geo {
	b := a.As4()
	if b[0] == 20 {
		return telemetry.Geo{ASN: 64600 + uint32(b[1]%2), Org: fmt.Sprintf("Bullet Hosting %d", b[1]%2), Country: [2]byte{'X', 'A'}}
	}
	return telemetry.Geo{ASN: 64500, Org: "Eyeball ISP", Country: [2]byte{'D', 'E'}}
}

// run drives telemetry, detector and tracker through warm-up, a 20 s attack
// from 64 bots in 4 /24s and a calm tail.
func run(t *testing.T, cfg TrackerConfig) (snaps []*Incident, evs []detect.Event) {
	t.Helper()
	rec, err := telemetry.New(telemetry.Config{Shards: 2}, telemetry.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	det, err := detect.New(detect.Config{}, detect.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTracker(cfg, TrackerDeps{Geo: fakeGeo{}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	now := epoch
	rec.Tick(now)
	var e telemetry.Event
	normal := func() {
		u := rng.IntN(500)
		e = telemetry.Event{Client: netip.AddrFrom4([4]byte{100, 64, byte(u / 100), byte(u % 100)}), Path: []byte("/"),
			UserAgent: []byte("Mozilla/5.0"), Status: 200, Latency: 20 * time.Millisecond}
	}
	bot := func() {
		b := rng.IntN(64)
		e = telemetry.Event{Client: netip.AddrFrom4([4]byte{20, byte(b / 16), 7, byte(b%16 + 1)}), Path: []byte("/search"),
			UserAgent: []byte("flood/1"), Status: 200, Latency: 20 * time.Millisecond, NewConn: true}
		// Once a block rule exists, the data plane would block the bot.
		for _, r := range det.Active(now) {
			if r.Match.Matches(&e) && r.Action.Kind == detect.ActionBlock {
				e.Verdict = telemetry.VerdictBlocked
				e.Status = 0
			}
		}
	}
	step := func(n, attack int) {
		for range n {
			normal()
			rec.Record(&e)
		}
		for range attack {
			bot()
			rec.Record(&e)
		}
		now = now.Add(time.Second)
		sec := rec.Tick(now)
		out := det.Observe(now, &sec)
		evs = append(evs, out...)
		if inc := tr.Observe(now, &sec, out, det); inc != nil {
			snaps = append(snaps, inc)
		}
	}
	for range 120 {
		step(100, 0)
	}
	for range 20 {
		step(100, 1000)
	}
	for range 20 {
		step(100, 0)
	}
	return snaps, evs
}

func TestTracker(t *testing.T) {
	snaps, _ := run(t, TrackerConfig{Site: "www", SaveEvery: 5 * time.Second})
	if len(snaps) < 4 {
		t.Fatalf("%d snapshots, want start, periodic and end", len(snaps))
	}
	if !snaps[0].InProgress() {
		t.Error("first snapshot already ended")
	}
	inc := snaps[len(snaps)-1]
	if inc.InProgress() {
		t.Fatal("last snapshot not ended")
	}
	onset := epoch.Add(120 * time.Second)
	if !inc.Start.Equal(onset) || inc.Declared.Sub(onset) > 2*time.Second {
		t.Errorf("start %v declared %v, onset %v", inc.Start, inc.Declared, onset)
	}
	if inc.DurationSeconds < 29 || inc.DurationSeconds > 34 {
		t.Errorf("duration %v s (20 s attack + 10 s quiet)", inc.DurationSeconds)
	}
	if inc.PeakRequests < 1050 || inc.PeakRequests > 1150 {
		t.Errorf("peak %v req/s", inc.PeakRequests)
	}
	if inc.PeakConns < 900 || inc.PeakSources < 64 {
		t.Errorf("peak conns %v sources %v", inc.PeakConns, inc.PeakSources)
	}
	if inc.Requests != inc.Passed+inc.Mitigated || inc.Mitigated < 15000 {
		t.Errorf("requests %d passed %d mitigated %d", inc.Requests, inc.Passed, inc.Mitigated)
	}
	if inc.LeakRatio <= 0 || inc.LeakRatio > 0.3 {
		t.Errorf("leak ratio %v", inc.LeakRatio)
	}
	if len(inc.Rules) == 0 || len(inc.Kinds) == 0 || inc.MaxMode < detect.ModeElevated {
		t.Errorf("rules %d kinds %v mode %v", len(inc.Rules), inc.Kinds, inc.MaxMode)
	}
	if len(inc.Timeline) < 29 || inc.TimelineStep != 1 {
		t.Errorf("timeline %d points step %d", len(inc.Timeline), inc.TimelineStep)
	}
	if len(inc.UserAgents) == 0 || inc.UserAgents[0].Value != "flood/1" || inc.Paths[0].Value != "/search" {
		t.Errorf("top user agent %+v path %+v", inc.UserAgents, inc.Paths)
	}
	if len(inc.Sources) < 64 {
		t.Fatalf("%d sources", len(inc.Sources))
	}
	s := inc.Sources[0]
	if s.Prefix.Addr().As4()[0] != 20 || s.ASN == 0 || s.Org == "" || s.Country != "XA" || s.Share <= 0 || !s.Attack {
		t.Errorf("top source %+v", s)
	}
	attack, users := 0, 0
	for _, s := range inc.Sources {
		isBot := s.Prefix.Addr().As4()[0] == 20
		if s.Attack != isBot {
			t.Errorf("source %s: attack=%v, requests %d, expected %.1f", s.Value, s.Attack, s.Requests, s.Expected)
		}
		if isBot {
			attack++
		} else {
			users++
		}
	}
	if attack != 64 || users == 0 {
		t.Errorf("%d attack sources and %d users", attack, users)
	}
	var ended bool
	for _, n := range inc.Notes {
		ended = ended || n.Type == "attack_end"
	}
	if len(inc.Notes) < 3 || inc.Notes[0].Type != "attack_start" || !ended {
		t.Errorf("notes %+v", inc.Notes)
	}
	// The blocklist is the four bot /24s (16 bots each), merged where they
	// are siblings: 20.0.7.0/24, 20.1.7.0/24, 20.2.7.0/24, 20.3.7.0/24.
	bl := Blocklist(inc, BlocklistOptions{})
	want := []string{"20.0.7.0/24", "20.1.7.0/24", "20.2.7.0/24", "20.3.7.0/24"}
	if fmt.Sprint(bl) != fmt.Sprint(want) {
		t.Errorf("blocklist %v, want %v", bl, want)
	}
}

func TestTimelineDownsampling(t *testing.T) {
	tr, err := NewTracker(TrackerConfig{MaxTimeline: 8}, TrackerDeps{})
	if err != nil {
		t.Fatal(err)
	}
	now := epoch
	tr.Observe(now, nil, []detect.Event{{Type: detect.EventAttackStart, At: now, Onset: now, Kinds: detect.KindRequestSurge}}, nil)
	var total uint64
	for i := range 50 {
		sec := telemetry.Second{Start: now, End: now.Add(time.Second), Requests: uint64(i + 1), Sources: uint64(i)}
		total += sec.Requests
		now = now.Add(time.Second)
		tr.Observe(now, &sec, nil, nil)
	}
	inc := tr.Current()
	if len(inc.Timeline) > 8 || inc.TimelineStep != 8 {
		t.Fatalf("%d points, step %d", len(inc.Timeline), inc.TimelineStep)
	}
	var sum uint64
	secs := 0
	for i, p := range inc.Timeline {
		sum += p.Requests
		secs += p.Seconds
		if i < len(inc.Timeline)-1 && p.Seconds != inc.TimelineStep {
			t.Errorf("point %d covers %d s", i, p.Seconds)
		}
		if i > 0 && !p.T.After(inc.Timeline[i-1].T) {
			t.Errorf("point %d not after the previous one", i)
		}
	}
	if sum != total || secs != 50 || inc.Timeline[len(inc.Timeline)-1].Sources != 49 {
		t.Fatalf("requests %d of %d, seconds %d, last sources %d", sum, total, secs, inc.Timeline[len(inc.Timeline)-1].Sources)
	}
}

func TestTrackerConfigValidate(t *testing.T) {
	if _, err := NewTracker(TrackerConfig{MaxTimeline: 1}, TrackerDeps{}); err == nil {
		t.Error("MaxTimeline 1 accepted")
	}
}
