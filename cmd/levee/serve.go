package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/shield"
)

func init() {
	register(command{
		name:    "serve",
		summary: "run the shield: a protective reverse proxy in front of your origin",
		run:     runServe,
	})
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[-c levee.yaml] [--upstream URL ...] [--listen ADDR]", stderr)
	cfgPath := fs.String("c", "", "configuration file (YAML); optional when --upstream is given")
	var ups multiFlag
	fs.Var(&ups, "upstream", "origin URL, e.g. http://127.0.0.1:8080 (repeatable; overrides the config's sites with one default site)")
	listen := fs.String("listen", "", "client listener address (default :8000; overrides the config's listeners)")
	adminAddr := fs.String("admin", "", "admin API address (default 127.0.0.1:9901, \"off\" to disable)")
	dataDir := fs.String("data-dir", "", "data directory (default $LEVEE_DATA_DIR, /var/lib/levee as root, else ~/.local/state/levee)")
	grace := fs.Duration("shutdown-grace", 30*time.Second, "how long to wait for in-flight requests on shutdown")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := buildServeConfig(*cfgPath, ups, *listen, *adminAddr, *dataDir)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	log := newLogger(cfg.Log, stderr)
	defer startProfile(os.Getenv("LEVEE_CPUPROFILE"))()
	opts := shield.Options{ConfigPath: *cfgPath, Logger: log}
	if *cfgPath != "" {
		// A reload re-reads the file with the same command-line overrides.
		opts.Load = func() (*config.Config, error) {
			return buildServeConfig(*cfgPath, ups, *listen, *adminAddr, *dataDir)
		}
	}
	s, err := shield.New(cfg, opts)
	if err != nil {
		return err
	}
	if err := s.Start(); err != nil {
		return err
	}
	if _, _, err := s.StartAdmin(); err != nil {
		_ = s.Shutdown(context.Background())
		return err
	}
	for _, site := range cfg.Sites {
		ups := make([]string, len(site.Upstreams))
		for i, u := range site.Upstreams {
			ups[i] = u.URL
		}
		log.Info("protecting site", "site", site.Name, "hosts", site.Hosts, "upstreams", ups)
	}
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	for x := range sig {
		if x == syscall.SIGHUP {
			_ = s.Reload() // logs its outcome, success or failure
			continue
		}
		log.Info("shutting down; finishing in-flight requests", "signal", x.String(), "grace", grace.String())
		ctx, cancel := context.WithTimeout(context.Background(), *grace)
		err := s.Shutdown(ctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		log.Info("stopped")
		return nil
	}
	return nil
}

// buildServeConfig merges the config file (if any) with command-line
// overrides, then defaults and validates the result.
func buildServeConfig(path string, ups []string, listen, adminAddr, dataDir string) (*config.Config, error) {
	var cfg *config.Config
	if path != "" {
		c, err := config.Load(path)
		if err != nil {
			return nil, err
		}
		cfg = c
	} else {
		if len(ups) == 0 {
			return nil, errors.New("nothing to protect: give --upstream http://HOST:PORT (or -c levee.yaml)")
		}
		cfg = &config.Config{}
	}
	if len(ups) > 0 {
		site := config.Site{Name: "default"}
		for _, u := range ups {
			site.Upstreams = append(site.Upstreams, config.Upstream{URL: u})
		}
		cfg.Sites = []config.Site{site}
	}
	if listen != "" {
		cfg.Listen = []config.Listener{{Address: listen}}
	}
	if adminAddr != "" {
		cfg.Admin.Address = adminAddr
	}
	if dataDir != "" {
		cfg.SetDataDir(dataDir) // the file was defaulted on load
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return cfg, nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// startProfile writes a CPU profile to path while the process runs, when
// LEVEE_CPUPROFILE is set (for benchmarks; see bench/).
func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() {}
	}
	return func() { pprof.StopCPUProfile(); f.Close() }
}
