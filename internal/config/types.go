package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// ByteSize is a size in bytes. In YAML it is an integer or a string with a
// unit: "512", "16KiB", "64MiB", "1GiB", "10KB" (KB = 1000, KiB = 1024).
// The only negative value is NoLimit (-1), for the fields that document it
// (guard.max_body_bytes); Validate rejects it elsewhere.
type ByteSize int64

// NoLimit is the ByteSize -1: "no limit" in the fields that say so.
const NoLimit ByteSize = -1

// UnmarshalYAML implements yaml.Unmarshaler. Errors are *yaml.TypeError,
// so that decoding goes on and reports the file's other problems too.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return typeError(n, "want a size such as 64KiB, got a %s", kindName(n.Kind))
	}
	if strings.TrimSpace(n.Value) == "-1" {
		*b = NoLimit
		return nil
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return typeError(n, "%v", err)
	}
	*b = v
	return nil
}

// typeError is an error of node n that yaml.v3 collects (it goes on
// decoding) and that Parse reports with n's line and field path.
func typeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
}

// Prefixes is a list of networks in CIDR notation, such as 10.0.0.0/8 or
// 2001:db8::/32 (trusted_proxies). Each entry is parsed with
// netip.ParsePrefix; an invalid entry is reported with its line and the
// decoding goes on.
type Prefixes []netip.Prefix

// UnmarshalYAML implements yaml.Unmarshaler.
func (ps *Prefixes) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return typeError(n, "want a list of networks such as [10.0.0.0/8], got a %s", kindName(n.Kind))
	}
	out := make(Prefixes, 0, len(n.Content))
	var errs []string
	for _, item := range n.Content {
		if item.Kind == yaml.AliasNode && item.Alias != nil {
			item = item.Alias
		}
		if item.Kind != yaml.ScalarNode {
			errs = append(errs, fmt.Sprintf("line %d: want a network such as 10.0.0.0/8, got a %s", item.Line, kindName(item.Kind)))
			continue
		}
		p, err := netip.ParsePrefix(item.Value)
		if err != nil {
			msg := fmt.Sprintf("line %d: invalid CIDR %q: want a network such as 10.0.0.0/8 or 2001:db8::/32", item.Line, item.Value)
			if a, aerr := netip.ParseAddr(item.Value); aerr == nil {
				msg += fmt.Sprintf(" (for a single address write %s/%d)", item.Value, a.BitLen())
			}
			errs = append(errs, msg)
			continue
		}
		out = append(out, p)
	}
	*ps = out
	if len(errs) > 0 {
		return &yaml.TypeError{Errors: errs}
	}
	return nil
}

// String formats the size with the largest binary unit that divides it.
func (b ByteSize) String() string {
	units := []struct {
		s string
		v int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}
	for _, u := range units {
		if b != 0 && int64(b)%u.v == 0 {
			return strconv.FormatInt(int64(b)/u.v, 10) + u.s
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// ParseByteSize parses "123", "16KiB", "64MiB", "2GiB", "10KB", "5MB", "1GB".
func ParseByteSize(in string) (ByteSize, error) {
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
	return ByteSize(n * mult), nil
}

func kindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "scalar"
	case yaml.AliasNode:
		return "alias"
	}
	return "document"
}
