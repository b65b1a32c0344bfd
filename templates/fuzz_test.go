package templates_test

import (
	"bytes"
	"fmt"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

// fuzzInput is what FuzzRender varies: every string a recipe author writes
// that reaches the rendered cloud-config, a unit or a shell script.
type fuzzInput struct {
	User, FilePath, FileContent, EnvKey, EnvValue, CheckRun string
	UnitContent, SudoArg, RunnerDir, Label                  string
	System                                                  bool
}

const (
	fuzzRecipeName = "fuzz-recipe"
	fuzzRunnerSHA  = "70920811a4f8ad4328818682bca5c6469c1c942fab52448868071d0063816613"
	fuzzKeyVault   = "my-keyvault"
	fuzzSecret     = "runner-pat"
	fuzzUnit       = "fuzz-agent.service"
	fuzzBuildUser  = "imagebake"
	fuzzBuildKey   = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBuildKeyForTestsOnly imagebake-build"
)

// FuzzRender builds a valid recipe from fuzzed strings, renders it, reads
// the cloud-config back with a YAML parser and the scripts with a shell
// parser (and the env file with a shell interpreter), and checks that every
// string comes back byte for byte and never changes the structure around it.
//
//	go test ./templates -run '^$' -fuzz FuzzRender -fuzztime 5m -parallel 1
func FuzzRender(f *testing.F) {
	f.Add("githubrunner1", "/etc/motd", "Baked by imagebake\n", "REPO_NAME", "my-repo", "docker --version",
		"[Unit]\nDescription=agent\n\n[Service]\nExecStart=/opt/app/agent\n", "restart demo-agent.service",
		"/home/githubrunner1/actions-runner", "focal", true)
	f.Add("runner_x", "/etc/weird's file", "line one\n'quoted' \"double\" $HOME `cmd`\n#!not a shebang\n", "WEIRD",
		"it's $(rm -rf /) `id` ; echo \"hi\" \\ done", "test \"$(echo 'a b')\" = 'a b'",
		"# just a comment\\\n", "status *", "/srv/actions runner", "linux.x64", false)
	f.Add("_a-b", "/opt/a b/c'd\"e$f`g`", "  leading spaces\n\ttab\ntrailing spaces   \n", "A_1",
		"'''", "exit 0", "x", "--help", "/opt/'quoted'/$(dir)", "a_b-c.d", true)
	f.Add("u", "/x", "", "B", "", "true", "[Unit]", "", "/r", "l", false)
	f.Add("svc", "/etc/app/conf.yaml", "key: value\n- item\n---\n...\n&a *a !tag |\n>\n", "YAML_ISH",
		"key: value # not a comment", "echo ok", "[Service]\nEnvironment=\"A=b c\"\n", "%u %h", "/opt/100%/run", "x.y", true)
	f.Add("nul", "/etc/nul", "a\x00b\x01c\x7f\u0085\u2028\u2029\ufeffd", "CTRL", "\t\x01\x7f\u00a0\u2028", "printf '\\0'",
		"\ufeff[Unit]", "a\tb", "/opt/tab\there", "t", false)
	f.Add("pct", "/etc/%h", "100%", "PCT", "%s %h", "true", "Environment=A=%h", "%h", "/opt/%h/runner", "p", false)
	f.Add("ws", "/etc/ws ", " ", "WS", " a ", " true ", " ", " ", "/opt/runner ", "w", true)
	f.Add("bs", "/opt/back\\slash", "ends with backslash \\", "BS", "\\", "echo \\", "ExecStart=/bin/true \\", "\\", "/opt/x\\", "b", true)
	// What the recipe renders to with plain values, to compare shapes with.
	refs := map[bool]map[string]string{false: reference(f, false), true: reference(f, true)}
	f.Fuzz(func(t *testing.T, user, filePath, fileContent, envKey, envValue, checkRun, unitContent, sudoArg, runnerDir, label string, system bool) {
		in := sanitize(fuzzInput{User: user, FilePath: filePath, FileContent: fileContent, EnvKey: envKey, EnvValue: envValue,
			CheckRun: checkRun, UnitContent: unitContent, SudoArg: sudoArg, RunnerDir: runnerDir, Label: label, System: system})
		src, err := marshalYAML(in.recipe())
		if err != nil {
			t.Fatalf("marshal recipe: %v", err)
		}
		r, err := recipes.Parse("fuzz.yaml", src)
		if err != nil {
			// The sanitizer maps into the valid domain as far as it knows it;
			// whatever validation still refuses is not the renderer's concern.
			t.Skipf("recipe refused: %v\n%s", err, src)
		}
		checkLoaded(t, in, r)

		opts := templates.Options{BuildUser: fuzzBuildUser, BuildAuthorizedKey: fuzzBuildKey}
		doc, err := templates.Render(r, opts)
		if err != nil {
			t.Fatalf("Render: %v\n%s", err, src)
		}
		again, err := templates.Render(r, opts)
		if err != nil {
			t.Fatalf("second Render: %v", err)
		}
		if !bytes.Equal(doc.CloudConfig, again.CloudConfig) {
			t.Fatalf("rendering twice gave different bytes:\n%s\n----\n%s", doc.CloudConfig, again.CloudConfig)
		}
		ref := refs[in.System]
		unit := checkRendered(t, in, doc, ref)

		// runner.dir reaches the unit's WorkingDirectory= as written
		// (validation refuses '%', '\\' and trailing blanks, which systemd
		// would read differently).
		if err := checkRunnerUnit(t, in, unit, ref); err != nil {
			t.Error(err)
		}
	})
}

// marshalYAML writes v as YAML with a 2-space indent. yaml.v3's default
// (4) misplaces a block scalar's indentation indicator inside a sequence
// item: "  0\n" under systemd[1].content reads back as "0\n".
func marshalYAML(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sanitize maps fuzzed strings into what validation accepts, changing as
// little as it can so that odd but valid characters still get through.
func sanitize(in fuzzInput) fuzzInput {
	in.User = account(in.User)
	in.FilePath = absPath(in.FilePath, "/f")
	if strings.HasPrefix(in.FilePath, "/etc/sudoers.d/") {
		in.FilePath = "/x" + in.FilePath
	}
	in.FileContent = strings.ToValidUTF8(in.FileContent, "?")
	in.EnvKey = envKey(in.EnvKey)
	in.EnvValue = dropControl(strings.ToValidUTF8(in.EnvValue, "?"), false)
	in.CheckRun = dropControl(strings.ToValidUTF8(in.CheckRun, "?"), true)
	if strings.TrimSpace(in.CheckRun) == "" {
		in.CheckRun += "true"
	}
	in.UnitContent = dropControl(strings.ToValidUTF8(in.UnitContent, "?"), true)
	if in.UnitContent == "" {
		in.UnitContent = "[Unit]\n"
	}
	in.SudoArg = strings.Map(func(r rune) rune {
		if strings.ContainsRune(",:=\\#\"\n\r", r) {
			return -1
		}
		return r
	}, dropControl(strings.ToValidUTF8(in.SudoArg, "?"), false))
	in.RunnerDir = absPath(in.RunnerDir, "/r")
	in.Label = strings.Map(func(r rune) rune {
		if r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-", r)) {
			return r
		}
		return -1
	}, in.Label)
	if in.Label == "" || in.Label[0] == '-' {
		in.Label = "l" + in.Label
	}
	in.Label = in.Label[:min(len(in.Label), 100)]
	return in
}

func account(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return -1
	}, s)
	if s == "" || !(s[0] == '_' || s[0] >= 'a' && s[0] <= 'z') {
		s = "u" + s
	}
	s = s[:min(len(s), 32)]
	if s == "root" || s == "default" || s == fuzzBuildUser {
		s = "u" + s[1:]
	}
	return s
}

// dropControl removes what validation refuses as control characters: all
// of them in one-line fields, all but tab and line breaks in multi-line ones.
func dropControl(s string, multiline bool) string {
	return strings.Map(func(r rune) rune {
		if multiline && (r == '\t' || r == '\n' || r == '\r') {
			return r
		}
		if r < 0x20 || r >= 0x7f && r <= 0x9f {
			return -1
		}
		return r
	}, s)
}

func absPath(p, fallback string) string {
	p = dropControl(strings.ToValidUTF8(p, "?"), false)
	p = path.Clean("/" + p)
	if p == "/" {
		return fallback
	}
	return p
}

func envKey(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r + 'A' - 'a'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return -1
	}, s)
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		s = "V" + s
	}
	return s
}

// sudoCommand is the command as written; the recipe holds it the way sudo
// reads it, its words one space apart.
func (in fuzzInput) sudoCommand() string { return "/usr/bin/systemctl " + in.SudoArg }

func (in fuzzInput) sudoCommandLoaded() string {
	return strings.Join(strings.FieldsFunc(in.sudoCommand(), func(r rune) bool { return r == ' ' }), " ")
}

func (in fuzzInput) recipe() recipes.Recipe {
	env := map[string]string{"RESOURCE_GROUP": "github-runners", "REPO_URL": "https://github.com/my-org/my-repo"}
	env[in.EnvKey] = in.EnvValue
	return recipes.Recipe{
		Name:     fuzzRecipeName,
		Base:     recipes.Base{Azure: "canonical:0001-com-ubuntu-server-focal:20_04-lts:latest"},
		Packages: []string{"jq"},
		Groups:   []string{"docker"},
		Users:    []recipes.User{{Name: in.User, System: in.System, Groups: []string{"docker"}}},
		Sudoers:  []recipes.SudoRule{{User: in.User, NoPasswd: true, Commands: []string{"/usr/bin/apt-get", in.sudoCommand()}}},
		Runner: &recipes.Runner{Version: "2.337.0", SHA256: fuzzRunnerSHA, User: in.User, Dir: in.RunnerDir, Ephemeral: true,
			Labels:       []string{"self-hosted", in.Label},
			Registration: recipes.Registration{KeyVault: fuzzKeyVault, Secret: fuzzSecret}, Env: env},
		Files: []recipes.File{{Path: in.FilePath, Content: in.FileContent, Mode: "0640", Owner: in.User + ":" + in.User}},
		Systemd: []recipes.Unit{
			{Name: "github-runner.service", Template: "github-runner.service", Enable: true},
			{Name: fuzzUnit, Content: in.UnitContent, Enable: true},
		},
		Checks:  []recipes.Check{{Name: "fuzzed check", Run: in.CheckRun}},
		Gallery: recipes.Gallery{Version: "1.0"},
	}
}

// checkLoaded: the loader reads every string back as it was written.
func checkLoaded(t *testing.T, in fuzzInput, r *recipes.Recipe) {
	t.Helper()
	for _, c := range []struct{ what, got, want string }{
		{"users[0].name", r.Users[0].Name, in.User},
		{"files[0].path", r.Files[0].Path, in.FilePath},
		{"files[0].content", r.Files[0].Content, in.FileContent},
		{"runner.env." + in.EnvKey, r.Runner.Env[in.EnvKey], in.EnvValue},
		{"runner.dir", r.Runner.Dir, in.RunnerDir},
		{"runner.labels[1]", r.Runner.Labels[1], in.Label},
		{"checks[0].run", r.Checks[0].Run, in.CheckRun},
		{"systemd[1].content", r.Systemd[1].Content, in.UnitContent},
		{"sudoers[0].commands[1]", r.Sudoers[0].Commands[1], in.sudoCommandLoaded()},
	} {
		if c.got != c.want {
			t.Errorf("recipe %s: loaded %q, wrote %q", c.what, c.got, c.want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

type ccWriteFile struct {
	Path        string `yaml:"path"`
	Content     string `yaml:"content"`
	Permissions string `yaml:"permissions"`
	Owner       string `yaml:"owner"`
	Defer       bool   `yaml:"defer"`
}

type ccUser struct {
	Name    string   `yaml:"name"`
	System  bool     `yaml:"system"`
	Groups  []string `yaml:"groups"`
	Homedir string   `yaml:"homedir"`
	Shell   string   `yaml:"shell"`
}

type cloudConfig struct {
	Users      []yaml.Node   `yaml:"users"`
	WriteFiles []ccWriteFile `yaml:"write_files"`
	Runcmd     []string      `yaml:"runcmd"`
}

// checkRendered checks the cloud-config and what it writes, and returns the
// runner unit for checkRunnerUnit.
func checkRendered(t *testing.T, in fuzzInput, doc *templates.Document, ref map[string]string) string {
	t.Helper()
	if !bytes.HasPrefix(doc.CloudConfig, []byte("#cloud-config\n")) {
		t.Fatalf("cloud-config does not start with #cloud-config:\n%s", doc.CloudConfig)
	}
	var cc cloudConfig
	if err := yaml.Unmarshal(doc.CloudConfig, &cc); err != nil {
		t.Fatalf("rendered cloud-config is not YAML: %v\n%s", err, doc.CloudConfig)
	}

	// write_files: one entry per path, and the recipe's file unchanged.
	files := map[string]ccWriteFile{}
	for _, wf := range cc.WriteFiles {
		if _, dup := files[wf.Path]; dup {
			t.Errorf("write_files has %q twice", wf.Path)
		}
		files[wf.Path] = wf
	}
	owner := in.User + ":" + in.User
	if got, ok := files[in.FilePath]; !ok {
		t.Errorf("write_files has no entry for %q", in.FilePath)
	} else if want := (ccWriteFile{Path: in.FilePath, Content: in.FileContent, Permissions: "0640", Owner: owner, Defer: true}); got != want {
		t.Errorf("write_files entry:\n got %+v\nwant %+v", got, want)
	}
	if got := files[templates.SystemdDir+fuzzUnit].Content; got != in.UnitContent {
		t.Errorf("unit %s content: got %q, want %q", fuzzUnit, got, in.UnitContent)
	}
	sudoers := files[templates.SudoersPath(in.User, 0)]
	if want := "# Rendered by imagebake from recipe " + fuzzRecipeName + "\n" + in.User +
		" ALL=(ALL) NOPASSWD: /usr/bin/apt-get, " + in.sudoCommandLoaded() + "\n"; sudoers.Content != want {
		t.Errorf("sudoers: got %q, want %q", sudoers.Content, want)
	}
	for _, p := range doc.Parts {
		if wf, ok := files[p.Path]; !ok || wf.Content != p.Content {
			t.Errorf("part %s is not in write_files as rendered", p.Path)
		}
	}

	// users: default first, the recipe's user as declared, the build login.
	checkUsers(t, in, cc.Users)
	if in.System {
		want := []string{"install", "-d", "-o", in.User, "-g", in.User, "-m", "0755", "--", "/home/" + in.User}
		found := false
		for i, c := range doc.Steps {
			found = found || fmt.Sprint(c) == fmt.Sprint(want) && i < len(cc.Runcmd) && cc.Runcmd[i] == templates.StepLine(i+1, len(doc.Steps), c)
		}
		if !found {
			t.Errorf("runcmd %q lacks %q", cc.Runcmd, want)
		}
	}

	// The env file, the install and start scripts, the runner unit.
	checkEnvFile(t, in, files[templates.RunnerEnvFile].Content)
	checkInstallScript(t, in, files[templates.RunnerInstallerSh].Content, ref)
	checkStartScript(t, in, files[templates.RunnerStartScript].Content, ref)
	return files[templates.SystemdDir+"github-runner.service"].Content
}

func checkUsers(t *testing.T, in fuzzInput, nodes []yaml.Node) {
	t.Helper()
	if len(nodes) != 3 {
		t.Fatalf("users has %d entries, want default, %s and %s", len(nodes), in.User, fuzzBuildUser)
	}
	var first string
	if err := nodes[0].Decode(&first); err != nil || first != "default" {
		t.Errorf("users[0] = %v (%v), want \"default\"", first, err)
	}
	var u, build ccUser
	if err := nodes[1].Decode(&u); err != nil {
		t.Fatalf("users[1]: %v", err)
	}
	want := ccUser{Name: in.User, System: in.System, Groups: []string{"docker"}, Homedir: "/home/" + in.User, Shell: "/bin/bash"}
	if fmt.Sprintf("%+v", u) != fmt.Sprintf("%+v", want) {
		t.Errorf("users[1]:\n got %+v\nwant %+v", u, want)
	}
	if err := nodes[2].Decode(&build); err != nil || build.Name != fuzzBuildUser {
		t.Errorf("users[2] = %+v (%v), want the build user %s", build, err, fuzzBuildUser)
	}
}

// expectedEnv is every variable the env file must set, and nothing else.
func (in fuzzInput) expectedEnv() map[string]string {
	env := map[string]string{
		"RESOURCE_GROUP": "github-runners", "REPO_URL": "https://github.com/my-org/my-repo",
		"KEYVAULT_NAME": fuzzKeyVault, "KEYVAULT_SECRET": fuzzSecret, "RUNNER_LABELS": "self-hosted," + in.Label,
	}
	env[in.EnvKey] = in.EnvValue
	return env
}

// checkEnvFile reads the env file three ways: line by line with POSIX
// single-quote rules, with a shell parser (each assignment one word of
// quoted literal parts), and by expanding each value as a shell would.
// (mvdan.cc/sh's interpreter is not used: v3.14.1 keeps the backslash of an
// unquoted \' in assignments, so it reads 'it'\”s' as it\'s.)
func checkEnvFile(t *testing.T, in fuzzInput, content string) {
	t.Helper()
	want := in.expectedEnv()

	got := map[string]string{}
	lines := strings.Split(strings.TrimSuffix(content, "\n"), "\n")
	for len(lines) > 0 && strings.HasPrefix(lines[0], "#") {
		lines = lines[1:] // the header comments
	}
	if len(lines) != 2*len(want) {
		t.Fatalf("env file has %d lines after its comments, want %d (an assignment and an export each):\n%s", len(lines), 2*len(want), content)
	}
	for i := 0; i < len(lines); i += 2 {
		k, quoted, ok := strings.Cut(lines[i], "=")
		if !ok {
			t.Fatalf("env line %q is not KEY=VALUE", lines[i])
		}
		v, err := posixUnquote(quoted)
		if err != nil {
			t.Fatalf("env line %q: %v", lines[i], err)
		}
		got[k] = v
		if lines[i+1] != "export "+k {
			t.Errorf("env line %q follows %q; want export %s", lines[i+1], lines[i], k)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("env file (POSIX quoting):\n got %q\nwant %q", got, want)
	}

	file := parseShell(t, "runner.env", content)
	got = map[string]string{}
	for _, st := range file.Stmts {
		call := simpleCall(t, st)
		switch {
		case len(call.Assigns) == 1 && len(call.Args) == 0:
			a := call.Assigns[0]
			v, ok := quotedLiteral(a.Value)
			if a.Append || a.Naked || a.Index != nil || a.Array != nil || !ok {
				t.Fatalf("env file: %s is not NAME='literal'", printShell(st))
			}
			got[a.Name.Value] = v
		case len(call.Assigns) == 0 && len(call.Args) == 2 && wordLit(call.Args[0]) == "export":
			if _, assigned := got[wordLit(call.Args[1])]; !assigned {
				t.Fatalf("env file: %s exports what it did not assign", printShell(st))
			}
		default:
			t.Fatalf("env file: unexpected statement %s", printShell(st))
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("env file (shell parser):\n got %q\nwant %q", got, want)
	}

	for _, st := range file.Stmts {
		call := simpleCall(t, st)
		if len(call.Assigns) == 1 {
			a := call.Assigns[0]
			v, err := expandWord(a.Value)
			if err != nil || v != want[a.Name.Value] {
				t.Errorf("env file: %s expands to %q (%v), want %q", printShell(st), v, err, want[a.Name.Value])
			}
		}
	}
}

// posixUnquote reads one shell word made only of '...' runs and \'
// escapes, as ShellQuote writes it; anything else could expand or split.
func posixUnquote(w string) (string, error) {
	var b strings.Builder
	if w == "" {
		return "", fmt.Errorf("empty word")
	}
	for i := 0; i < len(w); {
		switch {
		case w[i] == '\'':
			j := strings.IndexByte(w[i+1:], '\'')
			if j < 0 {
				return "", fmt.Errorf("unterminated single quote at %d", i)
			}
			b.WriteString(w[i+1 : i+1+j])
			i += j + 2
		case strings.HasPrefix(w[i:], `\'`):
			b.WriteByte('\'')
			i += 2
		default:
			return "", fmt.Errorf("unquoted %q at %d", w[i], i)
		}
	}
	return b.String(), nil
}

func parseShell(t *testing.T, name, src string) *syntax.File {
	t.Helper()
	f, err := syntax.NewParser(syntax.Variant(syntax.LangPOSIX)).Parse(strings.NewReader(src), name)
	if err != nil {
		t.Fatalf("%s does not parse as POSIX shell: %v\n%s", name, err, src)
	}
	return f
}

func printShell(n syntax.Node) string {
	var b strings.Builder
	_ = syntax.NewPrinter().Print(&b, n)
	return b.String()
}

// simpleCall is st's command when st is a plain simple command.
func simpleCall(t *testing.T, st *syntax.Stmt) *syntax.CallExpr {
	t.Helper()
	call, ok := st.Cmd.(*syntax.CallExpr)
	if !ok || st.Negated || st.Background || st.Coprocess || len(st.Redirs) > 0 {
		t.Fatalf("%s is not a simple command", printShell(st))
	}
	return call
}

// quotedLiteral is the value of a word made only of single-quoted parts and
// \' escapes: a literal no shell expands or splits.
func quotedLiteral(w *syntax.Word) (string, bool) {
	if w == nil || len(w.Parts) == 0 {
		return "", false
	}
	var b strings.Builder
	for _, p := range w.Parts {
		switch p := p.(type) {
		case *syntax.SglQuoted:
			if p.Dollar {
				return "", false
			}
			b.WriteString(p.Value)
		case *syntax.Lit:
			if strings.ReplaceAll(p.Value, `\'`, "") != "" {
				return "", false
			}
			b.WriteString(strings.ReplaceAll(p.Value, `\'`, "'"))
		default:
			return "", false
		}
	}
	return b.String(), true
}

// wordLit is a word's text when it is one unquoted literal, else "".
func wordLit(w *syntax.Word) string {
	if w == nil || len(w.Parts) != 1 {
		return ""
	}
	if l, ok := w.Parts[0].(*syntax.Lit); ok {
		return l.Value
	}
	return ""
}

// expandWord expands a word as a shell does, in an environment where
// reading any variable (other than IFS and PWD, which every expansion reads) or substituting a
// command is an error: a safely quoted value expands to itself, in one field.
func expandWord(w *syntax.Word) (string, error) {
	env := &readNothing{}
	cfg := &expand.Config{Env: env, NoUnset: true}
	fields, err := expand.Fields(cfg, w)
	if err != nil {
		return "", err
	}
	if len(env.read) > 0 {
		return "", fmt.Errorf("expanding read the variables %q", env.read)
	}
	if len(fields) != 1 {
		return "", fmt.Errorf("expands to %d fields %q, want one", len(fields), fields)
	}
	return fields[0], nil
}

type readNothing struct{ read []string }

func (e *readNothing) Get(name string) expand.Variable {
	if name != "IFS" && name != "PWD" { // read by every expansion
		e.read = append(e.read, name)
	}
	return expand.Variable{}
}

func (e *readNothing) Each(func(string, expand.Variable) bool) {}

// topAssigns is every top-level NAME=value statement of a script, by name,
// with the value read as a quoted literal (ok false when it is not one).
func topAssigns(t *testing.T, f *syntax.File) map[string]string {
	t.Helper()
	vals := map[string]string{}
	for _, st := range f.Stmts {
		call, ok := st.Cmd.(*syntax.CallExpr)
		if !ok || len(call.Args) != 0 || len(call.Assigns) != 1 {
			continue
		}
		a := call.Assigns[0]
		v, ok := quotedLiteral(a.Value)
		if x, err := expandWord(a.Value); ok && err == nil && x == v {
			vals[a.Name.Value] = v
		} else {
			vals[a.Name.Value] = "\x00not a quoted literal: " + printShell(st)
		}
	}
	return vals
}

// reference renders the same recipe with plain values: a script rendered
// from fuzzed values must have the same statements, or a value broke out.
func reference(t testing.TB, system bool) map[string]string {
	t.Helper()
	plain := sanitize(fuzzInput{User: "ref", FilePath: "/ref", FileContent: "ref", EnvKey: "REF", EnvValue: "ref",
		CheckRun: "true", UnitContent: "[Unit]\n", SudoArg: "status", RunnerDir: "/ref", Label: "ref", System: system})
	src, err := marshalYAML(plain.recipe())
	if err != nil {
		t.Fatal(err)
	}
	r, err := recipes.Parse("reference.yaml", src)
	if err != nil {
		t.Fatalf("reference recipe: %v", err)
	}
	doc, err := templates.Render(r, templates.Options{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range doc.Parts {
		out[p.Path] = p.Content
	}
	return out
}

func shape(f *syntax.File) []string {
	var kinds []string
	for _, st := range f.Stmts {
		k := fmt.Sprintf("%T", st.Cmd)
		if call, ok := st.Cmd.(*syntax.CallExpr); ok {
			k += fmt.Sprintf("/%d assigns/%d args", len(call.Assigns), len(call.Args))
			if len(call.Args) > 0 {
				k += "/" + wordLit(call.Args[0])
			}
		}
		kinds = append(kinds, k)
	}
	return kinds
}

func checkInstallScript(t *testing.T, in fuzzInput, script string, ref map[string]string) {
	t.Helper()
	f := parseShell(t, "install-runner.sh", script)
	refScript := parseShell(t, "reference install-runner.sh", ref[templates.RunnerInstallerSh])
	if got, want := shape(f), shape(refScript); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("install script's statements changed with the recipe's values:\n got %v\nwant %v\n%s", got, want, script)
	}
	vals := topAssigns(t, f)
	for k, want := range map[string]string{"version": "2.337.0", "sha256": fuzzRunnerSHA, "user": in.User, "group": in.User, "dir": in.RunnerDir} {
		if vals[k] != want {
			t.Errorf("install script: %s=%q, want the literal %q", k, vals[k], want)
		}
	}
}

func checkStartScript(t *testing.T, in fuzzInput, script string, ref map[string]string) {
	t.Helper()
	f := parseShell(t, "start-runner.sh", script)
	refScript := parseShell(t, "reference start-runner.sh", ref[templates.RunnerStartScript])
	if got, want := shape(f), shape(refScript); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("start script's statements changed with the recipe's values:\n got %v\nwant %v\n%s", got, want, script)
	}
	seen := map[string]string{}
	for _, st := range f.Stmts {
		if call, ok := st.Cmd.(*syntax.CallExpr); ok && len(call.Args) == 2 {
			if v, ok := quotedLiteral(call.Args[1]); ok {
				seen[wordLit(call.Args[0])] = v
			}
		}
	}
	if seen["."] != templates.RunnerEnvFile || seen["cd"] != in.RunnerDir {
		t.Errorf("start script sources %q and changes to %q; want %q and %q", seen["."], seen["cd"], templates.RunnerEnvFile, in.RunnerDir)
	}
}

// checkRunnerUnit: the runner unit says what the recipe says, as systemd
// reads it: a line ending in '\' continues on the next, whitespace around a
// value is dropped and '%' followed by a letter is a specifier ("%%" is a
// literal '%').
func checkRunnerUnit(t *testing.T, in fuzzInput, unit string, ref map[string]string) error {
	t.Helper()
	refUnit := ref[templates.SystemdDir+"github-runner.service"]
	want, err := systemdSettings(refUnit)
	if err != nil {
		t.Fatalf("reference runner unit: %v\n%s", err, refUnit)
	}
	got, err := systemdSettings(unit)
	if err != nil {
		return fmt.Errorf("runner unit: %v\n%s", err, unit)
	}
	want["User"], want["Group"], want["WorkingDirectory"] = in.User, in.User, in.RunnerDir
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return fmt.Errorf("runner unit as systemd reads it:\n got %q\nwant %q\n%s", got, want, unit)
	}
	return nil
}

// systemdSettings reads a unit's Key=value lines the way systemd's parser
// does, for the parts that matter here (no section may repeat a key).
func systemdSettings(unit string) (map[string]string, error) {
	settings := map[string]string{}
	lines := strings.Split(unit, "\n")
	for i := 0; i < len(lines); i++ {
		l := strings.Trim(lines[i], " \t\r")
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		for strings.HasSuffix(l, `\`) && i+1 < len(lines) {
			i++
			l = l[:len(l)-1] + " " + strings.Trim(lines[i], " \t\r")
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("line %q is not Key=value", l)
		}
		k, v = strings.Trim(k, " \t"), strings.Trim(v, " \t")
		var b strings.Builder
		for j := 0; j < len(v); j++ {
			switch {
			case v[j] != '%' || j+1 == len(v):
				b.WriteByte(v[j])
			case v[j+1] == '%':
				b.WriteByte('%')
				j++
			case v[j+1] >= 'a' && v[j+1] <= 'z' || v[j+1] >= 'A' && v[j+1] <= 'Z':
				return nil, fmt.Errorf("%s=%s: %%%c is a systemd specifier", k, v, v[j+1])
			default:
				b.WriteByte('%') // systemd keeps a '%' that starts no specifier
			}
		}
		if _, dup := settings[k]; dup {
			return nil, fmt.Errorf("%s is set twice", k)
		}
		settings[k] = b.String()
	}
	return settings, nil
}

// The checkers above must be able to fail: each bad word or unit here is one
// that a broken quoting or escaping would produce.
func TestFuzzCheckersCatchBreakouts(t *testing.T) {
	for _, w := range []string{`'a'b`, `'a'\\'b'`, `'a`, `a`, `"a"`, `'a'$b`, `'a'\`, `'a' b`} {
		if v, err := posixUnquote(w); err == nil {
			t.Errorf("posixUnquote(%s) = %q, want an error", w, v)
		}
	}
	if v, err := posixUnquote(`'it'\''s'`); err != nil || v != "it's" {
		t.Errorf("posixUnquote('it'\\''s') = %q, %v; want it's", v, err)
	}
	for src, want := range map[string]bool{
		`X='it'\''s'`: true, `X='a'b`: false, `X='a'$HOME`: false, `X="a"`: false, `X=$'a'`: false,
		`X='$(id)'`: true, "X='a'`id`": false, `X='a'\\'b'`: false,
	} {
		f, err := syntax.NewParser(syntax.Variant(syntax.LangPOSIX)).Parse(strings.NewReader(src), "t")
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		a := f.Stmts[0].Cmd.(*syntax.CallExpr).Assigns[0]
		if _, ok := quotedLiteral(a.Value); ok != want {
			t.Errorf("quotedLiteral(%s) ok = %v, want %v", src, ok, want)
		}
	}
	for src, want := range map[string]string{
		`X='it'\''s'`: "it's", `X='a b'`: "a b", `X='$HOME'`: "$HOME",
		`X=a\ b`: "a b", `X=$HOME`: "", `X='a'$(id)`: "", `X='a' b`: "", "X=`id`": "",
	} {
		f, err := syntax.NewParser(syntax.Variant(syntax.LangPOSIX)).Parse(strings.NewReader(src), "t")
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		call := f.Stmts[0].Cmd.(*syntax.CallExpr)
		v, err := expandWord(call.Assigns[0].Value)
		if want == "" && err == nil && len(call.Args) == 0 {
			t.Errorf("expandWord(%s) = %q, want an error", src, v)
		}
		if want != "" && (err != nil || v != want) {
			t.Errorf("expandWord(%s) = %q, %v; want %q", src, v, err, want)
		}
	}
	for unit, want := range map[string]string{
		"[Service]\nWorkingDirectory=/a\nUser=u\n":              "/a",
		"[Service]\nWorkingDirectory=/a%%b \n":                  "/a%b",
		"[Service]\nWorkingDirectory=/a%/b\n":                   "/a%/b",
		"[Service]\nWorkingDirectory=/a\\\nUser=u\n":            "/a User=u",
		"[Service]\nWorkingDirectory=/%h\n":                     "error",
		"[Service]\nWorkingDirectory=/a\nWorkingDirectory=/b\n": "error",
	} {
		got, err := systemdSettings(unit)
		if want == "error" {
			if err == nil {
				t.Errorf("systemdSettings(%q) = %q, want an error", unit, got)
			}
			continue
		}
		if err != nil || got["WorkingDirectory"] != want {
			t.Errorf("systemdSettings(%q) = %q, %v; want WorkingDirectory %q", unit, got, err, want)
		}
	}
}

// knownRenderBugs are the reported render bugs that TestRenderBugs pins: a
// listed case is skipped while it fails and fails once it passes, so that
// its entry goes and the case starts guarding.
var knownRenderBugs = map[string]string{}

func TestRenderBugs(t *testing.T) {
	cases := []struct {
		name, recipe string
		check        func(*templates.Document) error
	}{{
		name: "file owned by a recipe group is deferred",
		recipe: `name: demo
base: {local: {builtin: debian-bookworm}}
groups: [builders]
files:
  - {path: /srv/shared/notes, owner: "root:builders", mode: "0640", content: "x\n"}
`,
		check: func(doc *templates.Document) error {
			for _, p := range doc.Parts {
				if p.Path == "/srv/shared/notes" && !p.Deferred {
					return fmt.Errorf("%s (owner %s) is written before the group exists: Deferred is false", p.Path, p.Owner)
				}
			}
			return nil
		},
	}}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.name] = true
		t.Run(c.name, func(t *testing.T) {
			r, err := recipes.Parse(c.name+".yaml", []byte(c.recipe))
			if err != nil {
				t.Fatal(err)
			}
			doc, err := templates.Render(r, templates.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = c.check(doc)
			if bug, known := knownRenderBugs[c.name]; known {
				if err == nil {
					t.Fatalf("known bug fixed (%s): remove it from knownRenderBugs", bug)
				}
				t.Skipf("known bug: %s: %v", bug, err)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	for name := range knownRenderBugs {
		if !seen[name] {
			t.Errorf("knownRenderBugs names %q, which is no case", name)
		}
	}
}
