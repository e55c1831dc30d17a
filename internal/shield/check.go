package shield

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/levee-dev/levee/internal/admin"
	"github.com/levee-dev/levee/internal/challenge"
	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/telemetry"
)

// Problem is a file named by a configuration that the shield could not
// load at start (see CheckFiles).
type Problem struct {
	// Field is the YAML path of the setting naming the file, such as
	// "listen[0].tls.certificates[1]" or "detection.geoip[0]".
	Field string
	Err   error
	// Warning marks a problem the shield starts with anyway (a lenient
	// feed that cannot be read yet starts empty).
	Warning bool
}

// CheckFiles loads the files a validated config names the way New and
// StartAdmin load them when levee serve starts, without binding sockets
// and without creating or changing any file: TLS certificate/key pairs,
// GeoIP databases, feed files, the challenge key files, the known-client
// key files and the admin token file. Files the shield would generate on
// first start (admin token, known_clients.key_file, the data directory)
// may be missing when their directory could be created. It returns every
// problem found, for levee config check.
func CheckFiles(cfg *config.Config) []Problem {
	var out []Problem
	add := func(field string, err error) {
		if err != nil {
			out = append(out, Problem{Field: field, Err: err})
		}
	}
	for i, l := range cfg.Listen {
		for j, crt := range l.TLS.Certificates {
			if crt.Cert == "" || crt.Key == "" {
				continue // a validation error
			}
			_, err := loadCerts([]config.Certificate{crt})
			add(fmt.Sprintf("listen[%d].tls.certificates[%d]", i, j), err)
		}
	}
	if !cfg.Detection.Disable {
		for i, p := range cfg.Detection.GeoIP {
			g, err := telemetry.OpenGeoIP(p)
			if err == nil {
				g.Close()
			}
			add(fmt.Sprintf("detection.geoip[%d]", i), err)
		}
	}
	for i := range cfg.Feeds {
		one := *cfg
		one.Feeds = cfg.Feeds[i : i+1]
		set, err := newFeeds(&one, slog.New(slog.DiscardHandler))
		field := fmt.Sprintf("feeds[%d]", i)
		if err != nil {
			add(field, err)
			continue
		}
		if st := set.Status(); len(st) == 1 && st[0].Error != "" {
			out = append(out, Problem{Field: field, Warning: true,
				Err: fmt.Errorf("%s (the feed is not strict: levee serve starts without it and reads it when it appears)", st[0].Error)})
		}
	}
	if len(cfg.Challenge.Keys) > 0 {
		cc := cfg.Challenge
		cc.SetDefaults()
		_, err := challenge.NewSigner(cc.Keys, cc.PrefixV4, cc.PrefixV6)
		add("challenge.keys", err)
	}
	// The store, the incidents and the generated keys live in data_dir.
	add("data_dir", canCreate(filepath.Join(cfg.DataDir, "levee.db")))
	if k := cfg.KnownClients; !k.DisableCookie {
		if _, err := os.Stat(k.KeyFile); err == nil {
			_, err = readKey(k.KeyFile)
			add("known_clients.key_file", err)
		} else if k.KeyFile != filepath.Join(cfg.DataDir, "known.key") { // else data_dir tells
			add("known_clients.key_file", canCreate(k.KeyFile))
		}
		for i, f := range k.OldKeyFiles {
			_, err := readKey(f)
			add(fmt.Sprintf("known_clients.old_key_files[%d]", i), err)
		}
	}
	if a := cfg.Admin; a.Address != "off" {
		if a.TokenEnv != "" && strings.TrimSpace(os.Getenv(a.TokenEnv)) != "" {
			_, err := admin.LoadToken(a.TokenEnv, a.TokenFile, false)
			add("admin.token_env", err)
		} else if _, err := os.Stat(a.TokenFile); err == nil {
			_, err = admin.LoadToken("", a.TokenFile, false)
			add("admin.token_file", err)
		} else {
			add("admin.token_file", canCreate(a.TokenFile))
		}
	}
	if p := cfg.Log.AccessLog; p != "" && p != "stdout" {
		if f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			f.Close()
		} else if errors.Is(err, fs.ErrNotExist) {
			add("log.access_log", canCreate(p))
		} else {
			add("log.access_log", fmt.Errorf("access log: %w", err))
		}
	}
	return dedupe(out)
}

// canCreate reports why the file at path, missing or not, could not be
// created by this process: its nearest existing ancestor must be a
// directory it may write to (the shield creates missing directories).
func canCreate(path string) error {
	if fi, err := os.Stat(path); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("%s is a directory", path)
		}
		return writable(filepath.Dir(path))
	}
	dir := filepath.Dir(path)
	for {
		fi, err := os.Stat(dir)
		switch {
		case err == nil && !fi.IsDir():
			return fmt.Errorf("cannot create %s: %s is not a directory", path, dir)
		case err == nil:
			if werr := writable(dir); werr != nil {
				return fmt.Errorf("cannot create %s: %w", path, werr)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
			return fmt.Errorf("cannot create %s: %w", path, err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil
		}
		dir = parent
	}
}

func dedupe(ps []Problem) []Problem {
	seen := map[string]bool{}
	out := ps[:0]
	for _, p := range ps {
		k := p.Field + "\x00" + p.Err.Error()
		if !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}
