package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// RunnerPin is what a recipe pins of the runner: its version and the
// tarball's SHA-256.
type RunnerPin struct {
	Version, SHA256 string
}

// span is one scalar value's bytes in a recipe file: [start, end) is the
// value proper, without its quotes.
type span struct {
	start, end int
	value      string
}

// ReadRunner returns the runner version and SHA-256 a recipe pins, read
// from the YAML alone so that it also works on a recipe that no longer
// validates (a runner older than MinRunnerVersion, say).
func ReadRunner(data []byte) (RunnerPin, error) {
	ver, sum, err := runnerSpans(data)
	if err != nil {
		return RunnerPin{}, err
	}
	return RunnerPin{Version: ver.value, SHA256: sum.value}, nil
}

// BumpRunner rewrites runner.version and runner.sha256 in place. Only the
// two values' bytes change: comments, blank lines, quoting, key order and
// every other byte stay as written, so the diff of a bump is two values.
func BumpRunner(data []byte, version, sha256 string) ([]byte, error) {
	if !runnerVersionRe.MatchString(version) {
		return nil, fmt.Errorf("runner version %q: not MAJOR.MINOR.PATCH (e.g. 2.337.0)", version)
	}
	if !hex64Re.MatchString(sha256) {
		return nil, fmt.Errorf("runner sha256 %q: not a SHA-256 (64 hex digits)", sha256)
	}
	ver, sum, err := runnerSpans(data)
	if err != nil {
		return nil, err
	}
	type edit struct {
		s   span
		new string
	}
	a, b := edit{ver, version}, edit{sum, sha256}
	if a.s.start > b.s.start {
		a, b = b, a
	}
	var buf bytes.Buffer
	buf.Grow(len(data) + len(version) + len(sha256))
	buf.Write(data[:a.s.start])
	buf.WriteString(a.new)
	buf.Write(data[a.s.end:b.s.start])
	buf.WriteString(b.new)
	buf.Write(data[b.s.end:])
	out := buf.Bytes()
	// The new values are digits, dots and hex: they mean the same in every
	// scalar style. Check anyway that YAML reads back exactly what we wrote.
	got, err := ReadRunner(out)
	if err != nil {
		return nil, fmt.Errorf("runner bump: the edited recipe no longer reads: %w", err)
	}
	if got.Version != version || got.SHA256 != sha256 {
		return nil, fmt.Errorf("runner bump: the edited recipe reads back as %s/%s, not %s/%s", got.Version, got.SHA256, version, sha256)
	}
	return out, nil
}

// runnerSpans finds the byte ranges of runner.version and runner.sha256.
func runnerSpans(data []byte) (ver, sum span, err error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return span{}, span{}, fmt.Errorf("recipe: invalid YAML: %w", err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return span{}, span{}, errors.New("recipe: not a mapping of fields, so there is no runner section")
	}
	runner := mappingValue(root, "runner")
	if runner == nil {
		return span{}, span{}, errors.New("recipe has no runner section: there is no runner version to bump")
	}
	if runner.Kind != yaml.MappingNode {
		return span{}, span{}, fmt.Errorf("recipe line %d: runner is %s, not a mapping with version and sha256", runner.Line, kindName(runner))
	}
	lines := lineStarts(data)
	for _, f := range []struct {
		key string
		dst *span
	}{{"version", &ver}, {"sha256", &sum}} {
		n := mappingValue(runner, f.key)
		if n == nil {
			return span{}, span{}, fmt.Errorf("recipe line %d: runner has no %s; add `%s:` under runner", runner.Line, f.key, f.key)
		}
		s, err := scalarSpan(data, lines, n)
		if err != nil {
			return span{}, span{}, fmt.Errorf("recipe line %d: runner.%s: %w", n.Line, f.key, err)
		}
		*f.dst = s
	}
	return ver, sum, nil
}

// mappingValue returns the value of key in m, or nil.
func mappingValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func lineStarts(data []byte) []int {
	starts := []int{0}
	for i, b := range data {
		if b == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

// scalarSpan locates n's value in data. yaml.v3 reports 1-based lines and
// columns counted in characters, not bytes, so the column is walked rune by
// rune. Only single-line plain, single- and double-quoted scalars without
// tags, anchors or escapes are handled: for those the source text between
// the quotes is exactly the value, which BumpRunner checks rather than trusts.
func scalarSpan(data []byte, lines []int, n *yaml.Node) (span, error) {
	const hint = "write it as a plain or quoted scalar on one line, e.g. version: 2.337.0"
	if n.Kind != yaml.ScalarNode {
		return span{}, fmt.Errorf("%s is not a single value; %s", kindName(n), hint)
	}
	if n.Tag == "!!null" || n.Value == "" {
		return span{}, fmt.Errorf("empty; %s", hint)
	}
	if n.Line < 1 || n.Line > len(lines) || n.Column < 1 {
		return span{}, fmt.Errorf("position %d:%d is outside the file", n.Line, n.Column)
	}
	off := lines[n.Line-1]
	for col := 1; col < n.Column; col++ {
		if off >= len(data) || data[off] == '\n' {
			return span{}, fmt.Errorf("position %d:%d is outside its line", n.Line, n.Column)
		}
		_, size := utf8.DecodeRune(data[off:])
		off += size
	}
	if n.Style&yaml.TaggedStyle != 0 || n.Anchor != "" {
		return span{}, fmt.Errorf("the value %q carries a tag or an anchor; %s", n.Value, hint)
	}
	start := off
	switch n.Style {
	case 0: // plain
	case yaml.DoubleQuotedStyle:
		if !bytes.HasPrefix(data[off:], []byte(`"`)) {
			return span{}, fmt.Errorf("expected a '\"' at %d:%d; %s", n.Line, n.Column, hint)
		}
		start++
	case yaml.SingleQuotedStyle:
		if !bytes.HasPrefix(data[off:], []byte(`'`)) {
			return span{}, fmt.Errorf("expected a \"'\" at %d:%d; %s", n.Line, n.Column, hint)
		}
		start++
	default:
		return span{}, fmt.Errorf("a block scalar (| or >); %s", hint)
	}
	end := start + len(n.Value)
	if end > len(data) || string(data[start:end]) != n.Value {
		// A tag, an anchor, an escape or a line fold: the source is not
		// the value verbatim, and a blind edit could corrupt the file.
		return span{}, fmt.Errorf("the value %q is not written verbatim at %d:%d (a tag, anchor, escape or line break?); %s", n.Value, n.Line, n.Column, hint)
	}
	switch n.Style {
	case yaml.DoubleQuotedStyle:
		if end >= len(data) || data[end] != '"' {
			return span{}, fmt.Errorf("unterminated or escaped quoted value at %d:%d; %s", n.Line, n.Column, hint)
		}
	case yaml.SingleQuotedStyle:
		if end >= len(data) || data[end] != '\'' {
			return span{}, fmt.Errorf("unterminated or escaped quoted value at %d:%d; %s", n.Line, n.Column, hint)
		}
	}
	return span{start: start, end: end, value: n.Value}, nil
}

// ReplaceFile writes data to path atomically: a temporary file in the same
// directory, fsynced, given the original's mode, then renamed over it, so
// a crash leaves the old recipe or the new one, never half of one. A
// symlinked recipe is replaced at its target, keeping the link.
func ReplaceFile(path string, data []byte) error {
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	fi, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".*.tmp")
	if err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("recipe %s: writing %s: %w", path, tmp.Name(), err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		os.Remove(tmp.Name())
		done = true
		return fmt.Errorf("recipe %s: %w", path, err)
	}
	done = true
	return nil
}
