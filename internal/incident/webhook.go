package incident

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/detect"
	"github.com/prometheus/client_golang/prometheus"
)

// Payload is the generic JSON body of a webhook notification.
type Payload struct {
	Event      string             `json:"event"` // attack_start, escalation, mitigation, attack_end
	Site       string             `json:"site"`
	IncidentID string             `json:"incident_id"`
	At         time.Time          `json:"at"`
	Mode       detect.Mode        `json:"mode"`
	Kinds      []string           `json:"kinds"`
	Text       string             `json:"text"`
	Incident   *Summary           `json:"incident,omitempty"`
	Mitigation *detect.Mitigation `json:"mitigation,omitempty"`
}

// NewPayload builds the notification for a detector event during an
// incident. A change to under-attack is an "escalation"; other mode changes
// (elevated at the start, normal at the end) and events without an incident
// give none (ok is false).
func NewPayload(ev *detect.Event, inc *Incident) (p Payload, ok bool) {
	if inc == nil {
		return p, false
	}
	sum := inc.Summary()
	p = Payload{Event: ev.Type.String(), Site: ev.Site, IncidentID: inc.ID, At: ev.At, Mode: ev.Mode,
		Kinds: ev.Kinds.Strings(), Incident: &sum, Mitigation: ev.Mitigation}
	switch ev.Type {
	case detect.EventAttackStart:
		p.Text = fmt.Sprintf(":rotating_light: Attack on %s: %s, mode %s", ev.Site, ev.Kinds, ev.Mode)
		for _, a := range ev.Anomalies {
			p.Text += fmt.Sprintf("; %s %.0f (normal %.0f)", a.Name, a.Value, a.Mean)
		}
	case detect.EventModeChange:
		// Elevated comes with attack_start and normal with attack_end:
		// only under-attack is news.
		if ev.Mode != detect.ModeUnderAttack {
			return p, false
		}
		p.Event = "escalation"
		p.Text = fmt.Sprintf(":warning: %s escalated to %s", ev.Site, ev.Mode)
	case detect.EventMitigation:
		p.Text = fmt.Sprintf(":shield: %s: %s", ev.Site, ev.Mitigation.String())
	case detect.EventAttackEnd:
		p.Text = fmt.Sprintf(":white_check_mark: Attack on %s ended after %s: peak %.0f req/s, %d requests, %.1f%% mitigated, %d rules",
			ev.Site, time.Duration(sum.Duration*float64(time.Second)).Round(time.Second), sum.PeakRequests, sum.Requests,
			pct(sum.Mitigated, sum.Requests), sum.Rules)
	}
	return p, true
}

func pct(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

// WebhookConfig configures a Notifier.
type WebhookConfig struct {
	// URL receives POST requests. Required; http or https.
	URL string `yaml:"url"`
	// Format is "json" (Payload) or "slack" ({"text": ...}, also accepted
	// by Mattermost, Rocket.Chat and Discord's /slack endpoint). Default
	// "json".
	Format string `yaml:"format"`
	// Timeout per attempt. Default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// Retries after a failed attempt (network error, 429 or 5xx).
	// Default 3.
	Retries int `yaml:"retries"`
	// Backoff before the first retry, doubled each time. Default 500ms.
	Backoff time.Duration `yaml:"backoff"`
	// Events to send; empty = all (attack_start, escalation, mitigation,
	// attack_end).
	Events []string `yaml:"events"`
}

// Notifier posts payloads to one webhook. Safe for concurrent use. The zero
// value is not usable; call NewNotifier.
type Notifier struct {
	cfg    WebhookConfig
	client *http.Client
	log    *slog.Logger
	sent   *prometheus.CounterVec
}

// NotifierDeps are a Notifier's optional dependencies.
type NotifierDeps struct {
	Client     *http.Client          // nil: a client with the configured timeout
	Registerer prometheus.Registerer // nil: no metrics
	Logger     *slog.Logger          // nil: discard
}

// NewNotifier validates cfg and returns a Notifier.
func NewNotifier(cfg WebhookConfig, deps NotifierDeps) (*Notifier, error) {
	if cfg.Format == "" {
		cfg.Format = "json"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 3
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = 500 * time.Millisecond
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("incident: webhook url %q: want an absolute http(s) URL", cfg.URL)
	}
	if cfg.Format != "json" && cfg.Format != "slack" {
		return nil, fmt.Errorf("incident: webhook format %q: want json or slack", cfg.Format)
	}
	if cfg.Retries < 0 || cfg.Timeout < 0 || cfg.Backoff < 0 {
		return nil, fmt.Errorf("incident: webhook retries, timeout and backoff must not be negative")
	}
	for _, e := range cfg.Events {
		switch e {
		case "attack_start", "escalation", "mitigation", "attack_end":
		default:
			return nil, fmt.Errorf("incident: webhook event %q: want attack_start, escalation, mitigation or attack_end", e)
		}
	}
	n := &Notifier{cfg: cfg, client: deps.Client, log: deps.Logger}
	if n.client == nil {
		n.client = &http.Client{Timeout: cfg.Timeout}
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	sent, err := newWebhookMetrics(deps.Registerer, u.Host)
	if err != nil {
		return nil, fmt.Errorf("incident: register webhook metrics: %w", err)
	}
	n.sent = sent
	return n, nil
}

// Wants reports whether the notifier is configured to send this event.
func (n *Notifier) Wants(event string) bool {
	if len(n.cfg.Events) == 0 {
		return true
	}
	for _, e := range n.cfg.Events {
		if e == event {
			return true
		}
	}
	return false
}

// Body encodes p in the configured format.
func (n *Notifier) Body(p *Payload) ([]byte, error) {
	if n.cfg.Format == "slack" {
		return SlackBody(p)
	}
	return json.Marshal(p)
}

// SlackBody is the Slack-compatible body {"text": ...} of p.
func SlackBody(p *Payload) ([]byte, error) {
	var sb strings.Builder
	sb.WriteString(p.Text)
	if p.Incident != nil {
		fmt.Fprintf(&sb, "\nIncident `%s`", p.Incident.ID)
	}
	return json.Marshal(struct {
		Text string `json:"text"`
	}{sb.String()})
}

// Send posts p, retrying network errors, 429 and 5xx answers with
// exponential backoff, until it succeeds, ctx ends or the retries are
// spent. It blocks: call it from a goroutine, never from the request path.
func (n *Notifier) Send(ctx context.Context, p *Payload) error {
	if !n.Wants(p.Event) {
		return nil
	}
	body, err := n.Body(p)
	if err != nil {
		return fmt.Errorf("incident: webhook encode: %w", err)
	}
	backoff := n.cfg.Backoff
	var last error
	for attempt := 0; attempt <= n.cfg.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				n.sent.WithLabelValues("failed").Inc()
				return fmt.Errorf("incident: webhook %s: %w (last error: %v)", p.Event, ctx.Err(), last)
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		retry, err := n.post(ctx, body)
		if err == nil {
			n.sent.WithLabelValues("ok").Inc()
			return nil
		}
		last = err
		n.log.Warn("incident: webhook attempt failed", "event", p.Event, "attempt", attempt+1, "err", err)
		if !retry {
			break
		}
	}
	n.sent.WithLabelValues("failed").Inc()
	return fmt.Errorf("incident: webhook %s: %w", p.Event, last)
}

func (n *Notifier) post(ctx context.Context, body []byte) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "levee-webhook/1")
	resp, err := n.client.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return true, fmt.Errorf("status %s", resp.Status)
	default:
		return false, fmt.Errorf("status %s (not retried)", resp.Status)
	}
}
