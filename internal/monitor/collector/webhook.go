package collector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/levee-dev/levee/internal/monitor"
	"github.com/levee-dev/levee/internal/monitor/outage"
)

// WebhookEvent is the JSON body POSTed to every webhook.
type WebhookEvent struct {
	// Event is "open", "classification" or "close".
	Event  string    `json:"event"`
	Target string    `json:"target"`
	At     time.Time `json:"at"`
	// Label is the incident's classification at the time of the event.
	Label outage.Label `json:"label"`
	// Rank is a phrase such as "longest of 4 incidents in the last 90 days"
	// (close events only).
	Rank     string          `json:"rank,omitempty"`
	Incident outage.Incident `json:"incident"`
}

// webhooks delivers events in order from one goroutine, with retries.
type webhooks struct {
	hooks  []monitor.Webhook
	client *http.Client
	queue  chan WebhookEvent
	log    *slog.Logger
	m      *metrics
	// backoff between attempts; 3 attempts in all.
	backoff time.Duration
}

func newWebhooks(hooks []monitor.Webhook, client *http.Client, log *slog.Logger, m *metrics) *webhooks {
	return &webhooks{hooks: hooks, client: client, queue: make(chan WebhookEvent, 256), log: log, m: m, backoff: time.Second}
}

// enqueue schedules ev for delivery; when the queue is full the event is
// dropped and counted.
func (w *webhooks) enqueue(ev WebhookEvent) {
	if len(w.hooks) == 0 {
		return
	}
	select {
	case w.queue <- ev:
	default:
		w.m.webhooks.WithLabelValues("dropped").Inc()
		w.log.Warn("webhook queue full, event dropped", "event", ev.Event, "target", ev.Target)
	}
}

// run delivers queued events until ctx ends.
func (w *webhooks) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.queue:
			body, err := json.Marshal(ev)
			if err != nil {
				w.log.Error("encode webhook event", "err", err)
				continue
			}
			for _, h := range w.hooks {
				w.deliver(ctx, h, body, ev)
			}
		}
	}
}

func (w *webhooks) deliver(ctx context.Context, h monitor.Webhook, body []byte, ev WebhookEvent) {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(w.backoff << (attempt - 1)):
			}
		}
		if err = w.post(ctx, h, body); err == nil {
			w.m.webhooks.WithLabelValues("ok").Inc()
			return
		}
	}
	w.m.webhooks.WithLabelValues("failed").Inc()
	w.log.Warn("webhook delivery failed", "url", h.URL, "event", ev.Event, "target", ev.Target, "err", err)
}

func (w *webhooks) post(ctx context.Context, h monitor.Webhook, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "levee-monitor/1")
	if h.Token != "" {
		req.Header.Set("Authorization", "Bearer "+h.Token)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
