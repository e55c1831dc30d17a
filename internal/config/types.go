package config

import (
	"fmt"
	"net/netip"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/levee-dev/levee/internal/bytesize"
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
func (b ByteSize) String() string { return bytesize.Format(int64(b)) }

// ParseByteSize parses "123", "16KiB", "64MiB", "2GiB", "10KB", "5MB", "1GB".
func ParseByteSize(in string) (ByteSize, error) {
	n, err := bytesize.Parse(in)
	return ByteSize(n), err
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
