package shield

import (
	"strings"
	"testing"

	"github.com/levee-dev/levee/internal/config"
)

// TestRestartOnly: each change a reload cannot apply is named, and changes
// a reload applies are not.
func TestRestartOnly(t *testing.T) {
	const listen = `listen: [{address: "127.0.0.1:8443", tls: {certificates: [{cert: a.crt, key: a.key}]}}]`
	parse := func(listen, extra string) *config.Config {
		t.Helper()
		src := listen + "\ndata_dir: /tmp/levee-restart-test\nsites: [{name: shop, upstreams: [{url: \"http://127.0.0.1:1\"}]}]\n" + extra
		c, err := config.Parse([]byte(src), "levee.yaml")
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		return c
	}
	boot := parse(listen, "")
	for _, tc := range []struct{ listen, change, want string }{
		{`listen: [{address: "127.0.0.1:8443", tls: {min_version: "1.3", certificates: [{cert: a.crt, key: a.key}]}}]`, "", "listen"},
		{`listen: [{address: "127.0.0.1:8443", tls: {disable_http2: true, certificates: [{cert: a.crt, key: a.key}]}}]`, "", "listen"},
		{`listen: [{address: "127.0.0.1:8443", proxy_protocol_timeout: 1s, tls: {certificates: [{cert: a.crt, key: a.key}]}}]`, "", "listen"},
		{`listen: [{address: "127.0.0.1:8444", tls: {certificates: [{cert: a.crt, key: a.key}]}}]`, "", "listen"},
		{listen, "admin: {address: 127.0.0.1:9999}", "admin.address"},
		{listen, "guard: {header_timeout: 3s}", "guard.header_timeout"},
		{listen, "guard: {idle_timeout: 3s}", "guard.idle_timeout"},
		{listen, "guard: {max_header_bytes: 32KiB}", "guard.max_header_bytes"},
		{listen, "guard: {log_sample_interval: 1m}", "guard.log_sample_interval"},
		{listen, "guard: {write_timeout: 5s}", "guard.write_timeout"},
		{listen, "guard: {max_connections: 40000}", "guard.max_connections"},
		{listen, "guard: {http2: {max_concurrent_streams: 10}}", "guard.http2"},
		{listen, "log: {level: debug}", "log.level"},
		{listen, "log: {format: json}", "log.format"},
		{listen, "challenge: {token_ttl: 5m}", "challenge"},
		{listen, "detection: {disable: true}", "detection.disable"},
		{listen, "detection: {ratio: 9}", "detection.warm_up/ratio/min_requests"},
	} {
		if got := strings.Join(restartOnly(boot, parse(tc.listen, tc.change)), ","); !strings.Contains(got, tc.want) {
			t.Errorf("%s %s: restartOnly = %q, want it to name %s", tc.listen, tc.change, got, tc.want)
		}
	}
	// data_dir is in the common part: change it there.
	c, err := config.Parse([]byte(listen+"\ndata_dir: /tmp/elsewhere\nsites: [{name: shop, upstreams: [{url: \"http://127.0.0.1:1\"}]}]\n"), "levee.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(restartOnly(boot, c), ","); !strings.Contains(got, "data_dir") {
		t.Errorf("data_dir: restartOnly = %q", got)
	}
	for _, tc := range []struct{ listen, change string }{
		{`listen: [{address: "127.0.0.1:8443", tls: {certificates: [{cert: b.crt, key: b.key}]}}]`, ""}, // certificates reload
		{listen, "guard: {max_connections: 20500, max_connections_per_ip: 10, body_timeout: 5s, http2: {abuse_ban: 10m}}"},
		{listen, "limits: [{name: x, key: ip, rate: 5, burst: 5}]"},
		{listen, "rules: [{name: r, match: {path: {prefix: /x}}, action: block}]"},
		{listen, "block: [192.0.2.0/24]"},
		{listen, "detection: {disable_mitigation: true, webhooks: [{url: \"http://127.0.0.1:9/h\"}]}"},
		{listen, "log: {access_log: /tmp/levee-restart-test.log, access_log_max_rejected: 5}"},
	} {
		if got := restartOnly(boot, parse(tc.listen, tc.change)); len(got) != 0 {
			t.Errorf("%s %s applies on reload, but restartOnly = %v", tc.listen, tc.change, got)
		}
	}
}

// TestReloadKeepsDataDir: a reload that changes data_dir keeps the start
// directory and the key files derived from it (the known-client key is read
// on every reload: from a new directory it would be generated anew, voiding
// every cookie).
func TestReloadKeepsDataDir(t *testing.T) {
	parse := func(dir string) *config.Config {
		c, err := config.Parse([]byte("data_dir: "+dir+"\nsites: [{upstreams: [{url: \"http://127.0.0.1:1\"}]}]\n"), "levee.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	boot, next := parse("/var/lib/levee-a"), parse("/var/lib/levee-b")
	got := keepDataDir(boot, next)
	if got.DataDir != boot.DataDir || got.KnownClients.KeyFile != boot.KnownClients.KeyFile || got.Admin.TokenFile != boot.Admin.TokenFile {
		t.Fatalf("kept %q, key %q, token %q; want the start ones %q, %q, %q", got.DataDir, got.KnownClients.KeyFile, got.Admin.TokenFile,
			boot.DataDir, boot.KnownClients.KeyFile, boot.Admin.TokenFile)
	}
	if next.DataDir != "/var/lib/levee-b" {
		t.Fatal("keepDataDir changed its argument")
	}
	if keepDataDir(boot, boot) != boot {
		t.Fatal("an unchanged data_dir should return the config as is")
	}
}
