package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxRecipeBytes bounds what Load reads; a recipe is a page of YAML, and the
// bound keeps a runaway file (or a YAML bomb) from exhausting memory.
const MaxRecipeBytes = 1 << 20

// Load reads, decodes, defaults and validates the recipe at path. A non-nil
// error is an *ErrorList with every problem found, or an I/O error.
func Load(path string) (*Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("recipe %s: %w", path, err)
	}
	return Parse(path, data)
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse is Load for bytes already read; name is used in error positions.
func Parse(name string, data []byte) (*Recipe, error) {
	errs := &ErrorList{File: name}
	if len(data) > MaxRecipeBytes {
		errs.add(Pos{}, "", fmt.Sprintf("file is %d bytes; a recipe may be at most %d", len(data), MaxRecipeBytes))
		return nil, errs
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			errs.add(Pos{1, 1}, "", "the file is empty; start from recipes/local-demo.yaml")
			return nil, errs
		}
		errs.add(yamlPos(err), "", "invalid YAML: "+yamlMsg(err))
		return nil, errs
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		errs.add(Pos{extra.Line, extra.Column}, "", "a recipe file holds one YAML document; remove the second '---' document")
		return nil, errs
	case !errors.Is(err, io.EOF):
		// Whatever follows the recipe must not be silently dropped.
		errs.add(yamlPos(err), "", "invalid YAML: "+yamlMsg(err))
		return nil, errs
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		errs.add(Pos{root.Line, root.Column}, "", "a recipe is a mapping of fields (name:, base:, packages: …), found "+kindName(root))
		return nil, errs
	}
	r := &Recipe{Source: name}
	d := &decoder{errs: errs, pos: map[string]Pos{}}
	d.decode(root, reflect.ValueOf(r).Elem(), "")
	r.pos = d.pos
	applyDefaults(r)
	validate(r, errs)
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

func yamlPos(err error) Pos {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(strings.SplitN(msg, "\n", 2)[0]); m != nil {
		line, _ := strconv.Atoi(m[1])
		if yamlParserProblems[m[2]] {
			line++
		}
		return Pos{line, 1}
	}
	return Pos{1, 1}
}

func yamlMsg(err error) string {
	msg := strings.SplitN(err.Error(), "\n", 2)[0]
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		return m[2]
	}
	return strings.TrimPrefix(msg, "yaml: ")
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
