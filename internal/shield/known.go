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
// cookies stay valid across restarts and reloads. The file is read on every
// Apply: replacing it and reloading revokes every cookie.
func knownCookies(cfg *config.Config) (*admission.Cookies, error) {
	k := cfg.KnownClients
	if k.DisableCookie {
		return nil, nil
	}
	if err := ensureKeyFile(k.KeyFile); err != nil {
		return nil, fmt.Errorf("known_clients: key_file: %w", err)
	}
	b, err := os.ReadFile(k.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("known_clients: key_file: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) < 32 {
		return nil, fmt.Errorf("known_clients: key_file %s: want base64 of at least 32 bytes (try: head -c 32 /dev/urandom | base64 > %s)", k.KeyFile, k.KeyFile)
	}
	c, err := admission.NewCookies(admission.CookieConfig{Name: k.CookieName, Key: key, MaxAge: k.MaxAge, MinAge: k.MinAge})
	if err != nil {
		return nil, fmt.Errorf("known_clients: %w", err)
	}
	return c, nil
}
