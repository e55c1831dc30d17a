package monitor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
listen: 127.0.0.1:0
data_dir: data
title: Example
defaults:
  interval: 5s
detection:
  quorum_min: 2
agents:
  - name: eu-1
    token_file: eu-1.token
targets:
  - name: www
    kind: http
    url: http://127.0.0.1:8080/
    expect_status: [200]
  - name: dns
    kind: dns
    server: 127.0.0.1:5353
    query: example.test
    interval: 20s
    agents: [eu-1]
`

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if c.Vantage != "local" || !c.LocalProbing() || c.Defaults.Timeout != 5*time.Second || c.Defaults.Jitter != 0.1 {
		t.Errorf("defaults: %+v", c)
	}
	if c.Targets[0].Interval != 5*time.Second || c.Targets[1].Interval != 20*time.Second || c.Targets[0].Method != "GET" {
		t.Errorf("target defaults: %+v", c.Targets)
	}
	if c.Detection.Interval != 5*time.Second || c.Detection.DownAfter != 2 {
		t.Errorf("detection defaults: %+v", c.Detection)
	}
	if got := c.TargetsFor("eu-1"); len(got) != 2 {
		t.Errorf("eu-1 targets %d", len(got))
	}
	if got := c.TargetsFor("local"); len(got) != 2 {
		t.Errorf("local targets %d", len(got))
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", "", "empty"},
		{"unknown field with line", "listen: x\nbogus: 1\ntargets: []", "line 2: field bogus not found"},
		{"unknown target field", "targets:\n  - name: a\n    kind: tcp\n    adress: x:1\n", "line 4: field adress not found"},
		{"no targets", "listen: x\n", "no targets"},
		{"bad duration", "defaults:\n  interval: ten\n", "line 2"},
		{"bad probe names the line", "targets:\n  - name: a\n    kind: tcp\n    address: 127.0.0.1:1\n  - name: b\n    kind: http\n    url: ftp://x\n", "line 5: targets[1] (b): probe: url"},
		{"duplicate target", "targets:\n  - {name: a, kind: tcp, address: 'h:1'}\n  - {name: a, kind: tcp, address: 'h:2'}\n", "used twice"},
		{"unknown agent", "targets:\n  - {name: a, kind: tcp, address: 'h:1', agents: [x]}\n", `agent "x" is not configured`},
		{"timeout above interval", "targets:\n  - {name: a, kind: tcp, address: 'h:1', interval: 1s, timeout: 2s}\n", "exceeds interval"},
		{"bad name", "targets:\n  - {name: 'a b', kind: tcp, address: 'h:1'}\n", "name \"a b\""},
		{"agent without token", "agents: [{name: x}]\ntargets:\n  - {name: a, kind: tcp, address: 'h:1'}\n", "token_file is required"},
		{"bad webhook", "webhooks: [{url: 'mailto:x'}]\ntargets:\n  - {name: a, kind: tcp, address: 'h:1'}\n", "webhooks[0]"},
		{"tls without key", "tls: {cert_file: c.pem}\ntargets:\n  - {name: a, kind: tcp, address: 'h:1'}\n", "cert_file and key_file"},
		{"bad quorum", "detection: {quorum_fraction: 1.5}\ntargets:\n  - {name: a, kind: tcp, address: 'h:1'}\n", "quorum_fraction"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestLoadReadsTokens(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "eu-1.token"), []byte("0123456789abcdef0123\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "m.yaml"), []byte(good), 0o600)
	c, err := Load(filepath.Join(dir, "m.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Agents[0].Token != "0123456789abcdef0123" || c.DataDir != filepath.Join(dir, "data") {
		t.Errorf("token %q data %q", c.Agents[0].Token, c.DataDir)
	}
	os.WriteFile(filepath.Join(dir, "eu-1.token"), []byte("short"), 0o600)
	if _, err := Load(filepath.Join(dir, "m.yaml")); err == nil || !strings.Contains(err.Error(), "shorter than 16") {
		t.Errorf("short token accepted: %v", err)
	}
}

func TestExampleConfigParses(t *testing.T) {
	b, err := os.ReadFile("../../docs/monitor.example.yaml")
	if err != nil {
		t.Skip("docs/monitor.example.yaml not present:", err)
	}
	if _, err := Parse(b); err != nil {
		t.Fatalf("docs/monitor.example.yaml: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("targets:\n  - {name: a, kind: dns, server: '1.2.3.4:53', query: x}\n"))
	f.Add([]byte("detection: {quorum_fraction: 0.3, interval: 1ms}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			return
		}
		if len(c.Targets) == 0 || c.Defaults.Interval <= 0 {
			t.Fatalf("accepted config without targets or interval: %+v", c)
		}
		for _, tg := range c.Targets {
			if tg.Timeout > tg.Interval {
				t.Fatalf("accepted timeout above interval")
			}
		}
	})
}
