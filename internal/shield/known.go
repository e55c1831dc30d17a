package shield

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"

	"github.com/levee-dev/levee/internal/admission"
	"github.com/levee-dev/levee/internal/config"
)

// knownCookies builds the known-client cookie of cfg.KnownClients, or nil
// when it is disabled. Its key lives in known_clients.key_file (default
// <data_dir>/known.key), generated on first start like challenge.key, so
// cookies stay valid across restarts and reloads. The files are read on
// every Apply: replacing key_file and reloading revokes every cookie unless
// the old file is listed in old_key_files, whose keys verify but do not
// sign. Old key files are never generated: a missing one is an error.
func knownCookies(cfg *config.Config) (*admission.Cookies, error) {
	k := cfg.KnownClients
	if k.DisableCookie {
		return nil, nil
	}
	if err := ensureKeyFile(k.KeyFile); err != nil {
		return nil, fmt.Errorf("known_clients: key_file: %w", err)
	}
	key, err := readKey(k.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("known_clients: key_file: %w", err)
	}
	var old [][]byte
	for i, f := range k.OldKeyFiles {
		o, err := readKey(f)
		if err != nil {
			return nil, fmt.Errorf("known_clients: old_key_files[%d]: %w", i, err)
		}
		old = append(old, o)
	}
	c, err := admission.NewCookies(admission.CookieConfig{Name: k.CookieName, Key: key, OldKeys: old, MaxAge: k.MaxAge, MinAge: k.MinAge})
	if err != nil {
		return nil, fmt.Errorf("known_clients: %w", err)
	}
	return c, nil
}

// readKey reads a key file: base64 of at least 32 bytes, surrounding
// whitespace ignored.
func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("%s: want base64 of at least 32 bytes (try: head -c 32 /dev/urandom | base64 > %s)", path, path)
	}
	return key, nil
}
