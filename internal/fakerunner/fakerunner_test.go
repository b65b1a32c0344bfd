package fakerunner_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/fakerunner"
	"github.com/imagebake/imagebake/internal/ghmodel"
	"github.com/imagebake/imagebake/runnerreg"
)

const (
	version = "2.336.0"
	pat     = "ghp_fakerunnertestPAT0123456789abcdef"
	nobody  = 65534
)

// env is a model, a runnerreg client for it and an extracted stand-in
// runner owned by the user that runs it (nobody when the tests run as root).
type env struct {
	m   *ghmodel.Model
	c   *runnerreg.Client
	dir string // the runner's root
}

func setup(t *testing.T, tls bool) env {
	t.Helper()
	return setupWith(t, setupOptions{tls: tls, fixedRegisterURL: true})
}

// setupOptions vary setup: a GitHub Enterprise Server-shaped model (API
// under prefix), and whether the tarball has the model's register URL
// baked in or config.sh derives it from --url.
type setupOptions struct {
	tls              bool
	prefix           string
	fixedRegisterURL bool
}

func setupWith(t *testing.T, o setupOptions) env {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not installed")
	}
	tls := o.tls
	m := ghmodel.New(ghmodel.Options{TLS: tls, PathPrefix: o.prefix, RunnerKeyBits: 1024})
	t.Cleanup(m.Close)
	m.AddToken(pat)
	s, err := runnerreg.ParseScope("https://github.com/acme/app")
	if err != nil {
		t.Fatal(err)
	}
	c, err := runnerreg.New(runnerreg.Options{Scope: s.WithAPIBase(m.URL()), HTTPClient: m.Client(), Token: runnerreg.NewSecret(pat)})
	if err != nil {
		t.Fatal(err)
	}
	bo := fakerunner.Options{Version: version, CACertPEM: m.CertPEM()}
	if o.fixedRegisterURL {
		bo.RegisterURL = m.RunnerURL() + "register"
	}
	tb, err := fakerunner.Build(bo)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir: its 0700 parents would keep nobody out.
	base, err := os.MkdirTemp("", "fakerunner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	tarPath, err := tb.WriteFile(base)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(base, "actions-runner")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xzf", tarPath, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "-R", "65534:65534", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v\n%s", err, out)
		}
	}
	return env{m: m, c: c, dir: dir}
}

type result struct {
	code   int
	stdout string
	stderr string
}

// run runs a runner script as the runner's user (nobody under root), with
// a clean environment plus extra.
func (e env) run(t *testing.T, asRoot bool, extra []string, script string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.dir, script), args...)
	cmd.Dir = e.dir
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + e.dir, "LANG=C.UTF-8",
		"RUNNER_STANDIN_RESTART_SECONDS=0"}, extra...)
	if os.Geteuid() == 0 && !asRoot {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	}
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Errorf("%s: %v", script, err) // not Fatal: run is also called from goroutines
		return result{code: -1}
	}
	return result{code, so.String(), se.String()}
}

func (e env) exists(name string) bool {
	_, err := os.Stat(filepath.Join(e.dir, name))
	return err == nil
}

func (e env) mint(t *testing.T, name string) runnerreg.JITConfig {
	t.Helper()
	j, err := e.c.MintJIT(context.Background(), name, []string{"imagebake"}, 1, "")
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestJITJobDone(t *testing.T) {
	for _, tls := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "tls"}[tls]
		t.Run(name, func(t *testing.T) {
			e := setup(t, tls)
			j := e.mint(t, "vm-"+name)
			r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal()}, "run.sh")
			if r.code != 0 || !strings.Contains(r.stdout, "completed with result: Succeeded") {
				t.Fatalf("run.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			if e.exists(".runner") || e.exists(".credentials") {
				t.Error("an ephemeral runner kept its config after its job")
			}
			rn, _ := e.m.Runner(j.RunnerID)
			if rn.JobsDone != 1 || !rn.Deleted || rn.Version != version || e.m.Sessions("vm-"+name) != 1 || e.m.Registrations("vm-"+name) != 1 {
				t.Errorf("model: %+v sessions %d", rn, e.m.Sessions("vm-"+name))
			}
			if l := e.m.Leaks(); len(l) != 0 {
				t.Errorf("leaks: %+v", l)
			}
			if rn.ProcessesScanned < 2 || rn.JournalScope == "" {
				t.Errorf("leak scan reach: %d processes, journal %q", rn.ProcessesScanned, rn.JournalScope)
			}
		})
	}
}

// TestJobEnvironment checks, through the real runner's job hooks, that the
// ACTIONS_RUNNER_INPUT_* variables are gone before any job code runs.
func TestJobEnvironment(t *testing.T) {
	e := setup(t, false)
	j := e.mint(t, "vm-env")
	hook := filepath.Join(e.dir, "hook.sh")
	out := filepath.Join(e.dir, "_work")
	if err := os.MkdirAll(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hook, []byte("env >"+out+"/job-env\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal(), "ACTIONS_RUNNER_HOOK_JOB_STARTED=" + hook}, "run.sh")
	if r.code != 0 {
		t.Fatalf("run.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "job-env"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "ACTIONS_RUNNER_INPUT_") || !strings.Contains(string(b), "ACTIONS_RUNNER_HOOK_JOB_STARTED=") {
		t.Errorf("job environment:\n%s", b)
	}
}

// TestBusyRunnerNotDeleted deletes a runner while its job runs: GitHub
// refuses (422), and the job completes.
func TestBusyRunnerNotDeleted(t *testing.T) {
	e := setup(t, false)
	e.m.SetJobSeconds(3)
	j := e.mint(t, "vm-busy")
	done := make(chan result, 1)
	go func() {
		done <- e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal()}, "run.sh")
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if rn, _ := e.m.Runner(j.RunnerID); rn.Busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the runner never became busy")
		}
		time.Sleep(50 * time.Millisecond)
	}
	err := e.c.DeleteRunner(context.Background(), j.RunnerID)
	if runnerreg.StatusCode(err) != 422 {
		t.Errorf("deleting a busy runner: %v, want 422", err)
	}
	if r := <-done; r.code != 0 || e.exists(".runner") {
		t.Errorf("run.sh = %d\n%s", r.code, r.stderr)
	}
}

func TestRefused(t *testing.T) {
	e := setup(t, false)
	j := e.mint(t, "vm-refused")
	e.m.SetOutcome("vm-refused", ghmodel.OutcomeRefuse)
	envs := []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal()}
	// The listener itself says 1 …
	if r := e.run(t, false, envs, "bin/Runner.Listener", "run"); r.code != fakerunner.ExitTerminated {
		t.Fatalf("listener = %d\n%s", r.code, r.stderr)
	}
	// … and run.sh turns it into 0, as the real one does; .runner stays.
	r := e.run(t, false, envs, "run.sh")
	if r.code != 0 || !strings.Contains(r.stderr, "refused") {
		t.Fatalf("run.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !e.exists(".runner") {
		t.Error(".runner gone although no job ran")
	}
	if rn, _ := e.m.Runner(j.RunnerID); rn.JobsDone != 0 || e.m.Sessions("vm-refused") != 2 {
		t.Errorf("model: %+v", rn)
	}
}

func TestDeletedRegistrationRefused(t *testing.T) {
	e := setup(t, false)
	j := e.mint(t, "vm-gone")
	if err := e.c.DeleteRunner(context.Background(), j.RunnerID); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal()}, "bin/Runner.Listener", "run")
	if r.code != fakerunner.ExitTerminated || !strings.Contains(r.stderr, "deleted") {
		t.Fatalf("listener = %d\n%s", r.code, r.stderr)
	}
}

func TestStale(t *testing.T) {
	e := setup(t, false)
	e.m.SetMinRunnerVersion("2.337.0")
	j := e.mint(t, "vm-stale")
	jit := "ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal()
	r := e.run(t, false, []string{jit, "ACTIONS_RUNNER_RETURN_VERSION_DEPRECATED_EXIT_CODE=1"}, "run.sh")
	if r.code != fakerunner.ExitDeprecated || !strings.Contains(r.stderr, "deprecated") {
		t.Fatalf("run.sh with the opt-in = %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if !e.exists(".runner") {
		t.Error(".runner gone although no job ran")
	}
	if r := e.run(t, false, []string{jit}, "run.sh"); r.code != 0 {
		t.Errorf("run.sh without the opt-in = %d, want 0", r.code)
	}
	if r := e.run(t, false, []string{jit}, "bin/Runner.Listener", "run"); r.code != fakerunner.ExitTerminated {
		t.Errorf("listener without the opt-in = %d, want 1", r.code)
	}
}

func TestRetryable(t *testing.T) {
	e := setup(t, false)
	j := e.mint(t, "vm-retry")
	e.m.SetOutcome("vm-retry", ghmodel.OutcomeRetry)
	r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal(), "RUNNER_STANDIN_MAX_RESTARTS=1"}, "run.sh")
	if r.code != fakerunner.ExitRetryable || strings.Count(r.stdout, "Restarting runner...") != 1 {
		t.Fatalf("run.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := e.m.Sessions("vm-retry"); n != 2 {
		t.Errorf("sessions = %d, want 2 (one restart)", n)
	}
}

func TestLeakInAnotherProcess(t *testing.T) {
	e := setup(t, false)
	const kvToken = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.kv-token-for-the-leak-test.sig"
	e.m.Watch("keyvault-token", kvToken)
	e.m.SetJobSeconds(0.5)
	// Another process with the token in its argv ($0 of sh -c).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sleeper := exec.CommandContext(ctx, "sh", "-c", "sleep 60", kvToken)
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = sleeper.Wait() }()
	j := e.mint(t, "vm-leak")
	r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal()}, "run.sh")
	if r.code != fakerunner.ExitSecretLeaked || !strings.Contains(r.stderr, "SECRET LEAKED: the keyvault-token") {
		t.Fatalf("run.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout+r.stderr, kvToken) {
		t.Error("the leak report printed the secret")
	}
	leaks := e.m.Leaks()
	if len(leaks) != 1 || leaks[0].Kind != "keyvault-token" || leaks[0].RunnerID != j.RunnerID ||
		!strings.Contains(leaks[0].Where, "cmdline of pid") || leaks[0].Fingerprint != ghmodel.Fingerprint(kvToken) {
		t.Errorf("leaks = %+v", leaks)
	}
	if rn, _ := e.m.Runner(j.RunnerID); len(rn.JobResults) != 1 || rn.JobResults[0] != "Failed" {
		t.Errorf("job results = %v", rn.JobResults)
	}
}

// TestLeakInJournal puts a journalctl on PATH whose journal holds the
// registration token (this host has no journald to log to).
func TestLeakInJournal(t *testing.T) {
	e := setup(t, false)
	rt, err := e.c.RegistrationToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(filepath.Dir(e.dir), "fakebin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	journal := "#!/bin/sh\nprintf '%s\\n' '_CMDLINE=/bin/sh -c echo token' 'MESSAGE=got " + rt.Token.Reveal() + "'\n"
	if err := os.WriteFile(filepath.Join(bin, "journalctl"), []byte(journal), 0o755); err != nil {
		t.Fatal(err)
	}
	j := e.mint(t, "vm-journal")
	r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal(), "PATH=" + bin + ":/usr/bin:/bin"}, "run.sh")
	if r.code != fakerunner.ExitSecretLeaked || !strings.Contains(r.stderr, "registration-token") || !strings.Contains(r.stderr, "journal") {
		t.Fatalf("run.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	leaks := e.m.Leaks()
	if len(leaks) != 1 || leaks[0].Where != "journal" || leaks[0].Kind != "registration-token" {
		t.Errorf("leaks = %+v", leaks)
	}
	if rn, _ := e.m.Runner(j.RunnerID); os.Geteuid() == 0 && rn.JournalScope != "own" {
		t.Errorf("journal scope = %q, want own (nobody is in no journal group)", rn.JournalScope)
	}
}

func TestLeakJITConfigInArgv(t *testing.T) {
	e := setup(t, false)
	j := e.mint(t, "vm-argv")
	r := e.run(t, false, nil, "run.sh", "--jitconfig", j.EncodedJITConfig.Reveal())
	if r.code != fakerunner.ExitSecretLeaked {
		t.Fatalf("run.sh --jitconfig = %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var kinds []string
	for _, l := range e.m.Leaks() {
		kinds = append(kinds, l.Kind)
	}
	if len(kinds) == 0 || kinds[0] != "jitconfig" {
		t.Errorf("leak kinds = %v", kinds)
	}
}

func TestConfigShRegistration(t *testing.T) {
	e := setup(t, false)
	ctx := context.Background()
	rt, err := e.c.RegistrationToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	flags := []string{"--unattended", "--replace", "--disableupdate", "--url", "https://github.com/acme/app",
		"--name", "vm-cfg", "--labels", "imagebake,linux", "--ephemeral"}
	tokenEnv := "ACTIONS_RUNNER_INPUT_TOKEN=" + rt.Token.Reveal()
	if os.Geteuid() == 0 {
		r := e.run(t, true, []string{tokenEnv}, "config.sh", flags...)
		if r.code != 1 || !strings.Contains(r.stdout, "Must not run with sudo") {
			t.Fatalf("config.sh as root = %d\n%s", r.code, r.stdout)
		}
	}
	if r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_TOKEN=WRONGTOKEN"}, "config.sh", flags...); r.code != 1 || e.exists(".runner") {
		t.Fatalf("config.sh with a bad token = %d\n%s", r.code, r.stderr)
	}
	r := e.run(t, false, []string{tokenEnv}, "config.sh", flags...)
	if r.code != 0 || !strings.Contains(r.stdout, "Settings Saved") {
		t.Fatalf("config.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	var settings map[string]any
	b, err := os.ReadFile(filepath.Join(e.dir, ".runner"))
	if err != nil || json.Unmarshal(b, &settings) != nil || settings["disableUpdate"] != true || settings["ephemeral"] != true ||
		settings["agentName"] != "vm-cfg" || settings["gitHubUrl"] != "https://github.com/acme/app" {
		t.Fatalf(".runner = %s (%v)", b, err)
	}
	rs := e.m.Runners()
	if len(rs) != 1 || rs[0].JIT || !rs[0].Ephemeral || !rs[0].DisableUpdate || strings.Join(rs[0].Labels, ",") != "imagebake,linux" {
		t.Fatalf("model runners = %+v", rs)
	}
	if r := e.run(t, false, []string{tokenEnv}, "config.sh", flags...); r.code != 1 || !strings.Contains(r.stderr, "already configured") {
		t.Errorf("second config.sh = %d\n%s", r.code, r.stderr)
	}
	// The flag-as-variable form: ACTIONS_RUNNER_INPUT_<FLAG>=true.
	r = e.run(t, false, nil, "run.sh")
	if r.code != 0 || e.exists(".runner") || e.m.Sessions("vm-cfg") != 1 {
		t.Fatalf("run.sh = %d (.runner left: %v)\n%s\n%s", r.code, e.exists(".runner"), r.stdout, r.stderr)
	}
	if len(e.m.Leaks()) != 0 {
		t.Errorf("leaks: %+v", e.m.Leaks())
	}
}

func TestInputVariablesAsFlags(t *testing.T) {
	e := setup(t, false)
	rt, err := e.c.RegistrationToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_TOKEN=" + rt.Token.Reveal(), "ACTIONS_RUNNER_INPUT_URL=https://github.com/acme/app",
		"actions_runner_input_name=vm-env", "ACTIONS_RUNNER_INPUT_UNATTENDED=true", "ACTIONS_RUNNER_INPUT_EPHEMERAL=true",
		"ACTIONS_RUNNER_INPUT_LABELS=x"}, "config.sh")
	if r.code != 0 {
		t.Fatalf("config.sh = %d\n%s", r.code, r.stderr)
	}
	if rs := e.m.Runners(); len(rs) != 1 || rs[0].Name != "vm-env" || !rs[0].Ephemeral {
		t.Errorf("runners = %+v", rs)
	}
}

func TestRunRefusesConfigFlags(t *testing.T) {
	e := setup(t, false)
	j := e.mint(t, "vm-flags")
	r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_JITCONFIG=" + j.EncodedJITConfig.Reveal()}, "run.sh", "--disableupdate")
	// A JIT runner cannot take --disableupdate: the listener stops with 1
	// and run.sh reports 0, with no job and no session.
	if r.code != 0 || !strings.Contains(r.stderr, "Unrecognized command-line input arguments for command run: 'disableupdate'") || e.m.Sessions("vm-flags") != 0 {
		t.Fatalf("run.sh --disableupdate = %d\n%s", r.code, r.stderr)
	}
	if r := e.run(t, false, nil, "bin/Runner.Listener", "run"); r.code != 1 || !strings.Contains(r.stderr, "not configured") {
		t.Errorf("unconfigured run = %d\n%s", r.code, r.stderr)
	}
}

func TestHelperScripts(t *testing.T) {
	e := setup(t, false)
	if r := e.run(t, true, nil, "bin/installdependencies.sh"); r.code != 0 {
		t.Errorf("installdependencies.sh = %d\n%s", r.code, r.stderr)
	}
	if r := e.run(t, false, []string{"LANG=C.UTF-8"}, "env.sh"); r.code != 0 || !e.exists(".path") || !e.exists(".env") {
		t.Errorf("env.sh = %d", r.code)
	}
	if r := e.run(t, false, nil, "bin/Runner.Listener", "--version"); strings.TrimSpace(r.stdout) != version {
		t.Errorf("--version = %q", r.stdout)
	}
	sc, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Skip("shellcheck not installed")
	}
	scripts := []string{"config.sh", "run.sh", "run-helper.sh.template", "safe_sleep.sh", "env.sh", "bin/installdependencies.sh"}
	args := []string{"-s", "sh"}
	for _, s := range scripts {
		args = append(args, filepath.Join(e.dir, s))
	}
	if out, err := exec.Command(sc, args...).CombinedOutput(); err != nil {
		t.Errorf("shellcheck: %v\n%s", err, out)
	}
	if out, err := exec.Command("python3", "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read())", filepath.Join(e.dir, "bin/Runner.Listener")).CombinedOutput(); err != nil {
		t.Errorf("listener does not parse: %v\n%s", err, out)
	}
}

func TestBuild(t *testing.T) {
	a, err := fakerunner.Build(fakerunner.Options{Version: version, RegisterURL: "http://127.0.0.1:1/_standin/runner/register"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := fakerunner.Build(fakerunner.Options{Version: version, RegisterURL: "http://127.0.0.1:1/_standin/runner/register"})
	sum := sha256.Sum256(a.Data)
	if a.SHA256 != b.SHA256 || a.SHA256 != hex.EncodeToString(sum[:]) || a.Name != "actions-runner-linux-x64-2.336.0.tar.gz" {
		t.Errorf("builds differ or bad hash/name: %s %s %s", a.SHA256, b.SHA256, a.Name)
	}
	names := map[string]int64{}
	zr, err := gzip.NewReader(bytes.NewReader(a.Data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = h.Mode
	}
	for name, mode := range map[string]int64{"./config.sh": 0o755, "./run.sh": 0o755, "./run-helper.sh.template": 0o755, "./env.sh": 0o755,
		"./safe_sleep.sh": 0o755, "./bin/Runner.Listener": 0o755, "./bin/installdependencies.sh": 0o755, "./bin/standin.json": 0o644} {
		if got, ok := names[name]; !ok || got != mode {
			t.Errorf("tarball entry %s: mode %o (present %v), want %o", name, got, ok, mode)
		}
	}
	for _, bad := range []fakerunner.Options{{Version: "v2.336.0"}, {Version: "2.336"}, {Version: version, RegisterURL: "file:///x"}} {
		if _, err := fakerunner.Build(bad); err == nil {
			t.Errorf("Build(%+v) succeeded", bad)
		}
	}
}

func TestMirror(t *testing.T) {
	tb, err := fakerunner.Build(fakerunner.Options{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(fakerunner.Mirror(tb))
	defer srv.Close()
	for _, p := range []string{"/" + tb.Name, "/actions/runner/releases/download/v" + version + "/" + tb.Name} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		sum := sha256.Sum256(body)
		if resp.StatusCode != 200 || hex.EncodeToString(sum[:]) != tb.SHA256 {
			t.Errorf("GET %s: %d, sha %x", p, resp.StatusCode, sum)
		}
	}
	for _, p := range []string{"/actions-runner-linux-x64-9.9.9.tar.gz", "/"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestConfigShDerivesRegisterURL registers without a baked-in register URL:
// config.sh finds the API from --url as the real runner does, here a GitHub
// Enterprise Server-shaped URL (the model's own host) whose API is /api/v3.
func TestConfigShDerivesRegisterURL(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tls    bool
		prefix string
		ok     bool
	}{
		{"ghes plain", false, "/api/v3", true},
		{"ghes tls", true, "/api/v3", true},
		// A model without /api/v3 answers 404 there: config.sh did not
		// fall back to the root, so it registers where --url says.
		{"no api prefix", false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setupWith(t, setupOptions{tls: tc.tls, prefix: tc.prefix})
			rt, err := e.c.RegistrationToken(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			url := e.m.ServerURL() + "/acme/app"
			r := e.run(t, false, []string{"ACTIONS_RUNNER_INPUT_TOKEN=" + rt.Token.Reveal()}, "config.sh",
				"--unattended", "--url", url, "--name", "vm-ghes", "--labels", "x", "--ephemeral")
			if !tc.ok {
				if r.code != 1 || !strings.Contains(r.stderr, "404") || e.exists(".runner") || e.m.Calls(ghmodel.EpRunnerRegister) != 0 {
					t.Fatalf("config.sh against a model without /api/v3 = %d\n%s\n%s", r.code, r.stdout, r.stderr)
				}
				return
			}
			if r.code != 0 || e.m.Registrations("vm-ghes") != 1 {
				t.Fatalf("config.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			var registeredAt string
			for _, q := range e.m.Requests() {
				if q.Endpoint == ghmodel.EpRunnerRegister {
					registeredAt = q.Path
				}
			}
			if registeredAt != "/api/v3/_standin/runner/register" {
				t.Errorf("registered at %q, want /api/v3/_standin/runner/register", registeredAt)
			}
			if r := e.run(t, false, nil, "run.sh"); r.code != 0 || e.exists(".runner") || e.m.Sessions("vm-ghes") != 1 {
				t.Fatalf("run.sh = %d\n%s\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestRegisterURLFromGitHubURL checks the listener's mapping of --url to
// the register endpoint for hosts a test cannot reach (github.com).
func TestRegisterURLFromGitHubURL(t *testing.T) {
	e := setupWith(t, setupOptions{})
	cases := map[string]string{
		"https://github.com/acme/app":          "https://api.github.com/_standin/runner/register",
		"https://github.com/acme":              "https://api.github.com/_standin/runner/register",
		"https://GitHub.com/acme/app/":         "https://api.github.com/_standin/runner/register",
		"https://www.github.com/acme/app":      "https://api.github.com/_standin/runner/register",
		"https://octo.ghe.com/acme/app":        "https://api.octo.ghe.com/_standin/runner/register",
		"https://ghes.example.com/acme/app":    "https://ghes.example.com/api/v3/_standin/runner/register",
		"https://ghes.example.com:8443/acme":   "https://ghes.example.com:8443/api/v3/_standin/runner/register",
		"http://127.0.0.1:9/acme/app":          "http://127.0.0.1:9/api/v3/_standin/runner/register",
		"https://user:pw@ghes.example.com/a/b": "https://ghes.example.com/api/v3/_standin/runner/register",
		"ftp://github.com/acme/app":            "error",
		"github.com/acme/app":                  "error",
	}
	in, _ := json.Marshal(cases)
	prog := `import importlib.machinery, importlib.util, json, sys
loader = importlib.machinery.SourceFileLoader("listener", sys.argv[1])
spec = importlib.util.spec_from_loader("listener", loader)
mod = importlib.util.module_from_spec(spec)
loader.exec_module(mod)
out = {}
for url in json.loads(sys.argv[2]):
    try:
        out[url] = mod.register_url(url)
    except ValueError:
        out[url] = "error"
print(json.dumps(out))
`
	b, err := exec.Command("python3", "-c", prog, filepath.Join(e.dir, "bin", "Runner.Listener"), string(in)).Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	var got map[string]string
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	for url, want := range cases {
		if got[url] != want {
			t.Errorf("register_url(%q) = %q, want %q", url, got[url], want)
		}
	}
}
