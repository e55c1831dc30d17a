package shield

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/levee-dev/levee/internal/admin"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/decide"
	"github.com/levee-dev/levee/internal/iplist"
	"github.com/levee-dev/levee/internal/store"
)

// openPolicy opens the store, the runtime bans, the threat feeds and the
// decision engine.
func (s *Shield) openPolicy(ctx context.Context, cfg *config.Config) error {
	st, err := store.Open(filepath.Join(cfg.DataDir, "levee.db"), s.log)
	if err != nil {
		return err
	}
	s.store = st
	if s.bans, err = iplist.NewBans(ctx, iplist.BansConfig{}, iplist.BansDeps{Store: st, Logger: s.log, Registerer: s.reg}); err != nil {
		st.Close()
		return fmt.Errorf("bans: %w", err)
	}
	feeds, err := newFeeds(cfg, s.log)
	if err != nil {
		st.Close()
		return err
	}
	s.feedCfg = cfg.Feeds
	if s.engine, err = decide.New(&cfg.Policy, decide.Deps{Bans: s.bans, Feeds: feeds, Registerer: s.reg, Logger: s.log}); err != nil {
		st.Close()
		return fmt.Errorf("policy: %w", err)
	}
	// One collector, registered once, reads the feed set in use at each
	// scrape: a reload that replaces the set (feeds added, removed or
	// changed) shows at the next scrape, and a shield started without feeds
	// exposes them once a reload adds some.
	if err := s.reg.Register(iplist.NewSetCollector(s.engine.Feeds)); err != nil {
		st.Close()
		return fmt.Errorf("feeds: register metrics: %w", err)
	}
	s.guard.SetBanChecker(s.engine)
	if err := s.loadRuntimeRules(ctx); err != nil {
		st.Close()
		return err
	}
	return nil
}

// newFeeds loads the feed files of cfg into a new set (nil without feeds).
// Its metrics are not registered: the collector registered in openPolicy
// follows the engine's current set.
func newFeeds(cfg *config.Config, log *slog.Logger) (*iplist.Set, error) {
	if len(cfg.Feeds) == 0 {
		return nil, nil
	}
	var lists []iplist.ListConfig
	for _, f := range cfg.Feeds {
		lists = append(lists, iplist.ListConfig{Name: f.Name, Path: f.Path, Format: f.Format, Lenient: !f.Strict})
	}
	set, err := iplist.NewSet(iplist.SetConfig{Lists: lists, Interval: cfg.FeedRefresh}, iplist.SetDeps{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("feeds: %w", err)
	}
	return set, nil
}

// applyPolicy is the policy part of Apply. A change to the feed list or to
// feed_refresh loads a new feed set; it replaces the running one only once
// the rest of the policy compiled, so a policy that fails to compile leaves
// the running feeds (and their poller) in place.
func (s *Shield) applyPolicy(cfg *config.Config) error {
	var set *iplist.Set
	change := !reflect.DeepEqual(cfg.Feeds, s.feedCfg) || s.feedRefreshChanged(cfg)
	if change {
		var err error
		if set, err = newFeeds(cfg, s.log); err != nil {
			return err
		}
	}
	if err := s.engine.Apply(&cfg.Policy); err != nil {
		return err
	}
	if change {
		s.engine.SetFeeds(set)
		s.feedCfg = cfg.Feeds
		s.runFeeds()
	}
	return nil
}

// feedRefreshChanged reports whether cfg asks for another polling interval
// than the running feed set's.
func (s *Shield) feedRefreshChanged(cfg *config.Config) bool {
	cur := s.engine.Feeds()
	if cur == nil {
		return false
	}
	want := cfg.FeedRefresh
	if want == 0 {
		want = 60 * time.Second // NewSet's default, as config's
	}
	return cur.Interval() != want
}

// runFeeds stops the poller of the previous feed set, if any, and polls the
// current one.
func (s *Shield) runFeeds() {
	if s.feedCancel != nil {
		s.feedCancel()
		s.feedCancel = nil
	}
	set := s.engine.Feeds()
	if set == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.feedCancel = cancel
	go set.Run(ctx)
}

// BanRequest is the body of POST /v1/bans.
type BanRequest struct {
	Prefix string `json:"prefix"`
	// For is a duration such as "1h"; empty or "0" means permanent.
	For    string `json:"for"`
	Reason string `json:"reason"`
	Source string `json:"source"`
}

// BanView is a ban as the API shows it.
type BanView struct {
	Prefix  string    `json:"prefix"`
	Reason  string    `json:"reason"`
	Source  string    `json:"source"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires,omitempty"`
}

func (s *Shield) registerPolicyAPI(a *admin.Server) {
	a.Handle("GET /v1/bans", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		list := s.bans.List(time.Now())
		out := make([]BanView, 0, len(list))
		for _, b := range list {
			out = append(out, BanView{Prefix: b.Prefix.String(), Reason: b.Reason, Source: b.Source, Created: b.Created, Expires: b.Expires})
		}
		admin.WriteJSON(w, 200, out)
	}))
	a.Handle("POST /v1/bans", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var br BanRequest
		if err := admin.ReadJSON(r, &br); err != nil {
			admin.WriteJSON(w, 400, map[string]any{"error": err.Error()})
			return
		}
		b, err := parseBan(br, time.Now())
		if err != nil {
			admin.WriteJSON(w, 400, map[string]any{"error": err.Error()})
			return
		}
		if err := s.bans.Add(r.Context(), b); err != nil && !errors.Is(err, iplist.ErrNotPersisted) {
			admin.WriteJSON(w, 500, map[string]any{"error": err.Error()})
			return
		} else if err != nil {
			admin.WriteJSON(w, 200, map[string]any{"ok": true, "warning": err.Error()})
			return
		}
		s.log.Info("ban added", "prefix", b.Prefix.String(), "expires", b.Expires, "reason", b.Reason, "source", b.Source)
		admin.WriteJSON(w, 200, map[string]any{"ok": true, "prefix": b.Prefix.String(), "expires": b.Expires})
	}))
	a.Handle("DELETE /v1/bans", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := config.ParsePrefix(r.URL.Query().Get("prefix"))
		if err != nil {
			admin.WriteJSON(w, 400, map[string]any{"error": err.Error()})
			return
		}
		ok, err := s.bans.Remove(r.Context(), p)
		if err != nil && !errors.Is(err, iplist.ErrNotPersisted) {
			admin.WriteJSON(w, 500, map[string]any{"error": err.Error()})
			return
		}
		if !ok {
			admin.WriteJSON(w, 404, map[string]any{"error": "no ban on " + p.String()})
			return
		}
		s.log.Info("ban removed", "prefix", p.String())
		admin.WriteJSON(w, 200, map[string]any{"ok": true})
	}))
	a.Handle("GET /v1/rules", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, 200, s.ruleViews())
	}))
	s.registerRuleAPI(a)
	a.Handle("GET /v1/mode", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		admin.WriteJSON(w, 200, s.engine.ModeAt(time.Now()))
	}))
	a.Handle("POST /v1/mode", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var mr ModeRequest
		if err := admin.ReadJSON(r, &mr); err != nil {
			admin.WriteJSON(w, 400, map[string]any{"error": err.Error()})
			return
		}
		if mr.Mode == "auto" {
			s.engine.ClearManualMode()
			s.log.Info("manual mode override cleared")
			admin.WriteJSON(w, 200, s.engine.ModeAt(time.Now()))
			return
		}
		m, err := decide.ParseMode(mr.Mode)
		if err != nil {
			admin.WriteJSON(w, 400, map[string]any{"error": err.Error() + " (or auto to end a manual override)"})
			return
		}
		st := decide.ModeState{Mode: m, Source: "manual", Reason: mr.Reason}
		if mr.For != "" && mr.For != "0" {
			d, err := time.ParseDuration(mr.For)
			if err != nil || d <= 0 {
				admin.WriteJSON(w, 400, map[string]any{"error": fmt.Sprintf("invalid duration %q", mr.For)})
				return
			}
			st.Until = time.Now().Add(d)
		}
		s.engine.SetMode(st)
		s.log.Warn("mode set by operator", "mode", m.String(), "until", st.Until, "reason", mr.Reason)
		admin.WriteJSON(w, 200, s.engine.ModeAt(time.Now()))
	}))
}

// ModeRequest is the body of POST /v1/mode.
type ModeRequest struct {
	// Mode is normal, elevated, under-attack, or auto (end a manual override).
	Mode string `json:"mode"`
	// For is a duration such as "30m"; empty: until changed.
	For    string `json:"for"`
	Reason string `json:"reason"`
}

func parseBan(br BanRequest, now time.Time) (iplist.Ban, error) {
	p, err := config.ParsePrefix(br.Prefix)
	if err != nil {
		return iplist.Ban{}, err
	}
	b := iplist.Ban{Prefix: p, Reason: strings.TrimSpace(br.Reason), Source: br.Source, Created: now}
	if b.Source == "" {
		b.Source = "api"
	}
	if br.For != "" && br.For != "0" {
		d, err := time.ParseDuration(br.For)
		if err != nil || d < 0 {
			return iplist.Ban{}, fmt.Errorf("invalid duration %q: want e.g. 30m, 1h, 24h", br.For)
		}
		b.Expires = now.Add(d)
	}
	if len(b.Reason) > 500 {
		b.Reason = b.Reason[:500]
	}
	return b, nil
}

// loadRuntimeRules compiles the runtime rules persisted in the store.
func (s *Shield) loadRuntimeRules(ctx context.Context) error {
	stored, err := s.store.ListRules(ctx, time.Now())
	if err != nil {
		return err
	}
	var rules []decide.RuntimeRule
	for _, sr := range stored {
		var rr decide.RuntimeRule
		if err := json.Unmarshal(sr.Body, &rr); err != nil {
			s.log.Error("skipping unreadable runtime rule in the store", "rule", sr.Name, "err", err)
			continue
		}
		rules = append(rules, rr)
	}
	if err := s.engine.SetRuntimeRules(rules); err != nil {
		return fmt.Errorf("runtime rules from %s: %w", s.store.Path(), err)
	}
	return nil
}

// AddRuntimeRule validates, applies and persists a runtime rule (replacing
// one with the same name).
func (s *Shield) AddRuntimeRule(ctx context.Context, rr decide.RuntimeRule) error {
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	cur, _ := s.engine.RuntimeRules()
	next := make([]decide.RuntimeRule, 0, len(cur)+1)
	for _, r := range cur {
		if r.Rule.Name != rr.Rule.Name {
			next = append(next, r)
		}
	}
	next = append(next, rr)
	if err := s.engine.SetRuntimeRules(next); err != nil {
		return err
	}
	body, err := json.Marshal(rr)
	if err != nil {
		return err
	}
	if err := s.store.PutRule(ctx, store.Rule{Name: rr.Rule.Name, Body: body, Created: rr.Created, Expires: rr.Expires}); err != nil {
		return fmt.Errorf("%w: %v", iplist.ErrNotPersisted, err)
	}
	return nil
}

// RemoveRuntimeRule removes a runtime rule by name.
func (s *Shield) RemoveRuntimeRule(ctx context.Context, name string) (bool, error) {
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	cur, _ := s.engine.RuntimeRules()
	var next []decide.RuntimeRule
	found := false
	for _, r := range cur {
		if r.Rule.Name == name {
			found = true
			continue
		}
		next = append(next, r)
	}
	if !found {
		return false, nil
	}
	if err := s.engine.SetRuntimeRules(next); err != nil {
		return false, err
	}
	if _, err := s.store.DeleteRule(ctx, name); err != nil {
		return true, fmt.Errorf("%w: %v", iplist.ErrNotPersisted, err)
	}
	return true, nil
}

// setDetectorRules replaces the detector's runtime rules, keeping the
// operator's.
func (s *Shield) setDetectorRules(rules []decide.RuntimeRule) error {
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	cur, _ := s.engine.RuntimeRules()
	next := make([]decide.RuntimeRule, 0, len(cur)+len(rules))
	for _, r := range cur {
		if r.Source != "detector" {
			next = append(next, r)
		}
	}
	return s.engine.SetRuntimeRules(append(next, rules...))
}

// pruneRuntimeRules drops expired runtime rules from the engine and store.
func (s *Shield) pruneRuntimeRules(now time.Time) {
	s.rulesMu.Lock()
	defer s.rulesMu.Unlock()
	for _, r := range s.engine.PruneRuntime(now) {
		s.log.Info("runtime rule expired", "rule", r.Rule.Name, "source", r.Source)
		if r.Source == "detector" {
			continue // detector rules are not persisted
		}
		if _, err := s.store.DeleteRule(context.Background(), r.Rule.Name); err != nil {
			s.log.Error("could not delete an expired runtime rule from the store", "rule", r.Rule.Name, "err", err)
		}
	}
}

// RuleAddRequest is the body of POST /v1/rules: a rule in the configuration
// format (YAML or JSON), an optional duration.
type RuleAddRequest struct {
	Rule   config.Rule `yaml:"rule"`
	For    string      `yaml:"for"`
	Source string      `yaml:"source"`
}

// RuleView is a rule as GET /v1/rules shows it.
type RuleView struct {
	Name    string    `json:"name"`
	Action  string    `json:"action"`
	DryRun  bool      `json:"dry_run,omitempty"`
	Hits    uint64    `json:"hits"`
	Runtime bool      `json:"runtime,omitempty"`
	Source  string    `json:"source,omitempty"`
	Expires time.Time `json:"expires,omitempty"`
	Explain string    `json:"explanation,omitempty"`
}

func (s *Shield) ruleViews() []RuleView {
	var out []RuleView
	rr, hits := s.engine.RuntimeRules()
	for i, r := range rr {
		out = append(out, RuleView{Name: r.Rule.Name, Action: r.Rule.Action, DryRun: r.Rule.DryRun, Hits: hits[i],
			Runtime: true, Source: r.Source, Expires: r.Expires, Explain: r.Explanation})
	}
	for _, r := range s.engine.Rules() {
		out = append(out, RuleView{Name: r.Name, Action: r.Action, DryRun: r.DryRun, Hits: r.Hits})
	}
	return out
}

func (s *Shield) registerRuleAPI(a *admin.Server) {
	a.Handle("POST /v1/rules", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			admin.WriteJSON(w, 400, map[string]any{"error": err.Error()})
			return
		}
		var req RuleAddRequest
		dec := yaml.NewDecoder(bytes.NewReader(body))
		dec.KnownFields(true)
		if err := dec.Decode(&req); err != nil {
			admin.WriteJSON(w, 400, map[string]any{"error": "invalid rule: " + err.Error()})
			return
		}
		now := time.Now()
		rr := decide.RuntimeRule{Rule: req.Rule, Source: req.Source, Created: now}
		if rr.Source == "" {
			rr.Source = "api"
		}
		if req.For != "" && req.For != "0" {
			d, err := time.ParseDuration(req.For)
			if err != nil || d <= 0 {
				admin.WriteJSON(w, 400, map[string]any{"error": fmt.Sprintf("invalid duration %q", req.For)})
				return
			}
			rr.Expires = now.Add(d)
		}
		if err := s.AddRuntimeRule(r.Context(), rr); err != nil && !errors.Is(err, iplist.ErrNotPersisted) {
			admin.WriteJSON(w, 400, map[string]any{"error": err.Error()})
			return
		} else if err != nil {
			admin.WriteJSON(w, 200, map[string]any{"ok": true, "warning": err.Error()})
			return
		}
		s.log.Info("runtime rule added", "rule", rr.Rule.Name, "action", rr.Rule.Action, "expires", rr.Expires, "source", rr.Source)
		admin.WriteJSON(w, 200, map[string]any{"ok": true, "name": rr.Rule.Name, "expires": rr.Expires})
	}))
	a.Handle("DELETE /v1/rules", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		ok, err := s.RemoveRuntimeRule(r.Context(), name)
		if err != nil && !errors.Is(err, iplist.ErrNotPersisted) {
			admin.WriteJSON(w, 500, map[string]any{"error": err.Error()})
			return
		}
		if !ok {
			admin.WriteJSON(w, 404, map[string]any{"error": "no runtime rule named " + name + " (configured rules change through the config file)"})
			return
		}
		s.log.Info("runtime rule removed", "rule", name)
		admin.WriteJSON(w, 200, map[string]any{"ok": true})
	}))
}
