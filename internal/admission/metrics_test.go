package admission

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Reload builds new instances with the same names: Unregister makes room,
// and a failed construction leaves nothing half-registered.
func TestMetricsUnregisterForReload(t *testing.T) {
	reg := prometheus.NewRegistry()
	build := func() (*Limiter, *Gate, *OutlierSet, *Breaker, error) {
		l, err := NewLimiter(LimiterConfig{Name: "site"}, Deps{Registerer: reg})
		if err != nil {
			return nil, nil, nil, nil, err
		}
		g, err := NewGate(GateConfig{Name: "site"}, l, Deps{Registerer: reg})
		if err != nil {
			return nil, nil, nil, nil, err
		}
		o, err := NewOutlierSet([]OutlierConfig{{Name: "site-a"}, {Name: "site-b"}}, 0, Deps{Registerer: reg})
		if err != nil {
			return nil, nil, nil, nil, err
		}
		b, err := NewBreaker(BreakerConfig{Name: "site"}, Deps{Registerer: reg})
		return l, g, o, b, err
	}
	l, g, o, b, err := build()
	if err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg)
	if err != nil || n == 0 {
		t.Fatalf("%d series, %v", n, err)
	}
	if _, err := NewLimiter(LimiterConfig{Name: "site"}, Deps{Registerer: reg}); err == nil {
		t.Fatal("duplicate registration accepted")
	}
	// The failed limiter registered nothing: after unregistering the first
	// set, the registry is empty.
	l.Unregister()
	g.Unregister()
	o.Unregister()
	b.Unregister()
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Fatalf("%d series left after Unregister, %v", n, err)
	}
	if _, _, _, _, err := build(); err != nil {
		t.Fatalf("rebuild after Unregister: %v", err)
	}
}
