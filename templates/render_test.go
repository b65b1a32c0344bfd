package templates

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/imagebake/imagebake/recipes"
)

var update = flag.Bool("update", false, "rewrite golden files")

// testRecipes are every shipped recipe and every test recipe.
func testRecipes(t *testing.T) []string {
	t.Helper()
	shipped, _ := filepath.Glob("../recipes/*.yaml")
	extra, _ := filepath.Glob("testdata/recipes/*.yaml")
	all := append(shipped, extra...)
	if len(shipped) < 2 || len(extra) < 2 {
		t.Fatalf("expected the shipped and test recipes, found %v", all)
	}
	return all
}

func render(t testing.TB, path string) (*recipes.Recipe, *Document) {
	t.Helper()
	r, err := recipes.Load(path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	doc, err := Render(r, Options{})
	if err != nil {
		t.Fatalf("render %s: %v", path, err)
	}
	return r, doc
}

func TestGolden(t *testing.T) {
	for _, path := range testRecipes(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			_, doc := render(t, path)
			golden := filepath.Join("testdata", "golden", name+".cloud-config")
			if *update {
				if err := os.WriteFile(golden, doc.CloudConfig, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./templates -update to create it)", err)
			}
			if !bytes.Equal(doc.CloudConfig, want) {
				t.Errorf("rendered %s differs from %s; review and run go test ./templates -update", path, golden)
			}
			// Deterministic: a second render is byte for byte the same.
			_, again := render(t, path)
			if !bytes.Equal(doc.CloudConfig, again.CloudConfig) {
				t.Error("two renders of one recipe differ")
			}
		})
	}
}

// parsed is the subset of cloud-config the meaning tests read.
type parsed struct {
	PackageUpdate bool                   `yaml:"package_update"`
	Packages      []string               `yaml:"packages"`
	Groups        []string               `yaml:"groups"`
	Users         []any                  `yaml:"users"`
	Apt           map[string]any         `yaml:"apt"`
	WriteFiles    []map[string]any       `yaml:"write_files"`
	Runcmd        []string               `yaml:"runcmd"`
	Rest          map[string]interface{} `yaml:",inline"`
}

func parse(t *testing.T, doc []byte) parsed {
	t.Helper()
	if !bytes.HasPrefix(doc, []byte("#cloud-config\n")) {
		t.Fatalf("document does not start with #cloud-config")
	}
	var p parsed
	if err := yaml.Unmarshal(doc, &p); err != nil {
		t.Fatalf("rendered document is not YAML: %v", err)
	}
	return p
}

// runcmdSteps checks that the document's runcmd is the rendered steps,
// each guarded, and returns the steps' argv.
func runcmdSteps(t *testing.T, p parsed, doc *Document) [][]string {
	t.Helper()
	if len(p.Runcmd) != len(doc.Steps) {
		t.Fatalf("runcmd has %d entries, want %d steps", len(p.Runcmd), len(doc.Steps))
	}
	for i, st := range doc.Steps {
		if want := StepLine(i+1, len(doc.Steps), st); p.Runcmd[i] != want {
			t.Errorf("runcmd[%d] = %q, want %q", i, p.Runcmd[i], want)
		}
	}
	return doc.Steps
}

func (p parsed) file(path string) map[string]any {
	for _, f := range p.WriteFiles {
		if f["path"] == path {
			return f
		}
	}
	return nil
}

func TestMeaningGitHubRunner(t *testing.T) {
	_, doc := render(t, "../recipes/github-runner-focal.yaml")
	p := parse(t, doc.CloudConfig)

	if p.Users[0] != "default" {
		t.Errorf("users[0] = %v, want default first (it keeps the platform's admin user)", p.Users[0])
	}
	u, ok := p.Users[1].(map[string]any)
	if !ok || u["name"] != "githubrunner1" || u["system"] != true || u["homedir"] != "/home/githubrunner1" {
		t.Errorf("users[1] = %v, want system user githubrunner1 with home /home/githubrunner1", p.Users[1])
	}
	if g, _ := u["groups"].([]any); len(g) != 1 || g[0] != "docker" {
		t.Errorf("githubrunner1 groups = %v, want [docker]", u["groups"])
	}
	if !contains(p.Groups, "docker") {
		t.Errorf("groups = %v, want docker created", p.Groups)
	}
	for _, pkg := range []string{"jq", "azure-cli", "kubectl", "docker-ce", "curl"} {
		if !contains(p.Packages, pkg) {
			t.Errorf("packages %v lack %s", p.Packages, pkg)
		}
	}
	if !p.PackageUpdate {
		t.Error("package_update is false")
	}
	sources, _ := p.Apt["sources"].(map[string]any)
	for _, s := range []string{"azure-cli.list", "docker.list", "kubernetes.list"} {
		src, _ := sources[s].(map[string]any)
		if src == nil || !strings.Contains(fmt.Sprint(src["source"]), "signed-by=$KEY_FILE") || src["keyid"] == nil {
			t.Errorf("apt source %s = %v, want signed-by=$KEY_FILE and a key", s, src)
		}
	}

	sudo := p.file("/etc/sudoers.d/imagebake-githubrunner1-0")
	if sudo == nil {
		t.Fatal("no sudoers file for githubrunner1")
	}
	if strings.Contains(filepath.Base("/etc/sudoers.d/imagebake-githubrunner1-0"), ".") {
		t.Error("sudoers file name has a dot: sudo would skip it")
	}
	if sudo["permissions"] != "0440" || sudo["owner"] != "root:root" {
		t.Errorf("sudoers file mode/owner = %v/%v, want \"0440\" root:root", sudo["permissions"], sudo["owner"])
	}
	wantLine := "githubrunner1 ALL=(ALL) NOPASSWD: /usr/bin/apt-get, /usr/sbin/usermod, /usr/bin/gpg, /usr/bin/tee, /usr/bin/curl"
	if !strings.Contains(sudo["content"].(string), wantLine) {
		t.Errorf("sudoers content %q lacks %q", sudo["content"], wantLine)
	}

	unit := p.file("/etc/systemd/system/github-runner.service")
	if unit == nil {
		t.Fatal("no github-runner.service")
	}
	uc := unit["content"].(string)
	for _, want := range []string{"Type=oneshot", "User=githubrunner1", "ExecStart=/opt/githubrunner/start_runner.sh", "ExecStopPost=+/opt/githubrunner/completed_cycle.sh", "WantedBy=multi-user.target"} {
		if !strings.Contains(uc, want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	start := p.file(RunnerStartScript)["content"].(string)
	for _, want := range []string{"--ephemeral", "--unattended", `--name "$(hostname)"`, "ACTIONS_RUNNER_INPUT_TOKEN", "--config -"} {
		if !strings.Contains(start, want) {
			t.Errorf("start script lacks %q", want)
		}
	}
	// No secret on a command line: no --token flag, no curl -u, no bearer
	// header given with -H.
	for _, bad := range []string{"--token", "curl -u", "-H \"Authorization", "-H 'Authorization"} {
		if strings.Contains(start, bad) || strings.Contains(p.file(RunnerCycleScript)["content"].(string), bad) {
			t.Errorf("a runner script puts a secret in argv: %q", bad)
		}
	}
	cycle := p.file(RunnerCycleScript)["content"].(string)
	for _, want := range []string{"'running')", "'delete')", "/deallocate?", "forceDeletion=true", "imagebake.outcome", "EXIT_STATUS"} {
		if !strings.Contains(cycle, want) {
			t.Errorf("lifecycle script lacks %q", want)
		}
	}
	install := p.file(RunnerInstallerSh)["content"].(string)
	shaAt := strings.Index(install, "sha256sum -c")
	tarAt := strings.Index(install, "tar -xzf")
	if shaAt < 0 || tarAt < 0 || shaAt > tarAt {
		t.Error("the runner tarball is not checked before it is extracted")
	}
	if !strings.Contains(install, "runuser -u \"$user\" -- tar") || !strings.Contains(install, "installdependencies.sh") {
		t.Error("the runner is not extracted as its user, or its dependencies are not installed")
	}
	if !strings.Contains(install, "actions-runner-linux-x64-$version.tar.gz") || !strings.Contains(install, "version='2.337.0'") {
		t.Error("the download URL is not derived from the pinned version")
	}

	steps := runcmdSteps(t, p, doc)
	var enabled, started bool
	for _, c := range steps {
		joined := strings.Join(c, " ")
		if joined == "systemctl enable -- github-runner.service" {
			enabled = true
		}
		if strings.Contains(joined, "start") && strings.HasPrefix(joined, "systemctl") {
			started = true
		}
	}
	if !enabled || started {
		t.Errorf("runcmd %v: want the unit enabled and not started", steps)
	}
	if last := steps[len(steps)-1]; last[0] != "systemctl" {
		t.Errorf("runcmd ends with %v", last)
	}
	home := strings.Join(steps[0], " ")
	if home != "install -d -o githubrunner1 -g githubrunner1 -m 0755 -- /home/githubrunner1" {
		t.Errorf("runcmd[0] = %q, want the system user's home created first", home)
	}
}

func TestMeaningLocalDemo(t *testing.T) {
	_, doc := render(t, "../recipes/local-demo.yaml")
	p := parse(t, doc.CloudConfig)
	cfg := p.file("/home/demorunner/.demo/config.json")
	if cfg == nil || cfg["defer"] != true || cfg["owner"] != "demorunner:demorunner" || cfg["permissions"] != "0600" {
		t.Errorf("a file owned by a recipe user must be deferred with its owner and mode: %v", cfg)
	}
	if motd := p.file("/etc/motd"); motd == nil || motd["defer"] != nil {
		t.Errorf("a root-owned file is written early, not deferred: %v", motd)
	}
	if !strings.Contains(p.file("/etc/systemd/system/demo-agent.service")["content"].(string), "ExecStopPost=+/opt/demo/completed_cycle.sh") {
		t.Error("demo unit lost its lifecycle hook")
	}
}

func TestOptionsPinHostKeyAndBuildUser(t *testing.T) {
	r, err := recipes.Load("../recipes/local-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := Render(r, Options{HostKeyPrivate: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
		HostKeyPublic: "ssh-ed25519 AAAA host", BuildUser: "imagebake", BuildAuthorizedKey: "ssh-ed25519 AAAA client"})
	if err != nil {
		t.Fatal(err)
	}
	p := parse(t, doc.CloudConfig)
	keys, _ := p.Rest["ssh_keys"].(map[string]any)
	if keys["ed25519_public"] != "ssh-ed25519 AAAA host" || !strings.Contains(fmt.Sprint(keys["ed25519_private"]), "OPENSSH PRIVATE KEY") {
		t.Errorf("ssh_keys = %v", keys)
	}
	last, _ := p.Users[len(p.Users)-1].(map[string]any)
	if last["name"] != "imagebake" || last["sudo"] != "ALL=(ALL) NOPASSWD:ALL" {
		t.Errorf("build user = %v", last)
	}
	validateSchema(t, doc.CloudConfig)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// need finds a real validator; CI installs them all, so a missing one fails
// there and is skipped only on a developer's machine.
func need(t *testing.T, tool, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found: CI must install Debian's %s", tool, pkg)
		}
		t.Skipf("%s not found: apt-get install %s", tool, pkg)
	}
	return p
}

func TestCloudInitSchema(t *testing.T) {
	tool := need(t, "cloud-init", "cloud-init")
	for _, path := range testRecipes(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			_, doc := render(t, path)
			f := filepath.Join(t.TempDir(), "user-data")
			if err := os.WriteFile(f, doc.CloudConfig, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(tool, "schema", "-c", f).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
				t.Errorf("cloud-init schema -c: %v\n%s", err, out)
			}
		})
	}
}

func TestCloudInitSchemaRejectsBrokenDocument(t *testing.T) {
	// The validator must be able to fail: a wrong type is refused.
	tool := need(t, "cloud-init", "cloud-init")
	f := filepath.Join(t.TempDir(), "user-data")
	os.WriteFile(f, []byte("#cloud-config\npackage_update: maybe\nusers: 7\n"), 0o600)
	if out, err := exec.Command(tool, "schema", "-c", f).CombinedOutput(); err == nil {
		t.Errorf("cloud-init schema accepted a broken document:\n%s", out)
	}
	if err := focalSchema(t).Validate(yamlToJSON(t, []byte("users: 7\npackage_updat: true\n"))); err == nil {
		t.Error("the Focal schema accepted a broken document")
	}
}

func focalSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	f, err := os.Open("testdata/schema/schema-cloud-config-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("focal.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("focal.json")
	if err != nil {
		t.Fatalf("compile Focal schema: %v", err)
	}
	return s
}

func yamlToJSON(t *testing.T, doc []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(doc, &v); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func validateSchema(t *testing.T, doc []byte) {
	t.Helper()
	if err := focalSchema(t).Validate(yamlToJSON(t, doc)); err != nil {
		t.Errorf("Focal cloud-init 24.4.1 schema: %v", err)
	}
}

func TestFocalSchema(t *testing.T) {
	for _, path := range testRecipes(t) {
		t.Run(filepath.Base(path), func(t *testing.T) {
			_, doc := render(t, path)
			validateSchema(t, doc.CloudConfig)
		})
	}
}

// writeRoot lays a document's parts out under a directory, as the image
// would hold them.
func writeRoot(t *testing.T, doc *Document) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range doc.Parts {
		dst := filepath.Join(root, p.Path)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		m, err := strconv.ParseUint(p.Mode, 8, 32)
		if err != nil {
			t.Fatalf("%s: mode %q: %v", p.Path, p.Mode, err)
		}
		mode := os.FileMode(m)
		if err := os.WriteFile(dst, []byte(p.Content), mode); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestUnitsVerify(t *testing.T) {
	tool := need(t, "systemd-analyze", "systemd")
	n := 0
	for _, path := range testRecipes(t) {
		_, doc := render(t, path)
		root := writeRoot(t, doc)
		// verify --root needs the system's own units (sysinit.target…)
		// beside ours, and the units' executables in place.
		if out, err := exec.Command("cp", "-a", "/usr/lib/systemd", filepath.Join(root, "usr/lib/")).CombinedOutput(); err != nil {
			if err := os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("cp", "-a", "/usr/lib/systemd", filepath.Join(root, "usr/lib/")).CombinedOutput(); err != nil {
				t.Fatalf("copy system units: %v %s", err, out)
			}
			_ = out
		}
		for _, p := range doc.Parts {
			if p.Kind != KindUnit {
				continue
			}
			for _, exe := range unitExecutables(p.Content) {
				dst := filepath.Join(root, exe)
				if _, err := os.Stat(dst); err != nil {
					os.MkdirAll(filepath.Dir(dst), 0o755)
					os.WriteFile(dst, []byte("#!/bin/sh\n"), 0o755)
				}
			}
			n++
			t.Run(filepath.Base(path)+"/"+filepath.Base(p.Path), func(t *testing.T) {
				cmd := exec.Command(tool, "verify", "--man=no", "--root="+root, filepath.Base(p.Path))
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				if err := cmd.Run(); err != nil || stderr.Len() > 0 {
					t.Errorf("systemd-analyze verify %s: %v\n%s", p.Path, err, stderr.String())
				}
			})
		}
	}
	if n < 3 {
		t.Errorf("verified %d units, want every recipe's units (at least 3)", n)
	}
}

// unitExecutables lists the absolute programs a unit's Exec lines name, so
// the test can put stand-ins for recipe files that are not scripts parts.
func unitExecutables(unit string) []string {
	var out []string
	for _, l := range strings.Split(unit, "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || !strings.HasPrefix(k, "Exec") {
			continue
		}
		f := strings.Fields(strings.TrimLeft(v, "+-@!:"))
		if len(f) > 0 && strings.HasPrefix(f[0], "/") {
			out = append(out, f[0])
		}
	}
	return out
}

func TestUnitVerifierCatchesTypos(t *testing.T) {
	tool := need(t, "systemd-analyze", "systemd")
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755)
	os.MkdirAll(filepath.Join(root, "usr/lib"), 0o755)
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd", filepath.Join(root, "usr/lib/")).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.WriteFile(filepath.Join(root, "etc/systemd/system/x.service"), []byte("[Service]\nTyp=oneshot\nExecStart=/bin/true\n"), 0o644)
	cmd := exec.Command(tool, "verify", "--man=no", "--root="+root, "x.service")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	_ = cmd.Run()
	if !strings.Contains(stderr.String(), "Unknown key") {
		t.Errorf("systemd-analyze did not warn about an unknown key: %q", stderr.String())
	}
}

func TestSudoersVisudo(t *testing.T) {
	tool := need(t, "visudo", "sudo")
	n := 0
	for _, path := range testRecipes(t) {
		_, doc := render(t, path)
		for _, p := range doc.Parts {
			if p.Kind != KindSudoers {
				continue
			}
			n++
			f := filepath.Join(t.TempDir(), "sudoers")
			os.WriteFile(f, []byte(p.Content), 0o440)
			if out, err := exec.Command(tool, "-cf", f).CombinedOutput(); err != nil {
				t.Errorf("visudo -cf %s (%s): %v\n%s", p.Path, path, err, out)
			}
		}
	}
	if n < 2 {
		t.Errorf("checked %d sudoers files, want at least 2", n)
	}
	// And visudo can fail: a relative command is refused.
	f := filepath.Join(t.TempDir(), "bad")
	os.WriteFile(f, []byte("u ALL=(ALL) NOPASSWD: apt-get\n"), 0o440)
	if out, err := exec.Command(tool, "-cf", f).CombinedOutput(); err == nil {
		t.Errorf("visudo accepted a relative command: %s", out)
	}
}

func TestScriptsShellcheck(t *testing.T) {
	tool := need(t, "shellcheck", "shellcheck")
	n := 0
	for _, path := range testRecipes(t) {
		_, doc := render(t, path)
		for _, p := range doc.Parts {
			if p.Kind != KindScript && p.Kind != KindEnv {
				continue
			}
			n++
			f := filepath.Join(t.TempDir(), "script")
			content := p.Content
			if p.Kind == KindEnv {
				content = "#!/bin/sh\n" + content
			}
			os.WriteFile(f, []byte(content), 0o755)
			if out, err := exec.Command(tool, "-s", "sh", "-x", f).CombinedOutput(); err != nil {
				t.Errorf("shellcheck %s (%s): %v\n%s", p.Path, path, err, out)
			}
			// The env file really is shell: sourcing it gives back the
			// recipe's values unchanged.
			if p.Kind == KindEnv {
				checkEnvRoundTrip(t, f, path)
			}
		}
	}
	if n < 6 {
		t.Errorf("checked %d scripts, want at least 6", n)
	}
}

func checkEnvRoundTrip(t *testing.T, envFile, recipePath string) {
	t.Helper()
	r, err := recipes.Load(recipePath)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range r.Runner.Env {
		out, err := exec.Command("sh", "-c", `. "$1" && printf %s "$(eval printf %s \"\$$2\")"`, "sh", envFile, k).Output()
		if err != nil {
			t.Fatalf("source env file: %v", err)
		}
		if string(out) != want {
			t.Errorf("env %s = %q after sourcing, want %q", k, out, want)
		}
	}
}

func TestCustomData(t *testing.T) {
	_, doc := render(t, "../recipes/github-runner-focal.yaml")
	cd, err := CustomData(doc)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(cd)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(zr)
	if !bytes.Equal(back, doc.CloudConfig) {
		t.Error("custom data does not decode to the cloud-config")
	}
	if cd2, _ := CustomData(doc); cd2 != cd {
		t.Error("custom data is not deterministic")
	}
}

func TestCustomDataTooLarge(t *testing.T) {
	r, err := recipes.Load("../recipes/local-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r.Files = append(r.Files, recipes.File{Path: "/opt/big.bin", Content: noise(300_000), Mode: "0644", Owner: "root:root"})
	doc, err := Render(r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = CustomData(doc)
	var tl *TooLargeError
	if err == nil || !errorsAs(err, &tl) {
		t.Fatalf("want TooLargeError, got %v", err)
	}
	if tl.Size <= MaxCustomDataBytes || tl.Parts[0].Path != "/opt/big.bin" || !strings.Contains(err.Error(), "/opt/big.bin") {
		t.Errorf("error does not name the size and the biggest part: %v", err)
	}
}

func BenchmarkValidateRender(b *testing.B) {
	for _, path := range []string{"../recipes/github-runner-focal.yaml", "../recipes/local-demo.yaml"} {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(filepath.Base(path), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := recipes.Parse(path, data)
				if err != nil {
					b.Fatal(err)
				}
				doc, err := Render(r, Options{})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := CustomData(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// noise is poorly compressible content: hex of a xorshift stream, at least
// n bytes, the same every run.
func noise(n int) string {
	var b strings.Builder
	x := uint64(88172645463325252)
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		fmt.Fprintf(&b, "%016x", x)
	}
	return b.String()
}
