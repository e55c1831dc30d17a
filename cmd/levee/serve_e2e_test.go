package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// leveeBin builds the real binary once per test run.
func leveeBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "levee-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "levee")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type server struct {
	cmd    *exec.Cmd
	listen string
	admin  string
	data   string
	log    *lockedBuf
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startServe(t *testing.T, data string, args ...string) *server {
	t.Helper()
	s := &server{listen: freePort(t), admin: freePort(t), data: data, log: &lockedBuf{}}
	full := append([]string{"serve", "--listen", s.listen, "--admin", s.admin, "--data-dir", data, "--shutdown-grace", "3s"}, args...)
	s.cmd = exec.Command(leveeBin(t), full...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.Env = append(os.Environ(), "LEVEE_ADMIN_TOKEN=")
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", s.admin); err == nil {
			c.Close()
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("levee serve did not start:\n%s", s.log.String())
	return nil
}

func (s *server) stop(t *testing.T) {
	if s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
		t.Errorf("levee serve did not stop on SIGTERM:\n%s", s.log.String())
	}
}

// cli runs a levee subcommand against s and returns its output.
func (s *server) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(leveeBin(t), args...)
	cmd.Env = append(os.Environ(), "LEVEE_DATA_DIR="+s.data, "LEVEE_ADMIN_TOKEN=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func originServer(t *testing.T) *httptest.Server {
	o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "origin saw %s from %s", r.URL.Path, r.Header.Get("X-Forwarded-For"))
	}))
	t.Cleanup(o.Close)
	return o
}

func getFrom(src, addr, path string) (int, string, error) {
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: e2e\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func TestZeroConfigServeBanAndRestart(t *testing.T) {
	o := originServer(t)
	data := t.TempDir()
	s := startServe(t, data, "--upstream", o.URL)
	code, body, err := getFrom("127.0.0.21", s.listen, "/hello")
	if err != nil || code != 200 || body != "origin saw /hello from 127.0.0.21" {
		t.Fatalf("proxy: %d %q %v\n%s", code, body, err, s.log.String())
	}
	if fi, err := os.Stat(filepath.Join(data, "admin.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v", fi, err)
	}
	out, err := s.cli(t, "status", "--admin", s.admin)
	if err != nil || !strings.Contains(out, "open connections") || !strings.Contains(out, "limit table") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = s.cli(t, "ban", "add", "127.0.0.77", "--for", "1h", "--reason", "e2e test", "--admin", s.admin)
	if err != nil || !strings.Contains(out, "banned 127.0.0.77/32 until") {
		t.Fatalf("ban add: %v\n%s", err, out)
	}
	if _, _, err := getFrom("127.0.0.77", s.listen, "/"); err == nil {
		t.Fatal("banned address was served")
	}
	if code, _, err := getFrom("127.0.0.78", s.listen, "/"); err != nil || code != 200 {
		t.Fatalf("neighbour address: %d %v", code, err)
	}
	out, err = s.cli(t, "ban", "ls", "--admin", s.admin)
	if err != nil || !strings.Contains(out, "127.0.0.77/32") || !strings.Contains(out, "e2e test") {
		t.Fatalf("ban ls: %v\n%s", err, out)
	}
	// Restart on the same data directory: the ban persists.
	s.stop(t)
	s2 := startServe(t, data, "--upstream", o.URL)
	if _, _, err := getFrom("127.0.0.77", s2.listen, "/"); err == nil {
		t.Fatalf("ban lost across restart\n%s", s2.log.String())
	}
	if out, err := s2.cli(t, "ban", "rm", "127.0.0.77", "--admin", s2.admin); err != nil {
		t.Fatalf("ban rm: %v\n%s", err, out)
	}
	if code, _, err := getFrom("127.0.0.77", s2.listen, "/"); err != nil || code != 200 {
		t.Fatalf("after unban: %d %v", code, err)
	}
	// Wrong token is refused.
	cmd := exec.Command(leveeBin(t), "status", "--admin", s2.admin)
	cmd.Env = append(os.Environ(), "LEVEE_ADMIN_TOKEN=wrong-token-wrong-token")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Fatalf("wrong token accepted: %v\n%s", err, out)
	}
}

func TestSIGHUPReloadKeepsRunningConfigOnError(t *testing.T) {
	o1, o2 := originServer(t), originServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "levee.yaml")
	write := func(url string) {
		os.WriteFile(path, []byte(fmt.Sprintf("sites:\n  - upstreams:\n      - url: %s\n", url)), 0o600)
	}
	write(o1.URL)
	s := startServe(t, dir, "-c", path)
	o1.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "one") })
	o2.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "two") })
	if _, body, _ := getFrom("127.0.0.1", s.listen, "/"); body != "one" {
		t.Fatalf("before reload: %q", body)
	}
	os.WriteFile(path, []byte("sites:\n  - upstreams:\n      - url: "+o2.URL+"\n    bogus_key: 1\n"), 0o600)
	s.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if _, body, _ := getFrom("127.0.0.1", s.listen, "/"); body != "one" {
		t.Fatalf("a bad config was applied: %q", body)
	}
	if !strings.Contains(s.log.String(), `unknown key \"bogus_key\"`) && !strings.Contains(s.log.String(), `unknown key "bogus_key"`) {
		t.Fatalf("reload error not logged:\n%s", s.log.String())
	}
	out, err := s.cli(t, "reload", "--admin", s.admin)
	if err == nil || !strings.Contains(out, "running configuration kept") {
		t.Fatalf("levee reload with a bad file: %v\n%s", err, out)
	}
	write(o2.URL)
	if out, err := s.cli(t, "reload", "--admin", s.admin); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if _, body, _ := getFrom("127.0.0.1", s.listen, "/"); body != "two" {
		t.Fatalf("after good reload: %q", body)
	}
}

// TestReloadKeepsCommandLineOverrides: a reload re-reads the file with the
// overrides given at start (--upstream here, and --listen, --admin and
// --data-dir from startServe), rather than the file alone.
func TestReloadKeepsCommandLineOverrides(t *testing.T) {
	o := originServer(t)
	o.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "override") })
	dir := t.TempDir()
	fileData := filepath.Join(dir, "file-data")
	path := filepath.Join(dir, "levee.yaml")
	// The file's own upstream is dead and its data directory differs.
	os.WriteFile(path, []byte("data_dir: "+fileData+"\nsites:\n  - upstreams:\n      - url: http://127.0.0.1:1\n"), 0o600)
	s := startServe(t, dir, "-c", path, "--upstream", o.URL)
	if code, body, err := getFrom("127.0.0.1", s.listen, "/"); code != 200 || body != "override" {
		t.Fatalf("before reload: %d %q %v", code, body, err)
	}
	if out, err := s.cli(t, "reload", "--admin", s.admin); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if code, body, err := getFrom("127.0.0.1", s.listen, "/"); code != 200 || body != "override" {
		t.Fatalf("after reload the --upstream override was lost: %d %q %v", code, body, err)
	}
	if _, err := os.Stat(fileData); !os.IsNotExist(err) {
		t.Fatalf("after reload the file's data_dir %s was used instead of --data-dir (stat: %v)", fileData, err)
	}
}

// TestReloadReportsRestartOnlySettings: settings a reload cannot apply
// (here the header timeout and the log level) are named by levee reload
// and levee status, and no longer once the file is back to its start
// values.
func TestReloadReportsRestartOnlySettings(t *testing.T) {
	o := originServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "levee.yaml")
	base := "sites:\n  - upstreams:\n      - url: " + o.URL + "\n"
	os.WriteFile(path, []byte(base), 0o600)
	s := startServe(t, dir, "-c", path)
	os.WriteFile(path, []byte(base+"guard: {header_timeout: 7s}\nlog: {level: debug}\n"), 0o600)
	out, err := s.cli(t, "reload", "--admin", s.admin)
	if err != nil || !strings.Contains(out, "until a restart: guard.header_timeout, log.level") {
		t.Fatalf("levee reload: %v\n%s", err, out)
	}
	if out, _ := s.cli(t, "status", "--admin", s.admin); !strings.Contains(out, "needs a restart") || !strings.Contains(out, "guard.header_timeout") {
		t.Fatalf("levee status does not name the pending settings:\n%s", out)
	}
	if !strings.Contains(s.log.String(), "keep their start values until a restart") {
		t.Fatalf("not logged:\n%s", s.log.String())
	}
	os.WriteFile(path, []byte(base), 0o600)
	if out, err := s.cli(t, "reload", "--admin", s.admin); err != nil || strings.Contains(out, "restart") {
		t.Fatalf("reload back to the start values: %v\n%s", err, out)
	}
	if out, _ := s.cli(t, "status", "--admin", s.admin); strings.Contains(out, "needs a restart") {
		t.Fatalf("levee status still reports pending settings:\n%s", out)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("listen:\n  - address: nope\nsites:\n  - upstreams:\n      - url: http://127.0.0.1:8080\n    colour: red\n"), 0o600)
	out, err := exec.Command(leveeBin(t), "config", "check", bad).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "bad.yaml:6: unknown key \"colour\"") {
		t.Fatalf("config check bad: %v\n%s", err, out)
	}
	os.WriteFile(bad, []byte("listen:\n  - address: nope\nsites:\n  - upstreams:\n      - url: http://127.0.0.1:8080\n"), 0o600)
	out, _ = exec.Command(leveeBin(t), "config", "check", bad).CombinedOutput()
	if !strings.Contains(string(out), "bad.yaml:2: listen[0].address") {
		t.Fatalf("config check value error:\n%s", out)
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("sites:\n  - upstreams:\n      - url: http://127.0.0.1:8080\n"), 0o600)
	if out, err := exec.Command(leveeBin(t), "config", "check", good).CombinedOutput(); err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("config check good: %v\n%s", err, out)
	}
	if out, err := exec.Command(leveeBin(t), "version").CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "levee ") {
		t.Fatalf("version: %v %s", err, out)
	}
	if out, err := exec.Command(leveeBin(t), "serve").CombinedOutput(); err == nil || !strings.Contains(string(out), "--upstream") {
		t.Fatalf("serve without upstream: %v %s", err, out)
	}
}

func TestModeCommand(t *testing.T) {
	o := originServer(t)
	s := startServe(t, t.TempDir(), "--upstream", o.URL)
	out, err := s.cli(t, "mode", "--admin", s.admin)
	if err != nil || !strings.HasPrefix(out, "mode normal") {
		t.Fatalf("mode: %v %s", err, out)
	}
	out, err = s.cli(t, "mode", "under-attack", "--for", "30m", "--reason", "drill", "--admin", s.admin)
	if err != nil || !strings.Contains(out, "mode under-attack (manual) until") {
		t.Fatalf("mode under-attack: %v %s", err, out)
	}
	out, _ = s.cli(t, "status", "--admin", s.admin)
	if !strings.Contains(out, "under-attack") {
		t.Fatalf("status does not show the mode:\n%s", out)
	}
	if out, err := s.cli(t, "mode", "panic", "--admin", s.admin); err == nil || !strings.Contains(out, "unknown mode") {
		t.Fatalf("bad mode accepted: %s", out)
	}
	if out, err := s.cli(t, "mode", "auto", "--admin", s.admin); err != nil || !strings.HasPrefix(out, "mode normal") {
		t.Fatalf("mode auto: %v %s", err, out)
	}
}

func TestRuntimeRulesPersist(t *testing.T) {
	o := originServer(t)
	data := t.TempDir()
	s := startServe(t, data, "--upstream", o.URL)
	ruleFile := filepath.Join(data, "rule.yaml")
	os.WriteFile(ruleFile, []byte("name: no-bots\nmatch: {path: {prefix: /bots}}\naction: block\n"), 0o600)
	if out, err := s.cli(t, "rules", "add", ruleFile, "--for", "1h", "--admin", s.admin); err != nil || !strings.Contains(out, "added runtime rule no-bots") {
		t.Fatalf("rules add: %v %s", err, out)
	}
	if code, _, _ := getFrom("127.0.0.31", s.listen, "/bots/x"); code != 403 {
		t.Fatalf("runtime rule not applied: %d", code)
	}
	if code, _, _ := getFrom("127.0.0.31", s.listen, "/ok"); code != 200 {
		t.Fatalf("other path: %d", code)
	}
	out, err := s.cli(t, "rules", "ls", "--admin", s.admin)
	if err != nil || !strings.Contains(out, "no-bots") || !strings.Contains(out, "runtime/cli") {
		t.Fatalf("rules ls: %v\n%s", err, out)
	}
	bad := filepath.Join(data, "bad.yaml")
	os.WriteFile(bad, []byte("name: bad\naction: explode\n"), 0o600)
	if out, err := s.cli(t, "rules", "add", bad, "--admin", s.admin); err == nil || !strings.Contains(out, "action") {
		t.Fatalf("invalid rule accepted: %s", out)
	}
	s.stop(t)
	s2 := startServe(t, data, "--upstream", o.URL)
	if code, _, _ := getFrom("127.0.0.31", s2.listen, "/bots/x"); code != 403 {
		t.Fatalf("runtime rule lost across restart: %d\n%s", code, s2.log.String())
	}
	if out, err := s2.cli(t, "rules", "rm", "no-bots", "--admin", s2.admin); err != nil {
		t.Fatalf("rules rm: %v %s", err, out)
	}
	if code, _, _ := getFrom("127.0.0.31", s2.listen, "/bots/x"); code != 200 {
		t.Fatalf("after rm: %d", code)
	}
}

func TestIncidentsCommand(t *testing.T) {
	o := originServer(t)
	s := startServe(t, t.TempDir(), "--upstream", o.URL)
	if out, err := s.cli(t, "incidents", "ls", "--admin", s.admin); err != nil || !strings.Contains(out, "no incidents") {
		t.Fatalf("incidents ls: %v %s", err, out)
	}
	if out, err := s.cli(t, "incidents", "ls", "--json", "--admin", s.admin); err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("incidents ls --json: %v %q", err, out)
	}
	if out, err := s.cli(t, "incidents", "show", "nope", "--admin", s.admin); err == nil || !strings.Contains(out, "no incident nope") {
		t.Fatalf("incidents show unknown: %v %s", err, out)
	}
	if out, err := s.cli(t, "incidents", "export", "nope", "--format", "xml", "--admin", s.admin); err == nil || !strings.Contains(out, "unknown format") {
		t.Fatalf("export bad format: %v %s", err, out)
	}
}

// levee config check loads what levee serve loads at start: a file it
// passes must not be refused by serve for a missing or broken certificate,
// GeoIP database, strict feed, key or token file. Each problem names the
// file, line and field; all are reported in one run.
func TestConfigCheckLoadsFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	notDir := write("plain-file", "x")
	junk := write("junk.mmdb", "not a database")
	site := "sites:\n  - upstreams: [{url: \"http://127.0.0.1:8080\"}]\nadmin: {address: \"off\"}\ndata_dir: " + filepath.Join(dir, "data") + "\n"
	cases := []struct{ name, yaml, want string }{
		{"cert", "listen:\n  - address: 127.0.0.1:0\n    tls:\n      certificates:\n        - {cert: " + filepath.Join(dir, "no.pem") + ", key: " + filepath.Join(dir, "no.key") + "}\n",
			":9: listen[0].tls.certificates[0]: tls: load certificate"},
		{"geoip missing", "detection:\n  geoip: [" + filepath.Join(dir, "no.mmdb") + "]\n", ":6: detection.geoip[0]: telemetry: open geoip database"},
		{"geoip junk", "detection:\n  geoip:\n    - " + junk + "\n", ":7: detection.geoip[0]: telemetry: open geoip database"},
		{"strict feed", "feeds:\n  - {path: " + filepath.Join(dir, "no.txt") + ", strict: true}\n", ":6: feeds[0]: feeds: iplist"},
		{"old key file", "known_clients:\n  old_key_files: [" + filepath.Join(dir, "old.key") + "]\n", ":6: known_clients.old_key_files[0]:"},
		{"data dir", "", ":4: data_dir: cannot create"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := site + tc.yaml
			if tc.name == "data dir" {
				src = strings.Replace(src, filepath.Join(dir, "data"), filepath.Join(notDir, "data"), 1)
			}
			path := write(strings.ReplaceAll(tc.name, " ", "-")+".yaml", src)
			out, err := exec.Command(leveeBin(t), "config", "check", path).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), path+tc.want) {
				t.Fatalf("config check: %v, want %q in\n%s", err, path+tc.want, out)
			}
			// serve refuses the same file.
			cmd := exec.Command(leveeBin(t), "serve", "-c", path)
			cmd.Env = append(os.Environ(), "LEVEE_ADMIN_TOKEN=")
			done := make(chan error, 1)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("serve accepted the file")
				}
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
				t.Fatal("serve started with the file config check refused")
			}
		})
	}

	// Everything in one run, with the token file under a regular file.
	all := write("all.yaml", "sites:\n  - upstreams: [{url: \"http://127.0.0.1:8080\"}]\ndata_dir: "+filepath.Join(dir, "data")+"\n"+
		"admin:\n  token_file: "+filepath.Join(notDir, "sub", "admin.token")+"\n"+
		"detection:\n  geoip: ["+junk+"]\n"+
		"known_clients:\n  key_file: "+junk+"\n")
	out, err := exec.Command(leveeBin(t), "config", "check", all).CombinedOutput()
	for _, w := range []string{all + ":5: admin.token_file: cannot create", all + ":7: detection.geoip[0]:", all + ":9: known_clients.key_file:", "3 problem(s) found"} {
		if err == nil || !strings.Contains(string(out), w) {
			t.Errorf("config check: %v, want %q in\n%s", err, w, out)
		}
	}

	// A lenient feed that is missing is a warning (serve starts without
	// it); -1 disables the body cap.
	ok := write("ok.yaml", site+"guard:\n  max_body_bytes: -1\nfeeds:\n  - path: "+filepath.Join(dir, "later.txt")+"\n")
	out, err = exec.Command(leveeBin(t), "config", "check", ok).CombinedOutput()
	if err != nil || !strings.Contains(string(out), ok+":8: feeds[0]: warning:") || !strings.Contains(string(out), "OK (1 listener(s), 1 site(s), 1 warning(s))") {
		t.Fatalf("config check ok: %v\n%s", err, out)
	}
}

// TestStatusShowsRulesAndBans: `levee status` against a running shield
// shows the ban count and the rules with their hits, busiest first.
func TestStatusShowsRulesAndBans(t *testing.T) {
	o := originServer(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "levee.yaml")
	os.WriteFile(path, []byte("sites:\n  - upstreams:\n      - url: "+o.URL+"\nrules:\n"+
		"  - {name: quiet, match: {path: {prefix: /never}}, action: block}\n"+
		"  - {name: admin-block, match: {path: {prefix: /admin}}, action: block}\n"), 0o600)
	s := startServe(t, dir, "-c", path)
	for range 3 {
		if code, _, err := getFrom("127.0.0.1", s.listen, "/admin/x"); err != nil || code != 403 {
			t.Fatalf("blocked path: %d %v", code, err)
		}
	}
	if out, err := s.cli(t, "ban", "add", "127.0.0.99/32", "--for", "1h", "--reason", "test", "--admin", s.admin); err != nil {
		t.Fatalf("ban add: %v\n%s", err, out)
	}
	out, err := s.cli(t, "status", "--admin", s.admin)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var bans, adminRule, quietRule string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 2 && f[0] == "bans":
			bans = f[1]
		case len(f) >= 3 && f[0] == "admin-block":
			adminRule = f[len(f)-1]
		case len(f) >= 3 && f[0] == "quiet":
			quietRule = f[len(f)-1]
		}
	}
	if bans != "1" || adminRule != "3" || quietRule != "0" {
		t.Fatalf("status: bans %q, admin-block hits %q, quiet hits %q; want 1, 3, 0\n%s", bans, adminRule, quietRule, out)
	}
	if strings.Index(out, "admin-block") > strings.Index(out, "quiet") {
		t.Fatalf("rules not sorted by hits:\n%s", out)
	}
}
