package incident

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/detect"
	"github.com/levee-dev/levee/internal/telemetry"
)

func TestWriteListAndReport(t *testing.T) {
	inc := exportIncident()
	inc.Kinds = []string{"request_surge"}
	inc.DurationSeconds = 300
	inc.PeakRequests = 4321
	inc.Requests, inc.Mitigated, inc.Passed, inc.LeakRatio = 1000, 900, 100, 0.1
	inc.UserAgents = []Count{{Value: "EvilBot", Share: 0.9}}
	inc.Rules = []detect.Mitigation{{Name: "auto-useragent-1", Action: detect.Action{Kind: detect.ActionBlock},
		Match:       detect.Match{All: []detect.Cond{{Attr: telemetry.AttrUserAgent, Values: []string{"EvilBot"}}}},
		Explanation: detect.Explanation{AttackShare: 1, Text: "user_agent \"EvilBot\": 100% of the attack traffic"}}}
	var buf bytes.Buffer
	ongoing := inc.Summary()
	ongoing.ID, ongoing.End = "x-2", time.Time{}
	if err := WriteList(&buf, []Summary{inc.Summary(), ongoing}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ID", "20260401T080000Z-www-1", "5m0s", "4321", "90.0%", "request_surge", "x-2", "(ongoing)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("list lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := WriteReport(&buf, inc); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"site www", "peak 4321 req/s", "900 mitigated (90.0%)", "leak 10.0%",
		`auto-useragent-1: block when user_agent = "EvilBot"`, "EvilBot (90.0%)", "192.0.2.1 (0.0%)", "4 attack sources, blocklist of 4 prefixes"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}
