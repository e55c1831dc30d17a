package collector

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/monitor/outage"
	"github.com/levee-dev/levee/internal/monitor/probe"
)

// TestScreenshot runs a live scenario on loopback (a clean cut of one
// target, an attack pattern on another, two agents) and photographs the
// status page with headless Chromium. It runs only when
// LEVEE_MONITOR_SCREENSHOT names the PNG to write:
//
//	LEVEE_MONITOR_SCREENSHOT=$PWD/docs/monitor-status.png go test -run TestScreenshot ./internal/monitor/collector/
//
// To make the 24 h chart readable, 24 hours of healthy history (one result
// per vantage point every 5 minutes, log-normal latency) are ingested
// before the live part; everything from the last minute is real probing.
func TestScreenshot(t *testing.T) {
	out := os.Getenv("LEVEE_MONITOR_SCREENSHOT")
	if out == "" {
		t.Skip("set LEVEE_MONITOR_SCREENSHOT=/path/to.png to run the screenshot scenario")
	}
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (Debian: apt-get install -y chromium)")
	}
	www := startOrigin(t, "")
	apiOrigin := startOrigin(t, "")
	px := startProxy(t, apiOrigin.addr)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`data_dir: %s/data
title: Example Corp status
defaults: {interval: 500ms, timeout: 400ms}
detection: {baseline_min: 10}
agents:
  - {name: eu-1, token_file: eu-1.token}
  - {name: us-1, token_file: us-1.token}
targets:
  - {name: www, kind: http, url: "http://%s/", body_contains: origin}
  - {name: api, kind: http, url: "http://%s/", expect_status: [200]}
  - {name: api-port, kind: tcp, address: "%s"}
`, dir, www.addr, px.ln.Addr(), apiOrigin.addr)
	h := startCollector(t, dir, "", cfg, "eu-1", "us-1")
	now := time.Now()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, v := range []string{"local", "eu-1", "us-1"} {
		var rs []probe.Result
		base := 0.6e6 // loopback latency, like the live part
		for _, target := range []string{"www", "api", "api-port"} {
			for i := 288; i > 2; i-- {
				lat := time.Duration(base * math.Exp(0.25*rng.NormFloat64()))
				rs = append(rs, probe.Result{ID: fmt.Sprintf("seed-%s-%s-%d", v, target, i), Target: target,
					At: now.Add(-time.Duration(i) * 5 * time.Minute), OK: true, Timings: probe.Timings{Total: lat}})
			}
		}
		if _, err := h.c.IngestAt(now, v, rs); err != nil {
			t.Fatal(err)
		}
	}
	startAgent(t, "eu-1", h.url(), nil)
	startAgent(t, "us-1", h.url(), nil)
	h.warm(t, 3, 10)

	// Clean cut of www for 4 s.
	www.stop()
	waitFor(t, 10*time.Second, "www incident", func() bool { return incidentLabel(h, "www") != "" })
	time.Sleep(4 * time.Second)
	startOrigin(t, www.addr)
	waitFor(t, 15*time.Second, "www recovery", func() bool { return incidentLabel(h, "www") == "" })

	// Attack waves on api, then mitigation with elevated latency.
	for range 3 {
		px.delay.Store(int64(250 * time.Millisecond))
		px.dropPct.Store(85)
		time.Sleep(1500 * time.Millisecond)
		px.dropPct.Store(0)
		time.Sleep(time.Second)
	}
	px.delay.Store(int64(150 * time.Millisecond))
	waitFor(t, 15*time.Second, "api recovering", func() bool { return incidentLabel(h, "api") == outage.LabelRecovering })

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	profile := t.TempDir()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+profile, "--screenshot="+out, "--window-size=1280,1600", h.url()+"/")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, b)
	}
	if fi, err := os.Stat(out); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot written: %v", err)
	}
	t.Logf("wrote %s", out)
	// For review: other views, when LEVEE_MONITOR_SCREENSHOT_EXTRA names a directory.
	if extra := os.Getenv("LEVEE_MONITOR_SCREENSHOT_EXTRA"); extra != "" {
		id := ""
		for _, st := range h.c.tracker.Status(time.Now()) {
			if st.Name == "api" && st.Incident != nil {
				id = st.Incident.ID
			}
		}
		for name, path := range map[string]string{"7d": "/?range=7d", "90d": "/?range=90d", "incident": "/incidents/" + id} {
			file := filepath.Join(extra, "monitor-"+name+".png")
			cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
				"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
				"--user-data-dir="+t.TempDir(), "--screenshot="+file, "--window-size=1280,1600", h.url()+path)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("chromium %s: %v\n%s", path, err, b)
			}
		}
	}
}

func incidentLabel(h *collectorHarness, target string) outage.Label {
	for _, st := range h.c.tracker.Status(time.Now()) {
		if st.Name == target && st.Incident != nil {
			return st.Incident.Label
		}
	}
	return ""
}
