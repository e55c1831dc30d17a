package keyfile

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "dir", "k.key")
	s, err := Create(path, base64.StdEncoding.EncodeToString)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret %q: %v, %d bytes", s, err, len(raw))
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != s+"\n" {
		t.Fatalf("file holds %q, %v; want the secret and a newline", b, err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v (%v)", p, st.Mode().Perm(), want, err)
		}
	}
	// Never replaced.
	if _, err := Create(path, hex.EncodeToString); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second Create: %v, want fs.ErrExist", err)
	}
	if b2, _ := os.ReadFile(path); string(b2) != string(b) {
		t.Error("the existing file was changed")
	}
	// Distinct secrets.
	s2, err := Create(path+"2", hex.EncodeToString)
	if err != nil || len(s2) != 64 || strings.Contains(string(b), s2) {
		t.Errorf("second secret %q: %v", s2, err)
	}
}

func TestCreateUnwritableDirectory(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes anywhere")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o500)
	defer os.Chmod(dir, 0o700)
	if _, err := Create(filepath.Join(dir, "k"), hex.EncodeToString); err == nil {
		t.Fatal("created a file in a read-only directory")
	}
}
