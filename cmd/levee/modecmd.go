package main

import (
	"fmt"
	"io"
	"time"

	"github.com/levee-dev/levee/internal/decide"
	"github.com/levee-dev/levee/internal/shield"
)

func init() {
	register(command{name: "mode", summary: "show or set the escalation mode: normal, elevated, under-attack, auto", run: runMode})
}

func runMode(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("mode", "[normal|elevated|under-attack|auto] [--for 30m] [--reason TEXT]", stderr)
	af := addAdminFlags(fs)
	dur := fs.Duration("for", 0, "how long the override lasts (default: until changed)")
	reason := fs.String("reason", "", "why (logged)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		fs.Usage()
		return errUsage
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	var st decide.ModeState
	if len(pos) == 0 {
		if err := c.Do("GET", "/v1/mode", nil, &st); err != nil {
			return err
		}
	} else {
		req := shield.ModeRequest{Mode: pos[0], Reason: *reason}
		if *dur > 0 {
			req.For = dur.String()
		}
		if err := c.Do("POST", "/v1/mode", req, &st); err != nil {
			return err
		}
	}
	line := "mode " + st.Name
	if st.Source != "" {
		line += " (" + st.Source + ")"
	}
	if !st.Until.IsZero() {
		line += " until " + st.Until.Local().Format(time.RFC3339)
	}
	if st.Reason != "" {
		line += ": " + st.Reason
	}
	fmt.Fprintln(stdout, line)
	return nil
}
