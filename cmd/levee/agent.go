package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/levee-dev/levee/internal/monitor/agent"
)

func init() {
	register(command{
		name:    "agent",
		summary: "run a remote vantage point for the outage monitor",
		run:     runAgent,
	})
}

func runAgent(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("agent", "--collector URL --token-file F --name NAME [--data-dir D]", stderr)
	collectorURL := fs.String("collector", "", "collector base `URL`, e.g. https://status.example.com")
	tokenFile := fs.String("token-file", "", "`file` holding this agent's bearer token")
	name := fs.String("name", "", "this vantage point's `name`, as configured on the collector")
	dataDir := fs.String("data-dir", "", "`directory` for the result spool and last plan (default ./levee-agent-<name>)")
	maxSpool := fs.Int64("max-spool", 64<<20, "largest result spool on disk, in `bytes`")
	caFile := fs.String("ca-file", "", "PEM `file` of CAs to trust for an https collector (default: system roots)")
	metricsAddr := fs.String("metrics", "", "serve Prometheus metrics on this `address` (e.g. 127.0.0.1:9181)")
	debug := fs.Bool("debug", false, "log at debug level")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *collectorURL == "" || *tokenFile == "" || *name == "" {
		fs.Usage()
		return errUsage
	}
	tok, err := os.ReadFile(*tokenFile)
	if err != nil {
		return fmt.Errorf("read token file: %w", err)
	}
	if *dataDir == "" {
		*dataDir = "levee-agent-" + *name
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	reg := prometheus.NewRegistry()
	a, err := agent.New(agent.Config{
		Collector: *collectorURL, Token: strings.TrimSpace(string(tok)), Name: *name,
		DataDir: *dataDir, MaxSpool: *maxSpool, CAFile: *caFile,
	}, agent.Deps{Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	defer a.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if *metricsAddr != "" {
		ln, err := net.Listen("tcp", *metricsAddr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer srv.Close()
	}
	log.Info("starting agent", "name", *name, "collector", *collectorURL, "data_dir", *dataDir)
	return a.Run(ctx)
}
