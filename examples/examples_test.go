// Package examples holds the example workflows and Terraform a platform
// team copies; its test keeps the GitHub Actions workflows valid.
package examples

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// actionlint finds the real linter (github.com/rhysd/actionlint, which also
// runs shellcheck over every run: step); CI installs it, so a missing one
// fails there instead of skipping.
func actionlint(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("actionlint")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("actionlint not found: CI must install it (go install github.com/rhysd/actionlint/cmd/actionlint)")
		}
		t.Skip("actionlint not installed")
	}
	return path
}

func TestWorkflowsPassActionlint(t *testing.T) {
	bin := actionlint(t)
	files, err := filepath.Glob("github-actions/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example workflows found (%v)", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := exec.Command(bin, "-no-color", f).CombinedOutput()
			if err != nil {
				t.Fatalf("actionlint %s: %v\n%s", f, err, out)
			}
		})
	}
}

// The linter really reads the files: a workflow with an unknown event, a
// bad expression and a shell error fails it, each named.
func TestActionlintRefusesABrokenWorkflow(t *testing.T) {
	bin := actionlint(t)
	out, err := exec.Command(bin, "-no-color", "testdata/broken.yml").CombinedOutput()
	if err == nil {
		t.Fatalf("actionlint accepted testdata/broken.yml:\n%s", out)
	}
	for _, want := range []string{"pull_requests", "matrix.nope", "SC2086"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("actionlint's report does not name %q:\n%s", want, out)
		}
	}
}
