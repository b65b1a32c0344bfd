package recipes_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/imagebake/imagebake/recipes"
)

// Each file in testdata/broken is a small, realistic recipe with one kind of
// mistake (a few have several, to show that one run reports all of them).
// Its expected errors are header comments, in order:
//
//	# want: LINE:COL FIELD: MESSAGE SUBSTRING
//
// FIELD is "-" for errors that belong to no field (YAML syntax, empty file).
const brokenDir = "testdata/broken"

// knownBugs are files whose want lines say what the loader should report
// but does not yet. Such a file is skipped while the bug stands and fails
// once it is fixed, so that its entry here goes and the expectation starts
// guarding. (The table, not a comment in the file, so that removing it moves
// no line.)
var knownBugs = map[string]string{}

// wantsWithoutComments holds the expectations of files that cannot carry a
// comment: a comment would change what they test.
var wantsWithoutComments = map[string][]wantError{
	"empty.yaml": {{Line: 1, Col: 1, Field: "", Message: "the file is empty"}},
}

type wantError struct {
	Line, Col int
	Field     string
	Message   string // a substring of the error's message
}

func (w wantError) String() string {
	return fmt.Sprintf("%d:%d %s: %s", w.Line, w.Col, orDash(w.Field), w.Message)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var wantLineRe = regexp.MustCompile(`^# want: (\d+):(\d+) (\S+): (.+)$`)

// readExpectations parses a broken recipe's want comments.
func readExpectations(data []byte) (wants []wantError, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "# want:") {
			continue
		}
		m := wantLineRe.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("line %d: %q is not `# want: LINE:COL FIELD: MESSAGE`", n, line)
		}
		l, _ := strconv.Atoi(m[1])
		c, _ := strconv.Atoi(m[2])
		field := m[3]
		if field == "-" {
			field = ""
		}
		wants = append(wants, wantError{Line: l, Col: c, Field: field, Message: m[4]})
	}
	return wants, sc.Err()
}

// loadNoPanic loads a recipe and turns a panic into a test failure that
// names the file.
func loadNoPanic(t *testing.T, path string) (r *recipes.Recipe, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("Load(%s) panicked: %v\n%s", path, p, debug.Stack())
		}
	}()
	return recipes.Load(path)
}

// compare returns every difference between the errors got and wanted.
func compare(path string, got []recipes.FieldError, wants []wantError) []string {
	var problems []string
	for i := 0; i < max(len(got), len(wants)); i++ {
		switch {
		case i >= len(got):
			problems = append(problems, fmt.Sprintf("missing error %d: want %s", i, wants[i]))
		case i >= len(wants):
			problems = append(problems, fmt.Sprintf("unexpected error %d: %d:%d %s: %s", i, got[i].Line, got[i].Col, orDash(got[i].Field), got[i].Message))
		default:
			g, w := got[i], wants[i]
			if g.Line != w.Line || g.Col != w.Col || g.Field != w.Field || !strings.Contains(g.Message, w.Message) {
				problems = append(problems, fmt.Sprintf("error %d:\n   got %d:%d %s: %s\n  want %s", i, g.Line, g.Col, orDash(g.Field), g.Message, w))
			}
		}
	}
	for i, g := range got {
		if g.File != path {
			problems = append(problems, fmt.Sprintf("error %d: File = %q, want %q", i, g.File, path))
		}
		prefix := fmt.Sprintf("%s:%d:%d: ", path, g.Line, g.Col)
		if s := g.Error(); !strings.HasPrefix(s, prefix) {
			problems = append(problems, fmt.Sprintf("error %d: Error() = %q, want prefix %q", i, s, prefix))
		}
	}
	return problems
}

func TestBrokenRecipes(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(brokenDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 30 {
		t.Fatalf("%d broken recipes in %s; want at least 30", len(paths), brokenDir)
	}
	seen := map[string]bool{}
	for _, path := range paths {
		name := filepath.Base(path)
		seen[name] = true
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			wants, err := readExpectations(data)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if table, ok := wantsWithoutComments[name]; ok {
				if len(wants) > 0 {
					t.Fatalf("%s has want comments and an entry in wantsWithoutComments; keep one", path)
				}
				wants = table
			}
			if len(wants) == 0 {
				t.Fatalf("%s has no expectation: add `# want: LINE:COL FIELD: MESSAGE` lines", path)
			}

			r, err := loadNoPanic(t, path)
			var problems []string
			var list *recipes.ErrorList
			switch {
			case err == nil:
				problems = append(problems, fmt.Sprintf("loaded without error (recipe %q); want %d errors", r.Name, len(wants)))
			case !errors.As(err, &list):
				problems = append(problems, fmt.Sprintf("error is %T (%v), want *recipes.ErrorList", err, err))
			default:
				if r != nil {
					problems = append(problems, "returned a recipe along with errors")
				}
				if list.File != path {
					problems = append(problems, fmt.Sprintf("ErrorList.File = %q, want %q", list.File, path))
				}
				if n := strings.Count(list.Error(), "\n") + 1; n != len(list.Errors) {
					problems = append(problems, fmt.Sprintf("Error() has %d lines for %d errors", n, len(list.Errors)))
				}
				problems = append(problems, compare(path, list.Errors, wants)...)
			}

			if knownBug, ok := knownBugs[name]; ok {
				if len(problems) == 0 {
					t.Fatalf("%s now loads as its want lines say: the known bug is fixed; remove it from knownBugs", path)
				}
				t.Skipf("known bug: %s\n%s", knownBug, strings.Join(problems, "\n"))
			}
			for _, p := range problems {
				t.Error(p)
			}
		})
	}
	for name := range wantsWithoutComments {
		if !seen[name] {
			t.Errorf("wantsWithoutComments names %s, which is not in %s", name, brokenDir)
		}
	}
	for name := range knownBugs {
		if !seen[name] {
			t.Errorf("knownBugs names %s, which is not in %s", name, brokenDir)
		}
	}
}

// The expectation parser must itself be able to fail, or a typo in a want
// line would quietly test nothing.
func TestReadExpectations(t *testing.T) {
	wants, err := readExpectations([]byte("# Mistake: x\n# want: 3:5 users[0].name: \"Bob\" is not\n# want: 1:1 -: invalid YAML\nname: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []wantError{{3, 5, "users[0].name", `"Bob" is not`}, {1, 1, "", "invalid YAML"}}
	if fmt.Sprint(wants) != fmt.Sprint(want) {
		t.Errorf("got %v; want %v", wants, want)
	}
	if _, err := readExpectations([]byte("# want: 3 name: x\n")); err == nil {
		t.Error("a want line without a column was accepted")
	}
}
