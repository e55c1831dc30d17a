package admin

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type backend struct{ reloadErr error }

func (backend) Status() any     { return map[string]string{"mode": "normal"} }
func (backend) Stats() any      { return map[string]int{"x": 1} }
func (b backend) Reload() error { return b.reloadErr }

func serve(t *testing.T, b Backend, public bool) string {
	t.Helper()
	s, err := New(Config{Token: "0123456789abcdef0123", PublicMetrics: public}, b, prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(ln)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

func TestAuthRequiredEverywhere(t *testing.T) {
	addr := serve(t, backend{}, false)
	for _, path := range []string{"/v1/status", "/v1/stats", "/metrics", "/nope"} {
		for _, auth := range []string{"", "Bearer wrong", "Bearer 0123456789abcdef012", "Basic 0123456789abcdef0123", "Bearer 0123456789abcdef01234"} {
			req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Errorf("%s with %q: %d, want 401", path, auth, resp.StatusCode)
			}
		}
	}
	c := NewClient(addr, "0123456789abcdef0123")
	var st map[string]string
	if err := c.Do("GET", "/v1/status", nil, &st); err != nil || st["mode"] != "normal" {
		t.Fatalf("status with the right token: %v %v", st, err)
	}
}

func TestReloadErrorIs422(t *testing.T) {
	addr := serve(t, backend{reloadErr: errors.New("bad.yaml:3: nope")}, false)
	err := NewClient(addr, "0123456789abcdef0123").Do("POST", "/v1/reload", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "bad.yaml:3: nope") || !strings.Contains(err.Error(), "422") {
		t.Fatalf("reload error: %v", err)
	}
}

func TestPublicMetrics(t *testing.T) {
	addr := serve(t, backend{}, true)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("public metrics: %d", resp.StatusCode)
	}
	resp, _ = http.Get("http://" + addr + "/v1/status")
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("status without token with public metrics: %d", resp.StatusCode)
	}
}

func TestLoadToken(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "sub", "admin.token")
	tok, err := LoadToken("", f, true)
	if err != nil || len(tok) != 64 {
		t.Fatalf("generated token %q: %v", tok, err)
	}
	fi, _ := os.Stat(f)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode().Perm())
	}
	again, _ := LoadToken("", f, true)
	if again != tok {
		t.Fatal("token regenerated on second load")
	}
	t.Setenv("LEVEE_TEST_TOKEN", "from-the-environment-123")
	if tok, _ := LoadToken("LEVEE_TEST_TOKEN", f, true); tok != "from-the-environment-123" {
		t.Fatalf("env token not preferred: %q", tok)
	}
	t.Setenv("LEVEE_TEST_TOKEN", "short")
	if _, err := LoadToken("LEVEE_TEST_TOKEN", f, true); err == nil {
		t.Fatal("short env token accepted")
	}
	if _, err := LoadToken("", filepath.Join(dir, "missing"), false); err == nil {
		t.Fatal("missing file without create accepted")
	}
	if _, err := New(Config{Token: "short"}, backend{}, prometheus.NewRegistry(), nil); err == nil {
		t.Fatal("short token accepted by New")
	}
}
