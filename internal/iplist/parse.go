package iplist

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Format is a prefix list file format. The zero value is FormatAuto.
type Format int

const (
	// FormatAuto detects the format from the content: a first entry line
	// starting with '{' is Spamhaus JSON, an entry followed by "; SBL..."
	// or a header naming Spamhaus is Spamhaus text, a header naming FireHOL
	// is a netset, anything else is a plain list.
	FormatAuto Format = iota
	// FormatPlain is one IP, CIDR or range (a-b) per line; '#' and ';'
	// start comments; a bare address is a /32 or /128.
	FormatPlain
	// FormatNetset is a FireHOL .netset or .ipset file: a plain list with a
	// '#' comment header.
	FormatNetset
	// FormatSpamhausJSON is Spamhaus DROP in JSON lines: one
	// {"cidr":...,"sblid":...,"rir":...} object per line and a final
	// {"type":"metadata",...} line.
	FormatSpamhausJSON
	// FormatSpamhausText is the legacy Spamhaus DROP text form:
	// "1.10.16.0/20 ; SBL256894" lines after a ';' comment header.
	FormatSpamhausText
)

var formatNames = [...]string{"auto", "plain", "netset", "spamhaus-json", "spamhaus-text"}

// String returns the configuration name of the format.
func (f Format) String() string {
	if f >= 0 && int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat returns the Format with the given configuration name
// ("auto", "plain", "netset", "spamhaus-json", "spamhaus-text"); the empty
// string is "auto".
func ParseFormat(s string) (Format, error) {
	if s == "" {
		return FormatAuto, nil
	}
	for i, n := range formatNames {
		if strings.EqualFold(s, n) {
			return Format(i), nil
		}
	}
	return 0, fmt.Errorf("iplist: unknown list format %q (want one of %s)", s, strings.Join(formatNames[:], ", "))
}

// Entry is one prefix read from a list. It is a plain value.
type Entry struct {
	Prefix  netip.Prefix // masked: host bits are zero
	Line    int          // 1-based line number
	Comment string       // Spamhaus SBL id, or the text of a trailing comment
}

// ParseOptions control Parse. The zero value auto-detects the format and is
// strict.
type ParseOptions struct {
	// Format of the input; default FormatAuto.
	Format Format
	// Lenient skips and counts bad lines instead of failing on the first
	// one. Use it for third-party feeds; leave it false for lists declared
	// in the configuration.
	Lenient bool
	// Name identifies the input in errors, usually the file path.
	// Default "<input>".
	Name string
	// MaxLineBytes is the longest accepted line; longer lines are bad
	// lines. Default 4096 bytes.
	MaxLineBytes int
}

// ParseStats describes a parsed input. It is a plain value owned by the
// caller of Parse.
type ParseStats struct {
	Format  Format // the format used (detected when FormatAuto was asked)
	Lines   int    // lines read
	Entries int    // entries passed to the callback
	Skipped int    // bad lines skipped (lenient mode only)
	// Errors holds the first few bad-line errors of a lenient parse, for logs.
	Errors []error
	// Meta is the Spamhaus JSON metadata line, nil if absent.
	Meta *SpamhausMeta
	// Warnings are problems with the input as a whole that a lenient parse
	// tolerated, such as a metadata record count that does not match.
	Warnings []string
}

// SpamhausMeta is the metadata line of a Spamhaus JSON file. It is a plain
// value.
type SpamhausMeta struct {
	Timestamp int64  `json:"timestamp"`
	Size      int64  `json:"size"`
	Records   int    `json:"records"`
	Copyright string `json:"copyright"`
	Terms     string `json:"terms"`
}

// LineError is a bad line in a list. Parse returns it as a *LineError; it
// is immutable once returned.
type LineError struct {
	Name string // input name
	Line int    // 1-based line number
	Text string // the line, shortened
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("iplist: %s:%d: %q: %v", e.Name, e.Line, e.Text, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// maxKeptErrors bounds ParseStats.Errors.
const maxKeptErrors = 5

var errLineTooLong = errors.New("line too long")

// Parse reads a prefix list from r and calls fn for every entry in order.
// It returns at the first bad line (a *LineError naming the input and line)
// unless opt.Lenient is set, and at the first error returned by fn or r.
func Parse(r io.Reader, opt ParseOptions, fn func(Entry) error) (ParseStats, error) {
	if opt.Name == "" {
		opt.Name = "<input>"
	}
	if opt.MaxLineBytes <= 0 {
		opt.MaxLineBytes = 4096
	}
	if opt.Format < FormatAuto || opt.Format > FormatSpamhausText {
		return ParseStats{}, fmt.Errorf("iplist: parse %s: unknown format %v", opt.Name, opt.Format)
	}
	p := parser{opt: opt, fn: fn, st: ParseStats{Format: opt.Format}}
	err := p.run(r)
	if err == nil {
		err = p.finish()
	}
	return p.st, err
}

type parser struct {
	opt    ParseOptions
	fn     func(Entry) error
	st     ParseStats
	header strings.Builder // comment text before the first entry (detection)
	seen   bool            // an entry line has been seen
	buf    []netip.Prefix  // reused for the prefixes of one line
}

func (p *parser) run(r io.Reader) error {
	br := bufio.NewReaderSize(r, min(p.opt.MaxLineBytes+2, 1<<20))
	for {
		line, err := br.ReadSlice('\n')
		tooLong := false
		if errors.Is(err, bufio.ErrBufferFull) {
			tooLong = true
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		}
		if len(line) > 0 || tooLong {
			p.st.Lines++
			if p.st.Lines == 1 {
				line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // UTF-8 BOM
			}
			var lerr error
			if tooLong || len(bytes.TrimRight(line, "\r\n")) > p.opt.MaxLineBytes {
				lerr = p.bad(line, fmt.Errorf("%w (more than %d bytes)", errLineTooLong, p.opt.MaxLineBytes))
			} else {
				lerr = p.line(bytes.TrimSpace(line))
			}
			if lerr != nil {
				var le *LineError
				if !errors.As(lerr, &le) {
					return lerr // from the callback
				}
				if !p.opt.Lenient {
					return le
				}
				p.st.Skipped++
				if len(p.st.Errors) < maxKeptErrors {
					p.st.Errors = append(p.st.Errors, le)
				}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("iplist: read %s: %w", p.opt.Name, err)
		}
	}
}

func (p *parser) bad(line []byte, err error) error {
	t := string(line)
	if len(t) > 80 {
		t = t[:77] + "..."
	}
	return &LineError{Name: p.opt.Name, Line: p.st.Lines, Text: t, Err: err}
}

// line handles one trimmed line. It returns a *LineError for a bad line and
// any other error from the callback.
func (p *parser) line(line []byte) error {
	if p.opt.Format == FormatAuto && len(line) > 0 && line[0] != '#' && line[0] != ';' {
		p.detect(line)
	}
	if p.st.Format == FormatSpamhausJSON {
		if len(line) == 0 || line[0] == '#' {
			return nil
		}
		return p.jsonLine(line)
	}
	data, comment := line, []byte(nil)
	if i := bytes.IndexAny(line, "#;"); i >= 0 {
		data, comment = bytes.TrimSpace(line[:i]), bytes.TrimSpace(line[i+1:])
	}
	if len(data) == 0 {
		if !p.seen && p.header.Len() < 4096 {
			p.header.Write(comment)
			p.header.WriteByte('\n')
		}
		return nil
	}
	p.seen = true
	if p.st.Format == FormatAuto {
		p.st.Format = FormatPlain
	}
	prefixes, err := parseEntry(data, p.buf[:0])
	if err != nil {
		return p.bad(line, err)
	}
	p.buf = prefixes
	c := string(comment)
	for _, pfx := range prefixes {
		p.st.Entries++
		if err := p.fn(Entry{Prefix: pfx, Line: p.st.Lines, Comment: c}); err != nil {
			return err
		}
	}
	return nil
}

// detect fixes the format from the first entry line and the header.
func (p *parser) detect(first []byte) {
	if p.st.Format != FormatAuto {
		return
	}
	h := strings.ToLower(p.header.String())
	switch {
	case first[0] == '{':
		p.st.Format = FormatSpamhausJSON
	case bytes.Contains(first, []byte("; SBL")) || bytes.Contains(first, []byte(";SBL")):
		p.st.Format = FormatSpamhausText
	case strings.Contains(h, "firehol"): // before "spamhaus": FireHOL headers list their sources
		p.st.Format = FormatNetset
	case strings.Contains(h, "spamhaus"):
		p.st.Format = FormatSpamhausText
	default:
		p.st.Format = FormatPlain
	}
}

// spamhausRecord is one line of the Spamhaus JSON form: an entry or the
// metadata line.
type spamhausRecord struct {
	CIDR  string `json:"cidr"`
	SBLID string `json:"sblid"`
	RIR   string `json:"rir"`
	Type  string `json:"type"`
	SpamhausMeta
}

func (p *parser) jsonLine(line []byte) error {
	var rec spamhausRecord
	if err := json.Unmarshal(line, &rec); err != nil {
		return p.bad(line, fmt.Errorf("not a JSON object: %w", err))
	}
	switch {
	case rec.Type == "metadata":
		if p.st.Meta != nil {
			return p.bad(line, errors.New("second metadata line"))
		}
		m := rec.SpamhausMeta
		p.st.Meta = &m
		return nil
	case rec.Type != "":
		return p.bad(line, fmt.Errorf("unknown record type %q", rec.Type))
	case rec.CIDR == "":
		return p.bad(line, errors.New(`no "cidr" field`))
	}
	p.seen = true
	pfx, err := netip.ParsePrefix(rec.CIDR)
	if err != nil {
		return p.bad(line, err)
	}
	p.st.Entries++
	return p.fn(Entry{Prefix: normalizePrefix(pfx), Line: p.st.Lines, Comment: rec.SBLID})
}

// normalizePrefix returns p with its host bits cleared and, when it is an
// IPv4-mapped IPv6 prefix of at least 96 bits (::ffff:1.2.3.0/120), as the
// IPv4 prefix it covers (1.2.3.0/24). Every format goes through it, so a
// prefix reads the same whichever form the file uses.
func normalizePrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// finish checks the input as a whole.
func (p *parser) finish() error {
	if p.st.Format == FormatAuto {
		p.st.Format = FormatPlain // no entries at all
	}
	if m := p.st.Meta; m != nil && m.Records != p.st.Entries+p.st.Skipped {
		msg := fmt.Sprintf("metadata line says %d records, file has %d: the download is truncated or damaged", m.Records, p.st.Entries+p.st.Skipped)
		if !p.opt.Lenient {
			return fmt.Errorf("iplist: %s: %s", p.opt.Name, msg)
		}
		p.st.Warnings = append(p.st.Warnings, msg)
	}
	return nil
}

// parseEntry parses the data part of a text line (an address, a prefix, or
// a range "a-b" of one family) and appends its prefixes to buf.
func parseEntry(data []byte, buf []netip.Prefix) ([]netip.Prefix, error) {
	s := string(data)
	if i := strings.IndexByte(s, '-'); i >= 0 {
		a, err := parseAddr(strings.TrimSpace(s[:i]))
		if err != nil {
			return nil, err
		}
		b, err := parseAddr(strings.TrimSpace(s[i+1:]))
		if err != nil {
			return nil, err
		}
		if a.Is4() != b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("bad range: %v is not before %v in one address family", a, b)
		}
		return rangePrefixes(buf, a, b), nil
	}
	if strings.IndexFunc(s, isSpace) >= 0 {
		return nil, errors.New("more than one field (want one IP, CIDR or range per line)")
	}
	if strings.IndexByte(s, '/') >= 0 {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		return append(buf, normalizePrefix(p)), nil
	}
	a, err := parseAddr(s)
	if err != nil {
		return nil, err
	}
	return append(buf, netip.PrefixFrom(a, a.BitLen())), nil
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' }

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("address %q has a zone", s)
	}
	return a.Unmap(), nil
}

// rangePrefixes appends to out the shortest list of prefixes covering
// exactly [a, b]; a and b are of one family and a <= b.
func rangePrefixes(out []netip.Prefix, a, b netip.Addr) []netip.Prefix {
	for {
		bits := a.BitLen()
		for bits > 0 {
			p := netip.PrefixFrom(a, bits-1)
			if p.Masked().Addr() != a || b.Less(lastOf(p)) {
				break
			}
			bits--
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		last := lastOf(p)
		if last == b {
			return out
		}
		a = last.Next()
	}
}

// lastOf returns the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	p = p.Masked()
	if p.Addr().Is4() {
		b := p.Addr().As4()
		for i := p.Bits(); i < 32; i++ {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom4(b)
	}
	b := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}
