package accesslog

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

func TestParseCombined(t *testing.T) {
	tests := []struct {
		line   string
		ok     bool
		client string
		time   string
		method string
		path   string
		query  string
		status uint16
		bytes  int64
		ua     string
	}{
		{`192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`,
			true, "192.0.2.1", "2000-10-10T20:55:36Z", "GET", "/apache_pb.gif", "a=1", 200, 2326, "Mozilla/4.08 [en] (Win98; I ;Nav)"},
		{`2001:db8::7 - frank [01/Mar/2026:12:00:00 +0000] "POST /login HTTP/2.0" 403 - "-" "-"`,
			true, "2001:db8::7", "2026-03-01T12:00:00Z", "POST", "/login", "", 403, 0, ""},
		{`192.0.2.1 - - [01/Mar/2026:12:00:00 +0130] "GET / HTTP/1.1" 404 0`,
			true, "192.0.2.1", "2026-03-01T10:30:00Z", "GET", "/", "", 404, 0, ""},
		{`192.0.2.1 - - [01/Mar/2026:12:00:00 +0000] "GET /q HTTP/1.1" 200 5 "-" "agent \"quoted\" here" 0.005 extra`,
			true, "192.0.2.1", "2026-03-01T12:00:00Z", "GET", "/q", "", 200, 5, `agent \"quoted\" here`},
		{`192.0.2.1 - - [01/Mar/2026:12:00:00 +0000] "\x16\x03\x01" 400 150 "-" "-"`,
			true, "192.0.2.1", "2026-03-01T12:00:00Z", "", "", "", 400, 150, ""},
		{`not-an-ip - - [01/Mar/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 1`, false, "", "", "", "", "", 0, 0, ""},
		{`192.0.2.1 - - [01/Foo/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 1`, false, "", "", "", "", "", 0, 0, ""},
		{`192.0.2.1 - - [01/Mar/2026:12:00:00 +0000] "GET / HTTP/1.1 200 1`, false, "", "", "", "", "", 0, 0, ""},
		{`192.0.2.1 - - [01/Mar/2026:12:00:00 +0000] "GET / HTTP/1.1" abc 1`, false, "", "", "", "", "", 0, 0, ""},
		{``, false, "", "", "", "", "", 0, 0, ""},
	}
	scratch := make([]byte, 4096)
	for _, tc := range tests {
		var e Entry
		err := ParseLine([]byte(tc.line), &e, scratch)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.line, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if e.Format != FormatCombined || e.Client != netip.MustParseAddr(tc.client) || e.Time.Format(time.RFC3339) != tc.time ||
			string(e.Method) != tc.method || string(e.Path) != tc.path || string(e.Query) != tc.query || e.Status != tc.status ||
			e.Bytes != tc.bytes || string(e.UserAgent) != tc.ua || e.HasVerdict {
			t.Errorf("%q:\n got %+v (time %s)", tc.line, e, e.Time.Format(time.RFC3339))
		}
	}
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
		want Entry
	}{
		{`{"ts":"2026-03-01T12:00:00.123456789Z","site":"www","client":"192.0.2.1","method":"GET","host":"example.com","path":"/search","query":"q=x","status":200,"ua":"Mozilla/5.0","bytes":5120,"duration_ms":12.5,"verdict":"pass"}`,
			true, Entry{Time: time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC), Site: []byte("www"), Client: netip.MustParseAddr("192.0.2.1"),
				Method: []byte("GET"), Host: []byte("example.com"), Path: []byte("/search"), Query: []byte("q=x"), Status: 200,
				UserAgent: []byte("Mozilla/5.0"), Bytes: 5120, Duration: 12500 * time.Microsecond, Verdict: telemetry.VerdictPass, HasVerdict: true}},
		{` { "verdict" : "blocked", "ts":"2026-03-01T13:00:00+01:00", "client":"2001:db8::1", "extra":{"a":[1,"}"]}, "ua":"a\"b\u00e9\ud83d\ude00", "status":0, "duration_ms":1e3 } `,
			true, Entry{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Client: netip.MustParseAddr("2001:db8::1"), UserAgent: []byte("a\"bé😀"),
				Duration: time.Second, Verdict: telemetry.VerdictBlocked, HasVerdict: true}},
		{`{"ts":"2026-03-01T12:00:00Z","path":null,"ok":true,"n":-1.5}`, true, Entry{Time: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}},
		{`{"client":"192.0.2.1"}`, false, Entry{}},                             // no ts
		{`{"ts":"yesterday"}`, false, Entry{}},                                 // bad ts
		{`{"ts":"2026-03-01T12:00:00Z","verdict":"maybe"}`, false, Entry{}},    // bad verdict
		{`{"ts":"2026-03-01T12:00:00Z","status":1000}`, false, Entry{}},        // bad status
		{`{"ts":"2026-03-01T12:00:00Z"`, false, Entry{}},                       // truncated
		{`{"ts":"2026-03-01T12:00:00Z","ua":"\x"}`, false, Entry{}},            // bad escape
		{`{"ts":"2026-03-01T12:00:00Z","client":"300.1.1.1"}`, false, Entry{}}, // bad address
		{`{"ts":"2026-03-01T12:00:00Z" "path":"/"}`, false, Entry{}},           // missing comma
	}
	scratch := make([]byte, 4096)
	for _, tc := range tests {
		var e Entry
		err := ParseLine([]byte(tc.line), &e, scratch)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err %v, want ok=%v", tc.line, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		tc.want.Format = FormatJSON
		if !equalEntry(&e, &tc.want) {
			t.Errorf("%s:\n got  %+v\n want %+v", tc.line, e, tc.want)
		}
	}
}

func equalEntry(a, b *Entry) bool {
	return a.Format == b.Format && a.Time.Equal(b.Time) && a.Client == b.Client && bytes.Equal(a.Method, b.Method) &&
		bytes.Equal(a.Host, b.Host) && bytes.Equal(a.Path, b.Path) && bytes.Equal(a.Query, b.Query) &&
		bytes.Equal(a.UserAgent, b.UserAgent) && bytes.Equal(a.Site, b.Site) && a.Status == b.Status && a.Bytes == b.Bytes &&
		a.Duration == b.Duration && a.Verdict == b.Verdict && a.HasVerdict == b.HasVerdict &&
		bytes.Equal(a.By, b.By) && bytes.Equal(a.LogRule, b.LogRule)
}

func TestAppendJSONRoundTrip(t *testing.T) {
	in := Entry{Format: FormatJSON, Time: time.Date(2026, 3, 1, 12, 0, 0, 5, time.UTC), Site: []byte("w\"w"), Client: netip.MustParseAddr("2001:db8::1"),
		Method: []byte("GET"), Host: []byte("h"), Path: []byte("/a\\b\x01"), Query: []byte("x=1&y"), Status: 429,
		UserAgent: []byte("ü\xff"), Bytes: 7, Duration: 1500 * time.Microsecond, Verdict: telemetry.VerdictLimited, HasVerdict: true,
		By: []byte("per-address"), LogRule: []byte("watch \"search\"")}
	line := AppendJSON(nil, &in)
	if !bytes.Contains(line, []byte(`"by":"per-address","log_rule":"watch \"search\""}`)) {
		t.Fatalf("by and log_rule missing from %s", line)
	}
	if !bytes.HasSuffix(line, []byte("\n")) {
		t.Fatal("no newline")
	}
	var out Entry
	if err := ParseLine(line[:len(line)-1], &out, make([]byte, len(line))); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	in.UserAgent = []byte("ü\uFFFD") // invalid UTF-8 is replaced
	if !equalEntry(&in, &out) {
		t.Fatalf("round trip of %s:\n got  %+v\n want %+v", line, out, in)
	}
}

func TestEntryEvent(t *testing.T) {
	e := Entry{Client: netip.MustParseAddr("192.0.2.1"), Path: []byte("/p"), Query: []byte("a=1"), Status: 403,
		Verdict: telemetry.VerdictBlocked, HasVerdict: true, Duration: time.Millisecond}
	var ev telemetry.Event
	e.Event(&ev)
	if ev.Status != 0 || ev.Verdict != telemetry.VerdictBlocked || ev.QueryShape == 0 || string(ev.Path) != "/p" {
		t.Fatalf("%+v", ev)
	}
	e.HasVerdict, e.Verdict = false, telemetry.VerdictPass
	e.Event(&ev)
	if ev.Status != 403 || ev.Verdict != telemetry.VerdictPass {
		t.Fatalf("%+v", ev)
	}
}

const sample = `192.0.2.1 - - [01/Mar/2026:12:00:00 +0000] "GET / HTTP/1.1" 200 10 "-" "curl/8"
garbage line

{"ts":"2026-03-01T12:00:01Z","client":"192.0.2.2","path":"/x","status":200,"verdict":"pass"}
192.0.2.3 - - [01/Mar/2026:12:00:02 +0000] "GET /y HTTP/1.1" 500 0 "-" "curl/8"`

func readAll(t *testing.T, r io.Reader) (paths []string, rd *Reader) {
	t.Helper()
	rd, err := NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	for {
		e, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return paths, rd
		}
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, string(e.Path))
	}
}

func TestReader(t *testing.T) {
	var gz bytes.Buffer
	// Two gzip members, as logrotate's delaycompress + cat produce.
	for _, part := range []string{sample[:90], sample[90:]} {
		w := gzip.NewWriter(&gz)
		w.Write([]byte(part))
		w.Close()
	}
	long := sample + "\n" + `192.0.2.9 - - [01/Mar/2026:12:00:03 +0000] "GET /` + strings.Repeat("a", MaxLine) + ` HTTP/1.1" 200 0` + "\n" +
		`192.0.2.9 - - [01/Mar/2026:12:00:04 +0000] "GET /after HTTP/1.1" 200 0` + "\n"
	for _, tc := range []struct {
		name      string
		r         io.Reader
		want      string
		lines     int64
		malformed int64
		bytes     int64
	}{
		{"plain", strings.NewReader(sample), "[/ /x /y]", 5, 1, int64(len(sample))},
		{"gzip", &gz, "[/ /x /y]", 5, 1, int64(len(sample))},
		{"long line skipped", strings.NewReader(long), "[/ /x /y /after]", 7, 2, int64(len(long))},
		{"empty", strings.NewReader(""), "[]", 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			paths, rd := readAll(t, tc.r)
			if got := "[" + strings.Join(paths, " ") + "]"; got != tc.want {
				t.Errorf("paths %s, want %s", got, tc.want)
			}
			if rd.Bytes() != tc.bytes {
				t.Errorf("bytes %d, want %d", rd.Bytes(), tc.bytes)
			}
			if rd.Lines() != tc.lines || rd.Malformed() != tc.malformed {
				t.Errorf("lines %d malformed %d, want %d %d", rd.Lines(), rd.Malformed(), tc.lines, tc.malformed)
			}
		})
	}
	if _, err := NewReader(bytes.NewReader([]byte{0x1f, 0x8b, 0, 0})); err == nil {
		t.Error("broken gzip header accepted")
	}
}

func TestParseAllocs(t *testing.T) {
	lines := [][]byte{
		[]byte(`192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif?a=1 HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08"`),
		[]byte(`{"ts":"2026-03-01T12:00:00.123Z","site":"www","client":"192.0.2.1","method":"GET","host":"h","path":"/s","query":"q=x","status":200,"ua":"M\"o","bytes":5,"duration_ms":12.5,"verdict":"pass"}`),
	}
	scratch := make([]byte, 4096)
	var e Entry
	for _, l := range lines {
		if a := testing.AllocsPerRun(200, func() { _ = ParseLine(l, &e, scratch) }); a != 0 {
			t.Errorf("%s: %.1f allocs per line", l[:20], a)
		}
	}
}

func FuzzParseCombined(f *testing.F) {
	f.Add([]byte(`192.0.2.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a?b HTTP/1.0" 200 2326 "r" "u"`))
	f.Add([]byte(`::1 - - [01/Mar/2026:12:00:00 +0000] "x" 1 -`))
	f.Fuzz(func(t *testing.T, line []byte) {
		if len(line) > 0 && line[0] == '{' {
			return
		}
		scratch := make([]byte, len(line))
		var e Entry
		if err := ParseLine(line, &e, scratch); err != nil {
			return
		}
		if !e.Client.IsValid() || e.Status > 999 || e.Time.IsZero() {
			t.Fatalf("accepted %q as %+v", line, e)
		}
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"ts":"2026-03-01T12:00:00.1Z","client":"192.0.2.1","ua":"a\u00e9","status":200,"duration_ms":1.5,"verdict":"pass","x":[{}]}`))
	f.Add([]byte(`{"ts":"2026-03-01T12:00:00Z","verdict":"limited","by":"per-address","log_rule":"w\u00e9"}`))
	f.Add([]byte(`{"ts":"2026-03-01T12:00:00+01:00","path":"\ud83d\ude00"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		scratch := make([]byte, len(line))
		var e Entry
		if err := ParseLine(append([]byte("{"), line...), &e, append(scratch, 0)); err != nil {
			return
		}
		if e.Time.IsZero() || e.Status > 999 {
			t.Fatalf("accepted %q as %+v", line, e)
		}
		// What parses must survive a write and a re-parse unchanged.
		out := AppendJSON(nil, &e)
		var back Entry
		if err := ParseLine(out[:len(out)-1], &back, make([]byte, len(out))); err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if !back.Time.Equal(e.Time) || back.Client != e.Client || back.Status != e.Status || back.Verdict != e.Verdict ||
			(len(e.By) > 0) != (len(back.By) > 0) || (len(e.LogRule) > 0) != (len(back.LogRule) > 0) {
			t.Fatalf("round trip changed %+v into %+v", e, back)
		}
	})
}
