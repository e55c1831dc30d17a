package accesslog

import (
	"bytes"
	"errors"
	"net/netip"
	"time"

	"github.com/levee-dev/levee/internal/telemetry"
)

// errMalformed reports a line that is not in a known format.
var errMalformed = errors.New("accesslog: malformed line")

// ParseLine parses one line (without its newline) into e. Lines starting
// with '{' are JSON, others combined/common format. scratch must be at
// least len(line) bytes: unescaped JSON strings are written there, and e
// may point into it.
func ParseLine(line []byte, e *Entry, scratch []byte) error {
	line = trimSpace(line)
	if len(line) > 0 && line[0] == '{' {
		return parseJSON(line, e, scratch)
	}
	return parseCombined(line, e)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\r' || b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// parseCombined parses
//
//	host ident user [10/Oct/2000:13:55:36 -0700] "GET /p?q HTTP/1.1" 200 2326 "referer" "agent"
//
// The referer and agent are optional (common log format); fields after
// them are ignored. Quoted strings may contain \" or \x22 escapes.
func parseCombined(line []byte, e *Entry) error {
	e.reset(FormatCombined)
	host, rest, ok := field(line)
	if !ok {
		return errMalformed
	}
	addr, err := netip.ParseAddr(unsafeString(host))
	if err != nil {
		return errMalformed
	}
	e.Client = addr
	if _, rest, ok = field(rest); !ok { // ident
		return errMalformed
	}
	if _, rest, ok = field(rest); !ok { // user
		return errMalformed
	}
	if len(rest) == 0 || rest[0] != '[' {
		return errMalformed
	}
	end := bytes.IndexByte(rest, ']')
	if end < 0 {
		return errMalformed
	}
	t, ok := parseCLFTime(rest[1:end])
	if !ok {
		return errMalformed
	}
	e.Time = t
	rest = skipSpaces(rest[end+1:])
	req, rest, ok := quoted(rest)
	if !ok {
		return errMalformed
	}
	// "METHOD TARGET PROTO"; a garbage request ("-" or binary) keeps an
	// empty path.
	if sp := bytes.IndexByte(req, ' '); sp > 0 {
		e.Method = req[:sp]
		target := req[sp+1:]
		if sp2 := bytes.LastIndexByte(target, ' '); sp2 >= 0 {
			target = target[:sp2]
		}
		if q := bytes.IndexByte(target, '?'); q >= 0 {
			e.Path, e.Query = target[:q], target[q+1:]
		} else {
			e.Path = target
		}
	}
	rest = skipSpaces(rest)
	st, rest, ok := field(rest)
	if !ok {
		return errMalformed
	}
	n, ok := atoi(st)
	if !ok || n > 999 {
		return errMalformed
	}
	e.Status = uint16(n)
	b, rest, ok := field(rest)
	if !ok {
		return errMalformed
	}
	if nb, ok := atoi(b); ok {
		e.Bytes = nb
	}
	rest = skipSpaces(rest)
	if len(rest) == 0 {
		return nil // common log format
	}
	if ref, r2, ok := quoted(rest); ok {
		e.Referer = dash(ref)
		rest = skipSpaces(r2)
		if ua, _, ok := quoted(rest); ok {
			e.UserAgent = dash(ua)
		}
	}
	return nil
}

func dash(b []byte) []byte {
	if len(b) == 1 && b[0] == '-' {
		return nil
	}
	return b
}

// field returns the next space-separated field.
func field(b []byte) (f, rest []byte, ok bool) {
	b = skipSpaces(b)
	if len(b) == 0 {
		return nil, nil, false
	}
	i := bytes.IndexByte(b, ' ')
	if i < 0 {
		return b, nil, true
	}
	return b[:i], b[i+1:], true
}

func skipSpaces(b []byte) []byte {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	return b
}

// quoted returns the content of a double-quoted string (escapes left as
// they are) and what follows it.
func quoted(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	for i := 1; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return b[1:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

var months = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// parseCLFTime parses "10/Oct/2000:13:55:36 -0700".
func parseCLFTime(b []byte) (time.Time, bool) {
	if len(b) != 26 || b[2] != '/' || b[6] != '/' || b[11] != ':' || b[14] != ':' || b[17] != ':' || b[20] != ' ' {
		return time.Time{}, false
	}
	day, ok1 := atoi(b[0:2])
	year, ok2 := atoi(b[7:11])
	hh, ok3 := atoi(b[12:14])
	mm, ok4 := atoi(b[15:17])
	ss, ok5 := atoi(b[18:20])
	if !(ok1 && ok2 && ok3 && ok4 && ok5) {
		return time.Time{}, false
	}
	mon := -1
	for i, m := range months {
		if string(b[3:6]) == m {
			mon = i
			break
		}
	}
	if mon < 0 {
		return time.Time{}, false
	}
	off, ok := parseOffset(b[21:], false)
	if !ok {
		return time.Time{}, false
	}
	return makeTime(year, int64(mon+1), day, hh, mm, ss, 0, off)
}

// parseOffset parses "-0700" (colon false) or "-07:00" (colon true).
func parseOffset(b []byte, colon bool) (int64, bool) {
	want := 5
	if colon {
		want = 6
	}
	if len(b) != want || (b[0] != '+' && b[0] != '-') {
		return 0, false
	}
	hs, ms := b[1:3], b[3:5]
	if colon {
		if b[3] != ':' {
			return 0, false
		}
		ms = b[4:6]
	}
	h, ok1 := atoi(hs)
	m, ok2 := atoi(ms)
	if !ok1 || !ok2 || h > 23 || m > 59 {
		return 0, false
	}
	off := (h*60 + m) * 60
	if b[0] == '-' {
		off = -off
	}
	return off, true
}

func makeTime(year, mon, day, hh, mm, ss, nsec, off int64) (time.Time, bool) {
	if mon < 1 || mon > 12 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 {
		return time.Time{}, false
	}
	t := time.Date(int(year), time.Month(mon), int(day), int(hh), int(mm), int(ss), int(nsec), time.UTC)
	return t.Add(-time.Duration(off) * time.Second), true
}

// parseRFC3339 parses "2006-01-02T15:04:05[.999999999](Z|±07:00)".
func parseRFC3339(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[4] != '-' || b[7] != '-' || (b[10] != 'T' && b[10] != 't' && b[10] != ' ') || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := atoi(b[0:4])
	mon, ok2 := atoi(b[5:7])
	day, ok3 := atoi(b[8:10])
	hh, ok4 := atoi(b[11:13])
	mm, ok5 := atoi(b[14:16])
	ss, ok6 := atoi(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return time.Time{}, false
	}
	rest := b[19:]
	var nsec int64
	if rest[0] == '.' {
		i := 1
		scale := int64(100000000)
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			nsec += int64(rest[i]-'0') * scale
			scale /= 10
			i++
		}
		if i == 1 || i > 10 {
			return time.Time{}, false
		}
		rest = rest[i:]
	}
	var off int64
	switch {
	case len(rest) == 1 && (rest[0] == 'Z' || rest[0] == 'z'):
	default:
		var ok bool
		if off, ok = parseOffset(rest, true); !ok {
			return time.Time{}, false
		}
	}
	return makeTime(year, mon, day, hh, mm, ss, nsec, off)
}

// verdictOf maps a verdict name without allocating.
func verdictOf(b []byte) (telemetry.Verdict, bool) {
	for v := range telemetry.NumVerdicts {
		if string(b) == v.String() {
			return v, true
		}
	}
	return 0, false
}
