package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Load reads, decodes, defaults and validates the file at path.
// Errors name the file and line: "levee.yaml:12: sites[0].upstreams[0].url: ...".
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path)
}

var lineRE = regexp.MustCompile(`^line (\d+): (.*)$`)

// Parse decodes, defaults and validates a YAML document. name is used in
// error messages (usually the file name). On error it returns Errors whose
// messages start with "name:line:".
//
// All problems are reported at once where yaml.v3 allows it: values of the
// wrong type or format and unknown keys are collected by the decoder, which
// goes on; the partly decoded config is then defaulted and validated too,
// and its errors are added (except those of fields that already failed to
// decode). A YAML syntax error stops at the first one.
func Parse(data []byte, name string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var root yaml.Node
	var out []located
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, decodeErrors(name, nil, err)
		}
		_ = yaml.Unmarshal(data, &root)
		for _, m := range te.Errors {
			out = append(out, decodeError(name, &root, m))
		}
	}
	// A second document in the same file is almost certainly a mistake.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		out = append(out, located{line: extra.Line, err: fmt.Errorf("%s:%d: only one YAML document is allowed", name, extra.Line)})
	}
	c.Defaults()
	// A repeated key makes yaml.v3 skip the whole mapping holding it: the
	// fields it left out would read as missing, so validation, which
	// would report them, is not run.
	if err := c.Validate(); err != nil && !repeatedKey(out) {
		if root.Kind == 0 {
			_ = yaml.Unmarshal(data, &root)
		}
		out = append(out, validationErrors(name, &root, err, out)...)
	}
	if len(out) == 0 {
		return &c, nil
	}
	slices.SortStableFunc(out, func(a, b located) int { return a.line - b.line })
	es := make(Errors, len(out))
	for i, l := range out {
		es[i] = l.err
	}
	return nil, es
}

// repeatedKey reports whether out holds a repeated-key error.
func repeatedKey(out []located) bool {
	for _, l := range out {
		if strings.Contains(l.err.Error(), "already defined") {
			return true
		}
	}
	return false
}

// located is an error of Parse with its line (0: unknown) and, when known,
// the path of its field.
type located struct {
	line   int
	path   string
	keyErr bool // an unknown or repeated key, not a bad value
	err    error
}

// decodeErrors rewrites yaml.v3 errors to "name:line: message" (used for
// errors that stop decoding, such as syntax errors).
func decodeErrors(name string, root *yaml.Node, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		out := make(Errors, 0, len(te.Errors))
		for _, m := range te.Errors {
			out = append(out, decodeError(name, root, m).err)
		}
		return out
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return Errors{errors.New(name + ":" + rewrite(msg, root))}
}

// decodeError rewrites one message of a *yaml.TypeError to
// "name:line: field: message" (the field when it can be told from the line).
func decodeError(name string, root *yaml.Node, m string) located {
	l := located{err: errors.New(name + ":" + rewrite(m, root))}
	if sm := lineRE.FindStringSubmatch(strings.TrimPrefix(m, "yaml: ")); sm != nil {
		l.line, _ = strconv.Atoi(sm[1])
		l.keyErr = keyError(sm[2])
		if root != nil && !l.keyErr {
			l.path = pathAt(root, l.line, sm[2])
		}
	}
	return l
}

var typeRE = regexp.MustCompile(`in type config\.(\w+)`)

// keyError reports whether a decoder message is about a key (unknown or
// repeated) rather than a value.
func keyError(msg string) bool {
	return strings.HasPrefix(msg, "mapping key ") ||
		strings.HasPrefix(msg, "field ") && strings.Contains(msg, " not found in type ")
}

func rewrite(m string, root *yaml.Node) string {
	m = strings.TrimPrefix(m, "yaml: ")
	if sm := lineRE.FindStringSubmatch(m); sm != nil {
		msg := sm[2]
		path := ""
		if root != nil && !keyError(msg) {
			line, _ := strconv.Atoi(sm[1])
			path = pathAt(root, line, msg)
		}
		if strings.HasPrefix(msg, "field ") && strings.Contains(msg, " not found in type ") {
			f := strings.TrimPrefix(msg, "field ")
			f = f[:strings.Index(f, " not found")]
			where := ""
			if tm := typeRE.FindStringSubmatch(msg); tm != nil {
				where = " in " + strings.ToLower(tm[1])
			}
			msg = fmt.Sprintf("unknown key %q%s (see the configuration reference in README.md)", f, where)
		}
		msg = strings.ReplaceAll(msg, "!!str", "string")
		msg = strings.ReplaceAll(msg, "!!int", "integer")
		msg = strings.ReplaceAll(msg, "!!float", "number")
		msg = strings.ReplaceAll(msg, "!!bool", "boolean")
		msg = strings.ReplaceAll(msg, "!!map", "mapping")
		msg = strings.ReplaceAll(msg, "!!seq", "list")
		if path != "" {
			msg = path + ": " + msg
		}
		return sm[1] + ": " + msg
	}
	return " " + m
}

// pathAt names the field a decoder message about line refers to, such as
// "guard.max_header_bytes" or "trusted_proxies[1]", or returns "" when the
// line holds several values the message could be about. yaml.v3 gives
// lines but not columns, so on a line with several values (flow style) the
// value quoted in the message, or its kind, picks one.
func pathAt(root *yaml.Node, line int, msg string) string {
	var cands []nodePath
	var walk func(n *yaml.Node, path string, depth int)
	walk = func(n *yaml.Node, path string, depth int) {
		if n == nil || depth > 64 || n.Line > line && n.Kind != yaml.DocumentNode {
			return
		}
		if path != "" && n.Line == line {
			cands = append(cands, nodePath{path, n})
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path, depth+1)
			}
		case yaml.MappingNode:
			for k := 0; k+1 < len(n.Content); k += 2 {
				key := n.Content[k].Value
				p := path
				if key != "<<" {
					p = joinPath(path, key)
				}
				walk(n.Content[k+1], p, depth+1)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i), depth+1)
			}
		}
	}
	walk(root, "", 0)
	if len(cands) == 0 {
		return ""
	}
	keep := func(ok func(n *yaml.Node) bool) []nodePath {
		var out []nodePath
		for _, c := range cands {
			if ok(c.n) {
				out = append(out, c)
			}
		}
		return out
	}
	var sel []nodePath
	switch v, ok := quotedValue(msg); {
	case ok:
		sel = keep(func(n *yaml.Node) bool {
			if n.Kind != yaml.ScalarNode {
				return false
			}
			if p, trunc := strings.CutSuffix(v, "..."); trunc {
				return strings.HasPrefix(n.Value, p)
			}
			return n.Value == v
		})
	case strings.Contains(msg, "!!seq") || strings.Contains(msg, "got a list"):
		sel = keep(func(n *yaml.Node) bool { return n.Kind == yaml.SequenceNode })
	case strings.Contains(msg, "!!map") || strings.Contains(msg, "got a mapping"):
		sel = keep(func(n *yaml.Node) bool { return n.Kind == yaml.MappingNode })
	}
	switch {
	case len(sel) == 1:
		return sel[0].path
	case len(sel) == 0 && len(cands) == 1:
		return cands[0].path
	}
	return ""
}

type nodePath struct {
	path string
	n    *yaml.Node
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// quotedValue returns the value a decoder message quotes: yaml.v3 writes
// it in backquotes (shortened to 7 characters and "..." beyond 10), the
// config's own unmarshalers with %q.
func quotedValue(msg string) (string, bool) {
	if i := strings.IndexByte(msg, '`'); i >= 0 {
		if j := strings.IndexByte(msg[i+1:], '`'); j >= 0 {
			return msg[i+1 : i+1+j], true
		}
	}
	if i := strings.IndexByte(msg, '"'); i >= 0 {
		if q, err := strconv.QuotedPrefix(msg[i:]); err == nil {
			if v, err := strconv.Unquote(q); err == nil {
				return v, true
			}
		}
	}
	return "", false
}

// validationErrors locates the errors of Validate (see locate), leaving
// out those of fields that already failed to decode: such a field holds
// its zero value or default, and its decode error says what is wrong.
func validationErrors(name string, root *yaml.Node, err error, decoded []located) []located {
	var es Errors
	if !errors.As(err, &es) {
		return []located{{err: fmt.Errorf("%s: %w", name, err)}}
	}
	var out []located
	for _, e := range es {
		var fe *FieldError
		if !errors.As(e, &fe) {
			out = append(out, located{err: fmt.Errorf("%s: %w", name, e)})
			continue
		}
		if coveredBy(fe.Path, decoded, lineOf(root, fe.Path)) {
			continue
		}
		l := locate(name, root, Errors{fe}).(Errors)
		out = append(out, located{line: fe.Line, path: fe.Path, err: l[0]})
	}
	return out
}

func coveredBy(path string, decoded []located, line int) bool {
	for _, d := range decoded {
		switch {
		case d.path != "":
			if path == d.path || strings.HasPrefix(path, d.path+".") || strings.HasPrefix(path, d.path+"[") {
				return true
			}
		case d.line > 0 && d.line == line && !d.keyErr:
			return true
		}
	}
	return false
}

// locate sets Line on each FieldError from the YAML node tree and prefixes
// errors with name:line.
func locate(name string, root *yaml.Node, err error) error {
	var es Errors
	if !errors.As(err, &es) {
		return err
	}
	out := make(Errors, 0, len(es))
	for _, e := range es {
		var fe *FieldError
		if errors.As(e, &fe) {
			fe.Line = lineOf(root, fe.Path)
			if fe.Line > 0 {
				out = append(out, fmt.Errorf("%s:%d: %s: %s", name, fe.Line, fe.Path, fe.Msg))
			} else {
				out = append(out, fmt.Errorf("%s: %s: %s", name, fe.Path, fe.Msg))
			}
			continue
		}
		out = append(out, fmt.Errorf("%s: %w", name, e))
	}
	return out
}

// LineOf returns the line of the setting at path ("a.b[2].c") in the YAML
// document data, or 0 when the document does not set it.
func LineOf(data []byte, path string) int {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil {
		return 0
	}
	return findLine(&root, path, true)
}

// lineOf returns the line of the node at path ("a.b[2].c"), or of its
// deepest existing ancestor, or 0.
func lineOf(root *yaml.Node, path string) int { return findLine(root, path, false) }

func findLine(root *yaml.Node, path string, exact bool) int {
	missing := func(line int) int {
		if exact {
			return 0
		}
		return line
	}
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n == nil || n.Kind == 0 {
		return 0
	}
	line := n.Line
	for _, seg := range splitPath(path) {
		switch {
		case strings.HasPrefix(seg, "["):
			i, _ := strconv.Atoi(strings.Trim(seg, "[]"))
			if n.Kind != yaml.SequenceNode || i >= len(n.Content) {
				return missing(line)
			}
			n = n.Content[i]
		default:
			if n.Kind != yaml.MappingNode {
				return missing(line)
			}
			var next *yaml.Node
			for k := 0; k+1 < len(n.Content); k += 2 {
				if n.Content[k].Value == seg {
					next = n.Content[k+1]
					line = n.Content[k].Line
					break
				}
			}
			if next == nil {
				return missing(line)
			}
			n = next
		}
		line = n.Line
	}
	return line
}

func splitPath(p string) []string {
	var out []string
	for _, part := range strings.Split(p, ".") {
		for part != "" {
			i := strings.IndexByte(part, '[')
			switch {
			case i < 0:
				out = append(out, part)
				part = ""
			case i > 0:
				out = append(out, part[:i])
				part = part[i:]
			default:
				j := strings.IndexByte(part, ']')
				if j < 0 {
					out = append(out, part)
					part = ""
				} else {
					out = append(out, part[:j+1])
					part = part[j+1:]
				}
			}
		}
	}
	return out
}
