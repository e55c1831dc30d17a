package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/levee-dev/levee/internal/monitor"
	"github.com/levee-dev/levee/internal/monitor/collector"
)

func init() {
	register(command{
		name:    "monitor",
		summary: "run the outage monitor collector (probes, status page, API)",
		run:     runMonitor,
	})
}

func runMonitor(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("monitor", "-c monitor.yaml [--check]", stderr)
	cfgPath := fs.String("c", "monitor.yaml", "collector configuration `file`")
	listen := fs.String("listen", "", "override the listen `address` from the config")
	check := fs.Bool("check", false, "validate the configuration and exit")
	debug := fs.Bool("debug", false, "log at debug level")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := monitor.Load(*cfgPath)
	if err != nil {
		return &exitError{code: 1, err: err}
	}
	if *check {
		fmt.Fprintf(stdout, "%s: ok (%d targets, %d agents)\n", *cfgPath, len(cfg.Targets), len(cfg.Agents))
		return nil
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	c, err := collector.New(cfg, collector.Deps{Logger: log})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("starting monitor", "config", *cfgPath, "listen", cfg.Listen, "data_dir", cfg.DataDir)
	return c.ListenAndRun(ctx)
}
