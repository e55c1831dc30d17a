package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/levee-dev/levee/internal/config"
)

func init() {
	register(command{
		name:    "config",
		summary: "check a configuration file: levee config check FILE",
		run:     runConfig,
	})
}

func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "check" {
		fmt.Fprintln(stderr, "Usage: levee config check FILE")
		return errUsage
	}
	fs := newFlagSet("config check", "FILE", stderr)
	pos, err := parseFlags(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	cfg, err := config.Load(pos[0])
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				fmt.Fprintln(stderr, e)
			}
			return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s) found", pos[0], len(es))}
		}
		return &exitError{code: 1, err: err}
	}
	fmt.Fprintf(stdout, "%s: OK (%d listener(s), %d site(s))\n", pos[0], len(cfg.Listen), len(cfg.Sites))
	return nil
}
