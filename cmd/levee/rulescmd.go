package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/shield"
)

func init() {
	register(command{name: "rules", summary: "list rules with hits; add or remove runtime rules (admin API)", run: runRules})
}

func runRules(args []string, stdout, stderr io.Writer) error {
	as, rest, err := newAdminSub("rules", args, stderr, "Usage:\n  levee rules ls [--json]\n  levee rules add FILE.yaml [--for 1h]   (FILE holds one rule in the config format)\n  levee rules rm NAME")
	if err != nil {
		return err
	}
	sub, fs, af, usage := as.name, as.fs, as.af, as.usage
	dur := fs.Duration("for", 0, "how long the runtime rule lasts (default: until removed)")
	pos, err := parseFlags(fs, rest)
	if err != nil {
		return err
	}
	c, err := af.client()
	if err != nil {
		return err
	}
	switch sub {
	case "ls":
		var rules []shield.RuleView
		if err := c.Do("GET", "/v1/rules", nil, &rules); err != nil {
			return err
		}
		if *af.jsonOut {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rules)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RULE\tACTION\tHITS\tKIND\tEXPIRES\tEXPLANATION")
		for _, r := range rules {
			kind, exp := "config", ""
			if r.Runtime {
				kind = "runtime/" + r.Source
				exp = "never"
				if !r.Expires.IsZero() {
					exp = r.Expires.Local().Format(time.RFC3339)
				}
			}
			act := r.Action
			if r.DryRun {
				act += " (dry run)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.Name, act, r.Hits, kind, exp, r.Explain)
		}
		return tw.Flush()
	case "add":
		if len(pos) != 1 {
			return usage()
		}
		data, err := os.ReadFile(pos[0])
		if err != nil {
			return err
		}
		var rule config.Rule
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&rule); err != nil {
			return fmt.Errorf("%s: %w", pos[0], err)
		}
		req := map[string]any{"rule": rule, "source": "cli"}
		if *dur > 0 {
			req["for"] = dur.String()
		}
		body, err := yaml.Marshal(req)
		if err != nil {
			return err
		}
		var out struct {
			Name    string    `json:"name"`
			Expires time.Time `json:"expires"`
			Warning string    `json:"warning"`
		}
		if err := c.DoRaw("POST", "/v1/rules", "application/yaml", body, &out); err != nil {
			return err
		}
		if out.Warning != "" {
			fmt.Fprintln(stderr, "warning:", out.Warning)
		}
		fmt.Fprintf(stdout, "added runtime rule %s\n", rule.Name)
		return nil
	case "rm":
		if len(pos) != 1 {
			return usage()
		}
		if err := c.Do("DELETE", "/v1/rules?name="+url.QueryEscape(pos[0]), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed runtime rule %s\n", pos[0])
		return nil
	}
	return usage()
}
