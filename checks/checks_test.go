package checks

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebake/imagebake/recipes"
)

// The checks are real shell: run them on this machine against a recipe that
// describes it, and against one that does not.
func TestChecksRunForReal(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "hello.txt")
	if err := os.WriteFile(f, []byte("hello\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	owner := strings.TrimSpace(run(t, "id -un")) + ":" + strings.TrimSpace(run(t, "id -gn"))
	recipe := `name: host
base: {local: {builtin: debian-bookworm}}
packages: [bash, PKG]
groups: [root, nosuchgroup-ib]
files:
  - {path: "FILE", content: "hello\n", mode: "0640", owner: "OWNER"}
  - {path: "FILE2", content: "other\n", mode: "0640", owner: "OWNER"}
`
	recipe = strings.NewReplacer("PKG", "nosuchpackage-ib", "FILE2", filepath.Join(dir, "missing"), "FILE", f, "OWNER", owner).Replace(recipe)
	r, err := recipes.Parse("host.yaml", []byte(recipe))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"package bash installed":                                          true,
		"package nosuchpackage-ib installed":                              false,
		"group root exists":                                               true,
		"group nosuchgroup-ib exists":                                     false,
		"file " + f + " (0640 " + owner + ")":                             true,
		"file " + filepath.Join(dir, "missing") + " (0640 " + owner + ")": false,
	}
	seen := 0
	for _, c := range For(r, Build) {
		pass, ok := want[c.Name]
		if !ok {
			continue
		}
		seen++
		err := exec.Command("sh", "-c", c.Run).Run()
		if (err == nil) != pass {
			t.Errorf("check %q: passed=%v, want %v (%s)", c.Name, err == nil, pass, c.Run)
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of %d expected checks", seen, len(want))
	}
}

func TestPhasesAndOrder(t *testing.T) {
	r, err := recipes.Load("../recipes/local-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	build, verify := For(r, Build), For(r, Verify)
	has := func(cs []string, name string) bool {
		for _, c := range cs {
			if c == name {
				return true
			}
		}
		return false
	}
	names := func(phase Phase) []string {
		var out []string
		for _, c := range For(r, phase) {
			out = append(out, c.Name)
		}
		return out
	}
	if !has(names(Build), "unit demo-agent.service not active during the build") || has(names(Verify), "unit demo-agent.service not active during the build") {
		t.Error("the not-active check belongs to the build only")
	}
	if last := build[len(build)-1]; last.Name != r.Checks[len(r.Checks)-1].Name {
		t.Errorf("the recipe's own checks come last, got %q", last.Name)
	}
	if len(verify) >= len(build) {
		t.Errorf("verify has %d checks, build %d", len(verify), len(build))
	}
	for _, want := range []string{"user demorunner in group builders", "sudoers valid (visudo -c)", "unit demo-agent.service enabled"} {
		if !has(names(Build), want) {
			t.Errorf("missing built-in check %q", want)
		}
	}
}

func run(t *testing.T, cmd string) string {
	out, err := exec.Command("sh", "-c", cmd).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// Issue 12 item 17: a file whose path holds "\n", "\t" or "\\" as
// characters is checked as it is. dash's echo (sh here) rewrote them, so the
// check failed on a correct file.
func TestFileCheckBackslashPaths(t *testing.T) {
	dir := t.TempDir()
	owner := strings.TrimSpace(run(t, "id -un")) + ":" + strings.TrimSpace(run(t, "id -gn"))
	var files strings.Builder
	var paths []string
	for _, name := range []string{`new\nline`, `tab\there`, `two\\back`, `trailing\`, `\leading`, `per%cent`} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("hello\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
		// Single-quoted YAML: backslashes are literal.
		fmt.Fprintf(&files, "  - {path: '%s', content: \"hello\\n\", mode: \"0640\", owner: %q}\n", p, owner)
	}
	r, err := recipes.Parse("host.yaml", []byte("name: host\nbase: {local: {builtin: debian-bookworm}}\nfiles:\n"+files.String()))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, p := range paths {
		want["file "+p+" (0640 "+owner+")"] = true
	}
	seen := 0
	for _, c := range For(r, Build) {
		if !want[c.Name] {
			continue
		}
		seen++
		if out, err := exec.Command("sh", "-c", c.Run).CombinedOutput(); err != nil {
			t.Errorf("check %q fails on a correct file: %v\n%s\n%s", c.Name, err, c.Run, out)
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of %d file checks", seen, len(want))
	}
}
