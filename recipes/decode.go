package recipes

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Pos is a position in a recipe file (1-based).
type Pos struct {
	Line, Col int
}

// decoder maps a YAML node tree onto the recipe types by reflection, strictly:
// unknown keys, duplicate keys and wrong kinds are errors, and every error is
// collected (not just the first) with the node's position. It also records
// the position of every field path so that validation can point at it.
type decoder struct {
	errs  *ErrorList
	pos   map[string]Pos
	lines int // in the input, to keep positions inside it
	// badText holds the paths of strings refused for their characters, so
	// that validation does not report the same value a second time.
	badText map[string]bool
	// Alias expansion is bounded: a few kilobytes of nested aliases can
	// stand for millions of values.
	aliasDepth int
	aliasAt    *yaml.Node // the outermost alias being expanded
	aliasPath  string
	expanded   int  // values decoded through aliases so far
	stopped    bool // the budget ran out; decoding goes no further
}

// MaxAliasValues bounds how many values a recipe's aliases may stand for in
// total. Sharing a list of groups or commands stays far below it; a recipe
// past it is an alias bomb (a 10 KB file expanding to 15 MB) or should
// write its values out.
const MaxAliasValues = 10000

// textKind is which characters a string field may hold. Every recipe string
// ends up in a shell line, a unit, a sudoers rule, a path or an error
// message on a terminal, so control characters are refused by default.
type textKind int

const (
	// line: one line of text: no control character at all (tab, line
	// breaks, NUL, ESC, DEL, C1).
	line textKind = iota
	// multiline: text that may hold tabs and line breaks (unit content, a
	// check's shell, an armored key).
	multiline
	// data: a file's content, written byte for byte and never read as
	// syntax by imagebake; anything YAML can hold.
	data
)

// textKindOf reads a field's `text:"multiline"` or `text:"data"` tag.
func textKindOf(f reflect.StructField) textKind {
	switch f.Tag.Get("text") {
	case "multiline":
		return multiline
	case "data":
		return data
	}
	return line
}

// checkText refuses the characters kind does not allow, naming the first
// one and where it is in the value.
func (d *decoder) checkText(n *yaml.Node, path, s string, kind textKind) bool {
	if kind == data {
		return true
	}
	i := 0
	for _, r := range s {
		i++
		if !isControl(r) || kind == multiline && (r == '\t' || r == '\n' || r == '\r') {
			continue
		}
		d.badText[path] = true
		if r == '\n' || r == '\r' {
			d.fail(n, path, "values must be a single line; found a line break at character %d", i)
		} else {
			d.fail(n, path, "control character %U at character %d; recipe strings reach shell lines, units, sudoers and paths, where it would be misread: remove it", r, i)
		}
		return false
	}
	return true
}

// isControl is C0, DEL and C1 (Unicode category Cc).
func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f }

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	p := Pos{n.Line, n.Column}
	if p.Line > d.lines {
		// yaml.v3 places a null at the very end one line past it.
		p = Pos{d.lines, 1}
	}
	d.errs.add(p, path, fmt.Sprintf(format, args...))
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unsupported node"
}

func joinPath(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

// keyPath is joinPath for a key as written; a key holding control
// characters is quoted, so that a field path never carries raw escape codes
// to a terminal.
func keyPath(base, key string) string {
	for _, r := range key {
		if isControl(r) {
			return base + "[" + strconv.Quote(key) + "]"
		}
	}
	return joinPath(base, key)
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string, kind textKind) {
	if d.stopped {
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		if d.aliasDepth == 0 {
			d.aliasAt, d.aliasPath = n, path
		}
		d.aliasDepth++
		defer func() { d.aliasDepth-- }()
		// Errors about the aliased value point at the alias, where this
		// field is written, not at the anchor.
		target := *n.Alias
		target.Line, target.Column = n.Line, n.Column
		n = &target
	}
	if d.aliasDepth > 0 {
		if d.expanded++; d.expanded > MaxAliasValues {
			d.fail(d.aliasAt, d.aliasPath, "aliases expand to more than %d values by here; write the values out instead of repeating them through aliases", MaxAliasValues)
			d.stopped = true
			return
		}
	}
	d.pos[path] = Pos{n.Line, n.Column}
	switch v.Kind() {
	case reflect.Pointer:
		if n.Tag == "!!null" {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path, kind)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, found %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i), kind)
		}
		v.Set(s)
	case reflect.Map:
		if n.Tag == "!!null" {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected a mapping, found %s", kindName(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				d.fail(k, path, "keys must be plain strings")
				continue
			}
			if first, dup := seen[k.Value]; dup {
				d.fail(k, keyPath(path, k.Value), "duplicate key %q (first at line %d); remove one", k.Value, first)
				continue
			}
			seen[k.Value] = k.Line
			// Keys name env variables, tags and apt sources: one line.
			if !d.checkText(k, keyPath(path, k.Value), k.Value, line) {
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, joinPath(path, k.Value), kind)
			m.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.fail(n, path, "expected a string, found %s", kindName(n))
			return
		}
		if n.Tag == "!!binary" {
			// n.Value is the base64 text, not the bytes it stands for.
			d.fail(n, path, "!!binary values are not supported; write the text itself")
			return
		}
		// The raw text keeps what the author wrote: mode 0644 stays "0644",
		// version 1.10 stays "1.10" instead of becoming a float.
		v.SetString(n.Value)
		d.checkText(n, path, n.Value, kind)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || n.Decode(&b) != nil {
			d.fail(n, path, "expected true or false, found %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int:
		i, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" || err != nil {
			d.fail(n, path, "expected a whole number, found %s", kindName(n))
			return
		}
		v.SetInt(int64(i))
	default:
		panic(fmt.Sprintf("recipes: unsupported field kind %s", v.Kind()))
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Tag == "!!null" {
		return
	}
	if n.Kind == yaml.ScalarNode {
		// A struct with a `shorthand:"true"` string field may be written as
		// that field's value alone (registration: jit).
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if t.Field(i).Tag.Get("shorthand") == "true" {
				name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
				d.decode(n, v.Field(i), joinPath(path, name), line)
				d.pos[path] = Pos{n.Line, n.Column}
				return
			}
		}
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected a mapping, found %s", kindName(n))
		return
	}
	fields := map[string]int{}
	kinds := map[string]textKind{}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		if name != "" && name != "-" {
			fields[name] = i
			kinds[name] = textKindOf(t.Field(i))
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		kp := keyPath(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(k, kp, "duplicate key %q (first at line %d); remove one", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		idx, ok := fields[k.Value]
		if !ok {
			d.fail(k, kp, "unknown field %q%s", k.Value, suggest(k.Value, fields))
			continue
		}
		d.decode(val, v.Field(idx), kp, kinds[k.Value])
	}
}

// suggest names the closest known key, for typos such as "pakages".
func suggest(key string, fields map[string]int) string {
	best, bestD := "", 1<<30
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, f := range names {
		if dist := levenshtein(strings.ToLower(key), strings.ToLower(f)); dist < bestD {
			best, bestD = f, dist
		}
	}
	if best != "" && bestD <= 3 && bestD < len(key) {
		return fmt.Sprintf("; did you mean %q?", best)
	}
	return "; allowed here: " + strings.Join(names, ", ")
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
