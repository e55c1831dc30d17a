package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/shield"
)

func init() {
	register(command{
		name:    "config",
		summary: "check a configuration file: levee config check FILE",
		run:     runConfig,
	})
}

// runConfig checks a configuration file: all value errors and unknown keys
// (internal/config), then, when the values are valid, the files levee serve
// would load at start (shield.CheckFiles): TLS certificates and keys, GeoIP
// databases, feeds, key and token files, the data directory. Nothing is
// created and no socket is bound. Problems are printed as
// "file:line: field: message" ("file: field: message" for settings the file
// leaves at their default); warnings do not fail the check.
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
	path := pos[0]
	cfg, err := config.Load(path)
	if err != nil {
		var es config.Errors
		if errors.As(err, &es) {
			for _, e := range es {
				fmt.Fprintln(stderr, e)
			}
			return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s) found", path, len(es))}
		}
		return &exitError{code: 1, err: err}
	}
	data, _ := os.ReadFile(path) // read by Load just now; for line numbers
	ps := shield.CheckFiles(cfg)
	lines := make(map[string]int, len(ps))
	for _, p := range ps {
		lines[p.Field] = config.LineOf(data, p.Field)
	}
	slices.SortStableFunc(ps, func(a, b shield.Problem) int { // by line, defaults (0) last
		la, lb := lines[a.Field], lines[b.Field]
		if la == 0 || lb == 0 {
			return lb - la
		}
		return la - lb
	})
	problems, warnings := 0, 0
	for _, p := range ps {
		where := path
		if line := lines[p.Field]; line > 0 {
			where = fmt.Sprintf("%s:%d", path, line)
		}
		if p.Warning {
			warnings++
			fmt.Fprintf(stderr, "%s: %s: warning: %v\n", where, p.Field, p.Err)
			continue
		}
		problems++
		fmt.Fprintf(stderr, "%s: %s: %v\n", where, p.Field, p.Err)
	}
	if problems > 0 {
		return &exitError{code: 1, err: fmt.Errorf("%s: %d problem(s) found: levee serve would not start", path, problems)}
	}
	note := ""
	if warnings > 0 {
		note = fmt.Sprintf(", %d warning(s)", warnings)
	}
	fmt.Fprintf(stdout, "%s: OK (%d listener(s), %d site(s)%s)\n", path, len(cfg.Listen), len(cfg.Sites), note)
	return nil
}
