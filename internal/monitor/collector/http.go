package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/levee-dev/levee/internal/monitor/api"
	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/status"
	"github.com/levee-dev/levee/internal/monitor/store"
)

var _ http.Handler = (*http.ServeMux)(nil)

func (c *Collector) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", c.page)
	mux.HandleFunc("GET /incidents/{id}", c.incidentPage)
	mux.HandleFunc("GET /api/v1/status", c.apiStatus)
	mux.HandleFunc("GET /api/v1/targets/{name}/series", c.apiSeries)
	mux.HandleFunc("GET /api/v1/targets/{name}/results", c.apiResults)
	mux.HandleFunc("GET /api/v1/incidents", c.apiIncidents)
	mux.HandleFunc("GET /api/v1/incidents/{id}", c.apiIncident)
	mux.HandleFunc("GET "+api.PlanPath, c.apiPlan)
	mux.HandleFunc("POST "+api.ResultsPath, c.apiIngest)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.Handle("GET /metrics", promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{}))
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// Overview builds the front page model at now with charts for rng.
func (c *Collector) Overview(ctx context.Context, now time.Time, rng status.Range) (status.Overview, error) {
	o := status.Overview{Title: c.cfg.Title, Generated: now, Range: rng.Name}
	sts := map[string]outage.TargetStatus{}
	for _, st := range c.tracker.Status(now) {
		sts[st.Name] = st
	}
	for _, t := range c.cfg.Targets {
		st := sts[t.Name]
		tv := status.Target{Name: t.Name, Kind: string(t.Kind), Probe: probeText(t.Spec.URL, t.Spec.Address, t.Spec.Query, t.Spec.Server),
			Interval: t.Interval, State: st.State, Since: st.Since, Vantages: st.Vantages, Incident: st.Incident}
		hist, err := c.store.Incidents(ctx, t.Name, now.Add(-status.Ranges[len(status.Ranges)-1].Span-30*24*time.Hour), 100000, false)
		if err != nil {
			return o, err
		}
		first, err := c.store.FirstSeen(ctx, t.Name)
		if err != nil {
			return o, err
		}
		for _, r := range status.Ranges {
			tv.Uptime = append(tv.Uptime, uptime(r, hist, first, now))
		}
		ch, err := c.chart(ctx, t.Name, now.Add(-rng.Span), now, rng.Step, rng.Name, hist)
		if err != nil {
			return o, err
		}
		tv.Chart = ch
		o.Targets = append(o.Targets, tv)
	}
	recent, err := c.store.Incidents(ctx, "", now.Add(-RankWindow), 30, false)
	if err != nil {
		return o, err
	}
	live := map[string]*outage.Incident{}
	for _, st := range sts {
		if st.Incident != nil {
			live[st.Incident.ID] = st.Incident
		}
	}
	for _, inc := range recent {
		if l := live[inc.ID]; l != nil {
			inc = *l // the same snapshot as the target cards, not a later one
		}
		o.Incidents = append(o.Incidents, status.IncidentRow{Incident: inc, Rank: c.rank(ctx, inc, now)})
	}
	return o, nil
}

func probeText(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// uptime is 1 - (time in outages)/(time with data) over r ending at now.
func uptime(r status.Range, hist []outage.Incident, first, now time.Time) status.Uptime {
	from := now.Add(-r.Span)
	if first.After(from) {
		from = first
	}
	u := status.Uptime{Range: r.Name, Ratio: 1}
	if !now.After(from) {
		return u
	}
	u.Covered = now.Sub(from)
	var down time.Duration
	for _, inc := range hist {
		if inc.Peak != outage.Down {
			continue
		}
		end := inc.End
		if end.IsZero() {
			end = now
		}
		s, e := inc.Start, end
		if s.Before(from) {
			s = from
		}
		if e.After(now) {
			e = now
		}
		if s.Before(e) {
			down += e.Sub(s)
		}
	}
	u.Ratio = max(0, 1-float64(down)/float64(u.Covered))
	return u
}

func (c *Collector) chart(ctx context.Context, target string, from, to time.Time, step time.Duration, name string, hist []outage.Incident) (*status.Chart, error) {
	buckets, err := c.store.Series(ctx, target, from.Truncate(step), to, step)
	if err != nil {
		return nil, err
	}
	ch := &status.Chart{Range: name, From: from, To: to, Step: step, Buckets: buckets}
	for _, inc := range hist {
		end := inc.End
		if !inc.Open() && end.IsZero() {
			end = inc.Closed
		}
		if (end.IsZero() || end.After(from)) && inc.Start.Before(to) {
			ch.Spans = append(ch.Spans, status.Span{ID: inc.ID, Start: inc.Start, End: end, Label: inc.Label, Peak: inc.Peak})
		}
	}
	return ch, nil
}

func (c *Collector) page(w http.ResponseWriter, r *http.Request) {
	o, err := c.Overview(r.Context(), time.Now(), status.RangeByName(r.URL.Query().Get("range")))
	if err != nil {
		c.log.Error("status page", "err", err)
		http.Error(w, "status unavailable", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := status.RenderOverview(&buf, o); err != nil {
		c.log.Error("render status page", "err", err)
		http.Error(w, "status unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

func (c *Collector) apiStatus(w http.ResponseWriter, r *http.Request) {
	o, err := c.Overview(r.Context(), time.Now(), status.RangeByName(r.URL.Query().Get("range")))
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if r.URL.Query().Get("charts") != "1" {
		for i := range o.Targets {
			o.Targets[i].Chart = nil
		}
	}
	writeJSON(w, http.StatusOK, o)
}

func (c *Collector) apiSeries(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := c.targets[name]; !ok {
		httpError(w, http.StatusNotFound, "unknown target "+name)
		return
	}
	rng := status.RangeByName(r.URL.Query().Get("range"))
	now := time.Now()
	hist, err := c.store.Incidents(r.Context(), name, now.Add(-rng.Span-30*24*time.Hour), 100000, false)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	ch, err := c.chart(r.Context(), name, now.Add(-rng.Span), now, rng.Step, rng.Name, hist)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, ch)
}

func (c *Collector) apiResults(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := c.targets[name]; !ok {
		httpError(w, http.StatusNotFound, "unknown target "+name)
		return
	}
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	limit = max(1, min(limit, 5000))
	if r.URL.Query().Get("limit") == "" {
		limit = 100
	}
	now := time.Now()
	rs, err := c.store.Results(r.Context(), name, now.Add(-c.store.Config().RawRetention), now.Add(time.Minute), limit)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": rs})
}

func (c *Collector) apiIncidents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	now := time.Now()
	list, err := c.store.Incidents(r.Context(), q.Get("target"), now.Add(-c.store.Config().HourRetention), max(1, min(limit, 1000)), q.Get("open") == "1")
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	rows := []status.IncidentRow{}
	for _, inc := range list {
		rows = append(rows, status.IncidentRow{Incident: inc, Rank: c.rank(r.Context(), inc, now)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"incidents": rows})
}

// IncidentPage builds the model of one incident's page.
func (c *Collector) IncidentPage(ctx context.Context, id string, now time.Time) (status.IncidentPage, error) {
	inc, err := c.store.Incident(ctx, id)
	if err != nil {
		return status.IncidentPage{}, err
	}
	p := status.IncidentPage{Title: c.cfg.Title, Incident: inc, Rank: c.rank(ctx, inc, now), Now: now,
		DetectionDelay: inc.Detected.Sub(inc.Start), ShieldLinked: c.cfg.Shield != nil}
	end := inc.End
	if end.IsZero() {
		end = now
	}
	from, to := inc.Start.Add(-30*time.Minute), end.Add(30*time.Minute)
	if to.After(now) {
		to = now
	}
	if ch, err := c.chart(ctx, inc.Target, from, to, time.Minute, "incident", []outage.Incident{inc}); err == nil {
		p.Chart = ch
	}
	if st, err := c.strips(ctx, inc, end); err == nil {
		p.Probes = st
	}
	if c.cfg.Shield != nil {
		p.Shield, err = shieldIncidents(ctx, c.client, c.cfg.Shield, inc.Start.Add(-5*time.Minute), end.Add(5*time.Minute))
		if err != nil {
			p.ShieldErr = err.Error()
		}
	}
	return p, nil
}

// strips collects the raw probes around an incident (a quarter of its
// duration, at least 30 s, on each side; at most 5000 probes), while raw
// results are still retained.
func (c *Collector) strips(ctx context.Context, inc outage.Incident, end time.Time) (*status.Strips, error) {
	pad := max(30*time.Second, end.Sub(inc.Start)/4)
	from, to := inc.Start.Add(-pad), end.Add(pad)
	if now := time.Now(); to.After(now) {
		to = now
	}
	rs, err := c.store.Results(ctx, inc.Target, from, to, 5000)
	if err != nil || len(rs) == 0 {
		return nil, err
	}
	byVantage := map[string]*status.Strip{}
	var names []string
	for i := len(rs) - 1; i >= 0; i-- { // oldest first
		r := rs[i]
		s := byVantage[r.Vantage]
		if s == nil {
			s = &status.Strip{Vantage: r.Vantage}
			byVantage[r.Vantage] = s
			names = append(names, r.Vantage)
		}
		s.Probes = append(s.Probes, status.ProbeMark{At: r.At, OK: r.OK, Failure: r.Failure, Latency: r.Timings.Total})
	}
	slices.Sort(names)
	out := &status.Strips{From: rs[len(rs)-1].At, To: to, Start: inc.Start, End: inc.End}
	if from.Before(out.From) {
		out.From = from
	}
	for _, n := range names {
		s := byVantage[n]
		// Reference latency: successes before the incident (normal), or
		// all successes when there are none.
		var lats []time.Duration
		for _, p := range s.Probes {
			if p.OK && p.At.Before(inc.Start) {
				lats = append(lats, p.Latency)
			}
		}
		if len(lats) == 0 {
			for _, p := range s.Probes {
				if p.OK {
					lats = append(lats, p.Latency)
				}
			}
		}
		if len(lats) > 0 {
			slices.Sort(lats)
			s.Median = lats[len(lats)/2]
		}
		out.Rows = append(out.Rows, *s)
	}
	return out, nil
}

func (c *Collector) incidentPage(w http.ResponseWriter, r *http.Request) {
	p, err := c.IncidentPage(r.Context(), r.PathValue("id"), time.Now())
	if errors.Is(err, store.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, "incident unavailable", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := status.RenderIncident(&buf, p); err != nil {
		c.log.Error("render incident page", "err", err)
		http.Error(w, "incident unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

func (c *Collector) apiIncident(w http.ResponseWriter, r *http.Request) {
	p, err := c.IncidentPage(r.Context(), r.PathValue("id"), time.Now())
	if errors.Is(err, store.ErrNotFound) {
		httpError(w, http.StatusNotFound, "unknown incident")
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (c *Collector) apiPlan(w http.ResponseWriter, r *http.Request) {
	name, ok := c.agent(r)
	if !ok {
		c.m.authFailures.Inc()
		httpError(w, http.StatusUnauthorized, "missing or unknown agent token")
		return
	}
	plan := api.Plan{Vantage: name, Refresh: time.Minute, Targets: []api.PlanTarget{}}
	for _, t := range c.cfg.TargetsFor(name) {
		plan.Targets = append(plan.Targets, api.PlanTarget{Name: t.Name, Spec: t.Spec, Interval: t.Interval, Timeout: t.Timeout, Jitter: t.Jitter})
	}
	writeJSON(w, http.StatusOK, plan)
}

func (c *Collector) apiIngest(w http.ResponseWriter, r *http.Request) {
	name, ok := c.agent(r)
	if !ok {
		c.m.authFailures.Inc()
		httpError(w, http.StatusUnauthorized, "missing or unknown agent token")
		return
	}
	var batch api.Results
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 8<<20))
	if err := dec.Decode(&batch); err != nil {
		httpError(w, http.StatusBadRequest, "decode results: "+err.Error())
		return
	}
	if len(batch.Results) > api.MaxBatch {
		httpError(w, http.StatusRequestEntityTooLarge, "too many results in one batch")
		return
	}
	ack, err := c.IngestAt(time.Now(), name, batch.Results)
	if err != nil {
		c.log.Error("ingest agent results", "agent", name, "err", err)
		httpError(w, http.StatusServiceUnavailable, "store unavailable, retry later")
		return
	}
	writeJSON(w, http.StatusOK, ack)
}
