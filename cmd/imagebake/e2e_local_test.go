package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The local target for real: QEMU boots the cached Debian base, real
// cloud-init runs what imagebake rendered, real SSH checks it. These tests
// take minutes, so they run when IMAGEBAKE_QEMU_TESTS=1 (CI sets it).
func needQEMU(t *testing.T) (cacheDir string) {
	t.Helper()
	if os.Getenv("IMAGEBAKE_QEMU_TESTS") != "1" {
		t.Skip("real QEMU bakes: set IMAGEBAKE_QEMU_TESTS=1 (CI does)")
	}
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mmdebstrap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/install-tools.sh", tool)
		}
	}
	cacheDir = os.Getenv("IMAGEBAKE_CACHE")
	if cacheDir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		cacheDir = filepath.Join(d, "imagebake")
	}
	return cacheDir
}

func qemuProcesses(t *testing.T, marker string) []string {
	out, _ := exec.Command("pgrep", "-af", "qemu-system").Output()
	var procs []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && strings.Contains(l, marker) {
			procs = append(procs, l)
		}
	}
	return procs
}

type localManifest struct {
	Result, Version, Path, Error, FailedStage, LogDir string
	Checks                                            []struct {
		Name   string
		Passed bool
	}
	Stages []struct{ Name string }
	Boot   *struct {
		Ready                                                      string
		Seconds, QEMUToKernelSeconds, MultiUserSeconds, SSHSeconds float64
	}
}

func bakeJSON(t *testing.T, env []string, args ...string) (localManifest, result) {
	t.Helper()
	res := runBinary(t, env, append(args, "--output", "json")...)
	var m localManifest
	if err := json.Unmarshal([]byte(res.stdout), &m); err != nil {
		t.Fatalf("no manifest (exit %d): %v\nstdout:\n%s\nstderr:\n%s", res.code, err, res.stdout, res.stderr)
	}
	return m, res
}

// noLeftovers checks that no QEMU process, overlay or temp dir of this test
// remains.
func noLeftovers(t *testing.T, tmp string) {
	t.Helper()
	if procs := qemuProcesses(t, tmp); len(procs) > 0 {
		t.Errorf("QEMU processes left: %v", procs)
	}
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "imagebake-") {
			t.Errorf("temp left behind: %s", filepath.Join(tmp, e.Name()))
		}
	}
}

func TestE2ELocalBakeTwiceAndVerify(t *testing.T) {
	cache := needQEMU(t)
	gal, tmp := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "TMPDIR="+tmp)
	common := []string{"--gallery-dir", gal, "--cache-dir", cache}
	for i, want := range []string{"1.0.0", "1.0.1"} {
		m, res := bakeJSON(t, env, append([]string{"bake", "recipes/local-demo.yaml"}, common...)...)
		if res.code != 0 || m.Result != "baked" || m.Version != want {
			t.Fatalf("bake %d: exit %d, %+v\n%s", i, res.code, m, res.stderr)
		}
		if _, err := os.Stat(m.Path); err != nil {
			t.Errorf("published disk: %v", err)
		}
		failed := 0
		for _, c := range m.Checks {
			if !c.Passed {
				failed++
			}
		}
		if len(m.Checks) < 15 || failed > 0 {
			t.Errorf("bake %d ran %d checks, %d failed", i, len(m.Checks), failed)
		}
		// The build boot's units are only enabled: its ready point is
		// multi-user.target, the figure verify's is compared with.
		if m.Boot == nil || m.Boot.Ready != "multi-user.target" || m.Boot.Seconds <= 0 {
			t.Errorf("bake %d boot timing: %+v", i, m.Boot)
		} else {
			t.Logf("bake %d build boot: %+v", i, *m.Boot)
		}
		noLeftovers(t, tmp)
	}
	m, res := bakeJSON(t, env, append([]string{"verify", "local-demo@1.0.1"}, common...)...)
	if res.code != 0 || m.Result != "verified" {
		t.Fatalf("verify: exit %d %+v\n%s", res.code, m, res.stderr)
	}
	// The first boot of the published image is clean (the first-boot stage
	// passed: no failed unit, not degraded) and its main unit's start is
	// timed and printed.
	var firstBoot bool
	for _, s := range m.Stages {
		firstBoot = firstBoot || s.Name == "first-boot"
	}
	if !firstBoot {
		t.Errorf("verify ran no first-boot stage: %+v", m.Stages)
	}
	if m.Boot == nil || m.Boot.Ready != "demo-agent.service" || m.Boot.Seconds <= 0 || m.Boot.QEMUToKernelSeconds <= 0 {
		t.Errorf("verify boot timing: %+v", m.Boot)
	} else {
		t.Logf("verify boot: %+v", *m.Boot)
	}
	if !strings.Contains(res.stderr+res.stdout, "boot-to-ready ") {
		t.Errorf("verify did not print its boot-to-ready time:\n%s", res.stderr)
	}
	var generalized int
	for _, c := range m.Checks {
		for _, want := range []string{"cloud-init ran again", "build user", "machine-id differs", "SSH host keys differ"} {
			if strings.Contains(c.Name, want) && c.Passed {
				generalized++
			}
		}
	}
	if generalized != 4 {
		t.Errorf("verify proved %d of 4 generalization facts: %+v", generalized, m.Checks)
	}
	noLeftovers(t, tmp)
	list := runBinary(t, env, "versions", "list", "local-demo", "--gallery-dir", gal)
	if !strings.Contains(list.stdout, "1.0.1") || !strings.Contains(list.stdout, "*") {
		t.Errorf("versions list:\n%s", list.stdout)
	}
}

func writeRecipe(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestE2ELocalFailingCheck(t *testing.T) {
	cache := needQEMU(t)
	gal, tmp := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "TMPDIR="+tmp)
	recipe := writeRecipe(t, "failing-check", `name: failing-check
base: {local: {builtin: debian-bookworm}}
files:
  - {path: /etc/demo.conf, content: "mode=fast\n"}
checks:
  - name: demo.conf says slow
    run: |
      grep -x 'mode=slow' /etc/demo.conf || { echo "demo.conf has: $(cat /etc/demo.conf)"; exit 3; }
gallery: {image: failing-check, version: "1.0"}
`)
	m, res := bakeJSON(t, env, "bake", recipe, "--gallery-dir", gal, "--cache-dir", cache)
	if res.code != 1 || m.FailedStage != "checks" {
		t.Fatalf("exit %d stage %q, want 1 and checks\n%s", res.code, m.FailedStage, res.stderr)
	}
	if !strings.Contains(m.Error, "demo.conf has: mode=fast") || !strings.Contains(m.Error, "exit 3") {
		t.Errorf("the check's output is not shown: %s", m.Error)
	}
	if entries, _ := os.ReadDir(filepath.Join(gal, "failing-check")); len(entries) > 0 {
		t.Errorf("a version was published: %v", entries)
	}
	noLeftovers(t, tmp)
}

func TestE2ELocalCloudInitFailure(t *testing.T) {
	cache := needQEMU(t)
	gal, tmp := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "TMPDIR="+tmp)
	recipe := writeRecipe(t, "bad-package", `name: bad-package
base: {local: {builtin: debian-bookworm}}
packages: [jq, imagebake-no-such-package]
gallery: {image: bad-package, version: "1.0"}
`)
	m, res := bakeJSON(t, env, "bake", recipe, "--gallery-dir", gal, "--cache-dir", cache)
	if res.code != 1 || m.FailedStage != "cloud-init" {
		t.Fatalf("exit %d stage %q, want 1 and cloud-init\n%s", res.code, m.FailedStage, res.stderr)
	}
	if !strings.Contains(m.Error, "imagebake-no-such-package") {
		t.Errorf("the cloud-init error does not show the log lines that explain it: %s", m.Error)
	}
	if _, err := os.Stat(filepath.Join(m.LogDir, "cloud-init", "cloud-init-output.log")); err != nil {
		t.Errorf("cloud-init's logs were not copied: %v", err)
	}
	noLeftovers(t, tmp)
}

func TestE2ELocalCtrlCCleansUp(t *testing.T) {
	cache := needQEMU(t)
	gal, tmp := t.TempDir(), t.TempDir()
	cmd := exec.Command(binary, "bake", "recipes/local-demo.yaml", "--gallery-dir", gal, "--cache-dir", cache)
	cmd.Env = append(cleanEnv(), "TMPDIR="+tmp)
	cmd.Dir = "../.."
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(qemuProcesses(t, tmp)) == 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if len(qemuProcesses(t, tmp)) == 0 {
		cmd.Process.Kill()
		t.Fatalf("no build VM started:\n%s", out.String())
	}
	time.Sleep(3 * time.Second)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit %v, want 1\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "interrupted") || !strings.Contains(out.String(), "cleanup: removed build VM") {
		t.Errorf("output:\n%s", out.String())
	}
	noLeftovers(t, tmp)
	if entries, _ := os.ReadDir(filepath.Join(gal, "local-demo")); len(entries) > 0 {
		t.Errorf("a version was published: %v", entries)
	}
}
