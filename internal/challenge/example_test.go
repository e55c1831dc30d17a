package challenge_test

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/challenge"
)

func ExampleSigner() {
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	s, err := challenge.NewSigner([]challenge.Key{{ID: 1, Secret: key}}, 24, 64)
	if err != nil {
		panic(err)
	}
	now := time.Unix(1_800_000_000, 0)
	bind := challenge.BindFingerprint("t13d1516h2_8daaf6152771_e5627efa2ab1")
	cookie := s.Issue(now, netip.MustParseAddr("192.0.2.10"), bind, challenge.MethodPoW, time.Hour)

	_, ok := s.Verify(now, []byte(cookie), netip.MustParseAddr("192.0.2.99"), bind)
	fmt.Println("same /24:", ok)
	_, r := s.Check(now, []byte(cookie), netip.MustParseAddr("198.51.100.1"), bind)
	fmt.Println("other network:", r)
	_, r = s.Check(now.Add(2*time.Hour), []byte(cookie), netip.MustParseAddr("192.0.2.10"), bind)
	fmt.Println("later:", r)
	// Output:
	// same /24: true
	// other network: wrong_network
	// later: expired
}
