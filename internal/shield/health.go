package shield

import (
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/levee-dev/levee/internal/admission"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/proxy"
	"github.com/levee-dev/levee/internal/upstream"
)

// siteHealth is one site's passive health (sites[].passive_health): an
// admission.Outlier per upstream and the circuit breaker.
type siteHealth struct {
	cfg     config.PassiveHealth
	targets string                // the upstream addresses, to tell whether a reload changed them
	set     *admission.OutlierSet // nil with a single upstream: ejecting it would change nothing
	breaker *admission.Breaker    // nil when breaker.disable
}

func (h *siteHealth) unregister() {
	if h.set != nil {
		h.set.Unregister()
	}
	if h.breaker != nil {
		h.breaker.Unregister()
	}
}

// attachHealth gives the new pools and proxy sites their passive health,
// at swap time (after everything in Apply that can fail). A site whose
// passive_health block and upstream list did not change keeps its
// instances, so ejections and an open breaker survive a reload (a reload
// must not send traffic back to an origin just found failing). A changed
// site starts afresh: the old instances' metrics are unregistered before
// the new ones register the same names. Sites gone or without passive
// health drop theirs. Requests still running on the old pools report to
// the old, unregistered instances; that is harmless.
func (s *Shield) attachHealth(cfg *config.Config, pools []*upstream.Pool, sites []*proxy.Site) {
	keep := map[string]bool{}
	for i, site := range cfg.Sites {
		ph := site.PassiveHealth
		if !ph.Enabled {
			continue
		}
		keep[site.Name] = true
		addrs := make([]string, len(site.Upstreams))
		for j, u := range site.Upstreams {
			addrs[j] = config.UpstreamAddr(u.URL)
		}
		targets := strings.Join(addrs, " ")
		h := s.health[site.Name]
		if h == nil || h.cfg != ph || h.targets != targets {
			if h != nil {
				h.unregister()
			}
			h = s.newSiteHealth(site.Name, ph, addrs, targets)
			s.health[site.Name] = h
		}
		if h.set != nil {
			os := make([]upstream.Outlier, h.set.Len())
			for j := range os {
				os[j] = h.set.Target(j)
			}
			if err := pools[i].SetOutliers(os); err != nil {
				s.log.Error("passive health not attached", "site", site.Name, "err", err)
			}
		}
		if h.breaker != nil {
			sites[i].Breaker = h.breaker
		}
	}
	for name, h := range s.health {
		if !keep[name] {
			h.unregister()
			delete(s.health, name)
		}
	}
}

// newSiteHealth builds a site's outliers and breaker. Outlier metrics carry
// the labels site and upstream (the address); the breaker's, like the
// admission gate's, carry upstream = the site name. The configuration was
// validated with the same rules, so the constructors fail only on a
// metrics conflict, which the bookkeeping above rules out; should one fail
// anyway, the site keeps passive health without metrics.
func (s *Shield) newSiteHealth(name string, ph config.PassiveHealth, addrs []string, targets string) *siteHealth {
	h := &siteHealth{cfg: ph, targets: targets}
	if len(addrs) > 1 {
		cfgs := make([]admission.OutlierConfig, len(addrs))
		seen := map[string]int{}
		for i, a := range addrs {
			seen[a]++
			if seen[a] > 1 { // the same origin listed twice: distinct metric labels
				a += "#" + strconv.Itoa(seen[a])
			}
			cfgs[i] = admission.OutlierConfig{Name: a, ConsecutiveErrors: ph.ConsecutiveErrors,
				BaseEjection: ph.BaseEjection, MaxEjection: ph.MaxEjection, LatencyThreshold: ph.LatencyThreshold}
		}
		reg := prometheus.WrapRegistererWith(prometheus.Labels{"site": name}, s.reg)
		set, err := admission.NewOutlierSet(cfgs, ph.MaxEjectionPercent, admission.Deps{Registerer: reg, Logger: s.log})
		if err != nil {
			s.log.Error("passive health: outlier metrics not registered", "site", name, "err", err)
			set, err = admission.NewOutlierSet(cfgs, ph.MaxEjectionPercent, admission.Deps{Logger: s.log})
		}
		if err == nil {
			h.set = set
		} else {
			s.log.Error("passive health: outlier ejection off", "site", name, "err", err)
		}
	}
	if !ph.Breaker.Disable {
		b := ph.Breaker
		bc := admission.BreakerConfig{Name: name, Window: b.Window, MinRequests: b.MinRequests, FailureRatio: b.FailureRatio,
			OpenTime: b.OpenTime, MaxOpenTime: b.MaxOpenTime, HalfOpenProbes: b.HalfOpenProbes}
		br, err := admission.NewBreaker(bc, admission.Deps{Registerer: s.reg, Logger: s.log})
		if err != nil {
			s.log.Error("passive health: breaker metrics not registered", "site", name, "err", err)
			br, err = admission.NewBreaker(bc, admission.Deps{Logger: s.log})
		}
		if err == nil {
			h.breaker = br
		} else {
			s.log.Error("passive health: circuit breaker off", "site", name, "err", err)
		}
	}
	return h
}
