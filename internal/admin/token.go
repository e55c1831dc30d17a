package admin

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// LoadToken returns the admin bearer token: from the environment variable
// env when set and non-empty, else from file. With create, a missing file is
// created with a fresh random token (mode 0600, directory 0700).
func LoadToken(env, file string, create bool) (string, error) {
	if env != "" {
		if v := strings.TrimSpace(os.Getenv(env)); v != "" {
			if len(v) < 16 {
				return "", fmt.Errorf("admin token from $%s is too short (want at least 16 characters)", env)
			}
			return v, nil
		}
	}
	b, err := os.ReadFile(file)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if len(t) < 16 {
			return "", fmt.Errorf("admin token file %s holds a token shorter than 16 characters", file)
		}
		return t, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return "", fmt.Errorf("admin token: %w (set $%s or create the file)", err, env)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	t := hex.EncodeToString(raw[:])
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return "", fmt.Errorf("admin token: create directory: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) { // raced with another process: use its token
			return LoadToken("", file, false)
		}
		return "", fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(t + "\n"); err != nil {
		return "", fmt.Errorf("admin token: write %s: %w", file, err)
	}
	return t, nil
}
