package templates

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runcmdScript is the script cloud-init writes from runcmd's string
// entries: "#!/bin/sh", then each entry verbatim on its own line.
func runcmdScript(t *testing.T, doc *Document) string {
	t.Helper()
	return "#!/bin/sh\n" + strings.Join(parse(t, doc.CloudConfig).Runcmd, "\n") + "\n"
}

// TestRuncmdStopsAtFailingStep runs the rendered runcmd under /bin/sh
// (dash here, as in Debian and Ubuntu) with stand-ins for the commands it
// calls: a failing runner download must end the script with curl's status,
// name the step after curl's own message, and run no later step.
func TestRuncmdStopsAtFailingStep(t *testing.T) {
	_, doc := render(t, "../recipes/github-runner-focal.yaml")
	var installer string
	for _, p := range doc.Parts {
		if p.Path == RunnerInstallerSh {
			installer = p.Content
		}
	}
	if installer == "" {
		t.Fatal("no installer rendered")
	}
	for _, tc := range []struct {
		name      string
		installer string // what runs as RunnerInstallerSh
		wantCode  int
		wantOut   []string
		wantCalls string
	}{
		{name: "download fails", installer: installer, wantCode: 6,
			wantOut: []string{"curl: (6) Could not resolve host: github.com",
				"imagebake: runcmd step 2 of 4 failed (exit status 6): " + RunnerInstallerSh + "\n"},
			wantCalls: "install -d -o githubrunner1 -g githubrunner1 -m 0755 -- /home/githubrunner1\n"},
		{name: "all steps pass", installer: "#!/bin/sh\necho installed\n", wantCode: 0,
			wantOut: []string{"installed\n"},
			wantCalls: "install -d -o githubrunner1 -g githubrunner1 -m 0755 -- /home/githubrunner1\n" +
				"systemctl daemon-reload\nsystemctl enable -- github-runner.service\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "bin")
			calls := filepath.Join(dir, "calls")
			os.Mkdir(bin, 0o755)
			stub := func(name, body string) {
				if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			logCall := `echo "$(basename "$0") $*" >>` + ShellQuote(calls) + "\n"
			stub("install", logCall)
			stub("systemctl", logCall)
			stub("curl", logCall+"echo 'curl: (6) Could not resolve host: github.com' >&2\nexit 6\n")
			inst := filepath.Join(dir, "install-runner.sh")
			if err := os.WriteFile(inst, []byte(tc.installer), 0o755); err != nil {
				t.Fatal(err)
			}
			// Only the installer's absolute path is moved into the test's
			// directory; every other byte is the rendered runcmd.
			script := runcmdScript(t, doc)
			if !strings.Contains(script, ShellQuote(RunnerInstallerSh)+" ||") {
				t.Fatalf("runcmd does not run %s:\n%s", RunnerInstallerSh, script)
			}
			script = strings.Replace(script, ShellQuote(RunnerInstallerSh)+" ||", ShellQuote(inst)+" ||", 1)
			sf := filepath.Join(dir, "runcmd")
			os.WriteFile(sf, []byte(script), 0o755)

			cmd := exec.Command("/bin/sh", sf)
			cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "HOME=" + dir}
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode {
				t.Errorf("runcmd exit status %d, want %d\n%s", code, tc.wantCode, out)
			}
			got := strings.ReplaceAll(string(out), inst, RunnerInstallerSh)
			last := 0
			for _, w := range tc.wantOut {
				i := strings.Index(got[last:], w)
				if i < 0 {
					t.Errorf("output lacks %q (in order):\n%s", w, got)
					continue
				}
				last += i + len(w)
			}
			logged, _ := os.ReadFile(calls)
			// curl runs only inside the installer; its call is the
			// installer's, not a runcmd step.
			steps := strings.ReplaceAll(string(logged), "curl -fsSL", "")
			var kept []string
			for _, l := range strings.SplitAfter(steps, "\n") {
				if l != "" && !strings.HasPrefix(l, " ") {
					kept = append(kept, l)
				}
			}
			if g := strings.Join(kept, ""); g != tc.wantCalls {
				t.Errorf("steps run:\n%s\nwant:\n%s", g, tc.wantCalls)
			}
		})
	}
}

// TestRuncmdShellcheck checks the script cloud-init makes of runcmd, for
// every test recipe.
func TestRuncmdShellcheck(t *testing.T) {
	tool := need(t, "shellcheck", "shellcheck")
	n := 0
	for _, path := range testRecipes(t) {
		_, doc := render(t, path)
		if len(doc.Steps) == 0 {
			continue
		}
		n++
		f := filepath.Join(t.TempDir(), "runcmd")
		os.WriteFile(f, []byte(runcmdScript(t, doc)), 0o755)
		if out, err := exec.Command(tool, "-s", "sh", f).CombinedOutput(); err != nil {
			t.Errorf("shellcheck runcmd of %s: %v\n%s", path, err, out)
		}
	}
	if n < 3 {
		t.Errorf("checked %d runcmd scripts, want at least 3", n)
	}
}
