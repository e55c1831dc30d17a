package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/levee-dev/levee/internal/accesslog"
	"github.com/levee-dev/levee/internal/incident"
	"github.com/levee-dev/levee/internal/telemetry"
)

func init() {
	register(command{
		name:    "analyze",
		summary: "run the attack detector over access logs: levee analyze [--out DIR] FILE...",
		run:     runAnalyze,
	})
}

// analyzeReport is report.json.
type analyzeReport struct {
	Files     []string             `json:"files"`
	Bytes     int64                `json:"bytes"`     // on disk
	LogBytes  int64                `json:"log_bytes"` // decompressed
	Lines     int64                `json:"lines"`
	Malformed int64                `json:"malformed"`
	Seconds   float64              `json:"elapsed_seconds"`
	MBps      float64              `json:"mb_per_second"`
	Stats     accesslog.Stats      `json:"stats"`
	Incidents []*incident.Incident `json:"incidents"`
}

func runAnalyze(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("analyze", "[flags] FILE... (oldest first; .gz accepted)", stderr)
	out := fs.String("out", "", "write report.json, sources.csv, blocklist.txt and abuse.txt into this directory")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of text")
	geoip := fs.String("geoip", "", "comma-separated MaxMind .mmdb files (country and/or ASN) for sources")
	site := fs.String("site", "", "only lines of this site (Levee JSON logs)")
	warmUp := fs.Duration("warm-up", time.Minute, "traffic history needed before an attack can be declared")
	halfLife := fs.Duration("half-life", 5*time.Minute, "half-life of the learned baseline")
	ratio := fs.Float64("ratio", 2.5, "how many times its baseline a metric must reach to be an attack")
	progress := fs.String("progress", "auto", "progress bar on stderr: auto (when a terminal), always, never")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	showProgress := false
	switch *progress {
	case "always":
		showProgress = true
	case "never":
	case "auto":
		if f, ok := stderr.(*os.File); ok {
			if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
				showProgress = true
			}
		}
	default:
		fmt.Fprintf(stderr, "levee analyze: --progress %q: want auto, always or never\n", *progress)
		return errUsage
	}

	var deps accesslog.AnalyzerDeps
	if *geoip != "" {
		g, err := telemetry.OpenGeoIP(strings.Split(*geoip, ",")...)
		if err != nil {
			return err
		}
		defer g.Close()
		deps.Geo = g
	}
	cfg := accesslog.AnalyzerConfig{Site: *site}
	cfg.Detect.WarmUp, cfg.Detect.HalfLife, cfg.Detect.Ratio = *warmUp, *halfLife, *ratio
	if cfg.Detect.EndRatio == 0 && cfg.Detect.Ratio < 1.5 {
		cfg.Detect.EndRatio = cfg.Detect.Ratio
	}
	an, err := accesslog.NewAnalyzer(cfg, deps)
	if err != nil {
		return err
	}

	var total int64
	for _, p := range pos {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		total += fi.Size()
	}
	rep := analyzeReport{Files: pos, Bytes: total}
	bar := &progressBar{w: stderr, on: showProgress, total: total}
	start := time.Now()
	var done int64
	for _, p := range pos {
		lines, malformed, n, logBytes, err := analyzeFile(an, p, func(read int64) { bar.update(done+read, len(an.Incidents())) })
		rep.LogBytes += logBytes
		rep.Lines += lines
		rep.Malformed += malformed
		done += n
		if err != nil {
			bar.clear()
			return fmt.Errorf("analyze: %s: %w", p, err)
		}
	}
	bar.clear()
	incs, st := an.Finish()
	rep.Stats, rep.Incidents = st, incs
	rep.Seconds = time.Since(start).Seconds()
	if rep.Seconds > 0 {
		rep.MBps = float64(rep.LogBytes) / 1e6 / rep.Seconds
	}
	if rep.Incidents == nil {
		rep.Incidents = []*incident.Incident{}
	}

	if *out != "" {
		if err := writeAnalyzeOutputs(*out, &rep); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(&rep)
	}
	printAnalyzeReport(stdout, &rep)
	if *out != "" {
		fmt.Fprintf(stdout, "\nWrote %s\n", strings.Join([]string{
			filepath.Join(*out, "report.json"), filepath.Join(*out, "sources.csv"),
			filepath.Join(*out, "blocklist.txt"), filepath.Join(*out, "abuse.txt")}, ", "))
	}
	return nil
}

// countingReader counts the bytes read from the file (compressed bytes for
// .gz), for the progress bar.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func analyzeFile(an *accesslog.Analyzer, path string, progress func(int64)) (lines, malformed, size, logBytes int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer f.Close()
	cr := &countingReader{r: f}
	rd, err := accesslog.NewReader(cr)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	for i := 0; ; i++ {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rd.Lines(), rd.Malformed(), cr.n, rd.Bytes(), err
		}
		an.Feed(e)
		if i&0x3fff == 0 {
			progress(cr.n)
		}
	}
	return rd.Lines(), rd.Malformed(), cr.n, rd.Bytes(), nil
}

// progressBar draws "[=====>    ]  45%  120 MB/s  2 attacks" on a terminal,
// at most 5 times a second.
type progressBar struct {
	w     io.Writer
	on    bool
	total int64
	start time.Time
	last  time.Time
	drawn bool
}

func (b *progressBar) update(done int64, attacks int) {
	if !b.on {
		return
	}
	now := time.Now()
	if b.start.IsZero() {
		b.start = now
	}
	if now.Sub(b.last) < 200*time.Millisecond {
		return
	}
	b.last = now
	frac := 0.0
	if b.total > 0 {
		frac = min(1, float64(done)/float64(b.total))
	}
	const width = 30
	fill := int(frac * width)
	bar := strings.Repeat("=", fill) + strings.Repeat(" ", width-fill)
	if fill < width {
		bar = bar[:fill] + ">" + bar[fill+1:]
	}
	rate := 0.0
	if el := now.Sub(b.start).Seconds(); el > 0 {
		rate = float64(done) / 1e6 / el
	}
	fmt.Fprintf(b.w, "\r[%s] %3.0f%%  %6.1f MB/s  %d attack(s)", bar, 100*frac, rate, attacks)
	b.drawn = true
}

func (b *progressBar) clear() {
	if b.drawn {
		fmt.Fprintf(b.w, "\r%s\r", strings.Repeat(" ", 70))
		b.drawn = false
	}
}

func printAnalyzeReport(w io.Writer, rep *analyzeReport) {
	fmt.Fprintf(w, "Read %d lines (%d malformed) from %d file(s): %.1f MB of log (%.1f MB on disk) in %.1f s (%.1f MB/s)\n",
		rep.Lines, rep.Malformed, len(rep.Files), float64(rep.LogBytes)/1e6, float64(rep.Bytes)/1e6, rep.Seconds, rep.MBps)
	if !rep.Stats.First.IsZero() {
		fmt.Fprintf(w, "Log time %s - %s", rep.Stats.First.UTC().Format(time.RFC3339), rep.Stats.Last.UTC().Format(time.RFC3339))
		if rep.Stats.OutOfOrder > 0 || rep.Stats.Gaps > 0 {
			fmt.Fprintf(w, " (%d late lines, %d gaps skipped)", rep.Stats.OutOfOrder, rep.Stats.Gaps)
		}
		fmt.Fprintln(w)
	}
	if len(rep.Incidents) == 0 {
		fmt.Fprintln(w, "\nNo attack found.")
		return
	}
	fmt.Fprintf(w, "\n%d attack(s):\n", len(rep.Incidents))
	for i, inc := range rep.Incidents {
		fmt.Fprintf(w, "\n#%d  ", i+1)
		if err := incident.WriteReport(w, inc); err != nil {
			fmt.Fprintf(w, "(%v)\n", err)
		}
	}
}

func writeAnalyzeOutputs(dir string, rep *analyzeReport) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	write := func(name string, fn func(io.Writer) error) error {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("analyze: %s: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("analyze: %w", err)
		}
		return nil
	}
	if err := write("report.json", func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}); err != nil {
		return err
	}
	if err := write("sources.csv", func(w io.Writer) error { return incident.WriteSourcesCSV(w, rep.Incidents...) }); err != nil {
		return err
	}
	var all []netip.Prefix
	for _, inc := range rep.Incidents {
		all = append(all, incident.Blocklist(inc, incident.BlocklistOptions{})...)
	}
	all = incident.MergePrefixes(all)
	header := fmt.Sprintf("levee analyze blocklist: %d attack(s) in %s", len(rep.Incidents), strings.Join(rep.Files, ", "))
	if err := write("blocklist.txt", func(w io.Writer) error { return incident.WriteBlocklist(w, header, all) }); err != nil {
		return err
	}
	return write("abuse.txt", func(w io.Writer) error {
		for i, inc := range rep.Incidents {
			if i > 0 {
				fmt.Fprintln(w)
			}
			if err := incident.WriteAbuseSummary(w, inc, incident.AbuseSummary(inc)); err != nil {
				return err
			}
		}
		return nil
	})
}
