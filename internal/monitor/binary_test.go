package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestBinaryMonitorAndAgent builds the real levee binary and runs `levee
// monitor` and `levee agent` on loopback from a config string, as the docs
// describe, then stops both with SIGTERM.
func TestBinaryMonitorAndAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the levee binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "levee")
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/levee-dev/levee/cmd/levee").CombinedOutput(); err != nil {
		t.Skipf("cmd/levee does not build right now (another package?): %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, bin, "monitor", "-c", "../../docs/monitor.example.yaml", "--check").CombinedOutput(); err != nil {
		t.Fatalf("levee monitor --check on the example config: %v\n%s", err, out)
	}
	if out, err := exec.CommandContext(ctx, bin, "monitor", "-c", filepath.Join(dir, "missing.yaml")).CombinedOutput(); err == nil || !strings.Contains(string(out), "missing.yaml") {
		t.Errorf("missing config: err %v output %s", err, out)
	}

	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	defer origin.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	os.WriteFile(filepath.Join(dir, "a1.token"), []byte("binary-test-token-0123456789\n"), 0o600)
	cfg := fmt.Sprintf(`listen: %s
data_dir: data
defaults: {interval: 200ms, timeout: 150ms}
agents: [{name: a1, token_file: a1.token}]
targets:
  - {name: origin, kind: http, url: %q}
`, addr, origin.URL+"/")
	os.WriteFile(filepath.Join(dir, "monitor.yaml"), []byte(cfg), 0o600)

	var monLog, agentLog lockedBuffer
	mon := exec.CommandContext(ctx, bin, "monitor", "-c", filepath.Join(dir, "monitor.yaml"))
	mon.Stdout, mon.Stderr = &monLog, &monLog
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	ag := exec.CommandContext(ctx, bin, "agent", "--collector", "http://"+addr, "--token-file", filepath.Join(dir, "a1.token"),
		"--name", "a1", "--data-dir", filepath.Join(dir, "agent"))
	ag.Stdout, ag.Stderr = &agentLog, &agentLog
	if err := ag.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func(c *exec.Cmd, name string, log *lockedBuffer) {
		c.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s exited with %v\n%s", name, err, log.String())
			}
		case <-time.After(10 * time.Second):
			c.Process.Kill()
			t.Errorf("%s did not stop within 10s of SIGTERM", name)
		}
	}
	defer stop(mon, "monitor", &monLog)
	defer stop(ag, "agent", &agentLog)

	deadline := time.Now().Add(40 * time.Second)
	for {
		var st struct {
			Targets []struct {
				State    string
				Vantages []struct{ Name, State string }
			}
		}
		resp, err := http.Get("http://" + addr + "/api/v1/status")
		if err == nil {
			json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if len(st.Targets) == 1 && st.Targets[0].State == "up" && len(st.Targets[0].Vantages) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector did not report the target up from local and a1: %+v\nmonitor log:\n%s\nagent log:\n%s", st, monLog.String(), agentLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(monLog.String(), "binary-test-token") || strings.Contains(agentLog.String(), "binary-test-token") {
		t.Errorf("a token appeared in the logs")
	}
}

// lockedBuffer collects a child process's output; safe to read while the
// process writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
