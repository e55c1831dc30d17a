package shield

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	"github.com/levee-dev/levee/internal/admin"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/decide"
	"github.com/levee-dev/levee/internal/detect"
	"github.com/levee-dev/levee/internal/incident"
	"github.com/levee-dev/levee/internal/proxy"
	"github.com/levee-dev/levee/internal/telemetry"
)

// siteDetection is one site's telemetry recorder, detector and incident
// tracker. It outlives reloads (the baseline is learned state), keyed by
// site name.
type siteDetection struct {
	mu   sync.Mutex // guards det and trk between the tick and the API
	name string
	rec  *telemetry.Recorder
	det  *detect.Detector
	trk  *incident.Tracker
}

// detection runs the per-second detection loop for all sites.
type detection struct {
	s         *Shield
	mu        sync.Mutex
	sites     map[string]*siteDetection
	db        *sql.DB
	incidents incident.Store
	notifiers []*incident.Notifier
	mitigate  bool
	lastRules map[string]time.Time // published detector rules and their expiry
	geo       *proxy.GeoCache
	geoDB     *telemetry.GeoIP
	hooks     chan hookJob // webhook deliveries, in order, off the tick
}

type hookJob struct {
	n *incident.Notifier
	p incident.Payload
}

// notify queues a webhook delivery. One worker sends them in order (a
// receiver sees attack_start before mitigation and attack_end); when the
// queue is full (a receiver down during a long attack) the event is
// dropped and logged rather than blocking detection.
func (d *detection) notify(n *incident.Notifier, p incident.Payload) {
	select {
	case d.hooks <- hookJob{n, p}:
	default:
		d.s.log.Warn("webhook queue full; event dropped", "event", p.Event, "site", p.Site)
	}
}

func (d *detection) sendHooks(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-d.hooks:
			sctx, cancel := context.WithTimeout(ctx, time.Minute)
			if err := j.n.Send(sctx, &j.p); err != nil {
				d.s.log.Warn("webhook failed", "event", j.p.Event, "err", err)
			}
			cancel()
		}
	}
}

func (s *Shield) openDetection(cfg *config.Config) error {
	if cfg.Detection.Disable {
		return nil
	}
	path := filepath.Join(cfg.DataDir, "incidents.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		return fmt.Errorf("incidents store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	st, err := incident.NewSQLiteStore(context.Background(), db)
	if err != nil {
		db.Close()
		return fmt.Errorf("incidents store %s: %w (move the file aside to start with an empty history)", path, err)
	}
	d := &detection{s: s, sites: map[string]*siteDetection{}, db: db, incidents: st, lastRules: map[string]time.Time{},
		hooks: make(chan hookJob, 256)}
	if len(cfg.Detection.GeoIP) > 0 {
		geo, err := telemetry.OpenGeoIP(cfg.Detection.GeoIP...)
		if err != nil {
			db.Close()
			return err
		}
		d.geoDB, d.geo = geo, proxy.NewGeoCache(geo, 1<<16)
	}
	s.det = d
	return d.configure(cfg)
}

// configure applies a (re)loaded configuration: new sites get a recorder
// and detector, webhooks are rebuilt.
func (d *detection) configure(cfg *config.Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mitigate = !cfg.Detection.DisableMitigation
	for _, site := range cfg.Sites {
		if _, ok := d.sites[site.Name]; ok {
			continue
		}
		rec, err := telemetry.New(telemetry.Config{Site: site.Name}, telemetry.Deps{Registerer: d.s.reg})
		if err != nil {
			return fmt.Errorf("telemetry %s: %w", site.Name, err)
		}
		det, err := detect.New(detect.Config{Site: site.Name, WarmUp: cfg.Detection.WarmUp, Ratio: cfg.Detection.Ratio,
			MinRequests: cfg.Detection.MinRequests}, detect.Deps{Registerer: d.s.reg, Logger: d.s.log})
		if err != nil {
			return fmt.Errorf("detector %s: %w", site.Name, err)
		}
		var tdeps incident.TrackerDeps
		if d.geoDB != nil {
			tdeps.Geo = d.geoDB
		}
		trk, err := incident.NewTracker(incident.TrackerConfig{Site: site.Name}, tdeps)
		if err != nil {
			return err
		}
		d.sites[site.Name] = &siteDetection{name: site.Name, rec: rec, det: det, trk: trk}
	}
	var ns []*incident.Notifier
	for _, w := range cfg.Detection.Webhooks {
		n, err := incident.NewNotifier(incident.WebhookConfig{URL: w.URL, Format: w.Format, Events: w.Events}, incident.NotifierDeps{Logger: d.s.log})
		if err != nil {
			return err
		}
		ns = append(ns, n)
	}
	d.notifiers = ns
	return nil
}

// recorder returns the site's recorder (nil when detection is off).
func (s *Shield) recorder(site string) *telemetry.Recorder {
	if s.det == nil {
		return nil
	}
	s.det.mu.Lock()
	defer s.det.mu.Unlock()
	if sd := s.det.sites[site]; sd != nil {
		return sd.rec
	}
	return nil
}

// run ticks every second until ctx ends.
func (d *detection) run(ctx context.Context) {
	go d.sendHooks(ctx)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.tick(now)
		}
	}
}

// tick closes one second of telemetry per site, runs the detectors, records
// incidents, notifies, and publishes the mitigations and the mode.
func (d *detection) tick(now time.Time) {
	d.mu.Lock()
	sites := make([]*siteDetection, 0, len(d.sites))
	for _, sd := range d.sites {
		sites = append(sites, sd)
	}
	notifiers, mitigate := d.notifiers, d.mitigate
	d.mu.Unlock()
	sort.Slice(sites, func(i, j int) bool { return sites[i].name < sites[j].name })

	var rules []decide.RuntimeRule
	mode := detect.ModeNormal
	for _, sd := range sites {
		sd.mu.Lock()
		sec := sd.rec.Tick(now)
		evs := sd.det.Observe(now, &sec)
		saved := sd.trk.Observe(now, &sec, evs, sd.det)
		cur := sd.trk.Current()
		siteMode := sd.det.Mode(now)
		active := sd.det.Active(now)
		sd.mu.Unlock()
		if saved != nil {
			if err := d.incidents.Save(context.Background(), saved); err != nil {
				d.s.log.Error("could not save incident", "incident", saved.ID, "err", err)
			}
		}
		for i := range evs {
			ev := &evs[i]
			d.logEvent(ev, mitigate)
			inc := cur
			if inc == nil && ev.Type == detect.EventAttackEnd {
				inc, _ = d.incidents.Get(context.Background(), d.lastIncidentID(sd.name))
			}
			if p, ok := incident.NewPayload(ev, inc); ok {
				for _, n := range notifiers {
					if n.Wants(p.Event) {
						d.notify(n, p)
					}
				}
			}
		}
		if !mitigate {
			continue
		}
		if siteMode > mode {
			mode = siteMode
		}
		for _, m := range active {
			rules = append(rules, mitigationRule(m))
		}
	}
	if !mitigate {
		return
	}
	d.s.engine.SetMode(decide.ModeState{Mode: decideMode(mode), Source: "detector", Until: now.Add(5 * time.Second),
		Reason: "automatic escalation"})
	d.publish(rules)
}

func (d *detection) lastIncidentID(site string) string {
	list, err := d.incidents.List(context.Background(), incident.ListOptions{Site: site, Limit: 1})
	if err != nil || len(list) == 0 {
		return ""
	}
	return list[0].ID
}

// logEvent logs a detector event. Without mitigation (detection's
// disable_mitigation), the rules and modes the detector proposes are not
// applied, and the lines say so.
func (d *detection) logEvent(ev *detect.Event, mitigate bool) {
	switch ev.Type {
	case detect.EventAttackStart:
		d.s.log.Warn("attack detected", "site", ev.Site, "kinds", ev.Kinds.String(), "mode", ev.Mode.String(), "onset", ev.Onset)
	case detect.EventMitigation:
		if mitigate {
			d.s.log.Warn("automatic mitigation", "site", ev.Site, "rule", ev.Mitigation.String())
		} else {
			d.s.log.Warn("mitigation proposed, not applied (detection.disable_mitigation)", "site", ev.Site, "rule", ev.Mitigation.String())
		}
	case detect.EventModeChange:
		if mitigate {
			d.s.log.Warn("mode changed", "site", ev.Site, "mode", ev.Mode.String())
		} else {
			d.s.log.Warn("mode change proposed, not applied (detection.disable_mitigation)", "site", ev.Site, "mode", ev.Mode.String())
		}
	case detect.EventAttackEnd:
		d.s.log.Warn("attack ended", "site", ev.Site, "onset", ev.Onset)
	}
}

// publish replaces the detector's runtime rules when they changed.
func (d *detection) publish(rules []decide.RuntimeRule) {
	changed := len(rules) != len(d.lastRules)
	for _, r := range rules {
		if exp, ok := d.lastRules[r.Rule.Name]; !ok || !exp.Equal(r.Expires) {
			changed = true
		}
	}
	if !changed {
		return
	}
	if err := d.s.setDetectorRules(rules); err != nil {
		d.s.log.Error("could not apply generated rules", "err", err)
		return
	}
	d.lastRules = map[string]time.Time{}
	for _, r := range rules {
		d.lastRules[r.Rule.Name] = r.Expires
	}
}

// mitigationRule turns a detector mitigation into a runtime rule scoped to
// its site, matching on the telemetry event.
func mitigationRule(m detect.Mitigation) decide.RuntimeRule {
	match := m.Match
	rr := decide.RuntimeRule{
		Rule:        config.Rule{Name: m.Name},
		Source:      "detector",
		Created:     m.Created,
		Expires:     m.Expires,
		Explanation: m.Explanation.Text,
		Site:        m.Site,
		EventMatch:  &match,
	}
	switch m.Action.Kind {
	case detect.ActionBlock:
		rr.Rule.Action = "block"
	case detect.ActionChallenge:
		rr.Rule.Action = "challenge"
	default:
		rr.Rule.Action = "rate_limit"
		rr.Rule.Limit = &config.Limit{Name: m.Name, Key: "global", Rate: m.Action.Rate, Burst: m.Action.Burst}
	}
	return rr
}

func decideMode(m detect.Mode) decide.Mode {
	switch m {
	case detect.ModeElevated:
		return decide.Elevated
	case detect.ModeUnderAttack:
		return decide.UnderAttack
	}
	return decide.Normal
}

func (d *detection) close() {
	if d.db != nil {
		d.db.Close()
	}
	d.geoDB.Close()
}

// registerIncidentAPI adds the incident endpoints:
//
//	GET /v1/incidents[?site=&limit=]           summaries, newest first
//	GET /v1/incidents/{id}                     the full incident (JSON)
//	GET /v1/incidents/{id}/sources.csv         sources as CSV
//	GET /v1/incidents/{id}/blocklist.txt       aggregated CIDR blocklist
//	GET /v1/incidents/{id}/abuse.txt           abuse summary by network
//	GET /v1/detection                          detector status per site
func (s *Shield) registerIncidentAPI(a *admin.Server) {
	if s.det == nil {
		return
	}
	d := s.det
	a.Handle("GET /v1/incidents", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		list, err := d.incidents.List(r.Context(), incident.ListOptions{Site: r.URL.Query().Get("site"), Limit: limit})
		if err != nil {
			admin.WriteJSON(w, 500, map[string]any{"error": err.Error()})
			return
		}
		// from/to (RFC 3339) keep incidents overlapping that window; the
		// outage monitor asks this way to show the inside view of an outage.
		var from, to time.Time
		for _, p := range []struct {
			name string
			t    *time.Time
		}{{"from", &from}, {"to", &to}} {
			if v := r.URL.Query().Get(p.name); v != "" {
				t, err := time.Parse(time.RFC3339, v)
				if err != nil {
					admin.WriteJSON(w, 400, map[string]any{"error": p.name + ": want an RFC 3339 time"})
					return
				}
				*p.t = t
			}
		}
		out := []incident.Summary{}
		for _, sum := range list {
			if !to.IsZero() && sum.Start.After(to) {
				continue
			}
			if !from.IsZero() && !sum.End.IsZero() && sum.End.Before(from) {
				continue
			}
			out = append(out, sum)
		}
		admin.WriteJSON(w, 200, out)
	}))
	a.Handle("GET /v1/incidents/{id}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inc, ok := d.get(w, r)
		if ok {
			admin.WriteJSON(w, 200, inc)
		}
	}))
	a.Handle("GET /v1/incidents/{id}/{export}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inc, ok := d.get(w, r)
		if !ok {
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		switch r.PathValue("export") {
		case "sources.csv":
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			_ = incident.WriteSourcesCSV(w, inc)
		case "blocklist.txt":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_ = incident.WriteBlocklist(w, incident.BlocklistHeader(inc), incident.Blocklist(inc, incident.BlocklistOptions{}))
		case "abuse.txt":
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_ = incident.WriteAbuseSummary(w, inc, incident.AbuseSummary(inc))
		default:
			admin.WriteJSON(w, 404, map[string]any{"error": "unknown export; want sources.csv, blocklist.txt or abuse.txt"})
		}
	}))
	a.Handle("GET /v1/detection", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.mu.Lock()
		var out []detect.Status
		for _, sd := range d.sites {
			sd.mu.Lock()
			out = append(out, sd.det.Status(time.Now()))
			sd.mu.Unlock()
		}
		d.mu.Unlock()
		sort.Slice(out, func(i, j int) bool { return out[i].Site < out[j].Site })
		admin.WriteJSON(w, 200, out)
	}))
}

// lookup returns an incident: one in progress from memory (fresher than
// its last saved snapshot), else from the store.
func (d *detection) lookup(ctx context.Context, id string) (*incident.Incident, error) {
	d.mu.Lock()
	for _, sd := range d.sites {
		sd.mu.Lock()
		cur := sd.trk.Current()
		sd.mu.Unlock()
		if cur != nil && cur.ID == id {
			d.mu.Unlock()
			return cur, nil
		}
	}
	d.mu.Unlock()
	return d.incidents.Get(ctx, id)
}

func (d *detection) get(w http.ResponseWriter, r *http.Request) (*incident.Incident, bool) {
	id := r.PathValue("id")
	inc, err := d.lookup(r.Context(), id)
	if errors.Is(err, incident.ErrNotFound) {
		admin.WriteJSON(w, 404, map[string]any{"error": "no incident " + id})
		return nil, false
	}
	if err != nil {
		admin.WriteJSON(w, 500, map[string]any{"error": err.Error()})
		return nil, false
	}
	return inc, true
}
