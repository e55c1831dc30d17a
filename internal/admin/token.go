package admin

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/levee-dev/levee/internal/keyfile"
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
	t, err := keyfile.Create(file, hex.EncodeToString)
	if errors.Is(err, fs.ErrExist) { // raced with another process: use its token
		return LoadToken("", file, false)
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return t, nil
}
