// Package accesslog reads web server access logs as a stream: nginx/Apache
// "combined" (and "common") format and Levee's own JSON access log, plain or
// gzip-compressed (detected by its magic bytes). Lines are parsed in place
// into a reused Entry without allocating; memory stays constant whatever the
// size of the log.
//
// # Levee JSON access log
//
// One JSON object per line, UTF-8, fields in any order, unknown fields
// ignored:
//
//	{"ts":"2026-03-01T12:00:00.123456789Z","site":"www","client":"192.0.2.1",
//	 "method":"GET","host":"example.com","path":"/search","query":"q=x",
//	 "status":200,"ua":"Mozilla/5.0 ...","bytes":5120,"duration_ms":12.5,
//	 "verdict":"pass","by":"per-address","log_rule":"watch-search"}
//
//	ts           RFC 3339 time with optional fraction (when the request ended)
//	site         site name from the configuration
//	client       client address after PROXY protocol / trusted proxies
//	method, host request method and Host header
//	path, query  URL path and raw query (without "?"), as received
//	status       status sent to the client (0: connection closed)
//	ua           User-Agent header
//	bytes        response body bytes sent
//	duration_ms  time to the origin's response in milliseconds (float)
//	verdict      pass | blocked | limited | challenged | invalid | error
//	by           the rule, limit or list that decided (omitted for a plain pass)
//	log_rule     the first rule with action log, or in dry run, that matched
//	             (omitted if none)
//
// Writers should use [AppendJSON], which produces exactly this format.
package accesslog

import (
	"net/netip"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

// Format is the detected format of a line.
type Format uint8

// Formats.
const (
	FormatCombined Format = iota // nginx/Apache combined or common log format
	FormatJSON                   // Levee JSON access log
)

func (f Format) String() string {
	if f == FormatJSON {
		return "json"
	}
	return "combined"
}

// Entry is one parsed log line. Byte-slice fields point into the reader's
// buffer and are valid until the next call to Next. The zero value is an
// empty entry.
type Entry struct {
	Format     Format
	Time       time.Time
	Client     netip.Addr
	Method     []byte
	Host       []byte
	Path       []byte
	Query      []byte
	UserAgent  []byte
	Referer    []byte
	Site       []byte
	Status     uint16
	Bytes      int64
	Duration   time.Duration // 0: unknown
	Verdict    telemetry.Verdict
	HasVerdict bool   // the line carried a verdict (JSON format)
	By         []byte // what decided: rule, limit or list name (JSON format)
	LogRule    []byte // log-only or dry-run rule that matched (JSON format)
}

func (e *Entry) reset(f Format) {
	*e = Entry{Format: f}
}

// Event fills ev from the entry for telemetry.Recorder.Record. Without a
// verdict, the request is taken as passed and its status as the origin's.
func (e *Entry) Event(ev *telemetry.Event) {
	*ev = telemetry.Event{
		Time:       e.Time.UnixNano(),
		Client:     e.Client,
		Path:       e.Path,
		QueryShape: telemetry.QueryShape(e.Query),
		UserAgent:  e.UserAgent,
		Verdict:    e.Verdict,
		Status:     e.Status,
		Latency:    e.Duration,
	}
	if e.HasVerdict && e.Verdict.Mitigated() {
		ev.Status = 0 // answered by the shield, not the origin
	}
}
