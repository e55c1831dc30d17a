// Package bytesize parses and formats sizes in bytes as configuration files
// write them: "512", "16KiB", "64MiB", "1GiB", "10KB" (KB = 1000,
// KiB = 1024). The configuration (internal/config) and the packages whose
// configuration structs it embeds (internal/cache) share it, so every size
// key takes the same units.
package bytesize

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Parse parses "123", "16KiB", "64MiB", "2GiB", "10KB", "5MB", "1GB".
// Negative sizes are refused.
func Parse(in string) (int64, error) {
	s := strings.TrimSpace(in)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	} {
		if strings.HasSuffix(s, u.suf) {
			mult = u.m
			s = strings.TrimSpace(strings.TrimSuffix(s, u.suf))
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err == nil && n < 0:
		return 0, fmt.Errorf("invalid size %q: sizes may not be negative (-1 means no limit, only where a field says so)", in)
	case err != nil:
		return 0, fmt.Errorf("invalid size %q: want a non-negative integer with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)", in)
	}
	if n > 0 && mult > (1<<62)/n {
		return 0, fmt.Errorf("size %q is too large", in)
	}
	return n * mult, nil
}

// Format writes n with the largest binary unit that divides it.
func Format(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

// Size is a size in bytes that YAML may write with a unit.
type Size int64

// UnmarshalYAML implements yaml.Unmarshaler. Errors are *yaml.TypeError
// with the node's line, so that decoding goes on and the file's other
// problems are reported too.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a size such as 64KiB", n.Line)}}
	}
	v, err := Parse(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*s = Size(v)
	return nil
}

// String formats the size with the largest binary unit that divides it.
func (s Size) String() string { return Format(int64(s)) }
