package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/shield"
)

// TestStatusShowsListSizes: `levee status` prints the sizes of the allow
// and block lists and, per feed, its prefix count, format, last load and
// error, from GET /v1/status (served here by a canned admin API on
// loopback).
func TestStatusShowsListSizes(t *testing.T) {
	loaded := time.Now().Add(-90 * time.Second).UTC().Truncate(time.Second)
	report := shield.StatusReport{
		Version: "test", Mode: "normal",
		Feeds: []string{"spamhaus-drop", "firehol"},
		FeedLists: []shield.FeedStatus{
			{Name: "spamhaus-drop", Path: "/var/lib/levee/drop.json", Format: "spamhaus-json", Prefixes: 1234, Loaded: loaded},
			{Name: "firehol", Path: "/var/lib/levee/level1.netset", Format: "auto", Error: "open /var/lib/levee/level1.netset: no such file or directory"},
		},
		AllowPrefixes: 3,
		BlockPrefixes: 1,
	}
	const token = "0123456789abcdef0123"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/status" || r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, `{"error":"unexpected request"}`, 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(report)
	}))
	defer srv.Close()
	tf := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tf, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("LEVEE_ADMIN_TOKEN", "")
	var out, errb strings.Builder
	if err := runStatus([]string{"--admin", srv.Listener.Addr().String(), "--token-file", tf}, &out, &errb); err != nil {
		t.Fatalf("status: %v\n%s", err, errb.String())
	}
	text := out.String()
	lines := map[string]string{}
	for _, l := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(l, "  "); ok {
			lines[k] = strings.TrimSpace(v)
		}
	}
	for key, want := range map[string]string{
		"allow list":         "3 entries",
		"block list":         "1 entry",
		"feed spamhaus-drop": "1234 prefixes (spamhaus-json), loaded 1m3", // 1m30s ago, give or take the test's own time
		"feed firehol":       "0 prefixes, never loaded; last read failed: open /var/lib/levee/level1.netset: no such file",
	} {
		if got, ok := lines[key]; !ok || !strings.HasPrefix(got, want) {
			t.Errorf("line %q: got %q; want it to start with %q", key, got, want)
		}
	}
	if !strings.Contains(lines["feed spamhaus-drop"], loaded.Format(time.RFC3339)) {
		t.Errorf("feed line lacks the load time %s: %q", loaded.Format(time.RFC3339), lines["feed spamhaus-drop"])
	}
	if t.Failed() {
		t.Log(text)
	}

	// --json carries the same fields.
	out.Reset()
	if err := runStatus([]string{"--admin", srv.Listener.Addr().String(), "--token-file", tf, "--json"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(out.String()), &back); err != nil {
		t.Fatal(err)
	}
	fl, _ := back["feed_lists"].([]any)
	if back["allow_prefixes"] != 3.0 || back["block_prefixes"] != 1.0 || len(fl) != 2 || fl[0].(map[string]any)["prefixes"] != 1234.0 ||
		fl[0].(map[string]any)["loaded"] == nil || fl[1].(map[string]any)["loaded"] != nil {
		t.Errorf("--json: %s", out.String())
	}
}
