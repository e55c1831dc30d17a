package accesslog

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/levee-dev/levee/internal/telemetry"
)

// unsafeString views b as a string for parsing functions that do not keep
// it (netip.ParseAddr).
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// parseJSON parses one flat JSON object. Nested values of unknown fields
// are skipped.
func parseJSON(line []byte, e *Entry, scratch []byte) error {
	e.reset(FormatJSON)
	p := jsonParser{b: line, scratch: scratch[:0]}
	p.ws()
	if !p.eat('{') {
		return errMalformed
	}
	var haveTime bool
	for {
		p.ws()
		if p.eat('}') {
			break
		}
		key, ok := p.str()
		if !ok {
			return errMalformed
		}
		p.ws()
		if !p.eat(':') {
			return errMalformed
		}
		p.ws()
		switch string(key) {
		case "ts", "site", "client", "method", "host", "path", "query", "ua", "verdict", "by", "log_rule":
			if p.peek() == 'n' { // null
				if !p.skip() {
					return errMalformed
				}
				break
			}
			v, ok := p.str()
			if !ok {
				return errMalformed
			}
			switch string(key) {
			case "ts":
				t, ok := parseRFC3339(v)
				if !ok {
					return errMalformed
				}
				e.Time, haveTime = t, true
			case "site":
				e.Site = v
			case "client":
				if len(v) == 0 { // no address known (what AppendJSON writes then)
					break
				}
				a, err := netipParse(v)
				if err != nil {
					return errMalformed
				}
				e.Client = a
			case "method":
				e.Method = v
			case "host":
				e.Host = v
			case "path":
				e.Path = v
			case "query":
				e.Query = v
			case "ua":
				e.UserAgent = v
			case "by":
				e.By = v
			case "log_rule":
				e.LogRule = v
			case "verdict":
				vd, ok := verdictOf(v)
				if !ok {
					return errMalformed
				}
				e.Verdict, e.HasVerdict = vd, true
			}
		case "status", "bytes", "duration_ms":
			num, ok := p.number()
			if !ok {
				return errMalformed
			}
			switch string(key) {
			case "status":
				n, ok := atoi(num)
				if !ok || n > 999 {
					return errMalformed
				}
				e.Status = uint16(n)
			case "bytes":
				if n, ok := atoi(num); ok {
					e.Bytes = n
				}
			case "duration_ms":
				d, ok := parseMillis(num)
				if !ok {
					return errMalformed
				}
				e.Duration = d
			}
		default:
			if !p.skip() {
				return errMalformed
			}
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			break
		}
		return errMalformed
	}
	if !haveTime {
		return errMalformed
	}
	return nil
}

type jsonParser struct {
	b       []byte
	i       int
	scratch []byte
}

func (p *jsonParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) peek() byte {
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *jsonParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str parses a string. Without escapes it returns a slice of the line;
// with escapes it unescapes into scratch (which has room for the whole
// line, so earlier results stay valid).
func (p *jsonParser) str() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			s := p.b[start:p.i]
			p.i++
			return s, true
		}
		if c == '\\' {
			return p.strEscaped(start)
		}
		if c < 0x20 {
			return nil, false
		}
		p.i++
	}
	return nil, false
}

func (p *jsonParser) strEscaped(start int) ([]byte, bool) {
	out := len(p.scratch)
	if cap(p.scratch)-out < len(p.b)-start {
		return nil, false // scratch too small (ParseLine's contract)
	}
	p.scratch = append(p.scratch, p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.scratch[out:], true
		case c < 0x20:
			return nil, false
		case c != '\\':
			p.scratch = append(p.scratch, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			return nil, false
		}
		esc := p.b[p.i+1]
		p.i += 2
		switch esc {
		case '"', '\\', '/':
			p.scratch = append(p.scratch, esc)
		case 'b':
			p.scratch = append(p.scratch, '\b')
		case 'f':
			p.scratch = append(p.scratch, '\f')
		case 'n':
			p.scratch = append(p.scratch, '\n')
		case 'r':
			p.scratch = append(p.scratch, '\r')
		case 't':
			p.scratch = append(p.scratch, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, false
			}
			if r >= 0xd800 && r < 0xdc00 && p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
				p.i += 2
				lo, ok := p.hex4()
				if !ok {
					return nil, false
				}
				r = 0x10000 + (r-0xd800)<<10 + (lo - 0xdc00)
				if lo < 0xdc00 || lo > 0xdfff {
					r = utf8.RuneError
				}
			}
			p.scratch = utf8.AppendRune(p.scratch, r)
		default:
			return nil, false
		}
	}
	return nil, false
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// number returns the bytes of a JSON number.
func (p *jsonParser) number() ([]byte, bool) {
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
			p.i++
			continue
		}
		break
	}
	return p.b[start:p.i], p.i > start
}

// skip skips any JSON value.
func (p *jsonParser) skip() bool {
	switch c := p.peek(); {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '{' || c == '[':
		depth := 0
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case '"':
				if _, ok := p.str(); !ok {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					p.i++
					return true
				}
			}
			p.i++
		}
		return false
	case c == 't':
		return p.word("true")
	case c == 'f':
		return p.word("false")
	case c == 'n':
		return p.word("null")
	default:
		_, ok := p.number()
		return ok
	}
}

func (p *jsonParser) word(w string) bool {
	if p.i+len(w) <= len(p.b) && string(p.b[p.i:p.i+len(w)]) == w {
		p.i += len(w)
		return true
	}
	return false
}

// parseMillis parses a decimal number of milliseconds ("12", "12.345",
// "1e3").
func parseMillis(b []byte) (time.Duration, bool) {
	var whole, frac, scale int64 = 0, 0, 1
	i := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i < 12 {
		whole = whole*10 + int64(b[i]-'0')
		i++
	}
	if i == len(b) && i > 0 {
		return time.Duration(whole) * time.Millisecond, true
	}
	if i > 0 && i < len(b) && b[i] == '.' {
		j := i + 1
		for j < len(b) && b[j] >= '0' && b[j] <= '9' && scale < 1e6 {
			frac = frac*10 + int64(b[j]-'0')
			scale *= 10
			j++
		}
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++ // beyond nanoseconds
		}
		if j == len(b) && j > i+1 {
			return time.Duration(whole)*time.Millisecond + time.Duration(frac*int64(time.Millisecond)/scale), true
		}
	}
	// Rare forms (exponents, signs): the slow path.
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f < 0 || f > 1e12 {
		return 0, false
	}
	return time.Duration(f * float64(time.Millisecond)), true
}

func netipParse(b []byte) (netip.Addr, error) { return netip.ParseAddr(unsafeString(b)) }

// AppendJSON appends e as one line of Levee's JSON access log (with the
// trailing newline). The shield's access logger should write exactly this.
func AppendJSON(dst []byte, e *Entry) []byte {
	dst = append(dst, `{"ts":"`...)
	dst = e.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","site":`...)
	dst = appendJSONString(dst, e.Site)
	dst = append(dst, `,"client":"`...)
	if e.Client.IsValid() {
		dst = e.Client.AppendTo(dst)
	}
	dst = append(dst, `","method":`...)
	dst = appendJSONString(dst, e.Method)
	dst = append(dst, `,"host":`...)
	dst = appendJSONString(dst, e.Host)
	dst = append(dst, `,"path":`...)
	dst = appendJSONString(dst, e.Path)
	dst = append(dst, `,"query":`...)
	dst = appendJSONString(dst, e.Query)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendUint(dst, uint64(e.Status), 10)
	dst = append(dst, `,"ua":`...)
	dst = appendJSONString(dst, e.UserAgent)
	dst = append(dst, `,"bytes":`...)
	dst = strconv.AppendInt(dst, e.Bytes, 10)
	dst = append(dst, `,"duration_ms":`...)
	dst = strconv.AppendFloat(dst, float64(e.Duration)/float64(time.Millisecond), 'f', -1, 64)
	dst = append(dst, `,"verdict":"`...)
	dst = append(dst, e.Verdict.String()...)
	dst = append(dst, '"')
	if len(e.By) > 0 {
		dst = append(dst, `,"by":`...)
		dst = appendJSONString(dst, e.By)
	}
	if len(e.LogRule) > 0 {
		dst = append(dst, `,"log_rule":`...)
		dst = appendJSONString(dst, e.LogRule)
	}
	dst = append(dst, "}\n"...)
	return dst
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends b as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst, b []byte) []byte {
	dst = append(dst, '"')
	for len(b) > 0 {
		c := b[0]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20 || c == 0x7f:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\\ufffd"...)
		} else {
			dst = append(dst, b[:n]...)
		}
		b = b[n:]
	}
	return append(dst, '"')
}

var _ = telemetry.VerdictPass
