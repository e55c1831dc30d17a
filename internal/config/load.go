package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
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
func Parse(data []byte, name string) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return nil, decodeErrors(name, err)
	}
	// A second document in the same file is almost certainly a mistake.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{fmt.Errorf("%s:%d: only one YAML document is allowed", name, extra.Line)}
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		var root yaml.Node
		_ = yaml.Unmarshal(data, &root)
		return nil, locate(name, &root, err)
	}
	return &c, nil
}

// decodeErrors rewrites yaml.v3 errors to "name:line: message".
func decodeErrors(name string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		out := make(Errors, 0, len(te.Errors))
		for _, m := range te.Errors {
			out = append(out, errors.New(name+":"+rewrite(m)))
		}
		return out
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	return Errors{errors.New(name + ":" + rewrite(msg))}
}

var typeRE = regexp.MustCompile(`in type config\.(\w+)`)

func rewrite(m string) string {
	m = strings.TrimPrefix(m, "yaml: ")
	if sm := lineRE.FindStringSubmatch(m); sm != nil {
		msg := sm[2]
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
		msg = strings.ReplaceAll(msg, "!!map", "mapping")
		msg = strings.ReplaceAll(msg, "!!seq", "list")
		return sm[1] + ": " + msg
	}
	return " " + m
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

// lineOf returns the line of the node at path ("a.b[2].c"), or of its
// deepest existing ancestor, or 0.
func lineOf(root *yaml.Node, path string) int {
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
				return line
			}
			n = n.Content[i]
		default:
			if n.Kind != yaml.MappingNode {
				return line
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
				return line
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
