package examples

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The workflows call imagebake with flags that only the real CLI can
// vouch for: this test builds cmd/imagebake, reads each command's --help
// and checks every flag a workflow's run: step passes to it. actionlint
// cannot see that a flag was renamed or misspelt; this can.

// TestWorkflowsUseOnlyFlagsTheCLIDefines is table-driven: each workflow
// lists the imagebake commands it runs. A workflow without a row, a row
// whose command the workflow never runs, and an invocation of a command
// the row does not list all fail, so no invocation goes unchecked. A
// command the binary does not have fails too, unless its row marks it
// pending (it arrives on another branch): then that one command is skipped,
// saying so.
func TestWorkflowsUseOnlyFlagsTheCLIDefines(t *testing.T) {
	rows := []struct {
		file     string
		commands []string
		// pending names, per command, where it comes from while the
		// binary at this commit does not have it yet.
		pending map[string]string
	}{
		{file: "nightly.yml", commands: []string{"bake", "gc"}},
		{file: "promote.yml", commands: []string{"promote"}},
		{file: "launch-runners.yml", commands: []string{"launch"}},
		{file: "prune-runners.yml", commands: []string{"runners list", "runners prune"}},
	}

	files, err := filepath.Glob("github-actions/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no example workflows found (%v)", err)
	}
	var listed []string
	for _, r := range rows {
		listed = append(listed, r.file)
	}
	for _, f := range files {
		if !slices.Contains(listed, filepath.Base(f)) {
			t.Errorf("%s has no row in this test's table: list the imagebake commands it runs", f)
		}
	}

	cli := buildCLI(t)
	t.Run("a misspelt flag is caught", func(t *testing.T) {
		// The checker itself can fail: testdata/unknown-flags.yml passes
		// gc a --tll and promote (through an args array) an --add-regoin.
		invs := workflowInvocations(t, "testdata/unknown-flags.yml")
		var got []string
		for _, inv := range invs {
			cmd, rest, err := splitCommand(inv, []string{"gc", "promote"})
			if err != nil {
				t.Fatal(err)
			}
			h, ok := cli.help(t, cmd)
			if !ok {
				t.Fatalf("imagebake has no %q", cmd)
			}
			got = append(got, unknownFlags(h, rest)...)
		}
		want := []string{"--tll", "--add-regoin"}
		if !slices.Equal(got, want) {
			t.Errorf("unknown flags = %q, want %q", got, want)
		}
	})

	for _, r := range rows {
		t.Run(r.file, func(t *testing.T) {
			path := filepath.Join("github-actions", r.file)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("the table lists %s: %v", r.file, err)
			}
			byCmd := map[string][][]string{}
			for _, inv := range workflowInvocations(t, path) {
				cmd, rest, err := splitCommand(inv, r.commands)
				if err != nil {
					t.Errorf("%s: %v", r.file, err)
					continue
				}
				byCmd[cmd] = append(byCmd[cmd], rest)
			}
			for _, cmd := range r.commands {
				t.Run(strings.ReplaceAll(cmd, " ", "_"), func(t *testing.T) {
					invs := byCmd[cmd]
					if len(invs) == 0 {
						t.Fatalf("the table says %s runs `imagebake %s`, but no run: step does", r.file, cmd)
					}
					h, ok := cli.help(t, cmd)
					from, pending := r.pending[cmd]
					switch {
					case !ok && pending:
						t.Skipf("imagebake at this commit has no `%s` command yet (it comes with %s): the flags %s passes to it are not checked", cmd, from, r.file)
					case !ok:
						t.Fatalf("%s runs `imagebake %s`, a command imagebake does not have", r.file, cmd)
					case pending:
						t.Logf("imagebake now has `%s`: its pending mark in this table can go", cmd)
					}
					if len(h.subcommands) > 0 {
						t.Fatalf("`imagebake %s` is a command group (%s): name the subcommand", cmd, strings.Join(h.subcommands, ", "))
					}
					for _, rest := range invs {
						if bad := unknownFlags(h, rest); len(bad) > 0 {
							t.Errorf("%s passes `imagebake %s` flags it does not define: %s", r.file, cmd, strings.Join(bad, " "))
						}
					}
				})
			}
		})
	}
}

// cli is a freshly built imagebake and the help pages read from it.
type cli struct {
	bin   string
	pages map[string]helpPage
}

func buildCLI(t *testing.T) *cli {
	t.Helper()
	// go test puts its own GOROOT/bin first on the test's PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("go not found on PATH")
		}
		t.Skip("go not found on PATH: cannot build imagebake to read its flags")
	}
	bin := filepath.Join(t.TempDir(), "imagebake")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/imagebake")
	cmd.Dir = ".." // the module root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/imagebake: %v\n%s", err, out)
	}
	return &cli{bin: bin, pages: map[string]helpPage{}}
}

// help returns the --help page of a command path ("runners prune"), and
// false when imagebake says it has no such command.
func (c *cli) help(t *testing.T, cmd string) (helpPage, bool) {
	t.Helper()
	if h, ok := c.pages[cmd]; ok {
		return h, true
	}
	args := append(strings.Fields(cmd), "--help")
	var stderr strings.Builder
	run := exec.Command(c.bin, args...)
	run.Stderr = &stderr
	out, err := run.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 2 && strings.Contains(stderr.String(), "no command or help topic") {
		return helpPage{}, false
	}
	if err != nil {
		t.Fatalf("imagebake %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	h := parseHelp(string(out))
	if len(h.flags) == 0 {
		t.Fatalf("imagebake %s lists no flags (help format changed?):\n%s", strings.Join(args, " "), out)
	}
	c.pages[cmd] = h
	return h, true
}

// helpPage is what a urfave/cli help page says: each flag name (no
// dashes; aliases too) and whether it takes a value, and the subcommands.
type helpPage struct {
	flags       map[string]bool
	subcommands []string
}

var (
	helpSection = regexp.MustCompile(`^[A-Z][A-Z ]*:$`)
	helpFlag    = regexp.MustCompile(`^\s+(-[^ ].*?)(?:\s{2,}|$)`)
	helpCommand = regexp.MustCompile(`^\s+([a-z][a-z0-9-]*(?:, [a-z][a-z0-9-]*)*)(?:\s{2,}|$)`)
)

func parseHelp(out string) helpPage {
	h := helpPage{flags: map[string]bool{}}
	section := ""
	for _, line := range strings.Split(out, "\n") {
		if helpSection.MatchString(line) {
			section = strings.TrimSuffix(line, ":")
			continue
		}
		switch section {
		case "OPTIONS", "GLOBAL OPTIONS":
			m := helpFlag.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			for _, spec := range strings.Split(m[1], ", ") {
				f := strings.Fields(spec)
				h.flags[strings.TrimLeft(f[0], "-")] = len(f) > 1
			}
		case "COMMANDS":
			m := helpCommand.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			names := strings.Split(m[1], ", ")
			if names[0] != "help" {
				h.subcommands = append(h.subcommands, names[0])
			}
		}
	}
	return h
}

// splitCommand finds which of commands an invocation's arguments start
// with (the longest that fits) and returns the arguments after it.
func splitCommand(args []string, commands []string) (string, []string, error) {
	if len(args) > 0 && strings.HasPrefix(args[0], "-") {
		return "", nil, errors.New("imagebake " + strings.Join(args, " ") + ": flags before the command are not checked here; write them after it")
	}
	sorted := slices.Clone(commands)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, c := range sorted {
		words := strings.Fields(c)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return c, args[len(words):], nil
		}
	}
	return "", nil, errors.New("imagebake " + strings.Join(args, " ") + ": a command this test's table does not list for the workflow")
}

// unknownFlags returns, in order, the flags in args that the page does not
// define. A flag that takes a value skips the next argument (unless it has
// "=value"); "--" ends the flags.
func unknownFlags(h helpPage, args []string) []string {
	var bad []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			continue
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takesValue, ok := h.flags[name]
		if !ok {
			bad = append(bad, a)
			continue
		}
		if takesValue && !hasValue {
			i++
		}
	}
	return bad
}

// workflowInvocations returns the arguments of every imagebake command in
// the workflow's run: steps.
func workflowInvocations(t *testing.T, path string) [][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var wf struct {
		Jobs map[string]struct {
			Steps []struct {
				Run string `yaml:"run"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal(data, &wf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var invs [][]string
	for _, job := range wf.Jobs {
		for _, step := range job.Steps {
			invs = append(invs, invocations(step.Run)...)
		}
	}
	return invs
}

// token is a shell word (quotes removed) or an operator (| ; & > ( ) …).
type token struct {
	text string
	op   bool
}

var (
	arrayAssign = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\+?=$`)
	arrayExpand = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\[@\]\}$`)
)

// invocations reads a run: script the way a reviewer would: continued
// lines joined, comments dropped, and for each imagebake (or
// path/to/imagebake) in command position, its words up to the next
// operator. An array expanded as "${name[@]}" is replaced by every word
// the script assigns to it (name=(…) and name+=(…)), so flags passed
// through an array are checked too. It is no shell: heredocs and
// unquoted $(…) are not understood, and none of the examples uses them
// around imagebake.
func invocations(script string) [][]string {
	script = strings.ReplaceAll(script, "\\\n", " ")
	var lines [][]token
	arrays := map[string][]string{}
	for _, line := range strings.Split(script, "\n") {
		toks := shellTokens(line)
		lines = append(lines, toks)
		for i := 0; i+1 < len(toks); i++ {
			m := arrayAssign.FindStringSubmatch(toks[i].text)
			if m == nil || toks[i].op || toks[i+1] != (token{"(", true}) {
				continue
			}
			for j := i + 2; j < len(toks) && toks[j] != (token{")", true}); j++ {
				arrays[m[1]] = append(arrays[m[1]], toks[j].text)
			}
		}
	}
	var invs [][]string
	for _, toks := range lines {
		for i, tk := range toks {
			if tk.op || (tk.text != "imagebake" && !strings.HasSuffix(tk.text, "/imagebake")) {
				continue
			}
			if i > 0 && !commandStart(toks[i-1]) {
				continue
			}
			args := []string{}
			for _, a := range toks[i+1:] {
				if a.op {
					break
				}
				if m := arrayExpand.FindStringSubmatch(a.text); m != nil {
					args = append(args, arrays[m[1]]...)
					continue
				}
				args = append(args, a.text)
			}
			invs = append(invs, args)
		}
	}
	return invs
}

// commandStart reports whether the word after prev is in command position.
func commandStart(prev token) bool {
	if prev.op {
		return prev.text != ">" && prev.text != ">>" && prev.text != "<"
	}
	switch prev.text {
	case "then", "do", "else", "if", "elif", "while", "until", "{", "!", "time", "exec":
		return true
	}
	return false
}

// shellTokens splits one line into words and operators, removing quotes;
// an unquoted # at the start of a word starts a comment.
func shellTokens(line string) []token {
	var toks []token
	var word strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			toks = append(toks, token{text: word.String()})
			word.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				j = len(line) - i - 1
			}
			word.WriteString(line[i+1 : i+1+j])
			inWord = true
			i += j + 1
		case c == '"':
			i++
			for ; i < len(line) && line[i] != '"'; i++ {
				if line[i] == '\\' && i+1 < len(line) {
					i++
				}
				word.WriteByte(line[i])
			}
			inWord = true
		case c == '\\' && i+1 < len(line):
			i++
			word.WriteByte(line[i])
			inWord = true
		case c == ' ' || c == '\t':
			flush()
		case c == '#' && !inWord:
			flush()
			return toks
		case strings.IndexByte("|&;<>()", c) >= 0:
			flush()
			op := string(c)
			if i+1 < len(line) && (line[i+1] == c && c != '(' && c != ')') {
				op += string(c)
				i++
			}
			toks = append(toks, token{text: op, op: true})
		default:
			word.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return toks
}

func TestInvocations(t *testing.T) {
	tests := []struct {
		name   string
		script string
		want   [][]string
	}{
		{"plain", `bin/imagebake gc --target=azure --ttl=6h --yes`,
			[][]string{{"gc", "--target=azure", "--ttl=6h", "--yes"}}},
		{"continued lines and quotes", "bin/imagebake bake \"$RECIPE\" \\\n  --if-changed 'a b'",
			[][]string{{"bake", "$RECIPE", "--if-changed", "a b"}}},
		{"stops at a redirect, a pipe or a comment", "imagebake versions list x --output json > v.json\n" +
			"imagebake runners list x | tee -a s\n" +
			"imagebake gc --yes # --not-a-flag",
			[][]string{{"versions", "list", "x", "--output", "json"}, {"runners", "list", "x"}, {"gc", "--yes"}}},
		{"an args array is expanded", "args=()\nfor r in $R; do args+=(--add-region \"$r\"); done\n" +
			"if [ -n \"$V\" ]; then args+=(--vm-size \"$V\"); fi\n" +
			"bin/imagebake promote \"$I@$V\" --live \"${args[@]}\"",
			[][]string{{"promote", "$I@$V", "--live", "--add-region", "$r", "--vm-size", "$V"}}},
		{"after && and in a condition", `make build && ./bin/imagebake version; if imagebake validate r.yaml; then :; fi`,
			[][]string{{"version"}, {"validate", "r.yaml"}}},
		{"a mention is no invocation", "echo \"run imagebake gc\"\necho imagebake gc\n# imagebake gc --x\ncat > imagebake",
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := invocations(tt.script)
			if !slices.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("invocations =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	page := `NAME:
   imagebake runners - operate runner VMs

COMMANDS:
   list     list runner VMs
   prune, p  delete kept VMs
   help, h  Shows a list of commands or help for one command

OPTIONS:
   --older-than value        only VMs launched longer ago (default: "72h")
   --yes                     delete (default: false) [$IMAGEBAKE_YES]
   --output value, -o value  text or json (default: "text")
   --help, -h                show help
`
	h := parseHelp(page)
	wantFlags := map[string]bool{"older-than": true, "yes": false, "output": true, "o": true, "help": false, "h": false}
	if len(h.flags) != len(wantFlags) {
		t.Errorf("flags = %v, want %v", h.flags, wantFlags)
	}
	for name, v := range wantFlags {
		if got, ok := h.flags[name]; !ok || got != v {
			t.Errorf("flag %q: takes value %v (listed %v), want %v", name, got, ok, v)
		}
	}
	if want := []string{"list", "prune"}; !slices.Equal(h.subcommands, want) {
		t.Errorf("subcommands = %q, want %q", h.subcommands, want)
	}
	if bad := unknownFlags(h, []string{"IMG", "--older-than", "--yes", "-o=json", "--yes", "--ys", "--", "--after"}); !slices.Equal(bad, []string{"--ys"}) {
		// --older-than consumes "--yes" as its value; "--" ends flags.
		t.Errorf("unknownFlags = %q, want [--ys]", bad)
	}
}
