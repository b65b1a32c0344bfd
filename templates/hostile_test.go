package templates

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/recipes"
)

// Issue 12 item 23: Azure's custom-data limit is Azure's. A recipe with only
// base.local renders any size; the same recipe with base.azure is refused.
func TestCheckTargetsAzureLimitOnlyForAzure(t *testing.T) {
	r, err := recipes.Load("../recipes/local-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r.Base.Azure != "" {
		t.Fatalf("local-demo has base.azure %q; the test needs a local-only recipe", r.Base.Azure)
	}
	r.Files = append(r.Files, recipes.File{Path: "/opt/big.bin", Content: noise(300_000), Mode: "0644", Owner: "root:root"})
	doc, err := Render(r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckTargets(r, doc); err != nil {
		t.Errorf("local-only recipe: %v", err)
	}
	r.Base.Azure = "canonical:0001-com-ubuntu-server-focal:20_04-lts:latest"
	var tl *TooLargeError
	if err := CheckTargets(r, doc); !errors.As(err, &tl) {
		t.Errorf("recipe with base.azure: err = %v, want a TooLargeError", err)
	}
}

// Issue 8 item 4: the runner templates run on typed data with
// missingkey=error, so a field the data lacks fails instead of rendering
// "<no value>".
func TestTemplatesRefuseMissingData(t *testing.T) {
	tpl, err := parseTemplates()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"install-runner.sh.tmpl", "start-runner.sh.tmpl", "completed-cycle.sh.tmpl", "github-runner.service.tmpl"} {
		var b strings.Builder
		if err := tpl.ExecuteTemplate(&b, name, map[string]any{}); err == nil {
			t.Errorf("%s rendered from data without its fields:\n%s", name, b.String())
		}
	}
	// And the typed data hold every field each template uses.
	for name, data := range map[string]any{
		"install-runner.sh.tmpl": scriptData{}, "start-runner.sh.tmpl": scriptData{},
		"completed-cycle.sh.tmpl": scriptData{}, "github-runner.service.tmpl": unitData{},
	} {
		var b strings.Builder
		if err := tpl.ExecuteTemplate(&b, name, data); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if strings.Contains(b.String(), "<no value>") {
			t.Errorf("%s renders <no value>", name)
		}
	}
}

// The env file and the start script agree on the variables' names, which
// internal/contract spells once.
func TestRunnerEnvContract(t *testing.T) {
	_, doc := render(t, "../recipes/github-runner-focal.yaml")
	var env, start string
	for _, p := range doc.Parts {
		switch p.Path {
		case contract.RunnerEnvFile:
			env = p.Content
		case contract.RunnerStartScript:
			start = p.Content
		}
	}
	for _, k := range []string{contract.EnvKeyVaultName, contract.EnvKeyVaultSecret, contract.EnvRunnerLabels, contract.EnvRepoURL} {
		if !strings.Contains(env, "\nexport "+k+"\n") {
			t.Errorf("env file does not export %s", k)
		}
		if !strings.Contains(start, "$"+k) {
			t.Errorf("start script does not read $%s", k)
		}
	}
}

func sudoRecipe(cmd string) *recipes.Recipe {
	return &recipes.Recipe{Name: "sudo-table", Base: recipes.Base{Local: recipes.LocalBase{Builtin: "debian-bookworm"}},
		Users: []recipes.User{{Name: "runner1"}}, Sudoers: []recipes.SudoRule{{User: "runner1", Commands: []string{cmd}}}}
}

// loadRecipe writes r as YAML and loads it, as a user's file would be.
func loadRecipe(t *testing.T, r *recipes.Recipe) (*recipes.Recipe, error) {
	t.Helper()
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2) // see marshalYAML in fuzz_test.go
	err := enc.Encode(r)
	src := []byte(b.String())
	if err != nil {
		t.Fatal(err)
	}
	return recipes.Parse("table.yaml", src)
}

// Issue 12 items 15 and 16, against the real sudo tools: every command
// validation accepts passes visudo -cf, and the recipe holds it in the form
// sudo prints it (cvtsudoers normalises like sudo -l), which is what the
// built-in check greps for. Commands visudo refuses are refused first.
func TestSudoersCommandsAgainstSudo(t *testing.T) {
	visudo := need(t, "visudo", "sudo")
	cvt := need(t, "cvtsudoers", "sudo")
	for _, tc := range []struct {
		cmd     string
		refused bool
	}{
		{cmd: "/usr/bin/apt-get"},
		{cmd: "/usr/bin/foo  a   b "},
		{cmd: "  /usr/bin/apt-get install jq"},
		{cmd: "/usr/bin/systemctl restart *"},
		{cmd: "/usr/bin/foo ''"},
		{cmd: "/usr/bin/foo ^x$"},
		{cmd: "/usr/bin/foo (x) [a] ~ %x @x a;b !"},
		{cmd: "/usr/bin/föö"},
		{cmd: "sudoedit /etc/app.conf"},
		{cmd: "ALL"},
		{cmd: "/usr/bin/sudoedit", refused: true},
		{cmd: "/usr/bin/sudoedit /etc/app.conf", refused: true},
		{cmd: "/usr/local/bin/sudoedit", refused: true},
		{cmd: "/ ", refused: true},
		{cmd: "/", refused: true},
		{cmd: "/usr/bin/foo\ta", refused: true},
		{cmd: "/usr/bin/foo\x00bar", refused: true},
		{cmd: "/usr/bin/foo\x01", refused: true},
		{cmd: "/usr/bin/foo a\\tb", refused: true},
		{cmd: "/usr/bin/foo, /usr/bin/bar", refused: true},
	} {
		t.Run(fmt.Sprintf("%q", tc.cmd), func(t *testing.T) {
			r, err := loadRecipe(t, sudoRecipe(tc.cmd))
			if tc.refused {
				if err == nil {
					t.Fatalf("%q validated, but visudo refuses it or sudo reads it otherwise", tc.cmd)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			doc, err := Render(r, Options{})
			if err != nil {
				t.Fatal(err)
			}
			var rule string
			for _, p := range doc.Parts {
				if p.Kind == KindSudoers {
					rule = p.Content
				}
			}
			f := filepath.Join(t.TempDir(), "sudoers")
			if err := os.WriteFile(f, []byte(rule), 0o440); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(visudo, "-cf", f).CombinedOutput(); err != nil {
				t.Fatalf("visudo -cf refuses a validated command: %v\n%s%s", err, rule, out)
			}
			out, err := exec.Command(cvt, "-f", "sudoers", f).CombinedOutput()
			if err != nil {
				t.Fatalf("cvtsudoers: %v\n%s", err, out)
			}
			var printed string
			for _, l := range strings.Split(string(out), "\n") {
				if _, after, ok := strings.Cut(l, "(ALL) "); ok && strings.HasPrefix(l, "runner1 ") {
					printed = after
				}
			}
			if got := r.Sudoers[0].Commands[0]; got != printed {
				t.Errorf("recipe holds %q; sudo reads it as %q, so the built-in check would fail", got, printed)
			}
		})
	}
}

// Issue 12 item 18, against the real systemctl: every unit name validation
// accepts is enabled by the rendered `systemctl enable` command as a unit,
// never read as an option.
func TestUnitNamesAgainstSystemctl(t *testing.T) {
	systemctl := need(t, "systemctl", "systemd")
	for _, tc := range []struct {
		name    string
		refused bool
	}{
		{name: "agent.service"},
		{name: "my-agent.service"},
		{name: "a.b_c:d.service"},
		{name: `\x2dagent.service`},
		{name: "-Hevil.service", refused: true},
		{name: "--now.service", refused: true},
		{name: "-.service", refused: true},
		{name: "--help.service", refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &recipes.Recipe{Name: "unit-table", Base: recipes.Base{Local: recipes.LocalBase{Builtin: "debian-bookworm"}},
				Systemd: []recipes.Unit{{Name: tc.name, Enable: true, Content: "[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n"}}}
			loaded, err := loadRecipe(t, r)
			if tc.refused {
				if err == nil {
					t.Fatalf("%q validated; systemctl reads it as an option", tc.name)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			doc, err := Render(loaded, Options{})
			if err != nil {
				t.Fatal(err)
			}
			root := writeRoot(t, doc)
			var enable []string
			for _, c := range runcmdSteps(t, parse(t, doc.CloudConfig), doc) {
				if len(c) > 1 && c[0] == "systemctl" && c[1] == "enable" {
					enable = c
				}
			}
			if enable == nil {
				t.Fatal("no systemctl enable in runcmd")
			}
			args := append([]string{"--root=" + root}, enable[1:]...)
			if out, err := exec.Command(systemctl, args...).CombinedOutput(); err != nil {
				t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			if _, err := os.Lstat(filepath.Join(root, "etc/systemd/system/multi-user.target.wants", tc.name)); err != nil {
				t.Errorf("%s was not enabled: %v", tc.name, err)
			}
		})
	}
}

// Issue 12 item 19, against the real useradd (into a copy of this machine's
// account files, never the machine's own): every home and shell validation
// accepts, useradd accepts too.
func TestHomesAndShellsAgainstUseradd(t *testing.T) {
	useradd := need(t, "useradd", "passwd")
	if os.Geteuid() != 0 {
		t.Skip("useradd -P needs root to write the copied account files")
	}
	for i, tc := range []struct {
		home, shell string
		refused     bool
	}{
		{home: "/home/runner", shell: "/bin/bash"},
		{home: "/srv/runner x", shell: "/bin/sh"},
		{home: "/opt/app/home", shell: "/usr/sbin/nologin"},
		{home: "/home/a:b", shell: "/bin/bash", refused: true},
		{home: "/home/ab", shell: "/bin/ba:sh", refused: true},
		{home: "/etc", shell: "/bin/bash", refused: true},
	} {
		t.Run(tc.home+" "+tc.shell, func(t *testing.T) {
			name := fmt.Sprintf("ibtest%d", i)
			r := &recipes.Recipe{Name: "user-table", Base: recipes.Base{Local: recipes.LocalBase{Builtin: "debian-bookworm"}},
				Users: []recipes.User{{Name: name, Home: tc.home, Shell: tc.shell}}}
			_, err := loadRecipe(t, r)
			if tc.refused {
				if err == nil {
					t.Fatalf("home %q, shell %q validated", tc.home, tc.shell)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			prefix := t.TempDir()
			if err := os.MkdirAll(filepath.Join(prefix, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"passwd", "group", "shadow", "gshadow", "login.defs"} {
				if data, err := os.ReadFile("/etc/" + f); err == nil {
					if err := os.WriteFile(filepath.Join(prefix, "etc", f), data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			// -P edits the files under prefix; -M makes no home.
			out, err := exec.Command(useradd, "-P", prefix, "-M", "-d", tc.home, "-s", tc.shell, name).CombinedOutput()
			if err != nil {
				t.Fatalf("useradd refuses what validation accepted: %v\n%s", err, out)
			}
			passwd, _ := os.ReadFile(filepath.Join(prefix, "etc/passwd"))
			if !strings.Contains(string(passwd), name+":x:") {
				t.Errorf("useradd did not add %s under %s", name, prefix)
			}
		})
	}
}
