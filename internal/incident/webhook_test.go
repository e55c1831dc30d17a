package incident

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/detect"
)

type hook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies []string
	fail   atomic.Int32 // answer this many requests with status
	status int
	delay  time.Duration
}

func newHook(t *testing.T) *hook {
	h := &hook{status: http.StatusInternalServerError}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/json" || r.Method != http.MethodPost {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if h.delay > 0 {
			select {
			case <-time.After(h.delay):
			case <-r.Context().Done():
				return
			}
		}
		if h.fail.Add(-1) >= 0 {
			w.WriteHeader(h.status)
			return
		}
		h.mu.Lock()
		h.bodies = append(h.bodies, string(b))
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func testPayload() *Payload {
	inc := &Incident{ID: "i1", Site: "www", Start: time.Unix(1e9, 0)}
	p, _ := NewPayload(&detect.Event{Type: detect.EventAttackStart, Site: "www", At: time.Unix(1e9, 0), Kinds: detect.KindRequestSurge,
		Mode: detect.ModeElevated, Anomalies: []detect.Anomaly{{Name: "requests", Value: 5000, Mean: 100}}}, inc)
	return &p
}

func TestWebhook(t *testing.T) {
	tests := []struct {
		name     string
		format   string
		fail     int32
		status   int
		wantErr  bool
		wantBody string
	}{
		{"json", "json", 0, 0, false, `"event":"attack_start"`},
		{"slack", "slack", 0, 0, false, `{"text":":rotating_light: Attack on www: request_surge, mode elevated; requests 5000 (normal 100)\nIncident ` + "`i1`" + `"}`},
		{"retries 5xx", "json", 2, 503, false, `"incident_id":"i1"`},
		{"retries 429", "json", 1, 429, false, `"site":"www"`},
		{"gives up", "json", 10, 500, true, ""},
		{"no retry on 4xx", "json", 1, 404, true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHook(t)
			h.fail.Store(tc.fail)
			if tc.status != 0 {
				h.status = tc.status
			}
			n, err := NewNotifier(WebhookConfig{URL: h.srv.URL, Format: tc.format, Retries: 3, Backoff: time.Millisecond}, NotifierDeps{})
			if err != nil {
				t.Fatal(err)
			}
			err = n.Send(context.Background(), testPayload())
			if (err != nil) != tc.wantErr {
				t.Fatalf("Send: %v", err)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if tc.wantErr {
				if len(h.bodies) != 0 {
					t.Fatalf("delivered %q", h.bodies)
				}
				if tc.status == 404 && h.fail.Load() != 0 {
					t.Fatal("a 404 was retried")
				}
				return
			}
			if len(h.bodies) != 1 || !strings.Contains(h.bodies[0], tc.wantBody) {
				t.Fatalf("bodies %q, want one containing %s", h.bodies, tc.wantBody)
			}
			if tc.format == "json" {
				var p Payload
				if err := json.Unmarshal([]byte(h.bodies[0]), &p); err != nil || p.Incident == nil || p.Incident.ID != "i1" || p.Kinds[0] != "request_surge" {
					t.Fatalf("payload %v %+v", err, p)
				}
			}
		})
	}
}

func TestWebhookTimeoutAndCancel(t *testing.T) {
	h := newHook(t)
	h.delay = 2 * time.Second
	n, err := NewNotifier(WebhookConfig{URL: h.srv.URL, Timeout: 50 * time.Millisecond, Retries: 1, Backoff: time.Millisecond}, NotifierDeps{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := n.Send(context.Background(), testPayload()); err == nil {
		t.Fatal("slow webhook succeeded")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("two 50 ms attempts took %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n2, _ := NewNotifier(WebhookConfig{URL: h.srv.URL, Retries: 5, Backoff: time.Hour}, NotifierDeps{})
	if err := n2.Send(ctx, testPayload()); err == nil {
		t.Fatal("cancelled send succeeded")
	}
}

func TestWebhookConfig(t *testing.T) {
	for _, cfg := range []WebhookConfig{{URL: "ftp://x"}, {URL: "not a url"}, {URL: "http://127.0.0.1/", Format: "xml"},
		{URL: "http://127.0.0.1/", Events: []string{"coffee"}}} {
		if _, err := NewNotifier(cfg, NotifierDeps{}); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	n, err := NewNotifier(WebhookConfig{URL: "http://127.0.0.1/", Events: []string{"attack_end"}}, NotifierDeps{})
	if err != nil || n.Wants("attack_start") || !n.Wants("attack_end") {
		t.Fatalf("Wants: %v", err)
	}
	// Filtered events are not sent (the URL would refuse the connection).
	if err := n.Send(context.Background(), testPayload()); err != nil {
		t.Fatalf("filtered event: %v", err)
	}
}

func TestNewPayload(t *testing.T) {
	inc := &Incident{ID: "i", Site: "s", Requests: 100, Mitigated: 90, DurationSeconds: 65, Rules: make([]detect.Mitigation, 2), PeakRequests: 4000}
	tests := []struct {
		ev    detect.Event
		ok    bool
		event string
		text  string
	}{
		{detect.Event{Type: detect.EventModeChange, Mode: detect.ModeElevated}, false, "", ""},
		{detect.Event{Type: detect.EventModeChange, Mode: detect.ModeUnderAttack, Site: "s"}, true, "escalation", "escalated to under_attack"},
		{detect.Event{Type: detect.EventModeChange, Mode: detect.ModeNormal}, false, "", ""},
		{detect.Event{Type: detect.EventAttackEnd, Site: "s"}, true, "attack_end", "ended after 1m5s: peak 4000 req/s, 100 requests, 90.0% mitigated, 2 rules"},
		{detect.Event{Type: detect.EventMitigation, Site: "s", Mitigation: &detect.Mitigation{Name: "auto-x"}}, true, "mitigation", "auto-x"},
	}
	for _, tc := range tests {
		p, ok := NewPayload(&tc.ev, inc)
		if ok != tc.ok || (ok && (p.Event != tc.event || !strings.Contains(p.Text, tc.text))) {
			t.Errorf("%v: ok=%v event=%q text=%q", tc.ev.Type, ok, p.Event, p.Text)
		}
	}
	if _, ok := NewPayload(&detect.Event{Type: detect.EventAttackStart}, nil); ok {
		t.Error("payload without incident")
	}
}
