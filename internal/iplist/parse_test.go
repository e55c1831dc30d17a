package iplist

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func parseAll(t testing.TB, text string, opt ParseOptions) ([]Entry, ParseStats, error) {
	t.Helper()
	var es []Entry
	st, err := Parse(strings.NewReader(text), opt, func(e Entry) error {
		es = append(es, e)
		return nil
	})
	return es, st, err
}

func prefixStrings(es []Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Prefix.String()
	}
	return out
}

func TestParseTestdata(t *testing.T) {
	for _, tc := range []struct {
		file     string
		format   Format // detected
		prefixes []string
		comments map[int]string // entry index -> comment
		meta     bool
	}{
		{
			file:   "plain.txt",
			format: FormatPlain,
			prefixes: []string{"192.0.2.1/32", "198.51.100.0/24", "203.0.113.7/32",
				"2001:db8:dead::/48", "2001:db8::1/128", "10.9.0.0/24"},
			comments: map[int]string{1: "abusive hosting range", 2: "scanner"},
		},
		{
			file:   "firehol_level1.netset",
			format: FormatNetset,
			prefixes: []string{"0.0.0.0/8", "1.10.16.0/20", "1.19.0.0/16", "5.134.128.0/19",
				"23.94.0.0/24", "31.184.196.1/32", "45.9.148.0/24"},
		},
		{
			file:     "crlf.ipset",
			format:   FormatNetset,
			prefixes: []string{"185.220.101.1/32", "185.220.101.2/32", "185.220.102.0/24"},
		},
		{
			file:     "drop_v4.json",
			format:   FormatSpamhausJSON,
			prefixes: []string{"1.10.16.0/20", "1.19.0.0/16", "1.32.128.0/18", "2.58.176.0/22", "5.134.128.0/19"},
			comments: map[int]string{0: "SBL256894", 4: "SBL270738"},
			meta:     true,
		},
		{
			file:     "drop_v6.json",
			format:   FormatSpamhausJSON,
			prefixes: []string{"2001:678:738::/48", "2a06:e480::/29", "2a0d:8480::/29"},
			meta:     true,
		},
		{
			file:     "drop.txt",
			format:   FormatSpamhausText,
			prefixes: []string{"1.10.16.0/20", "1.19.0.0/16", "1.32.128.0/18", "2.58.176.0/22", "5.134.128.0/19"},
			comments: map[int]string{0: "SBL256894", 2: "SBL286275"},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			// Auto-detected and explicit format give the same result.
			for _, f := range []Format{FormatAuto, tc.format} {
				es, st, err := parseAll(t, string(data), ParseOptions{Format: f, Name: tc.file})
				if err != nil {
					t.Fatalf("format %v: %v", f, err)
				}
				if st.Format != tc.format {
					t.Errorf("format %v: detected %v; want %v", f, st.Format, tc.format)
				}
				if got := prefixStrings(es); !slices.Equal(got, tc.prefixes) {
					t.Errorf("format %v: prefixes\n got %v\nwant %v", f, got, tc.prefixes)
				}
				for i, c := range tc.comments {
					if es[i].Comment != c {
						t.Errorf("entry %d comment %q; want %q", i, es[i].Comment, c)
					}
				}
				if (st.Meta != nil) != tc.meta || st.Entries != len(tc.prefixes) || st.Skipped != 0 {
					t.Errorf("stats %+v", st)
				}
			}
		})
	}
}

func TestParseSpamhausMeta(t *testing.T) {
	data, _ := os.ReadFile("testdata/drop_v4.json")
	_, st, err := parseAll(t, string(data), ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Meta.Records != 5 || st.Meta.Timestamp != 1764324000 || !strings.Contains(st.Meta.Copyright, "Spamhaus") {
		t.Errorf("meta = %+v", st.Meta)
	}
}

func TestParseTruncatedSpamhaus(t *testing.T) {
	// The truncated file lost its metadata line: nothing to check against.
	data, _ := os.ReadFile("testdata/drop_truncated.json")
	es, st, err := parseAll(t, string(data), ParseOptions{Name: "drop.json"})
	if err != nil || len(es) != 3 || st.Meta != nil {
		t.Fatalf("got %d entries, meta %v, err %v", len(es), st.Meta, err)
	}
	// A metadata line that disagrees with the body fails a strict parse
	// and warns in a lenient one.
	text := string(data) + `{"type":"metadata","timestamp":1,"size":1,"records":5,"copyright":"c","terms":"t"}` + "\n"
	if _, _, err := parseAll(t, text, ParseOptions{Name: "drop.json"}); err == nil || !strings.Contains(err.Error(), "says 5 records, file has 3") {
		t.Errorf("strict: err = %v; want record count mismatch", err)
	}
	_, st, err = parseAll(t, text, ParseOptions{Lenient: true})
	if err != nil || len(st.Warnings) != 1 {
		t.Errorf("lenient: err %v, warnings %v", err, st.Warnings)
	}
}

func TestParseBadLines(t *testing.T) {
	data, _ := os.ReadFile("testdata/feed_with_junk.txt")
	// Strict: the first bad line is reported with file and line.
	_, _, err := parseAll(t, string(data), ParseOptions{Name: "feeds/junk.txt"})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 3 || le.Name != "feeds/junk.txt" {
		t.Fatalf("strict err = %v; want LineError at feeds/junk.txt:3", err)
	}
	if !strings.Contains(err.Error(), "feeds/junk.txt:3") || !strings.Contains(err.Error(), "192.0.2.300") {
		t.Errorf("error text %q lacks file:line or line text", err)
	}
	// Lenient: bad lines are counted and skipped.
	es, st, err := parseAll(t, string(data), ParseOptions{Name: "junk", Lenient: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := prefixStrings(es), []string{"192.0.2.10/32", "198.51.100.64/26"}; !slices.Equal(got, want) {
		t.Errorf("entries %v; want %v", got, want)
	}
	if st.Skipped != 5 || len(st.Errors) != 5 || st.Lines != 8 {
		t.Errorf("stats: skipped %d, errors %d, lines %d; want 5, 5, 8", st.Skipped, len(st.Errors), st.Lines)
	}
}

func TestParseLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string // nil: error expected in strict mode
	}{
		{"empty", "", []string{}},
		{"only comments", "# a\n; b\n\n   \n", []string{}},
		{"bom", "\xef\xbb\xbf1.2.3.4\n", []string{"1.2.3.4/32"}},
		{"no final newline", "1.2.3.4\n5.6.7.0/24", []string{"1.2.3.4/32", "5.6.7.0/24"}},
		{"host bits masked", "1.2.3.4/24", []string{"1.2.3.0/24"}},
		{"mapped", "::ffff:1.2.3.4\n::ffff:1.2.3.0/120", []string{"1.2.3.4/32", "1.2.3.0/24"}},
		{"mapped json", `{"cidr":"::ffff:1.2.3.0/120"}` + "\n" + `{"cidr":"::ffff:5.6.7.8/128"}`, []string{"1.2.3.0/24", "5.6.7.8/32"}},
		{"tabs and spaces", "\t 1.2.3.4 \t# c\n", []string{"1.2.3.4/32"}},
		{"range", "10.0.0.1-10.0.0.6", []string{"10.0.0.1/32", "10.0.0.2/31", "10.0.0.4/31", "10.0.0.6/32"}},
		{"range v6", "2001:db8::-2001:db8::ffff", []string{"2001:db8::/112"}},
		{"range whole v4", "0.0.0.0 - 255.255.255.255", []string{"0.0.0.0/0"}},
		{"reversed range", "10.0.0.6-10.0.0.1", nil},
		{"mixed range", "10.0.0.1-::1", nil},
		{"zone", "fe80::1%eth0", nil},
		{"two fields", "1.2.3.4 5.6.7.8", nil},
		{"bad bits", "1.2.3.0/33", nil},
		{"garbage", "hello", nil},
		{"json in plain", `{"cidr":"1.2.3.0/24"}`, nil},
		{"too long", strings.Repeat("1", 5000) + "\n1.2.3.4", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := FormatAuto
			if tc.name == "json in plain" {
				f = FormatPlain
			}
			es, _, err := parseAll(t, tc.in, ParseOptions{Format: f})
			if tc.want == nil {
				if err == nil {
					t.Fatalf("want error, got entries %v", prefixStrings(es))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := prefixStrings(es); !slices.Equal(got, tc.want) {
				t.Errorf("got %v; want %v", got, tc.want)
			}
		})
	}
}

func TestParseLongLine(t *testing.T) {
	in := "1.1.1.1\n" + strings.Repeat("9", 10_000) + "\n2.2.2.2\n"
	es, st, err := parseAll(t, in, ParseOptions{Lenient: true})
	if err != nil || st.Skipped != 1 || len(es) != 2 || st.Lines != 3 {
		t.Fatalf("lenient: %d entries, %d skipped, %d lines, err %v; want 2, 1, 3, nil", len(es), st.Skipped, st.Lines, err)
	}
	_, _, err = parseAll(t, in, ParseOptions{Name: "big.txt"})
	var le *LineError
	if !errors.As(err, &le) || le.Line != 2 || !errors.Is(err, errLineTooLong) {
		t.Fatalf("strict: err = %v; want a LineError at line 2 for a long line", err)
	}
}

func TestParseFormatNames(t *testing.T) {
	for f := FormatAuto; f <= FormatSpamhausText; f++ {
		g, err := ParseFormat(f.String())
		if err != nil || g != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), g, err)
		}
	}
	if _, err := ParseFormat("csv"); err == nil {
		t.Error("ParseFormat(csv) = nil error")
	}
}

func TestParseCallbackError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	_, err := Parse(strings.NewReader("1.1.1.1\n2.2.2.2\n"), ParseOptions{Lenient: true}, func(Entry) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("err %v after %d calls; want stop after 1", err, n)
	}
}

// fuzzParse checks the invariants every parse must keep, whatever the input.
func fuzzParse(t *testing.T, data string, f Format) {
	var strict []Entry
	sst, serr := Parse(strings.NewReader(data), ParseOptions{Format: f, MaxLineBytes: 128}, func(e Entry) error {
		strict = append(strict, e)
		return nil
	})
	var lenient []Entry
	lst, lerr := Parse(strings.NewReader(data), ParseOptions{Format: f, Lenient: true, MaxLineBytes: 128}, func(e Entry) error {
		lenient = append(lenient, e)
		return nil
	})
	if lerr != nil && !strings.Contains(lerr.Error(), "records") {
		t.Fatalf("lenient parse failed: %v", lerr)
	}
	for _, e := range lenient {
		if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() || e.Line < 1 || e.Line > lst.Lines {
			t.Fatalf("bad entry %+v (lines %d)", e, lst.Lines)
		}
		if e.Prefix.Addr().Zone() != "" || e.Prefix.Addr().Is4In6() && e.Prefix.Bits() >= 96 {
			t.Fatalf("entry not normalized: %v", e.Prefix)
		}
	}
	if lst.Entries != len(lenient) || lst.Skipped > lst.Lines || len(lst.Errors) > maxKeptErrors {
		t.Fatalf("inconsistent stats %+v for %d entries", lst, len(lenient))
	}
	if serr == nil {
		// A clean strict parse sees exactly what the lenient one sees.
		if lst.Skipped != 0 || !slices.Equal(prefixStrings(strict), prefixStrings(lenient)) || sst.Format != lst.Format {
			t.Fatalf("strict ok but lenient skipped %d or differs", lst.Skipped)
		}
	} else if le := (*LineError)(nil); errors.As(serr, &le) && lst.Skipped == 0 {
		t.Fatalf("strict failed on a line (%v) that lenient did not skip", serr)
	}
	// Everything parsed builds into a table that finds every entry.
	var b Builder
	for i, e := range lenient {
		if err := b.Add(e.Prefix, uint32(i)); err != nil {
			t.Fatal(err)
		}
	}
	tb := b.Build()
	for _, e := range lenient {
		if !tb.Contains(e.Prefix.Addr()) {
			t.Fatalf("table misses %v", e.Prefix)
		}
	}
}

func addSeeds(f *testing.F) {
	for _, name := range []string{"plain.txt", "firehol_level1.netset", "crlf.ipset", "drop_v4.json", "drop.txt", "feed_with_junk.txt"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(data))
	}
	f.Add("1.2.3.4-1.2.3.4\n::-::1\n")
	f.Add("1.1.1.1\n" + strings.Repeat("2", 300) + "\n3.3.3.3")
	f.Add(`{"type":"metadata","records":1}` + "\n" + `{"cidr":"::/0"}`)
	// IPv4-mapped prefixes, in the JSON and text forms.
	f.Add(`{"cidr":"::ffff:1.2.3.0/120","sblid":"SBL1"}` + "\n" + `{"cidr":"::ffff:0.0.0.0/96"}`)
	f.Add("::ffff:1.2.3.0/120 ; SBL1\n::ffff:5.6.7.8/128 ; SBL2\n")
}

// cidrForms renders one CIDR as a one-entry file of each format.
func cidrForms(cidr string) map[Format]string {
	q, _ := json.Marshal(cidr)
	return map[Format]string{
		FormatPlain:        cidr + "\n",
		FormatNetset:       "# firehol test\n" + cidr + "\n",
		FormatSpamhausJSON: `{"cidr":` + string(q) + `,"sblid":"SBL1","rir":"test"}` + "\n",
		FormatSpamhausText: "; Spamhaus DROP test\n" + cidr + " ; SBL1\n",
	}
}

// checkCIDRForms checks that a CIDR parses to the same prefix in every
// format that accepts it: IPv4-mapped prefixes become IPv4 whichever form
// the file uses, host bits are cleared in all of them. The JSON form accepts
// exactly what the text forms accept.
func checkCIDRForms(t *testing.T, cidr string) {
	var want []string
	wantOK := false
	for i, f := range []Format{FormatPlain, FormatNetset, FormatSpamhausText, FormatSpamhausJSON} {
		es, _, err := parseAll(t, cidrForms(cidr)[f], ParseOptions{Format: f})
		got := prefixStrings(es)
		if i == 0 {
			want, wantOK = got, err == nil
			if !wantOK {
				return // not a prefix the text forms accept
			}
			continue
		}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%q as %v: %v, %v; plain gives %v", cidr, f, got, err, want)
		}
	}
}

func TestParseSameCIDRInEveryFormat(t *testing.T) {
	for _, cidr := range []string{
		"::ffff:1.2.3.0/120",  // -> 1.2.3.0/24
		"::ffff:1.2.3.4/128",  // -> 1.2.3.4/32
		"::ffff:1.2.3.77/120", // host bits -> 1.2.3.0/24
		"::ffff:0.0.0.0/96",   // -> 0.0.0.0/0
		"::ffff:0:0/95",       // wider than the mapped range: stays IPv6
		"1.2.3.4/24",          // host bits
		"2001:db8::1/32",      // host bits
		"2a06:e480::/29",
	} {
		checkCIDRForms(t, cidr)
	}
	es, _, err := parseAll(t, cidrForms("::ffff:1.2.3.0/120")[FormatSpamhausJSON], ParseOptions{})
	if err != nil || len(es) != 1 || es[0].Prefix.String() != "1.2.3.0/24" || es[0].Comment != "SBL1" {
		t.Fatalf("mapped JSON entry: %v %+v; want 1.2.3.0/24", err, es)
	}
}

// FuzzParseCIDRForms: any CIDR the plain parser accepts reads the same in
// the netset, Spamhaus text and Spamhaus JSON forms.
func FuzzParseCIDRForms(f *testing.F) {
	for _, s := range []string{"::ffff:1.2.3.0/120", "::ffff:0.0.0.0/96", "::ffff:0:0/95", "1.2.3.4/24", "2001:db8::1/32", "0.0.0.0/0", "::/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, cidr string) {
		if !strings.Contains(cidr, "/") || strings.ContainsAny(cidr, "#;-") ||
			strings.IndexFunc(cidr, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			return // ranges, bare addresses, comments and spacing are text-only
		}
		checkCIDRForms(t, cidr)
	})
}

func FuzzParseAuto(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data string) { fuzzParse(t, data, FormatAuto) })
}

func FuzzParsePlain(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data string) { fuzzParse(t, data, FormatPlain) })
}

func FuzzParseNetset(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data string) { fuzzParse(t, data, FormatNetset) })
}

func FuzzParseSpamhausJSON(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data string) { fuzzParse(t, data, FormatSpamhausJSON) })
}

func FuzzParseSpamhausText(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data string) { fuzzParse(t, data, FormatSpamhausText) })
}

func ExampleParse() {
	feed := `; Spamhaus DROP List 2026/11/28
1.10.16.0/20 ; SBL256894
1.19.0.0/16 ; SBL434604
bogus
`
	st, err := Parse(strings.NewReader(feed), ParseOptions{Name: "drop.txt", Lenient: true}, func(e Entry) error {
		fmt.Println(e.Line, e.Prefix, e.Comment)
		return nil
	})
	fmt.Println(st.Format, st.Entries, st.Skipped, err)
	fmt.Println(st.Errors[0])
	// Output:
	// 2 1.10.16.0/20 SBL256894
	// 3 1.19.0.0/16 SBL434604
	// spamhaus-text 2 1 <nil>
	// iplist: drop.txt:4: "bogus": ParseAddr("bogus"): unable to parse IP
}

// BenchmarkParse measures parsing a 100k-line plain list and a 100k-line
// Spamhaus JSON feed; SetBytes makes the result a throughput.
func BenchmarkParse(b *testing.B) {
	var plain, js strings.Builder
	for i := 0; i < 100_000; i++ {
		fmt.Fprintf(&plain, "%d.%d.%d.0/24 # entry %d\n", 1+i>>16, byte(i>>8), byte(i), i)
		fmt.Fprintf(&js, `{"cidr":"%d.%d.%d.0/24","sblid":"SBL%d","rir":"ripencc"}`+"\n", 1+i>>16, byte(i>>8), byte(i), i)
	}
	for _, in := range []struct{ name, text string }{{"plain", plain.String()}, {"spamhaus-json", js.String()}} {
		b.Run(in.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in.text)))
			for b.Loop() {
				n := 0
				if _, err := Parse(strings.NewReader(in.text), ParseOptions{}, func(Entry) error { n++; return nil }); err != nil || n != 100_000 {
					b.Fatalf("parsed %d entries, err %v", n, err)
				}
			}
		})
	}
}
