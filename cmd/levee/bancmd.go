package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/levee-dev/levee/internal/shield"
)

func init() {
	register(command{name: "ban", summary: "manage runtime bans: ban add|ls|rm (admin API)", run: runBan})
}

func runBan(args []string, stdout, stderr io.Writer) error {
	as, rest, err := newAdminSub("ban", args, stderr, "Usage:\n  levee ban add PREFIX [--for 1h] [--reason TEXT]\n  levee ban ls [--json]\n  levee ban rm PREFIX\n\nPREFIX is an address or CIDR, e.g. 203.0.113.7 or 203.0.113.0/24.")
	if err != nil {
		return err
	}
	sub, fs, af, usage := as.name, as.fs, as.af, as.usage
	dur := fs.Duration("for", 0, "ban duration, e.g. 30m or 24h (default: permanent)")
	reason := fs.String("reason", "", "why (shown by \"levee ban ls\" and in the logs)")
	pos, err := parseFlags(fs, rest)
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		if len(pos) != 1 {
			return usage()
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		req := shield.BanRequest{Prefix: pos[0], Reason: *reason, Source: "cli"}
		if *dur > 0 {
			req.For = dur.String()
		}
		var out struct {
			Prefix  string    `json:"prefix"`
			Expires time.Time `json:"expires"`
			Warning string    `json:"warning"`
		}
		if err := c.Do("POST", "/v1/bans", req, &out); err != nil {
			return err
		}
		if out.Warning != "" {
			fmt.Fprintln(stderr, "warning:", out.Warning)
		}
		if out.Expires.IsZero() {
			fmt.Fprintf(stdout, "banned %s permanently\n", out.Prefix)
		} else {
			fmt.Fprintf(stdout, "banned %s until %s\n", out.Prefix, out.Expires.Local().Format(time.RFC3339))
		}
		return nil
	case "rm":
		if len(pos) != 1 {
			return usage()
		}
		c, err := af.client()
		if err != nil {
			return err
		}
		if err := c.Do("DELETE", "/v1/bans?prefix="+url.QueryEscape(pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "unbanned %s\n", pos[0])
		return nil
	case "ls":
		c, err := af.client()
		if err != nil {
			return err
		}
		var bans []shield.BanView
		if err := c.Do("GET", "/v1/bans", nil, &bans); err != nil {
			return err
		}
		if *af.jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(bans)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PREFIX\tEXPIRES\tSOURCE\tREASON")
		for _, b := range bans {
			exp := "never"
			if !b.Expires.IsZero() {
				exp = b.Expires.Local().Format(time.RFC3339) + " (in " + time.Until(b.Expires).Truncate(time.Second).String() + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", b.Prefix, exp, b.Source, b.Reason)
		}
		return tw.Flush()
	}
	return usage()
}
