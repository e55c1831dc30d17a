package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/levee-dev/levee/internal/incident"
)

func init() {
	register(command{name: "incidents", summary: "list, show and export attack incidents (admin API)", run: runIncidents})
}

func runIncidents(args []string, stdout, stderr io.Writer) error {
	as, rest, err := newAdminSub("incidents", args, stderr, "Usage:\n  levee incidents ls [--site S] [--json]\n  levee incidents show ID [--json]\n  levee incidents export ID --format json|csv|blocklist|abuse [-o FILE]")
	if err != nil {
		return err
	}
	sub, fs, af, usage := as.name, as.fs, as.af, as.usage
	site := fs.String("site", "", "only this site")
	format := fs.String("format", "json", "export format: json, csv (sources), blocklist (CIDRs), abuse (by network)")
	outPath := fs.String("o", "", "write the export to FILE instead of standard output")
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
		var list []incident.Summary
		q := "/v1/incidents"
		if *site != "" {
			q += "?site=" + url.QueryEscape(*site)
		}
		if err := c.Do("GET", q, nil, &list); err != nil {
			return err
		}
		if *af.jsonOut {
			return writeJSON(stdout, list)
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "no incidents")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSITE\tSTART\tDURATION\tKINDS\tPEAK REQ/S\tSOURCES\tMITIGATED\tRULES")
		for _, s := range list {
			dur := time.Duration(s.Duration * float64(time.Second)).Round(time.Second).String()
			if s.End.IsZero() {
				dur += " (ongoing)"
			}
			mit := 0.0
			if s.Requests > 0 {
				mit = 100 * float64(s.Mitigated) / float64(s.Requests)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t%.1f%%\t%d\n", s.ID, s.Site, s.Start.Local().Format(time.RFC3339), dur,
				strings.Join(s.Kinds, ","), s.PeakRequests, s.PeakSources, mit, s.Rules)
		}
		return tw.Flush()
	case "show":
		if len(pos) != 1 {
			return usage()
		}
		var inc incident.Incident
		if err := c.Do("GET", "/v1/incidents/"+url.PathEscape(pos[0]), nil, &inc); err != nil {
			return err
		}
		if *af.jsonOut {
			return writeJSON(stdout, inc)
		}
		return printIncident(stdout, &inc)
	case "export":
		if len(pos) != 1 {
			return usage()
		}
		path := map[string]string{"json": "", "csv": "/sources.csv", "blocklist": "/blocklist.txt", "abuse": "/abuse.txt"}
		suffix, ok := path[*format]
		if !ok {
			return fmt.Errorf("unknown format %q: want json, csv, blocklist or abuse", *format)
		}
		body, err := c.Get("/v1/incidents/" + url.PathEscape(pos[0]) + suffix)
		if err != nil {
			return err
		}
		if *outPath != "" {
			return os.WriteFile(*outPath, body, 0o644)
		}
		_, err = stdout.Write(body)
		return err
	}
	return usage()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printIncident(w io.Writer, inc *incident.Incident) error {
	end := "ongoing"
	if !inc.End.IsZero() {
		end = inc.End.Local().Format(time.RFC3339)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "incident\t%s\n", inc.ID)
	fmt.Fprintf(tw, "site\t%s\n", inc.Site)
	fmt.Fprintf(tw, "start / declared / end\t%s / %s / %s\n", inc.Start.Local().Format(time.RFC3339), inc.Declared.Local().Format(time.RFC3339), end)
	fmt.Fprintf(tw, "duration\t%s\n", time.Duration(inc.DurationSeconds*float64(time.Second)).Round(time.Second))
	fmt.Fprintf(tw, "kinds\t%s\n", strings.Join(inc.Kinds, ", "))
	fmt.Fprintf(tw, "max mode\t%s\n", inc.MaxMode)
	fmt.Fprintf(tw, "peak\t%.0f req/s (baseline %.0f), %.0f conn/s, %d distinct sources\n", inc.PeakRequests, inc.BaselineRequests, inc.PeakConns, inc.PeakSources)
	fmt.Fprintf(tw, "requests\t%d total, %d passed, %d mitigated, leak to origin %.1f%%\n", inc.Requests, inc.Passed, inc.Mitigated, 100*inc.LeakRatio)
	tw.Flush()
	top := func(title string, cs []incident.Count) {
		if len(cs) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s\n", title)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for i, c := range cs {
			if i == 10 {
				fmt.Fprintf(tw, "  ... %d more\n", len(cs)-10)
				break
			}
			fmt.Fprintf(tw, "  %s\t%d\t%.1f%%\n", c.Value, c.Requests, 100*c.Share)
		}
		tw.Flush()
	}
	top("top sources", inc.Sources)
	top("top prefixes", inc.Prefixes)
	top("top ASNs", inc.ASNs)
	top("top countries", inc.Countries)
	top("top user agents", inc.UserAgents)
	top("top paths", inc.Paths)
	if len(inc.Rules) > 0 {
		fmt.Fprintln(w, "\nrules generated")
		for _, r := range inc.Rules {
			fmt.Fprintf(w, "  %s\n", r.String())
		}
	}
	return nil
}
