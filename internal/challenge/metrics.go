package challenge

import "github.com/prometheus/client_golang/prometheus"

var answerReasons = []string{"ok", "malformed", "forged", "expired", "too_early", "replayed", "wrong_work", "busy", "other"}

// metrics: every counter the request path touches is resolved here, so an
// increment is one atomic add.
type metrics struct {
	pages   [2]prometheus.Counter              // html, json
	checked [numResults + 1]prometheus.Counter // by Result, then "revoked"
	answers [3][]prometheus.Counter            // [Method][reason index]
}

func newMetrics(s *Service, reg prometheus.Registerer) (*metrics, error) {
	pages := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_challenge_pages_total",
		Help: "Challenge answers served to clients without clearance, by kind (html page or json)."}, []string{"kind"})
	checked := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_challenge_tokens_checked_total",
		Help: "Clearance cookies checked, by result."}, []string{"result"})
	answers := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "levee_challenge_answers_total",
		Help: "Answers to challenges, by path (pow, nojs) and result (ok or why rejected)."}, []string{"method", "result"})
	revoked := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "levee_challenge_tokens_revoked_total",
		Help: "Clearance tokens revoked for use from too many networks or at too high a rate."},
		func() float64 { return float64(s.revoker.Count()) })
	replay := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "levee_challenge_replay_ids",
		Help: "Used challenge ids held to refuse replays (in-memory replay set only)."}, func() float64 {
		if rs, ok := s.replay.(*ReplaySet); ok {
			return float64(rs.Len())
		}
		return 0
	})
	m := &metrics{}
	m.pages[0], m.pages[1] = pages.WithLabelValues("html"), pages.WithLabelValues("json")
	for r := Result(0); r < numResults; r++ {
		m.checked[r] = checked.WithLabelValues(r.String())
	}
	m.checked[numResults] = checked.WithLabelValues("revoked")
	for _, meth := range []Method{MethodPoW, MethodNoJS} {
		for _, reason := range answerReasons {
			m.answers[meth] = append(m.answers[meth], answers.WithLabelValues(meth.String(), reason))
		}
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{pages, checked, answers, revoked, replay} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) answer(meth Method, err error) {
	r := errReason(err)
	for i, name := range answerReasons {
		if name == r {
			m.answers[meth][i].Inc()
			return
		}
	}
}
