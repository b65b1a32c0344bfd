package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/bake"
	fleetlocal "github.com/imagebake/imagebake/fleet/local"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/internal/fakerunner"
	"github.com/imagebake/imagebake/internal/ghmodel"
	"github.com/imagebake/imagebake/platform"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/release"
)

// runtimeVersion is the stand-in runner's version: current enough for the
// built-in stand-in GitHub (no minimum there).
const runtimeVersion = "2.336.0"

// runnerRecipe is a runner recipe on the Debian base whose tarball comes
// from the test's mirror.
func runnerRecipe(t *testing.T, name, registration string, tb fakerunner.Tarball, url string) string {
	t.Helper()
	return writeRecipe(t, name, fmt.Sprintf(`name: %s
base: {local: {builtin: debian-bookworm}}
packages: [curl, jq]
users:
  # systemd-journal: the stand-in runner's leak scan reads the whole journal.
  - {name: runner, system: true, groups: [systemd-journal], home: /home/runner}
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

// runnerImage is one baked jit runner image, shared by the runtime tests
// (a bake is minutes under TCG).
type runnerImage struct {
	cache, gallery, recipe, version string
	env                             []string
	tmp                             string
	err                             string
}

var (
	runnerImageOnce sync.Once
	runnerImageVal  runnerImage
)

// removeRunnerImage removes the shared image's folders (TestMain, last).
func removeRunnerImage() {
	for _, d := range []string{runnerImageVal.gallery, runnerImageVal.tmp} {
		if d != "" {
			os.RemoveAll(d)
		}
	}
	if runnerImageVal.recipe != "" {
		os.Remove(runnerImageVal.recipe)
	}
}

// bakedRunnerImage bakes the jit runner recipe with the stand-in runner
// (served from a loopback mirror through runner.url) once per test binary.
func bakedRunnerImage(t *testing.T) runnerImage {
	cache := needQEMU(t)
	runnerImageOnce.Do(func() {
		ri := &runnerImageVal
		tb, err := fakerunner.Build(fakerunner.Options{Version: runtimeVersion})
		if err != nil {
			ri.err = err.Error()
			return
		}
		// The mirror and folders outlive this test: later tests boot the image.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			ri.err = err.Error()
			return
		}
		go func() { _ = http.Serve(ln, fakerunner.Mirror(tb)) }()
		port := ln.Addr().(*net.TCPAddr).Port
		ri.cache = cache
		ri.gallery, _ = os.MkdirTemp("", "runtime-gallery-")
		ri.tmp, _ = os.MkdirTemp("", "runtime-tmp-")
		ri.env = append(cleanEnv(), "TMPDIR="+ri.tmp)
		ri.recipe = runnerRecipe(t, "runner-jit", "jit", tb, fmt.Sprintf("http://10.0.2.2:%d/%s", port, tb.Name))
		keep := filepath.Join(ri.gallery, "..", filepath.Base(ri.gallery)+".yaml")
		if data, err := os.ReadFile(ri.recipe); err == nil {
			_ = os.WriteFile(keep, data, 0o644)
			ri.recipe = keep
		}
		m, res := bakeJSON(t, ri.env, "bake", ri.recipe, "--gallery-dir", ri.gallery, "--cache-dir", cache)
		if res.code != 0 {
			ri.err = fmt.Sprintf("bake: exit %d: %s\n%s", res.code, m.Error, res.stderr)
			return
		}
		ri.version = m.Version
	})
	if runnerImageVal.err != "" {
		t.Fatal(runnerImageVal.err)
	}
	return runnerImageVal
}

// TestE2ERuntimeLifecycle runs verify --runtime on the baked jit runner
// image: three runner VMs (cycle delete, no tag, running), each registering
// once with its own JIT config, running its one job and ending as its cycle
// says.
func TestE2ERuntimeLifecycle(t *testing.T) {
	ri := bakedRunnerImage(t)
	logs := t.TempDir()
	out, res := verifyRuntime(t, ri.env, logs, "runner-jit@"+ri.version, "--recipe", ri.recipe, "--gallery-dir", ri.gallery, "--cache-dir", ri.cache)
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
	// The deallocated VM's disk is kept with its record, and so is the
	// running one's (powered off when verify ends); the deleted one's is
	// gone. Each VM's outcome line reached its console (boot diagnostics).
	for _, r := range rt.Results {
		disk := filepath.Join(logs, "runtime", "runner-jit", r.VM+".qcow2")
		_, err := os.Stat(disk)
		if kept := err == nil; kept != (r.Cycle != "delete") {
			t.Errorf("cycle %q: disk %s kept=%v", r.Cycle, disk, kept)
		}
		serial, _ := os.ReadFile(filepath.Join(logs, "runtime", "runner-jit", r.VM+".logs", "serial.log"))
		if r.Cycle != "running" && !strings.Contains(string(serial), "imagebake-runner: outcome=job-done") {
			t.Errorf("cycle %q: no outcome line on the console", r.Cycle)
		}
	}
	noLeftovers(t, ri.tmp)
	for _, r := range rt.Results {
		cycle := r.Cycle
		if cycle == "" {
			cycle = "none"
		}
		reportLifecycle(t, fmt.Sprintf("  cycle=%s: %s, outcome %s, %s, boot-to-ready %.1fs (QEMU start → runner session; 3 VMs at once under TCG)",
			cycle, r.VM, r.Outcome, r.End, r.BootToReadySeconds))
	}
	reportLifecycle(t, rt.Summary)
}

// TestE2ERuntimeRefusedAndStale: a runner GitHub refuses (exit 1 with
// .runner left) and a stale one (exit 7) are told apart by the VM, which
// records the outcome, says it on its console and is kept (deallocated)
// for examination; verify --runtime fails naming both.
func TestE2ERuntimeRefusedAndStale(t *testing.T) {
	ri := bakedRunnerImage(t)
	r, err := recipes.Load(ri.recipe)
	if err != nil {
		t.Fatal(err)
	}
	store := local.New(ri.gallery, nil)
	v, err := release.Resolve(context.Background(), store, "runner-jit", ri.version)
	if err != nil {
		t.Fatal(err)
	}
	gh := ghmodel.New(ghmodel.Options{TLS: true, AdvertiseURL: fleetlocal.StandInAdvertiseURL})
	defer gh.Close()
	const id = "e2e0ab"
	refused, stale := bake.RuntimeVMName("runner-jit", id, 0), bake.RuntimeVMName("runner-jit", id, 1)
	gh.SetOutcome(refused, ghmodel.OutcomeRefuse)
	gh.SetOutcome(stale, ghmodel.OutcomeStale)
	dir := t.TempDir()
	_, rep, err := bake.VerifyRuntime(context.Background(), r, v, bake.RuntimeOptions{
		LocalOptions: bake.LocalOptions{CacheDir: ri.cache},
		Cycles:       []string{"delete", "delete"}, Relay: platform.SelfRelay(binary, relayCommand),
		StandIn: gh, Dir: dir, LaunchID: id, VMTimeout: 12 * time.Minute})
	if err == nil {
		t.Fatal("verify --runtime passed with a refused and a stale runner")
	}
	for _, want := range []struct{ vm, outcome string }{{refused, "refused"}, {stale, "stale"}} {
		var got *bake.RuntimeResult
		for i := range rep.Results {
			if rep.Results[i].VM == want.vm {
				got = &rep.Results[i]
			}
		}
		if got == nil {
			t.Fatalf("no result for %s: %+v (%v)", want.vm, rep.Results, err)
		}
		// onNoJob keep: not deleted despite cycle=delete, deallocated with its disk.
		if got.OK || got.Outcome != want.outcome || got.End != "deallocated" {
			t.Errorf("%s: %+v", want.vm, *got)
		}
		if !strings.Contains(err.Error(), "outcome "+want.outcome) {
			t.Errorf("the error does not name outcome %s: %v", want.outcome, err)
		}
		serial, _ := os.ReadFile(filepath.Join(dir, "runner-jit", want.vm+".logs", "serial.log"))
		if !strings.Contains(string(serial), "imagebake-runner: outcome="+want.outcome) {
			t.Errorf("%s: no outcome=%s line on the console", want.vm, want.outcome)
		}
		if t.Failed() {
			dumpRuntimeLogs(t, dir)
		}
	}
}

// TestE2ELaunchLocal launches runner VMs of the baked image on the local
// target with the GitHub stand-in: a cycle=delete VM ends destroyed, a
// cycle=deallocate one powered off and listed so by runners list, then
// pruned.
func TestE2ELaunchLocal(t *testing.T) {
	ri := bakedRunnerImage(t)
	runners := t.TempDir()
	type launched struct {
		res result
		out struct {
			Launched []struct {
				Name     string
				RunnerID int64
				VM       *struct{ Name, Power string }
			}
		}
	}
	results := make([]launched, 2)
	var wg sync.WaitGroup
	for i, cycle := range []string{"delete", "deallocate"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i].res = runBinary(t, ri.env, "launch", "runner-jit", "--recipe", ri.recipe, "--github-stand-in",
				"--cycle", cycle, "--gallery-dir", ri.gallery, "--cache-dir", ri.cache, "--runners-dir", runners,
				"--name-prefix", "e2e-"+cycle, "--output", "json")
		}()
	}
	wg.Wait()
	for i, cycle := range []string{"delete", "deallocate"} {
		l := &results[i]
		if l.res.code != 0 {
			t.Fatalf("launch --cycle %s: exit %d\n%s\n%s", cycle, l.res.code, l.res.stdout, l.res.stderr)
		}
		if err := json.Unmarshal([]byte(l.res.stdout), &l.out); err != nil || len(l.out.Launched) != 1 || l.out.Launched[0].RunnerID == 0 {
			t.Fatalf("launch --cycle %s: %v %s", cycle, err, l.res.stdout)
		}
	}
	res := runBinary(t, ri.env, "runners", "list", "runner-jit", "--runners-dir", runners, "--output", "json")
	var vms []struct{ Name, Power, Cycle, Outcome string }
	if err := json.Unmarshal([]byte(res.stdout), &vms); err != nil {
		t.Fatalf("runners list: exit %d %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	if len(vms) != 1 || vms[0].Name != results[1].out.Launched[0].Name || vms[0].Power != "deallocated" || vms[0].Outcome != "job-done" {
		t.Fatalf("runners list after the launches: %+v (the deleted VM must be gone, the deallocated one listed)", vms)
	}
	res = runBinary(t, ri.env, "runners", "prune", "runner-jit", "--runners-dir", runners, "--yes")
	if res.code != 0 {
		t.Fatalf("runners prune: exit %d\n%s", res.code, res.stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(runners, "runner-jit", "*.qcow2")); len(left) != 0 {
		t.Errorf("disks left after prune: %v", left)
	}
	noLeftovers(t, ri.tmp)
}

// verifyRuntime runs verify --runtime (JSON, logs under logs) and fails the
// test unless it passed; on any later failure it shows the VMs' logs.
func verifyRuntime(t *testing.T, env []string, logs, ref string, args ...string) (runtimeOut, result) {
	t.Helper()
	res := runBinary(t, env, append([]string{"verify", ref, "--runtime", "--vm-timeout", "12m", "--log-dir", logs, "--output", "json"}, args...)...)
	t.Cleanup(func() {
		if t.Failed() {
			dumpRuntimeLogs(t, filepath.Join(logs, "runtime"))
		}
	})
	var out runtimeOut
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("verify --runtime: exit %d, no JSON: %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	if res.code != 0 {
		t.Fatalf("verify --runtime: exit %d: %s\n%s", res.code, out.Error, res.stderr)
	}
	return out, res
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

// TestE2ERuntimeKeyVaultPAT bakes the founding runbook's registration
// (managed identity → Key Vault → PAT → registration token → config.sh)
// and runs verify --runtime once: the stand-in plays Key Vault and
// GitHub's registration-token endpoint, and the VM registers itself.
// A second recipe whose runner download fails shows that failure in the
// cloud-init stage, naming the URL.
func TestE2ERuntimeKeyVaultPAT(t *testing.T) {
	cache := needQEMU(t)
	tb, err := fakerunner.Build(fakerunner.Options{Version: runtimeVersion})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fakerunner.Mirror(tb)}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	gal, tmp := t.TempDir(), t.TempDir()
	env := append(cleanEnv(), "TMPDIR="+tmp)

	// The download fails: a 404 from the mirror.
	missing := fmt.Sprintf("http://10.0.2.2:%d/missing/%s", port, tb.Name)
	bad := runnerRecipe(t, "runner-nodownload", "jit", tb, missing)
	m, res := bakeJSON(t, env, "bake", bad, "--gallery-dir", gal, "--cache-dir", cache)
	if res.code != 1 || m.FailedStage != "cloud-init" || !strings.Contains(m.Error, missing) {
		t.Errorf("a failed runner download: exit %d, stage %q, error %q; want 1, cloud-init and the URL", res.code, m.FailedStage, m.Error)
	}

	recipe := runnerRecipe(t, "runner-kv", "{keyVault: runner-kv-vault, secret: github-pat}", tb, fmt.Sprintf("http://10.0.2.2:%d/%s", port, tb.Name))
	m, res = bakeJSON(t, env, "bake", recipe, "--gallery-dir", gal, "--cache-dir", cache)
	if res.code != 0 {
		t.Fatalf("bake: exit %d: %s\n%s", res.code, m.Error, res.stderr)
	}
	logs := t.TempDir()
	out, _ := verifyRuntime(t, env, logs, "runner-kv@"+m.Version, "--cycles", "delete", "--recipe", recipe, "--gallery-dir", gal, "--cache-dir", cache)
	rt := out.Runtime
	if rt.Registration != "keyvault-pat" || len(rt.Results) != 1 || !rt.Results[0].OK || rt.Results[0].End != "destroyed" ||
		rt.Results[0].Registrations != 1 || rt.SecretsSeen != 0 {
		t.Errorf("keyvault-pat runtime: %+v", rt)
	}
	// The VM read the PAT from Key Vault and traded it for a registration
	// token: both calls are in the stand-ins' logs.
	plog, _ := os.ReadFile(filepath.Join(logs, "runtime", "platform.log"))
	glog, _ := os.ReadFile(filepath.Join(logs, "runtime", "github.log"))
	if !strings.Contains(string(plog), "/secrets/github-pat") || !strings.Contains(string(glog), "registration-token 201") {
		t.Errorf("no Key Vault read or registration token:\n%s\n%s", plog, glog)
	}
	noLeftovers(t, tmp)
}
