package incident_test

import (
	"net/netip"
	"os"

	"github.com/levee-dev/levee/internal/incident"
)

// Blocklist lists a /24 whole when at least four of its hosts attacked,
// single addresses otherwise, and merges sibling prefixes.
func ExampleBlocklist() {
	inc := &incident.Incident{ID: "example", Site: "www"}
	for _, a := range []string{"192.0.2.1", "192.0.2.7", "192.0.2.9", "192.0.2.200", "198.51.100.4", "198.51.100.5"} {
		addr := netip.MustParseAddr(a)
		inc.Sources = append(inc.Sources, incident.Count{Value: a, Requests: 100, Prefix: netip.PrefixFrom(addr, 32), Attack: true})
	}
	incident.WriteBlocklist(os.Stdout, "example", incident.Blocklist(inc, incident.BlocklistOptions{}))
	// Output:
	// # example
	// # 2 prefixes
	// 192.0.2.0/24
	// 198.51.100.4/31
}
