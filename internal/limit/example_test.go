package limit_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/levee-dev/levee/internal/limit"
)

// Several limits on one table: per address, per /24, per site. Each key
// builder mixes in its own limit id.
func Example() {
	t, err := limit.New(limit.Config{Name: "edge", MemoryBytes: 1 << 20}, limit.Deps{})
	if err != nil {
		panic(err)
	}
	const (
		perAddr = iota + 1
		perPrefix
		perSite
	)
	client := netip.MustParseAddr("192.0.2.10")
	checks := []limit.Check{
		{Key: limit.KeyAddr(perAddr, client, 32), Limit: limit.Limit{Rate: 2, Burst: 3}.Compile()},
		{Key: limit.KeyAddr(perPrefix, client, 24), Limit: limit.Limit{Rate: 20, Burst: 40}.Compile()},
		{Key: limit.KeyString(perSite, "example.org"), Limit: limit.Limit{Rate: 2000, Burst: 4000}.Compile()},
	}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).UnixNano()
	for i := range 5 {
		ok, retryAfter, failed := t.AllowAllAt(now, checks)
		fmt.Println(i, ok, retryAfter, failed)
	}
	// Output:
	// 0 true 0s -1
	// 1 true 0s -1
	// 2 true 0s -1
	// 3 false 500ms 0
	// 4 false 500ms 0
}

// A global limit every request hits is best kept in a lock-free Single.
func ExampleSingle() {
	var global limit.Single
	l := limit.Limit{Rate: 1000, Burst: 2}
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC).UnixNano()
	for range 3 {
		fmt.Println(global.AllowAt(now, l))
	}
	// Output:
	// true 0s
	// true 0s
	// false 1ms
}
