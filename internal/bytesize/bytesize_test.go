package bytesize

import (
	"testing"

	"gopkg.in/yaml.v3"
)

func TestParseAndFormat(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "16KiB": 16 << 10, " 64 MiB ": 64 << 20, "1GiB": 1 << 30, "10KB": 10000, "5MB": 5e6, "7B": 7} {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "12QB", "1.5MiB", "99999999999TiB"} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) accepted", in)
		}
	}
	for n, want := range map[int64]string{0: "0", 1 << 20: "1MiB", 3 << 30: "3GiB", 1536: "1536", 2048: "2KiB"} {
		if got := Format(n); got != want {
			t.Errorf("Format(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestSizeYAML: a Size field takes units in YAML, and a bad value is a
// *yaml.TypeError with its line (decoding goes on).
func TestSizeYAML(t *testing.T) {
	var v struct {
		A Size `yaml:"a"`
		B Size `yaml:"b"`
		C int  `yaml:"c"`
	}
	if err := yaml.Unmarshal([]byte("a: 64MiB\nb: 100\n"), &v); err != nil || v.A != 64<<20 || v.B != 100 {
		t.Fatalf("%+v %v", v, err)
	}
	err := yaml.Unmarshal([]byte("a: lots\nc: 3\n"), &v)
	te, ok := err.(*yaml.TypeError)
	if !ok || len(te.Errors) != 1 || te.Errors[0][:7] != "line 1:" || v.C != 3 {
		t.Fatalf("bad size: %v (c decoded: %d)", err, v.C)
	}
}
