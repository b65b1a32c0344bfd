package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imagebake/imagebake/internal/fakerunner"
)

// runtimeVersion is the stand-in runner's version: current enough for the
// built-in stand-in GitHub (no minimum there).
const runtimeVersion = "2.336.0"

// serveMirror serves the stand-in runner tarballs on 127.0.0.1, which a
// build VM reaches as 10.0.2.2 (QEMU's user network host address).
func serveMirror(t *testing.T, tarballs ...fakerunner.Tarball) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fakerunner.Mirror(tarballs...)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// runnerRecipe is a runner recipe on the Debian base whose tarball comes
// from the test's mirror.
func runnerRecipe(t *testing.T, name, registration string, tb fakerunner.Tarball, url string) string {
	t.Helper()
	return writeRecipe(t, name, fmt.Sprintf(`name: %s
base: {local: {builtin: debian-bookworm}}
packages: [curl, jq]
users:
  - {name: runner, system: true, home: /home/runner}
runner:
  version: %s
  sha256: %s
  url: %s
  user: runner
  ephemeral: true
  registration: %s
  labels: [imagebake-e2e]
  env: {REPO_URL: "https://github.com/imagebake/demo", RESOURCE_GROUP: imagebake-local}
systemd:
  - {name: github-runner.service, template: github-runner.service, enable: true}
gallery: {image: %s, version: "1.0"}
`, name, tb.Version, tb.SHA256, url, registration, name))
}

type runtimeOut struct {
	Result, Error, FailedStage string
	Runtime                    struct {
		Registration  string
		Boots         int
		Registrations int
		SecretsSeen   int
		Summary       string
		Results       []struct {
			Cycle, VM, Outcome, End, Want, Problem string
			Registrations, Sessions                int
			BootToReadySeconds                     float64
			OK                                     bool
		}
	}
}

// TestE2ERuntimeLifecycle bakes a jit runner image with the stand-in
// runner, then runs verify --runtime on it: three runner VMs (cycle delete,
// no tag, running), each registering once with its own JIT config, running
// its one job and ending as its cycle says.
func TestE2ERuntimeLifecycle(t *testing.T) {
	cache := needQEMU(t)
	tb, err := fakerunner.Build(fakerunner.Options{Version: runtimeVersion})
	if err != nil {
		t.Fatal(err)
	}
	port := serveMirror(t, tb)
	gal, tmp := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "TMPDIR="+tmp)
	recipe := runnerRecipe(t, "runner-jit", "jit", tb, fmt.Sprintf("http://10.0.2.2:%d/%s", port, tb.Name))
	m, res := bakeJSON(t, env, "bake", recipe, "--gallery-dir", gal, "--cache-dir", cache)
	if res.code != 0 {
		t.Fatalf("bake: exit %d: %s\n%s", res.code, m.Error, res.stderr)
	}
	logs := t.TempDir()
	res = runBinary(t, env, "verify", "runner-jit@"+m.Version, "--runtime", "--recipe", recipe, "--vm-timeout", "12m",
		"--gallery-dir", gal, "--cache-dir", cache, "--log-dir", logs, "--output", "json")
	defer func() {
		if t.Failed() {
			dumpRuntimeLogs(t, filepath.Join(logs, "runtime"))
		}
	}()
	var out runtimeOut
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("verify --runtime: exit %d, no JSON: %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	if res.code != 0 {
		t.Fatalf("verify --runtime: exit %d: %s\n%s", res.code, out.Error, res.stderr)
	}
	rt := out.Runtime
	want := map[string]string{"delete": "destroyed", "": "deallocated", "running": "running"}
	if len(rt.Results) != 3 {
		t.Fatalf("%d results, want 3: %+v", len(rt.Results), rt.Results)
	}
	names := map[string]bool{}
	for _, r := range rt.Results {
		if !r.OK || r.Outcome != "job-done" || r.End != want[r.Cycle] || r.Registrations != 1 || r.Sessions != 1 {
			t.Errorf("cycle %q: %+v", r.Cycle, r)
		}
		names[r.VM] = true
	}
	if len(names) != 3 {
		t.Errorf("VM names not distinct: %v", names)
	}
	if rt.Boots != 3 || rt.Registrations != 3 || rt.SecretsSeen != 0 {
		t.Errorf("boots %d registrations %d secrets %d", rt.Boots, rt.Registrations, rt.SecretsSeen)
	}
	wantLine := "runner lifecycle: 3 boots, 3 registrations, delete→destroyed, none→deallocated, running→running, 0 secrets seen"
	if rt.Summary != wantLine || !strings.Contains(res.stderr, wantLine) {
		t.Errorf("summary %q, want %q\n%s", rt.Summary, wantLine, res.stderr)
	}
	// The deallocated VM's disk is kept with its record; the deleted one's
	// is gone.
	for _, r := range rt.Results {
		disk := filepath.Join(logs, "runtime", "runner-jit", r.VM+".qcow2")
		_, err := os.Stat(disk)
		if kept := err == nil; kept != (r.Cycle == "") {
			t.Errorf("cycle %q: disk %s kept=%v", r.Cycle, disk, kept)
		}
	}
	noLeftovers(t, tmp)
	reportLifecycle(t, rt.Summary)
}

// dumpRuntimeLogs shows what the runner VMs and the stand-ins saw.
func dumpRuntimeLogs(t *testing.T, dir string) {
	for _, f := range []string{"platform.log", "github.log"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		t.Logf("%s:\n%s", f, b)
	}
	serials, _ := filepath.Glob(filepath.Join(dir, "*", "*.logs", "serial.log"))
	for _, s := range serials {
		b, _ := os.ReadFile(s)
		lines := strings.Split(string(b), "\n")
		var keep []string
		for _, l := range lines {
			if strings.Contains(l, "runner") || strings.Contains(l, "cloud-init") || strings.Contains(l, "FAILED") || strings.Contains(l, "rror") {
				keep = append(keep, l)
			}
		}
		if len(keep) > 80 {
			keep = keep[len(keep)-80:]
		}
		t.Logf("%s (runner, cloud-init and error lines):\n%s", s, strings.Join(keep, "\n"))
	}
}

// reportLifecycle appends the lifecycle line to IMAGEBAKE_LIFECYCLE_FILE,
// which `make test` prints after the tests (go test hides a passing test's
// output).
func reportLifecycle(t *testing.T, line string) {
	t.Log(line)
	if p := os.Getenv("IMAGEBAKE_LIFECYCLE_FILE"); p != "" {
		f, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fmt.Fprintln(f, line)
	}
}
