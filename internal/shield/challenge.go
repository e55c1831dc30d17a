package shield

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/levee-dev/levee/internal/challenge"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/keyfile"
)

// openChallenge creates the challenge service. With no keys configured it
// uses <data_dir>/challenge.key, generating it on first start, so a
// zero-config shield challenges out of the box.
func (s *Shield) openChallenge(cfg *config.Config) error {
	cc := cfg.Challenge
	if len(cc.Keys) == 0 {
		path := filepath.Join(cfg.DataDir, "challenge.key")
		if err := ensureKeyFile(path); err != nil {
			return fmt.Errorf("challenge: %w", err)
		}
		cc.Keys = []challenge.Key{{ID: 1, SecretFile: path}}
	}
	tls := false
	for _, l := range cfg.Listen {
		tls = tls || l.TLS.Enabled()
	}
	if !tls {
		// Browsers drop Secure cookies on plain HTTP: without any TLS
		// listener the clearance cookie must go without the attribute or
		// every cleared visitor would be challenged again.
		cc.InsecureCookie = true
	}
	svc, err := challenge.New(cc, challenge.Deps{Registerer: s.reg, Logger: s.log})
	if err != nil {
		return fmt.Errorf("challenge: %w", err)
	}
	s.chal = svc
	s.engine.SetChallengesAvailable(true)
	return nil
}

// ensureKeyFile writes a random 32-byte base64 key with mode 0600 if path
// does not exist.
func ensureKeyFile(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	_, err := keyfile.Create(path, base64.StdEncoding.EncodeToString)
	if errors.Is(err, fs.ErrExist) { // created meanwhile by another process
		return nil
	}
	return err
}
