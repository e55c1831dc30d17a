package config

import (
	"encoding"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/levee-dev/levee/internal/challenge"
)

const examplePath = "../../docs/levee.example.yaml"

// exampleExceptions are the key paths docs/levee.example.yaml may leave
// out, each with the reason. Keep it short: a key belongs in the example
// with its default unless no real value can stand there.
var exampleExceptions = map[string]string{
	// An optional request filter in the rules' match grammar (shown in the
	// commented rules); the default limits have none.
	"limits[].match": "optional filter; the default limits have none",
	// cache.Config's name labels metrics; the shield always names a site's
	// cache after the site, so the key has no effect there.
	"sites[].cache.name": "ignored: the cache is named after its site",
}

// The example claims to list every key with its default: every key of
// Config must appear in it as a real (not commented-out) key, so that
// levee config check checks it. Lists of structs are checked through their
// first element present in the example; an empty list, a map or a plain
// list only needs its key.
func TestExampleMentionsEveryKey(t *testing.T) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data, examplePath); err != nil {
		t.Fatalf("the example does not parse:\n%v", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		t.Fatalf("%s: want one YAML document holding a mapping", examplePath)
	}
	w := &keyWalker{known: map[string]bool{}}
	w.fields(reflect.TypeFor[Config](), doc.Content[0], "", nil)
	if len(w.missing) > 0 {
		t.Errorf("%s does not mention %d keys (add them with their defaults, or to exampleExceptions with a reason):\n  %s",
			examplePath, len(w.missing), strings.Join(w.missing, "\n  "))
	}
	for _, p := range w.stale {
		t.Errorf("exampleExceptions[%q]: the example has the key now; remove the exception", p)
	}
	for p := range exampleExceptions {
		if !w.known[p] {
			t.Errorf("exampleExceptions[%q] names no key of Config", p)
		}
	}
}

// keyWalker walks a struct type by its yaml tags alongside the example's
// YAML nodes and collects the key paths the example lacks.
type keyWalker struct {
	missing []string
	stale   []string        // exceptions present in the example
	known   map[string]bool // every key path visited
}

func (w *keyWalker) fields(t reflect.Type, m *yaml.Node, prefix string, path []reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if slices.Contains(strings.Split(opts, ","), "inline") {
			w.fields(deref(f.Type), m, prefix, path)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default key
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		w.value(f.Type, mappingValue(m, name), key, path)
	}
}

func (w *keyWalker) value(t reflect.Type, n *yaml.Node, key string, path []reflect.Type) {
	w.known[key] = true
	_, exempt := exampleExceptions[key]
	switch {
	case n == nil && exempt:
		return
	case n == nil:
		// A missing section: name each of its keys.
		if st := deref(t); st.Kind() == reflect.Struct && !leaf(st) && !slices.Contains(path, st) {
			w.fields(st, nil, key, append(path, st))
		} else {
			w.missing = append(w.missing, key)
		}
		return
	case exempt:
		w.stale = append(w.stale, key)
	}
	t = deref(t)
	if leaf(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		// A type already on the path (Match.not, Match.all) recurses:
		// its key is enough.
		if n.Kind == yaml.MappingNode && !slices.Contains(path, t) {
			w.fields(t, n, key, append(path, t))
		}
	case reflect.Slice, reflect.Array:
		et := deref(t.Elem())
		if et.Kind() != reflect.Struct || leaf(et) || slices.Contains(path, et) || n.Kind != yaml.SequenceNode {
			return
		}
		for _, item := range n.Content {
			if item = resolve(item); item.Kind == yaml.MappingNode {
				w.fields(et, item, key+"[]", append(path, et))
				return
			}
		}
	}
	// Maps: the key itself is enough.
}

// leaf reports whether t decodes itself (ByteSize, Prefixes, time.Time) or
// holds no keys.
func leaf(t reflect.Type) bool {
	p := reflect.PointerTo(t)
	if p.Implements(reflect.TypeFor[yaml.Unmarshaler]()) || p.Implements(reflect.TypeFor[encoding.TextUnmarshaler]()) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Array, reflect.Map:
		return false
	}
	return true
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// mappingValue returns the value of key in mapping m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	m = resolve(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return resolve(m.Content[i+1])
		}
	}
	return nil
}

// The example's challenge section states the challenge service's defaults
// (TestExampleConfigIsValidAndDocumentsDefaults checks the other sections).
func TestExampleChallengeIsDefault(t *testing.T) {
	c, err := Load(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	got := c.Challenge
	got.SetDefaults()
	var want challenge.Config
	want.SetDefaults()
	// An empty list in the file and an omitted one are the same default.
	for _, p := range []*[]string{&got.Allow.Paths, &got.Allow.CIDRs, &got.Allow.UserAgents} {
		if len(*p) == 0 {
			*p = nil
		}
	}
	if len(got.Keys) == 0 {
		got.Keys = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("example challenge section differs from the defaults:\nexample %+v\ndefault %+v", got, want)
	}
	if c.Challenge.NoJSTokenTTL != 0 {
		t.Errorf("challenge.nojs_token_ttl = %v: its default follows token_ttl, write 0s", c.Challenge.NoJSTokenTTL)
	}
}
