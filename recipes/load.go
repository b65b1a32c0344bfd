package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxRecipeBytes bounds what Load reads; a recipe is a page of YAML, and the
// bound keeps a runaway file (or a YAML bomb) from exhausting memory.
const MaxRecipeBytes = 1 << 20

// Load reads, decodes, defaults and validates the recipe at path. A non-nil
// error is an *ErrorList with every problem found, or an I/O error.
func Load(path string) (*Recipe, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// ReadFile reads a recipe file: a regular file (symbolic links followed)
// of at most MaxRecipeBytes. A FIFO or device is refused before it is
// opened, since opening a FIFO blocks and /dev/zero never ends; the read is
// bounded too, because a file can grow after the check.
func ReadFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		what := "not a regular file"
		switch m := fi.Mode(); {
		case m.IsDir():
			what = "a directory, not a regular file"
		case m&fs.ModeNamedPipe != 0:
			what = "a named pipe, not a regular file"
		case m&fs.ModeDevice != 0:
			what = "a device, not a regular file"
		case m&fs.ModeSocket != 0:
			what = "a socket, not a regular file"
		}
		return nil, fmt.Errorf("recipe %s: %s; give the path of a .yaml file", path, what)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	defer f.Close()
	// One byte over the limit is enough for Parse to report the size.
	data, err := io.ReadAll(io.LimitReader(f, MaxRecipeBytes+1))
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	return data, nil
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse is Load for bytes already read; name is used in error positions.
func Parse(name string, data []byte) (*Recipe, error) {
	errs := &ErrorList{File: name}
	if len(data) > MaxRecipeBytes {
		errs.add(Pos{}, "", fmt.Sprintf("file is over %d bytes, the most a recipe may have; split its large files out", MaxRecipeBytes))
		return nil, errs
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			errs.add(Pos{1, 1}, "", "the file is empty; start from recipes/local-demo.yaml")
			return nil, errs
		}
		errs.add(yamlPos(err, data), "", "invalid YAML: "+yamlMsg(err, data))
		return nil, errs
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		errs.add(Pos{extra.Line, extra.Column}, "", "a recipe file holds one YAML document; remove the second '---' document")
		return nil, errs
	case !errors.Is(err, io.EOF):
		// Whatever follows the recipe must not be silently dropped.
		errs.add(yamlPos(err, data), "", "invalid YAML: "+yamlMsg(err, data))
		return nil, errs
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		// An empty document ("---") has its null one line past the end.
		errs.add(clampPos(Pos{root.Line, root.Column}, data), "", "a recipe is a mapping of fields (name:, base:, packages: …), found "+kindName(root))
		return nil, errs
	}
	r := &Recipe{Source: name}
	d := &decoder{errs: errs, pos: map[string]Pos{}, badText: map[string]bool{}, lines: lineCount(data)}
	d.decode(root, reflect.ValueOf(r).Elem(), "", line)
	if d.stopped {
		// What was decoded is a fraction of the recipe: validating it
		// would only add noise to the one error that matters.
		return nil, errs.errOrNil()
	}
	r.pos = d.pos
	applyDefaults(r)
	validate(r, errs, d.badText)
	if err := errs.errOrNil(); err != nil {
		return nil, err
	}
	return r, nil
}

// yamlParserProblems are yaml.v3's parser (not scanner) messages. For these
// it prints the 0-based line of the mark (its scanner errors add the 1), so
// the line it names is one too early.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected key":              true,
	"did not find expected '-' indicator":    true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
	"found undefined tag handle":             true,
}

func yamlPos(err error, data []byte) Pos {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(strings.SplitN(msg, "\n", 2)[0]); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			line++
		}
		// At the end of a stream without a final line break, the "one
		// line on" is past the last line: point at the last one.
		return clampPos(Pos{line, 1}, data)
	}
	// yaml.v3's reader errors (a control character, broken UTF-8) carry a
	// byte offset it does not print: find the character ourselves.
	if readerError(msg) {
		if p, _, ok := badChar(data); ok {
			return p
		}
	}
	return Pos{1, 1}
}

func yamlMsg(err error, data []byte) string {
	msg := strings.SplitN(err.Error(), "\n", 2)[0]
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		return m[2]
	}
	if !readerError(msg) {
		return strings.TrimPrefix(msg, "yaml: ")
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if _, what, ok := badChar(data); ok {
		msg += " (" + what + "); write it as an escape in a double-quoted string, or remove it"
	}
	return msg
}

// clampPos keeps a position yaml.v3 puts past the end of the stream (at
// the end without a final line break) on the last line.
func clampPos(p Pos, data []byte) Pos {
	if n := lineCount(data); p.Line > n {
		return Pos{n, 1}
	}
	return p
}

// lineCount is how many lines yaml.v3 sees in data: one more than its line
// breaks (CR LF, CR, LF, NEL, LS, PS).
func lineCount(data []byte) int {
	n := 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == '\r' && i+1 < len(data) && data[i+1] == '\n':
			size = 2
			n++
		case r == '\r' || r == '\n' || r == 0x85 || r == 0x2028 || r == 0x2029:
			n++
		}
		i += size
	}
	return n
}

// readerError reports whether msg is one of yaml.v3's reader (character
// level) errors, which name no line.
func readerError(msg string) bool {
	return strings.Contains(msg, "control characters are not allowed") || strings.Contains(msg, "UTF-8") ||
		strings.Contains(msg, "invalid Unicode character")
}

// badChar finds the first character a YAML stream may not hold (YAML 1.2
// §5.1, as yaml.v3's reader checks it) or the first invalid UTF-8, with its
// position counted the way yaml.v3 counts: lines broken at CR LF, CR, LF,
// NEL, LS and PS; columns in characters, from 1. A stream in UTF-16 (with
// its BOM) is left to yaml.v3.
func badChar(data []byte) (Pos, string, bool) {
	if bytes.HasPrefix(data, []byte{0xff, 0xfe}) || bytes.HasPrefix(data, []byte{0xfe, 0xff}) {
		return Pos{}, "", false
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			return Pos{line, col}, fmt.Sprintf("byte 0x%02x is not UTF-8", data[i]), true
		case r == '\r' && i+1 < len(data) && data[i+1] == '\n':
			size = 2
			fallthrough
		case r == '\r' || r == '\n' || r == 0x85 || r == 0x2028 || r == 0x2029:
			line, col = line+1, 1
		case !(r == '\t' || r >= 0x20 && r <= 0x7e || r >= 0xa0 && r <= 0xd7ff || r >= 0xe000 && r <= 0xfffd || r >= 0x10000 && r <= 0x10ffff):
			return Pos{line, col}, fmt.Sprintf("%U", r), true
		default:
			col++
		}
		i += size
	}
	return Pos{}, "", false
}

// Position returns where a field path (e.g. "sudoers[0].commands[2]") was
// written, or the nearest enclosing field's position.
func (r *Recipe) Position(path string) Pos {
	for p := path; ; {
		if pos, ok := r.pos[p]; ok {
			return pos
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			if pos, ok := r.pos[""]; ok {
				return pos
			}
			return Pos{}
		}
		p = p[:i]
	}
}
