package incident

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

var _ Geo = (*telemetry.GeoIP)(nil)

// WriteList writes incident summaries as a table (`levee incidents ls`).
func WriteList(w io.Writer, list []Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSITE\tSTART (UTC)\tDURATION\tKINDS\tPEAK REQ/S\tREQUESTS\tMITIGATED\tRULES\tMODE")
	for _, s := range list {
		dur := time.Duration(s.Duration * float64(time.Second)).Round(time.Second).String()
		if s.End.IsZero() {
			dur += " (ongoing)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%d\t%.1f%%\t%d\t%s\n", s.ID, s.Site, s.Start.UTC().Format("2006-01-02 15:04:05"),
			dur, strings.Join(s.Kinds, ","), s.PeakRequests, s.Requests, pct(s.Mitigated, s.Requests), s.Rules, s.MaxMode)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("incident: write list: %w", err)
	}
	return nil
}

// WriteReport writes one incident for people (`levee incidents show ID`,
// `levee analyze`): window, kinds, peaks, the rules with their
// explanations, and the top values of each attribute.
func WriteReport(w io.Writer, inc *Incident) error {
	end := "ongoing"
	if !inc.End.IsZero() {
		end = inc.End.UTC().Format("15:04:05")
	}
	fmt.Fprintf(w, "%s  site %s  %s -> %s (%s)  %s\n", inc.ID, inc.Site, inc.Start.UTC().Format("2006-01-02 15:04:05"), end,
		time.Duration(inc.DurationSeconds*float64(time.Second)).Round(time.Second), strings.Join(inc.Kinds, ", "))
	fmt.Fprintf(w, "    peak %.0f req/s (baseline %.0f), %.0f new conn/s, %d distinct sources/s; max mode %s\n",
		inc.PeakRequests, inc.BaselineRequests, inc.PeakConns, inc.PeakSources, inc.MaxMode)
	fmt.Fprintf(w, "    %d requests: %d mitigated (%.1f%%), %d reached the origin (leak %.1f%%)\n",
		inc.Requests, inc.Mitigated, pct(inc.Mitigated, inc.Requests), inc.Passed, 100*inc.LeakRatio)
	if len(inc.Rules) > 0 {
		fmt.Fprintln(w, "    rules:")
		for _, r := range inc.Rules {
			fmt.Fprintf(w, "      %s\n        %s\n", r.String(), r.Explanation.Text)
		}
	} else {
		fmt.Fprintln(w, "    rules: none (no signature: the attack traffic looks like normal traffic)")
	}
	var attackers []Count
	for _, s := range inc.Sources {
		if s.Attack {
			attackers = append(attackers, s)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	top := func(name string, cs []Count, n int) {
		var parts []string
		for i, c := range cs {
			if i == n {
				break
			}
			parts = append(parts, fmt.Sprintf("%s (%.1f%%)", c.Value, 100*c.Share))
		}
		if len(parts) > 0 {
			fmt.Fprintf(tw, "    %s\t%s\n", name, strings.Join(parts, ", "))
		}
	}
	top("attack sources:", attackers, 5)
	top("prefixes:", inc.Prefixes, 5)
	top("ASNs:", inc.ASNs, 3)
	top("countries:", inc.Countries, 3)
	top("user agents:", inc.UserAgents, 3)
	top("paths:", inc.Paths, 3)
	top("fingerprints:", inc.Fingerprints, 3)
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("incident: write report: %w", err)
	}
	_, err := fmt.Fprintf(w, "    %d attack sources, blocklist of %d prefixes\n", len(attackers), len(Blocklist(inc, BlocklistOptions{})))
	return err
}
