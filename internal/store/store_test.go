package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/iplist"
)

var t0 = time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data", "levee.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func ban(p string, expires time.Time) iplist.Ban {
	return iplist.Ban{Prefix: netip.MustParsePrefix(p), Reason: "flood from " + p, Source: "detector", Created: t0, Expires: expires}
}

func TestBansRoundTrip(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	want := []iplist.Ban{
		ban("192.0.2.0/24", time.Time{}),
		ban("198.51.100.7/32", t0.Add(time.Hour)),
		ban("2001:db8::/48", t0.Add(2*time.Hour)),
	}
	for _, b := range want {
		if err := s.AddBan(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// Upsert by prefix: host bits are ignored, the new fields win.
	up := ban("192.0.2.9/24", t0.Add(3*time.Hour))
	up.Reason, up.Source = "manual", "cli"
	if err := s.AddBan(ctx, up); err != nil {
		t.Fatal(err)
	}
	want[0] = up
	want[0].Prefix = up.Prefix.Masked()

	got, err := s.ListBans(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	assertBans(t, got, want)

	// Persistence across close and reopen.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err = s2.ListBans(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	assertBans(t, got, want)

	ok, err := s2.RemoveBan(ctx, netip.MustParsePrefix("198.51.100.7/32"))
	if err != nil || !ok {
		t.Fatalf("RemoveBan = %v, %v; want true, nil", ok, err)
	}
	ok, err = s2.RemoveBan(ctx, netip.MustParsePrefix("198.51.100.7/32"))
	if err != nil || ok {
		t.Fatalf("second RemoveBan = %v, %v; want false, nil", ok, err)
	}
	got, _ = s2.ListBans(ctx, t0)
	assertBans(t, got, []iplist.Ban{want[0], want[2]})
}

func assertBans(t *testing.T, got, want []iplist.Ban) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d bans %v; want %d", len(got), got, len(want))
	}
	byPrefix := map[netip.Prefix]iplist.Ban{}
	for _, b := range got {
		byPrefix[b.Prefix] = b
	}
	for _, w := range want {
		g, ok := byPrefix[w.Prefix]
		if !ok || g.Reason != w.Reason || g.Source != w.Source || !g.Created.Equal(w.Created) || !g.Expires.Equal(w.Expires) || g.Expires.IsZero() != w.Expires.IsZero() {
			t.Errorf("ban %v: got %+v; want %+v", w.Prefix, g, w)
		}
	}
}

func TestExpiry(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	for _, b := range []iplist.Ban{
		ban("10.0.0.1/32", t0.Add(-time.Second)),
		ban("10.0.0.2/32", t0),
		ban("10.0.0.3/32", t0.Add(time.Second)),
		ban("10.0.0.4/32", time.Time{}),
	} {
		if err := s.AddBan(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []Rule{
		{Name: "old", Body: json.RawMessage(`{"block":"/wp-login.php"}`), Created: t0, Expires: t0.Add(-time.Minute)},
		{Name: "new", Body: json.RawMessage(`{"block":"/xmlrpc.php"}`), Created: t0, Expires: t0.Add(time.Minute)},
	} {
		if err := s.PutRule(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ListBans(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Prefix.String() != "10.0.0.3/32" || got[1].Prefix.String() != "10.0.0.4/32" {
		t.Errorf("active bans at t0 = %v; want 10.0.0.3 and 10.0.0.4", got)
	}
	n, err := s.PruneExpired(ctx, t0)
	if err != nil || n != 3 {
		t.Errorf("PruneExpired = %d, %v; want 3 (2 bans, 1 rule)", n, err)
	}
	// Pruned rows are gone even for a query in the past.
	got, _ = s.ListBans(ctx, t0.Add(-time.Hour))
	if len(got) != 2 {
		t.Errorf("after prune: %v", got)
	}
}

func TestRules(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	r := Rule{Name: "block-login", Body: json.RawMessage(`{"path":"/login","action":"challenge"}`), Created: t0}
	if err := s.PutRule(ctx, r); err != nil {
		t.Fatal(err)
	}
	r.Body = json.RawMessage(`{"path":"/login","action":"block"}`)
	if err := s.PutRule(ctx, r); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListRules(ctx, t0)
	if err != nil || len(got) != 1 || string(got[0].Body) != string(r.Body) || !got[0].Created.Equal(t0) || !got[0].Expires.IsZero() {
		t.Fatalf("ListRules = %+v, %v", got, err)
	}
	if err := s.PutRule(ctx, Rule{Name: "bad", Body: json.RawMessage(`{nope`)}); err == nil {
		t.Error("PutRule accepted invalid JSON")
	}
	if err := s.PutRule(ctx, Rule{Body: json.RawMessage(`{}`)}); err == nil {
		t.Error("PutRule accepted an empty name")
	}
	ok, err := s.DeleteRule(ctx, "block-login")
	if err != nil || !ok {
		t.Fatalf("DeleteRule = %v, %v", ok, err)
	}
	if got, _ := s.ListRules(ctx, t0); len(got) != 0 {
		t.Errorf("rules after delete: %v", got)
	}
}

func TestFileModes(t *testing.T) {
	s, path := openTemp(t)
	if err := s.AddBan(context.Background(), ban("192.0.2.1/32", time.Time{})); err != nil {
		t.Fatal(err) // a write creates the -wal file
	}
	for p, want := range map[string]os.FileMode{filepath.Dir(path): 0o700, path: 0o600, path + "-wal": 0o600, path + "-shm": 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&^want != 0 {
			t.Errorf("%s mode %v; want at most %v", p, fi.Mode().Perm(), want)
		}
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// populated creates a closed store with enough bans to span many pages.
func populated(t *testing.T) string {
	t.Helper()
	s, path := openTemp(t)
	for i := 0; i < 500; i++ {
		b := ban(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), time.Time{})
		b.Reason = strings.Repeat("r", 100)
		if err := s.AddBan(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCorruptFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"garbage file", func(t *testing.T, path string) {
			if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 500), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated header", func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("SQLite format 3\x00\x10\x00"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage pages", func(t *testing.T, path string) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, _ := f.Stat()
			if fi.Size() < 16*1024 {
				t.Fatalf("store is only %d bytes; want several pages", fi.Size())
			}
			// Overwrite everything after the first page with garbage.
			junk := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 0x00, 0x13}, int(fi.Size()-4096)/6)
			if _, err := f.WriteAt(junk, 4096); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := populated(t)
			tc.damage(t, path)
			before := fileHash(t, path)
			s, err := Open(path, nil)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded on a damaged file")
			}
			t.Logf("Open error: %v", err)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v; want ErrCorrupt", err)
			}
			for _, want := range []string{path, "Move it aside", "has not changed"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if fileHash(t, path) != before {
				t.Fatal("Open changed the damaged file")
			}
		})
	}
}

func TestNewerSchema(t *testing.T) {
	path := populated(t)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path, nil)
	if err == nil || !strings.Contains(err.Error(), "newer levee") || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v; want a newer-schema error naming the file", err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, nil); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("Open(dir) err = %v", err)
	}
	if _, err := Open("", nil); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	// A data directory below a regular file cannot be created.
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Open(filepath.Join(file, "sub", "levee.db"), nil); err == nil || !strings.Contains(err.Error(), "create data directory") {
		t.Errorf("Open(under a file) err = %v", err)
	}
}

const permChildEnv = "LEVEE_STORE_PERM_CHILD_PATH"

// TestPermissionChild is the unprivileged half of TestPermissionDenied; it
// does nothing unless started by it.
func TestPermissionChild(t *testing.T) {
	path := os.Getenv(permChildEnv)
	if path == "" {
		t.Skip("helper for TestPermissionDenied")
	}
	_, err := Open(path, nil)
	fmt.Printf("OPEN-ERROR: %v\n", err)
}

func TestPermissionDenied(t *testing.T) {
	path := populated(t)
	before := fileHash(t, path)
	var msg string
	if os.Geteuid() != 0 {
		if err := os.Chmod(path, 0); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(path, 0o600)
		_, err := Open(path, nil)
		if err == nil {
			t.Fatal("Open succeeded on a mode 0000 file")
		}
		msg = err.Error()
	} else {
		// Root ignores file modes: run the open as user nobody in a child
		// process, from a copy of the test binary that nobody may execute.
		msg = openAsNobody(t, path)
	}
	t.Logf("Open error: %s", msg)
	for _, want := range []string{path, "permission denied", "owner or mode"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if fileHash(t, path) != before {
		t.Fatal("failed Open changed the file")
	}
}

func openAsNobody(t *testing.T, path string) string {
	self, err := os.Executable()
	if err != nil {
		t.Skipf("permission test as root needs the test binary: %v", err)
	}
	dir, err := os.MkdirTemp("", "levee-store-perm-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// The store's directory and file stay root-owned 0700/0600; the child
	// gets a traversable copy of the directory tree.
	shared := filepath.Join(dir, "data")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(shared, "levee.db")
	copyFile(t, path, dbPath, 0o600)
	bin := filepath.Join(dir, "store.test")
	copyFile(t, self, bin, 0o755)
	for _, d := range []string{dir, shared} {
		os.Chmod(d, 0o755)
	}
	cmd := exec.Command(bin, "-test.run=^TestPermissionChild$", "-test.v")
	cmd.Env = append(os.Environ(), permChildEnv+"="+dbPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("OPEN-ERROR")) {
		t.Skipf("cannot run the test binary as uid 65534 (%v): %s", err, out)
	}
	i := bytes.Index(out, []byte("OPEN-ERROR: "))
	if i < 0 {
		t.Fatalf("child output lacks the result: %s", out)
	}
	line, _, _ := strings.Cut(string(out[i+len("OPEN-ERROR: "):]), "\n")
	if line == "<nil>" {
		t.Fatal("uid 65534 opened a root-owned 0600 store")
	}
	if fileHash(t, dbPath) != fileHash(t, path) {
		t.Fatal("child changed the file")
	}
	// Report against the original path so the caller's checks are uniform.
	return strings.ReplaceAll(line, dbPath, path)
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentWriters(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	errc := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; i < 50; i++ {
				if err := s.AddBan(ctx, ban(fmt.Sprintf("172.16.%d.%d/32", w, i), time.Time{})); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for w := 0; w < 4; w++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := s.ListBans(ctx, t0); len(got) != 200 {
		t.Errorf("got %d bans; want 200", len(got))
	}
}

func TestEnsureSchema(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	steps := []string{
		`CREATE TABLE incidents_events (id INTEGER PRIMARY KEY, started INTEGER NOT NULL) STRICT`,
		`ALTER TABLE incidents_events ADD COLUMN summary TEXT NOT NULL DEFAULT ''`,
	}
	if err := s.EnsureSchema(ctx, "incidents", steps[:1]); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureSchema(ctx, "incidents", steps); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO incidents_events (started, summary) VALUES (1, 'syn flood')`); err != nil {
		t.Fatal(err)
	}
	// A failing step rolls back the component's whole migration.
	bad := []string{`CREATE TABLE monitor_probes (id INTEGER PRIMARY KEY)`, `THIS IS NOT SQL`}
	if err := s.EnsureSchema(ctx, "monitor", bad); err == nil || !strings.Contains(err.Error(), "monitor to schema version 2") {
		t.Fatalf("bad migration err = %v", err)
	}
	if _, err := s.DB().ExecContext(ctx, `SELECT count(*) FROM monitor_probes`); err == nil {
		t.Error("a failed component migration left its first table behind")
	}
	s.Close()

	// Reopen: versions persist, steps do not run again, and an older binary
	// (fewer steps) is refused.
	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.EnsureSchema(ctx, "incidents", steps); err != nil {
		t.Fatalf("re-ensure: %v", err)
	}
	var n int
	if err := s2.DB().QueryRowContext(ctx, `SELECT count(*) FROM incidents_events`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("incidents rows = %d, %v; want 1", n, err)
	}
	if err := s2.EnsureSchema(ctx, "incidents", steps[:1]); err == nil || !strings.Contains(err.Error(), "newer levee") {
		t.Errorf("older steps err = %v; want newer-version refusal", err)
	}
	if err := s2.EnsureSchema(ctx, "", steps); err == nil {
		t.Error("empty component accepted")
	}
}

func TestMigrateFromVersion1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "levee.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{migrations[0], "PRAGMA user_version = 1",
		`INSERT INTO bans VALUES ('192.0.2.0/24', 'old', 'cli', 1, 0)`} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var v int
	if err := s.DB().QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != SchemaVersion {
		t.Fatalf("user_version = %d, %v; want %d", v, err, SchemaVersion)
	}
	bans, err := s.ListBans(context.Background(), t0)
	if err != nil || len(bans) != 1 || bans[0].Reason != "old" {
		t.Fatalf("bans after migration = %v, %v", bans, err)
	}
	if err := s.EnsureSchema(context.Background(), "x", []string{"CREATE TABLE x_t (a INTEGER) STRICT"}); err != nil {
		t.Fatal(err)
	}
}
