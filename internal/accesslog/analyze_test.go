package accesslog

import (
	"bufio"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/detect"
	"github.com/levee-dev/levee/internal/incident"
	"github.com/levee-dev/levee/internal/telemetry"
)

var logStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// attackLog describes a generated log: normal traffic at Rate requests per
// second for Seconds seconds, plus an attack at AttackRate from
// AttackStart for AttackLen seconds, from 256 bots in 16 /24s with one
// user agent.
type attackLog struct {
	Seconds, Rate          int
	AttackStart, AttackLen int
	AttackRate             int
	JSON                   bool
}

// write generates the log (deterministic) into w.
func (l attackLog) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	rng := rand.New(rand.NewPCG(99, 1))
	uas := make([]string, 20)
	for i := range uas {
		uas[i] = fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64; rv:%d.0) Gecko/20100101 Firefox/%d.0", 100+i, 100+i)
	}
	var line []byte
	var e Entry
	emit := func(t time.Time, client netip.Addr, path, ua string, status int) {
		if l.JSON {
			e = Entry{Time: t, Site: []byte("www"), Client: client, Method: []byte("GET"), Host: []byte("example.com"),
				Path: []byte(path), Status: uint16(status), UserAgent: []byte(ua), Bytes: 1234, Duration: 15 * time.Millisecond}
			line = AppendJSON(line[:0], &e)
		} else {
			line = fmt.Appendf(line[:0], "%s - - [%s] \"GET %s HTTP/1.1\" %d 1234 \"-\" \"%s\"\n",
				client, t.Format("02/Jan/2006:15:04:05 -0700"), path, status, ua)
		}
		bw.Write(line)
	}
	for s := range l.Seconds {
		t := logStart.Add(time.Duration(s) * time.Second)
		n := l.Rate + rng.IntN(l.Rate/5+1) - l.Rate/10
		for range n {
			u := rng.IntN(2000)
			emit(t, netip.AddrFrom4([4]byte{100, 64, byte(u / 200), byte(u%200 + 1)}),
				fmt.Sprintf("/page/%d", rng.IntN(200)), uas[rng.IntN(len(uas))], 200)
		}
		if s >= l.AttackStart && s < l.AttackStart+l.AttackLen {
			for range l.AttackRate {
				b := rng.IntN(256)
				emit(t, netip.AddrFrom4([4]byte{203, 0, byte(b / 16), byte(b%16 + 10)}), "/search", "EvilBot/3.1", 200)
			}
		}
	}
	return bw.Flush()
}

func writeGz(t testing.TB, dir string, l attackLog) string {
	t.Helper()
	path := filepath.Join(dir, "access.log.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	if err := l.write(gz); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func analyzeFile(t testing.TB, path string, cfg AnalyzerConfig) ([]*incident.Incident, Stats, *Reader) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rd, err := NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	an, err := NewAnalyzer(cfg, AnalyzerDeps{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		an.Feed(e)
	}
	incs, st := an.Finish()
	return incs, st, rd
}

// TestAnalyzeKnownAttack: a generated log with one attack window; analyze
// must find exactly that window, its signature and its sources.
func TestAnalyzeKnownAttack(t *testing.T) {
	for _, format := range []string{"combined", "json"} {
		t.Run(format, func(t *testing.T) {
			l := attackLog{Seconds: 420, Rate: 100, AttackStart: 240, AttackLen: 60, AttackRate: 1500, JSON: format == "json"}
			path := writeGz(t, t.TempDir(), l)
			incs, st, rd := analyzeFile(t, path, AnalyzerConfig{})
			if rd.Malformed() != 0 || st.Entries != rd.Lines() || st.OutOfOrder != 0 {
				t.Fatalf("lines %d malformed %d entries %d out of order %d", rd.Lines(), rd.Malformed(), st.Entries, st.OutOfOrder)
			}
			if len(incs) != 1 {
				for _, inc := range incs {
					t.Logf("incident %s %v - %v %v", inc.ID, inc.Start, inc.End, inc.Kinds)
				}
				t.Fatalf("%d incidents, want 1", len(incs))
			}
			inc := incs[0]
			start := logStart.Add(time.Duration(l.AttackStart) * time.Second)
			end := start.Add(time.Duration(l.AttackLen) * time.Second)
			if inc.Start.Before(start) || inc.Start.After(start.Add(2*time.Second)) {
				t.Errorf("incident starts %v, attack %v", inc.Start, start)
			}
			if inc.End.Before(end.Add(10*time.Second)) || inc.End.After(end.Add(15*time.Second)) {
				t.Errorf("incident ends %v, attack ended %v (quiet period 10 s)", inc.End, end)
			}
			if inc.PeakRequests < 1500 || inc.UserAgents[0].Value != "EvilBot/3.1" || inc.Paths[0].Value != "/search" {
				t.Errorf("peak %v top ua %q path %q", inc.PeakRequests, inc.UserAgents[0].Value, inc.Paths[0].Value)
			}
			var sig *detect.Mitigation
			for i, r := range inc.Rules {
				t.Logf("rule %s", r.String())
				for _, c := range r.Match.All {
					// The attack differs in two attributes; either identifies it.
					if (c.Attr == telemetry.AttrUserAgent && fmt.Sprint(c.Values) == "[EvilBot/3.1]") ||
						(c.Attr == telemetry.AttrPath && fmt.Sprint(c.Values) == "[/search]") {
						sig = &inc.Rules[i]
					}
				}
			}
			if sig == nil || sig.Action.Kind != detect.ActionBlock {
				t.Fatalf("no block rule on the bot user agent or path")
			}
			bl := incident.Blocklist(inc, incident.BlocklistOptions{})
			// 16 /24s of 16 bots each: merged into 203.0.0.0/20.
			if fmt.Sprint(bl) != "[203.0.0.0/20]" {
				t.Errorf("blocklist %v", bl)
			}
		})
	}
}

// TestAnalyzeCleanLog: a log without an attack gives no incident.
func TestAnalyzeCleanLog(t *testing.T) {
	path := writeGz(t, t.TempDir(), attackLog{Seconds: 600, Rate: 80})
	incs, _, _ := analyzeFile(t, path, AnalyzerConfig{})
	if len(incs) != 0 {
		t.Fatalf("%d incidents in a clean log: %+v", len(incs), incs[0].Kinds)
	}
}

func TestAnalyzerGapsAndOrder(t *testing.T) {
	an, err := NewAnalyzer(AnalyzerConfig{Site: "www", MaxGap: time.Minute}, AnalyzerDeps{})
	if err != nil {
		t.Fatal(err)
	}
	feed := func(ts time.Time, site string) {
		e := Entry{Time: ts, Site: []byte(site), Client: netip.MustParseAddr("192.0.2.1"), Path: []byte("/")}
		an.Feed(&e)
	}
	feed(logStart, "www")
	feed(logStart.Add(10*time.Second), "www")
	feed(logStart.Add(5*time.Second), "www") // late line
	feed(logStart.Add(time.Hour), "www")     // gap
	feed(logStart.Add(time.Hour), "other")   // other site
	_, st := an.Finish()
	if st.Entries != 4 || st.OutOfOrder != 1 || st.Gaps != 1 || st.Filtered != 1 || !st.Last.Equal(logStart.Add(time.Hour)) || !st.First.Equal(logStart) {
		t.Fatalf("stats %+v", st)
	}
	if _, err := NewAnalyzer(AnalyzerConfig{MaxGap: time.Millisecond}, AnalyzerDeps{}); err == nil {
		t.Fatal("tiny MaxGap accepted")
	}
}

var analyzeMB = flag.Int("analyze.mb", 50, "size in MB of the log BenchmarkAnalyze generates")

// BenchmarkAnalyze measures end-to-end analyze throughput (parse, record,
// detect, track) on a generated gzip-free combined log of -analyze.mb MB
// with one attack, written to a temporary directory.
func BenchmarkAnalyze(b *testing.B) {
	// About 150 bytes per line: size the normal rate so the file reaches
	// the requested size over 30 minutes of log time.
	secs := 1800
	rate := *analyzeMB * 1e6 / 150 / secs
	l := attackLog{Seconds: secs, Rate: rate, AttackStart: 900, AttackLen: 60, AttackRate: 10 * rate}
	path := filepath.Join(b.TempDir(), "access.log")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := l.write(f); err != nil {
		b.Fatal(err)
	}
	f.Close()
	fi, _ := os.Stat(path)
	b.SetBytes(fi.Size())
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	for range b.N {
		incs, _, _ := analyzeFile(b, path, AnalyzerConfig{})
		if len(incs) != 1 {
			b.Fatalf("%d incidents", len(incs))
		}
	}
	// MB per CPU second: what the analysis costs without the waits of a
	// shared machine.
	if used := (processCPU() - cpu).Seconds(); used > 0 {
		b.ReportMetric(float64(fi.Size())*float64(b.N)/1e6/used, "MB/cpu-s")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/1e6, "heap-MB")
}
