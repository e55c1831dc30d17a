package decide

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"unsafe"

	"github.com/levee-dev/levee/internal/config"
	"github.com/levee-dev/levee/internal/iplist"
)

// matcher is a compiled config.Match. Matching does not allocate.
type matcher interface {
	match(r *Request) bool
}

type matchAll []matcher

func (m matchAll) match(r *Request) bool {
	for _, x := range m {
		if !x.match(r) {
			return false
		}
	}
	return true
}

type matchAny []matcher

func (m matchAny) match(r *Request) bool {
	for _, x := range m {
		if x.match(r) {
			return true
		}
	}
	return false
}

type matchNot struct{ m matcher }

func (m matchNot) match(r *Request) bool { return !m.m.match(r) }

type matchIP struct{ t *iplist.Table }

func (m matchIP) match(r *Request) bool { return m.t.Contains(r.Client) }

type matchMethod [][]byte

func (m matchMethod) match(r *Request) bool {
	for _, x := range m {
		if bytes.Equal(x, r.Method) {
			return true
		}
	}
	return false
}

type matchHost struct {
	exact    [][]byte
	suffixes [][]byte // ".example.com"
}

func (m matchHost) match(r *Request) bool {
	h := r.Host
	if i := bytes.LastIndexByte(h, ':'); i >= 0 && bytes.IndexByte(h, ']') < i {
		h = h[:i]
	}
	h = bytes.TrimSuffix(h, []byte("."))
	for _, x := range m.exact {
		if bytes.EqualFold(x, h) {
			return true
		}
	}
	for _, s := range m.suffixes {
		if len(h) > len(s) && bytes.EqualFold(h[len(h)-len(s):], s) {
			return true
		}
	}
	return false
}

// field selects the request part a string matcher looks at.
type field uint8

const (
	fPath field = iota
	fQuery
	fUA
	fHeader
	fCookie
	fTLS
	fHTTP
)

type matchString struct {
	f    field
	name string
	kind uint8  // 0 exact, 1 prefix, 2 suffix, 3 contains, 4 regex, 5 present, 6 absent
	s    string // the operand of kinds 0-3
	re   *regexp.Regexp
}

// value returns the request field m matches on, as a string. The byte
// fields are viewed in place (read only, for the length of the match): no
// copy, so matching never allocates.
func (m *matchString) value(r *Request) string {
	var b []byte
	switch m.f {
	case fTLS:
		return r.TLSFingerprint
	case fHTTP:
		return r.HTTPFingerprint
	case fPath:
		b = r.Path
	case fQuery:
		b = r.Query
	case fUA:
		b = r.UserAgent
	case fHeader:
		if r.Headers != nil {
			b = r.Headers.Peek(m.name)
		}
	case fCookie:
		if r.Headers != nil {
			b = r.Headers.Cookie(m.name)
		}
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

func (m *matchString) match(r *Request) bool {
	v := m.value(r)
	switch m.kind {
	case 0:
		return v == m.s
	case 1:
		return strings.HasPrefix(v, m.s)
	case 2:
		return strings.HasSuffix(v, m.s)
	case 3:
		return strings.Contains(v, m.s)
	case 4:
		return m.re.MatchString(v)
	case 5:
		return len(v) > 0
	default:
		return len(v) == 0
	}
}

// compileMatch turns a config.Match into a matcher.
func compileMatch(m *config.Match) (matcher, error) {
	var all matchAll
	if len(m.IP) > 0 {
		var b iplist.Builder
		for _, s := range m.IP {
			p, err := config.ParsePrefix(s)
			if err != nil {
				return nil, err
			}
			if err := b.Add(p, 0); err != nil {
				return nil, err
			}
		}
		all = append(all, matchIP{b.Build()})
	}
	if len(m.Host) > 0 {
		var h matchHost
		for _, s := range m.Host {
			s = config.NormalizeHost(s)
			if strings.HasPrefix(s, "*.") {
				h.suffixes = append(h.suffixes, []byte(s[1:]))
			} else {
				h.exact = append(h.exact, []byte(s))
			}
		}
		all = append(all, h)
	}
	if len(m.Method) > 0 {
		var mm matchMethod
		for _, s := range m.Method {
			mm = append(mm, []byte(strings.ToUpper(s)))
		}
		all = append(all, mm)
	}
	for _, sm := range []struct {
		f    field
		name string
		m    *config.StringMatch
	}{{fPath, "", m.Path}, {fQuery, "", m.Query}, {fUA, "", m.UserAgent}, {fTLS, "", m.TLSFingerprint}, {fHTTP, "", m.HTTPFingerprint}} {
		if sm.m != nil {
			c, err := compileString(sm.f, sm.name, sm.m)
			if err != nil {
				return nil, err
			}
			all = append(all, c)
		}
	}
	if m.Header != nil {
		c, err := compileString(fHeader, m.Header.Name, &m.Header.StringMatch)
		if err != nil {
			return nil, err
		}
		all = append(all, c)
	}
	if m.Cookie != nil {
		c, err := compileString(fCookie, m.Cookie.Name, &m.Cookie.StringMatch)
		if err != nil {
			return nil, err
		}
		all = append(all, c)
	}
	for i := range m.All {
		c, err := compileMatch(&m.All[i])
		if err != nil {
			return nil, err
		}
		all = append(all, c)
	}
	if len(m.Any) > 0 {
		var any matchAny
		for i := range m.Any {
			c, err := compileMatch(&m.Any[i])
			if err != nil {
				return nil, err
			}
			any = append(any, c)
		}
		all = append(all, any)
	}
	if m.Not != nil {
		c, err := compileMatch(m.Not)
		if err != nil {
			return nil, err
		}
		all = append(all, matchNot{c})
	}
	if len(all) == 1 {
		return all[0], nil
	}
	return all, nil // an empty matchAll matches everything
}

// usesHTTPFingerprint reports whether a config match refers to the HTTP
// fingerprint (JA4H is computed per request only when some rule needs it).
func usesHTTPFingerprint(m *config.Match) bool {
	if m == nil {
		return false
	}
	if m.HTTPFingerprint != nil {
		return true
	}
	for i := range m.All {
		if usesHTTPFingerprint(&m.All[i]) {
			return true
		}
	}
	for i := range m.Any {
		if usesHTTPFingerprint(&m.Any[i]) {
			return true
		}
	}
	return usesHTTPFingerprint(m.Not)
}

func compileString(f field, name string, s *config.StringMatch) (*matchString, error) {
	m := &matchString{f: f, name: name}
	switch {
	case s.Exact != "":
		m.kind, m.s = 0, s.Exact
	case s.Prefix != "":
		m.kind, m.s = 1, s.Prefix
	case s.Suffix != "":
		m.kind, m.s = 2, s.Suffix
	case s.Contains != "":
		m.kind, m.s = 3, s.Contains
	case s.Regex != "":
		re, err := regexp.Compile(s.Regex)
		if err != nil {
			return nil, fmt.Errorf("regex %q: %w", s.Regex, err)
		}
		m.kind, m.re = 4, re
	case s.Present != nil && *s.Present:
		m.kind = 5
	case s.Present != nil:
		m.kind = 6
	default:
		return nil, fmt.Errorf("empty string match")
	}
	return m, nil
}
