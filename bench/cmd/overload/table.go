package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// resultPrefix starts the machine-readable line of `overload load`.
const resultPrefix = "RESULT "

// readResults parses the RESULT lines (or bare JSON lines) of r; other lines
// are ignored.
func readResults(r io.Reader) ([]LoadResult, error) {
	var out []LoadResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, resultPrefix)
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var lr LoadResult
		if err := json.Unmarshal([]byte(line), &lr); err != nil {
			return nil, fmt.Errorf("overload: table: line %d: %w", n, err)
		}
		out = append(out, lr)
	}
	return out, sc.Err()
}

// writeTable prints one Markdown table of results, grouped by label in the
// order labels first appear. capacity (req/s) is the origin's nominal
// capacity; 0 takes it from the results' origin counters.
//
// The reference for "x unloaded" is the lowest admitted p99 among the
// unloaded levels (below 1x) of all front ends: they all pass requests to
// the same origin, a proxy adds well under a millisecond at that rate, and
// on a shared machine a single scheduling stall inflates one level's p99
// (only the 5 slowest of 500 requests decide it), which would make that
// front end's later ratios look better than they are. Each unloaded row
// shows its own ratio to the reference, so such a stall stays visible.
func writeTable(w io.Writer, results []LoadResult, capacity float64) {
	var labels []string
	by := map[string][]LoadResult{}
	for _, r := range results {
		if _, ok := by[r.Label]; !ok {
			labels = append(labels, r.Label)
		}
		by[r.Label] = append(by[r.Label], r)
		if capacity == 0 && r.Origin != nil {
			capacity = r.Origin.Capacity
		}
	}
	fmt.Fprintln(w, "| front end | load | offered req/s | goodput req/s (of capacity) | goodput, 2nd half | admitted p50 ms | admitted p99 ms (x unloaded) | shed 503/429 | timeouts | other errors | verified ok | origin work for gone clients |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	base := unloadedP99(results)
	for _, l := range labels {
		for _, r := range by[l] {
			good, good2 := fmt.Sprintf("%.0f", r.Goodput), fmt.Sprintf("%.0f", r.Goodput2)
			if capacity > 0 {
				good += fmt.Sprintf(" (%.0f%%)", 100*r.Goodput/capacity)
				good2 += fmt.Sprintf(" (%.0f%%)", 100*r.Goodput2/capacity)
			}
			p50, p99 := "-", "-"
			if r.OK > 0 {
				p50 = fmt.Sprintf("%.1f", r.P50ms)
				p99 = fmt.Sprintf("%.1f", r.P99ms)
				if base > 0 {
					p99 += fmt.Sprintf(" (%.1fx)", r.P99ms/base)
				}
			}
			other := r.OtherStatus + r.ConnErrors + r.Skipped + r.Unfinished
			ver := "-"
			if r.VerSent > 0 {
				ver = fmt.Sprintf("%.1f%%", 100*r.VerShare)
			}
			wasted := "-"
			if r.Origin != nil {
				wasted = fmt.Sprint(r.Origin.Wasted)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %s | %d | %d | %d | %s | %s |\n",
				l, loadName(r.Load), r.OfferedRate, good, good2, p50, p99, r.Shed, r.Timeouts, other, ver, wasted)
		}
	}
}

// unloadedP99 returns the lowest admitted p99 of the runs below 1x, or 0.
func unloadedP99(results []LoadResult) float64 {
	base := 0.0
	for _, r := range results {
		if r.Load < 1 && r.OK > 0 && r.P99ms > 0 && (base == 0 || r.P99ms < base) {
			base = r.P99ms
		}
	}
	return base
}

func loadName(f float64) string {
	s := fmt.Sprintf("%gx", f)
	if f < 1 {
		s += " (unloaded)"
	}
	return s
}
