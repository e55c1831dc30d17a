package admission_test

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/levee-dev/levee/internal/admission"
)

// One Limiter and Gate per upstream; each request acquires a slot, goes to
// the origin, and reports how it went.
func ExampleGate() {
	lim, err := admission.NewLimiter(admission.LimiterConfig{Name: "shop", MinLimit: 4, MaxLimit: 200}, admission.Deps{})
	if err != nil {
		panic(err)
	}
	gate, err := admission.NewGate(admission.GateConfig{Name: "shop"}, lim, admission.Deps{})
	if err != nil {
		panic(err)
	}

	now := time.Unix(1_700_000_000, 0)
	tk, err := gate.Acquire(context.Background(), now, admission.Verified)
	if err != nil {
		// ErrQueueFull, ErrShed, ErrTimeout or the context's error: answer
		// 503 with Retry-After (or a stale cache entry).
		ct, _ := admission.ShedResponse([]byte("application/json"))
		fmt.Println("503", ct, "Retry-After:", gate.RetryAfter())
		return
	}
	// ... forward to the origin ...
	tk.Done(now.Add(12*time.Millisecond), true) // ok=false for timeouts, refused connections, 503s
	fmt.Println("limit", lim.Limit(), "in flight", gate.StatsAt(now).InFlight)
	// Output: limit 20 in flight 0
}

// Known-client cookies: issue in normal times, verify during an attack.
func ExampleCookies() {
	c, err := admission.NewCookies(admission.CookieConfig{Key: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		panic(err)
	}
	issued := time.Unix(1_700_000_000, 0)
	tok := c.Issue(issued, netip.MustParseAddr("192.0.2.10"))
	later := issued.Add(72 * time.Hour)
	fmt.Println(c.Verify(later, netip.MustParseAddr("192.0.2.99"), []byte(tok)))   // same /24
	fmt.Println(c.Verify(later, netip.MustParseAddr("198.51.100.1"), []byte(tok))) // elsewhere
	// Output:
	// true
	// false
}
