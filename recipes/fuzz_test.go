package recipes_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/imagebake/imagebake/recipes"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic; it returns
// either a recipe or a non-empty *ErrorList whose errors name the file and
// point inside the input. A recipe's hash does not depend on the file name
// or on the parse, and survives writing the recipe back out as YAML.
//
//	go test ./recipes -run '^$' -fuzz FuzzParse -fuzztime 5m -parallel 1
func FuzzParse(f *testing.F) {
	// Seeds: the shipped recipes, every broken one, and a few shapes the
	// loader treats specially.
	for _, glob := range []string{"*.yaml", filepath.Join(brokenDir, "*.yaml")} {
		paths, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	for _, s := range []string{
		"",
		"---\n",
		"name: a\n---\nname: b\n",
		"name: &n ab\nbase: {azure: 'a:b:c:d'}\ngroups: [*n, *n]\n",
		"name: ab\nbase: {local: {builtin: debian-bookworm}}\ntags: {'': x, 'a.b': y}\n",
		"name: ab\nbase: {azure: 'a:b:c:d'}\nbuild: {timeouts: {boot: 99999999999d}}\n",
		"name: ab\nbase: {azure: 'a:b:c:d'}\ngallery: {endOfLife: 30d, regions: [{name: eastus, replicas: 0x10}]}\n",
		"{name: ab, base: {azure: 'a:b:c:d'}, files: [{path: /x, content: !!binary aGk=}]}",
		"name: ab\r\nbase:\r\n  azure: a:b:c:d\r\n",
		"\ufeffname: ab\nbase: {azure: a:b:c:d}\n",
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		r, err := recipes.Parse(name, data)
		if (r == nil) == (err == nil) {
			t.Fatalf("Parse returned recipe %v and error %v; want exactly one", r != nil, err)
		}
		if err != nil {
			checkErrorList(t, name, data, err)
			return
		}

		h := r.Hash()
		if h2 := r.Hash(); h2 != h {
			t.Fatalf("Hash not deterministic: %s then %s", h, h2)
		}
		if len(h) != 64 {
			t.Fatalf("Hash %q is not 64 hex digits", h)
		}
		// The same bytes under another name: the name is not content.
		r2, err := recipes.Parse("elsewhere/other.yaml", data)
		if err != nil {
			t.Fatalf("parsed as %s but not as other.yaml: %v", name, err)
		}
		if h2 := r2.Hash(); h2 != h {
			t.Fatalf("hash depends on the file name or on the parse: %s vs %s", h, h2)
		}
		// Positions of what was parsed are inside the input.
		lines := lineCount(data)
		for _, field := range []string{"", "name", "base", "users[0].name", "runner.env", "files[0].path", "gallery.version"} {
			if p := r.Position(field); p.Line < 1 || p.Line > lines {
				t.Errorf("Position(%q) = %v, outside the input's %d lines", field, p, lines)
			}
		}
		// Written back out and read again, the recipe means the same: what
		// was defaulted stays, what was written is read back as written.
		// Indent 2: yaml.v3's default of 4 misplaces a block scalar's
		// indentation indicator inside a sequence item ("  0\n" under
		// systemd[1].content reads back as "0\n").
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		err = enc.Encode(r)
		if err == nil {
			err = enc.Close()
		}
		out := buf.Bytes()
		if err != nil {
			t.Fatalf("marshal parsed recipe: %v", err)
		}
		r3, err := recipes.Parse("roundtrip.yaml", out)
		if err != nil {
			t.Fatalf("recipe does not parse after a YAML round trip: %v\n%s", err, out)
		}
		if h3 := r3.Hash(); h3 != h {
			t.Fatalf("hash changed after a YAML round trip: %s vs %s\n%s", h, h3, out)
		}
	})
}

// yamlLines splits data where YAML breaks lines: at "\r\n", "\r", "\n",
// NEL, LS and PS (yaml.v3 counts all of them, so positions do too). A final
// line without a break counts, and so does the empty line after a final
// break, where YAML reports an unexpected end of the stream.
func yamlLines(data []byte) [][]byte {
	var lines [][]byte
	start := 0
	for i := 0; i < len(data); {
		n := 0
		switch {
		case data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n':
			n = 2
		case data[i] == '\r' || data[i] == '\n':
			n = 1
		case bytes.HasPrefix(data[i:], []byte("\u0085")):
			n = 2
		case bytes.HasPrefix(data[i:], []byte("\u2028")), bytes.HasPrefix(data[i:], []byte("\u2029")):
			n = 3
		}
		if n == 0 {
			i++
			continue
		}
		lines = append(lines, data[start:i])
		i += n
		start = i
	}
	return append(lines, data[start:])
}

func lineCount(data []byte) int { return len(yamlLines(data)) }

func checkErrorList(t *testing.T, name string, data []byte, err error) {
	t.Helper()
	var list *recipes.ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("error is %T (%v), want *recipes.ErrorList", err, err)
	}
	if len(list.Errors) == 0 {
		t.Fatal("empty *ErrorList returned as an error")
	}
	if list.File != name {
		t.Errorf("ErrorList.File = %q, want %q", list.File, name)
	}
	lines := yamlLines(data)
	prev := recipes.FieldError{}
	for i, e := range list.Errors {
		if e.File != name {
			t.Errorf("error %d (%v): File = %q, want %q", i, e, e.File, name)
		}
		if strings.TrimSpace(e.Message) == "" {
			t.Errorf("error %d (%v): empty message", i, e)
		}
		if e.Line == 0 && e.Col == 0 && len(data) > recipes.MaxRecipeBytes {
			continue // the size limit names no position
		}
		if e.Line < 1 || e.Line > len(lines) {
			t.Errorf("error %d (%v): line %d outside the input's %d lines", i, e, e.Line, len(lines))
			continue
		}
		// Columns count characters; the one after the last may be named
		// (a missing value at the end of a line).
		if width := utf8.RuneCount(lines[e.Line-1]) + 1; e.Col < 1 || e.Col > width {
			t.Errorf("error %d (%v): column %d outside line %d (%d characters)", i, e, e.Col, e.Line, width-1)
		}
		if e.Line < prev.Line || e.Line == prev.Line && e.Col < prev.Col {
			t.Errorf("error %d (%v) comes after %v: errors are not sorted by position", i, e, prev)
		}
		prev = e
		if want := fmt.Sprintf("%s:%d:%d: ", name, e.Line, e.Col); !strings.HasPrefix(e.Error(), want) {
			t.Errorf("error %d: Error() = %q, want prefix %q", i, e.Error(), want)
		}
	}
}
