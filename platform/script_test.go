package platform

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/internal/fakerunner"
	"github.com/imagebake/imagebake/internal/ghmodel"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/runnerreg"
	"github.com/imagebake/imagebake/templates"
)

// renderedScript renders the shipped focal recipe with registration mode
// through the templates package (the bytes an image holds) and returns the
// part at path, with the env file's and the runner directory's paths moved
// to envFile and runnerDir, the one change a test on the host needs.
func renderedScript(t *testing.T, mode, path, envFile, runnerDir string) string {
	t.Helper()
	r, err := recipes.Load("../recipes/github-runner-focal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r.Runner.Registration = recipes.Registration{Mode: mode}
	if mode == contract.RegistrationKeyVaultPAT {
		r.Runner.Registration.KeyVault, r.Runner.Registration.Secret = "my-keyvault", "runner-pat"
	}
	doc, err := templates.Render(r, templates.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range doc.Parts {
		if p.Path != path {
			continue
		}
		s := p.Content
		if envFile != "" {
			s = strings.ReplaceAll(s, templates.ShellQuote(contract.RunnerEnvFile), templates.ShellQuote(envFile))
		}
		return strings.ReplaceAll(s, templates.ShellQuote(r.Runner.Dir), templates.ShellQuote(runnerDir))
	}
	t.Fatalf("no %s rendered", path)
	return ""
}

// TestCompletedCycleScriptAgainstThePlatform runs the image's own
// completed-cycle.sh (rendered from templates/files, the bytes that run on
// Azure) with the real curl and jq against the platform. Only name
// resolution and trust differ, as in a guest: a curl wrapper adds
// --connect-to and --cacert, the job of guestfwd, /etc/hosts and ca_certs.
func TestCompletedCycleScriptAgainstThePlatform(t *testing.T) {
	for _, tool := range []string{"curl", "jq", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	runnerDir := t.TempDir() // no .runner in it: the runner ran its job
	script := renderedScript(t, contract.RegistrationJIT, templates.RunnerCycleScript, "", runnerDir)
	realCurl, _ := exec.LookPath("curl")

	p := newPlatform(t, Config{OutcomeTag: contract.TagOutcome})
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, p.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	scriptPath := filepath.Join(dir, "completed_cycle.sh")
	if err := os.WriteFile(scriptPath, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cycle string
		want  State
	}{
		{"delete", StateDeleted},
		{"", StateDeallocated},
		{"deallocate", StateDeallocated},
		{"running", StateRunning},
	} {
		t.Run("cycle="+tc.cycle, func(t *testing.T) {
			name := "runner-" + tc.cycle
			if tc.cycle == "" {
				name = "runner-untagged"
			}
			id, err := p.AddIdentity(Identity{Name: name + "-id", ResourceGroup: "runners"})
			if err != nil {
				t.Fatal(err)
			}
			tags := map[string]string{"purpose": "ci"}
			if tc.cycle != "" {
				tags["cycle"] = tc.cycle
			}
			m := &fakeMachine{}
			vm, err := p.CreateVM(VMSpec{Name: name, ResourceGroup: "runners", Tags: tags, Identities: []string{id.ID}, Machine: m})
			if err != nil {
				t.Fatal(err)
			}
			bin := filepath.Join(t.TempDir())
			wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --connect-to 169.254.169.254:80:%s --connect-to management.azure.com:443:%s --cacert %s \"$@\"\n",
				shellQuote(realCurl), vm.IMDSAddr(), p.HTTPSAddr(), shellQuote(ca))
			if err := os.WriteFile(filepath.Join(bin, "curl"), []byte(wrapper), 0o755); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", scriptPath)
			// What systemd gives ExecStopPost after a start script that exited 0.
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "EXIT_CODE=exited", "EXIT_STATUS=0", "SERVICE_RESULT=success")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("script: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "imagebake-runner: outcome=job-done: ") {
				t.Errorf("no outcome line:\n%s", out)
			}
			if got := vm.Status().Outcome; got != contract.OutcomeJobDone {
				t.Errorf("outcome tag %q, want %q", got, contract.OutcomeJobDone)
			}
			st, err := vm.Wait(ctx, tc.want)
			if err != nil {
				t.Fatalf("%v\nscript output:\n%s", err, out)
			}
			off, del := m.counts()
			switch tc.want {
			case StateDeleted:
				if del != 1 || off != 0 {
					t.Errorf("poweroff=%d destroy=%d", off, del)
				}
			case StateDeallocated:
				if off != 1 || del != 0 {
					t.Errorf("poweroff=%d destroy=%d", off, del)
				}
			case StateRunning:
				if off+del != 0 || !strings.Contains(string(out), "keeping") {
					t.Errorf("poweroff=%d destroy=%d, output %s", off, del, out)
				}
			}
			t.Logf("%s → %s; script said: %s", tc.cycle, st.State, strings.TrimSpace(string(out)))
		})
	}
	for _, e := range p.Events() {
		t.Log(e)
	}
}

// TestStartRunnerKeyVaultPATAgainstThePlatform runs the image's
// start-runner.sh (keyvault-pat registration) against the platform: managed
// identity → Key Vault → PAT → a registration token from a mounted GitHub
// stand-in → config.sh. Only the VM's identity granted the vault gets through.
func TestStartRunnerKeyVaultPATAgainstThePlatform(t *testing.T) {
	for _, tool := range []string{"curl", "jq", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	p := newPlatform(t, Config{})
	var sawPAT string
	gh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawPAT = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		if r.Method != "POST" || r.URL.Path != "/repos/octo/repo/actions/runners/registration-token" || sawPAT != "ghp_fromvault" {
			w.WriteHeader(401)
			return
		}
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"token":"REGTOKEN123","expires_at":"2030-01-01T00:00:00Z"}`))
	})
	if err := p.Mount("api.github.com", gh); err != nil {
		t.Fatal(err)
	}
	granted, _ := p.AddIdentity(Identity{Name: "granted", ResourceGroup: "runners"})
	other, _ := p.AddIdentity(Identity{Name: "other", ResourceGroup: "runners"})
	if err := p.AddVault(VaultSpec{Name: "my-keyvault", Secrets: map[string]string{"runner-pat": "ghp_fromvault"}, Readers: []string{granted.ID}}); err != nil {
		t.Fatal(err)
	}
	realCurl, _ := exec.LookPath("curl")
	for _, tc := range []struct {
		identity Identity
		ok       bool
	}{{granted, true}, {other, false}} {
		t.Run(tc.identity.Name, func(t *testing.T) {
			sawPAT = "" // what GitHub saw in this run only
			dir := t.TempDir()
			ca := filepath.Join(dir, "ca.pem")
			runner := filepath.Join(dir, "actions-runner")
			env := filepath.Join(dir, "runner.env")
			_ = os.WriteFile(ca, p.CACertPEM(), 0o644)
			_ = os.Mkdir(runner, 0o755)
			_ = os.WriteFile(env, []byte("KEYVAULT_NAME='my-keyvault'\nKEYVAULT_SECRET='runner-pat'\nREPO_URL='https://github.com/octo/repo'\nRUNNER_LABELS='local'\n"), 0o644)
			// A stand-in config.sh that records what it was given, and a run.sh that succeeds.
			_ = os.WriteFile(filepath.Join(runner, "config.sh"), []byte("#!/bin/sh\necho \"$ACTIONS_RUNNER_INPUT_TOKEN $*\" > registered\n"), 0o755)
			_ = os.WriteFile(filepath.Join(runner, "run.sh"), []byte("#!/bin/sh\necho ran > ran\n"), 0o755)
			script := renderedScript(t, contract.RegistrationKeyVaultPAT, templates.RunnerStartScript, env, runner)
			scriptPath := filepath.Join(dir, "start-runner.sh")
			_ = os.WriteFile(scriptPath, []byte(script), 0o755)
			vm, err := p.CreateVM(VMSpec{Name: "kv-" + tc.identity.Name, ResourceGroup: "runners", Identities: []string{tc.identity.ID}})
			if err != nil {
				t.Fatal(err)
			}
			bin := t.TempDir()
			wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --connect-to 169.254.169.254:80:%s --connect-to my-keyvault.vault.azure.net:443:%s --connect-to api.github.com:443:%s --cacert %s \"$@\"\n",
				shellQuote(realCurl), vm.IMDSAddr(), p.HTTPSAddr(), p.HTTPSAddr(), shellQuote(ca))
			_ = os.WriteFile(filepath.Join(bin, "curl"), []byte(wrapper), 0o755)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "sh", scriptPath)
			cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
			out, err := cmd.CombinedOutput()
			reg, _ := os.ReadFile(filepath.Join(runner, "registered"))
			if tc.ok {
				if err != nil {
					t.Fatalf("script: %v\n%s", err, out)
				}
				if !strings.HasPrefix(string(reg), "REGTOKEN123 --unattended") || !strings.Contains(string(reg), "--ephemeral") {
					t.Errorf("config.sh got %q", reg)
				}
				if _, err := os.Stat(filepath.Join(runner, "ran")); err != nil {
					t.Error("run.sh did not run")
				}
			} else {
				// The platform's part: Key Vault refuses, so the PAT never
				// reaches GitHub and no registration token is minted.
				if !strings.Contains(string(out), "returned error: 403") {
					t.Errorf("want curl to report Key Vault's 403:\n%s", out)
				}
				if sawPAT == "ghp_fromvault" || strings.Contains(string(reg), "REGTOKEN123") {
					t.Fatalf("an identity without vault access registered: %q\n%s", reg, out)
				}
				// And the script stops there, naming the step, before config.sh.
				if err == nil || len(reg) != 0 || !strings.Contains(string(out), "start-runner: Key Vault my-keyvault did not give secret runner-pat") {
					t.Errorf("start-runner.sh went on after the 403 (exit %v), config.sh got %q:\n%s", err, reg, out)
				}
			}
		})
	}
}

// connectProxy is the host-side stand-in for a guest's /etc/hosts and
// guestfwd: an HTTP CONNECT proxy (https_proxy, which curl and the stand-in
// runner's python both honour) that tunnels to the platform's HTTPS
// listener for the names the platform serves, and refuses every other, so
// a script that calls the wrong host fails here instead of reaching the
// network. TLS still runs end to end under the real name, checked against
// the platform CA.
type connectProxy struct {
	url string

	mu      sync.Mutex
	seen    []string // CONNECT targets in order
	refused []string
}

func newConnectProxy(t *testing.T, p *Platform) *connectProxy {
	t.Helper()
	cp := &connectProxy{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := strings.ToLower(r.Host)
		host, port, err := net.SplitHostPort(target)
		ok := r.Method == http.MethodConnect && err == nil && port == "443" && slices.Contains(p.ServedHosts(), host)
		cp.mu.Lock()
		cp.seen = append(cp.seen, target)
		if !ok {
			cp.refused = append(cp.refused, r.Method+" "+target)
		}
		cp.mu.Unlock()
		if !ok {
			http.Error(w, "the test proxy reaches only the platform's hosts", http.StatusForbidden)
			return
		}
		up, err := net.Dial("tcp", p.HTTPSAddr())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			up.Close()
			return
		}
		_, _ = conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
		go func() {
			_, _ = io.Copy(up, rw) // rw: bytes the server may have buffered
			up.Close()
		}()
		_, _ = io.Copy(conn, up)
		conn.Close()
		up.Close()
	}))
	t.Cleanup(srv.Close)
	cp.url = srv.URL
	return cp
}

func (cp *connectProxy) log() (seen, refused []string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]string(nil), cp.seen...), append([]string(nil), cp.refused...)
}

// tokenTap passes requests to the GitHub stand-in and keeps the
// registration tokens it hands out, so a test can look for them where they
// must not be.
type tokenTap struct {
	h      http.Handler
	mu     sync.Mutex
	tokens []string
}

func (tp *tokenTap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/actions/runners/registration-token") {
		tp.h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	tp.h.ServeHTTP(rec, r)
	var body struct {
		Token string `json:"token"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &body) == nil && body.Token != "" {
		tp.mu.Lock()
		tp.tokens = append(tp.tokens, body.Token)
		tp.mu.Unlock()
	}
	maps.Copy(w.Header(), rec.Header())
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func (tp *tokenTap) issued() []string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]string(nil), tp.tokens...)
}

// renderedRunner renders the shipped noble recipe (registration jit) with
// mode, onNoJob and, when set, REPO_URL, and returns its start and cycle
// scripts and env file, with the env file's and the runner directory's
// paths moved to envFile and runnerDir.
func renderedRunner(t *testing.T, mode, onNoJob, repoURL, envFile, runnerDir string) (start, cycle, env string, r *recipes.Recipe) {
	t.Helper()
	r, err := recipes.Load("../recipes/github-runner-noble.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r.Runner.Registration = recipes.Registration{Mode: mode}
	if mode == contract.RegistrationKeyVaultPAT {
		r.Runner.Registration.KeyVault, r.Runner.Registration.Secret = "my-keyvault", "runner-pat"
	}
	if onNoJob != "" {
		r.Runner.OnNoJob = onNoJob
	}
	if repoURL != "" {
		r.Runner.Env["REPO_URL"] = repoURL
	}
	doc, err := templates.Render(r, templates.Options{})
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]string{}
	for _, p := range doc.Parts {
		s := strings.ReplaceAll(p.Content, templates.ShellQuote(contract.RunnerEnvFile), templates.ShellQuote(envFile))
		parts[p.Path] = strings.ReplaceAll(s, templates.ShellQuote(r.Runner.Dir), templates.ShellQuote(runnerDir))
	}
	for _, p := range []string{templates.RunnerStartScript, templates.RunnerCycleScript, templates.RunnerEnvFile} {
		if parts[p] == "" {
			t.Fatalf("no %s rendered", p)
		}
	}
	return parts[templates.RunnerStartScript], parts[templates.RunnerCycleScript], parts[templates.RunnerEnvFile], r
}

type scriptResult struct {
	code           int
	stdout, stderr string
}

// runScript runs a rendered script with sh, with the caller's environment
// minus any proxy or runner input settings, plus extra.
func runScript(t *testing.T, ctx context.Context, path string, extra ...string) scriptResult {
	t.Helper()
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(strings.ToLower(k), "_proxy") || strings.HasPrefix(k, "ACTIONS_RUNNER_") {
			continue
		}
		env = append(env, kv)
	}
	cmd := exec.CommandContext(ctx, "sh", path)
	cmd.Env = append(env, extra...)
	var so, se strings.Builder
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	res := scriptResult{stdout: so.String(), stderr: se.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", path, err)
	}
	return res
}

// TestRunnerVMScriptsWithStandInRunner boots a runner VM on the host: the
// image's own start-runner.sh and completed-cycle.sh (rendered from
// templates/files) run with the stand-in runner (internal/fakerunner)
// unpacked where the image has the real one, against the platform with the
// GitHub stand-in (internal/ghmodel) mounted under GitHub's own host name.
// Each case ends with the VM's outcome tag and state, as Azure would show
// them, and no secret in the platform's log, the scripts' output or any
// command line the runner saw during its job.
func TestRunnerVMScriptsWithStandInRunner(t *testing.T) {
	for _, tool := range []string{"curl", "jq", "sh", "python3", "tar", "base64"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	realCurl, _ := exec.LookPath("curl")
	const pat = "ghp_scripttestPATscripttestPAT0123456789"
	type env struct {
		p      *Platform
		m      *ghmodel.Model
		vm     *VM
		proxy  *connectProxy
		runner string // the runner's directory
		start  scriptResult
		cycle  scriptResult
	}
	for _, tc := range []struct {
		name       string
		mode       string
		cloud      string // azEnvironment; "" is AzurePublicCloud
		repoURL    string // REPO_URL; "" keeps the recipe's (github.com)
		onNoJob    string // "" keeps the recipe's default (keep)
		cycle      string
		noUserData bool
		prepare    func(m *ghmodel.Model, runnerName string)
		startExit  int
		outcome    string
		state      State
		check      func(t *testing.T, e env)
	}{
		{name: "jit job done", mode: contract.RegistrationJIT, cycle: contract.CycleDelete,
			outcome: contract.OutcomeJobDone, state: StateDeleted,
			check: func(t *testing.T, e env) {
				rs := e.m.Runners()
				if len(rs) != 1 || rs[0].JobsDone != 1 || !rs[0].Deleted || rs[0].JobResults[0] != "Succeeded" {
					t.Errorf("model runners = %+v", rs)
				}
				if _, err := os.Stat(filepath.Join(e.runner, ".runner")); err == nil {
					t.Error(".runner left after the job")
				}
			}},
		{name: "jit job done, untagged", mode: contract.RegistrationJIT,
			outcome: contract.OutcomeJobDone, state: StateDeallocated},
		{name: "jit refused, onNoJob keep", mode: contract.RegistrationJIT, cycle: contract.CycleDelete,
			prepare: func(m *ghmodel.Model, n string) { m.SetOutcome(n, ghmodel.OutcomeRefuse) },
			outcome: contract.OutcomeRefused, state: StateDeallocated, // keep: never deleted
			check: func(t *testing.T, e env) {
				if n := e.m.Sessions(e.vm.Name()); n != 1 || e.m.Runners()[0].JobsDone != 0 {
					t.Errorf("sessions %d, runners %+v", n, e.m.Runners())
				}
				if !strings.Contains(e.start.stderr, "refused") {
					t.Errorf("the runner did not say it was refused:\n%s", e.start.stderr)
				}
			}},
		{name: "jit refused, onNoJob keep, cycle running", mode: contract.RegistrationJIT, cycle: contract.CycleRunning,
			prepare: func(m *ghmodel.Model, n string) { m.SetOutcome(n, ghmodel.OutcomeRefuse) },
			outcome: contract.OutcomeRefused, state: StateRunning},
		{name: "jit refused, onNoJob cycle", mode: contract.RegistrationJIT, cycle: contract.CycleDelete, onNoJob: contract.OnNoJobCycle,
			prepare: func(m *ghmodel.Model, n string) { m.SetOutcome(n, ghmodel.OutcomeRefuse) },
			outcome: contract.OutcomeRefused, state: StateDeleted},
		{name: "jit stale", mode: contract.RegistrationJIT, cycle: contract.CycleDelete,
			prepare:   func(m *ghmodel.Model, _ string) { m.SetMinRunnerVersion("99.0.0") },
			startExit: 7, outcome: contract.OutcomeStale, state: StateDeallocated,
			check: func(t *testing.T, e env) {
				if !strings.Contains(e.start.stderr, "deprecated") || e.m.Runners()[0].JobsDone != 0 {
					t.Errorf("stale runner: %+v\n%s", e.m.Runners(), e.start.stderr)
				}
			}},
		{name: "jit no userData", mode: contract.RegistrationJIT, cycle: contract.CycleDelete, noUserData: true,
			startExit: contract.StartFailedExit, outcome: contract.OutcomeNoConfig, state: StateDeallocated,
			check: func(t *testing.T, e env) {
				if !strings.Contains(e.start.stderr, "start-runner: ") || e.m.Calls(ghmodel.EpRunnerSession) != 0 {
					t.Errorf("no-config: sessions %d\n%s", e.m.Calls(ghmodel.EpRunnerSession), e.start.stderr)
				}
			}},
		{name: "jit us government cloud", mode: contract.RegistrationJIT, cloud: "AzureUSGovernmentCloud", cycle: contract.CycleDelete,
			outcome: contract.OutcomeJobDone, state: StateDeleted,
			check: func(t *testing.T, e env) {
				seen, _ := e.proxy.log()
				if !slices.Contains(seen, "management.usgovcloudapi.net:443") || slices.Contains(seen, "management.azure.com:443") {
					t.Errorf("cycle script's Resource Manager calls went to %v", seen)
				}
			}},
		{name: "keyvault-pat github.com", mode: contract.RegistrationKeyVaultPAT, cycle: contract.CycleDelete,
			outcome: contract.OutcomeJobDone, state: StateDeleted,
			check: func(t *testing.T, e env) {
				wantPaths(t, e.m, "/repos/my-org/my-repo/actions/runners/registration-token", "/_standin/runner/register")
			}},
		{name: "keyvault-pat ghes", mode: contract.RegistrationKeyVaultPAT, repoURL: "https://ghes.example.com/octo/repo", cycle: contract.CycleDelete,
			outcome: contract.OutcomeJobDone, state: StateDeleted,
			check: func(t *testing.T, e env) {
				wantPaths(t, e.m, "/api/v3/repos/octo/repo/actions/runners/registration-token", "/api/v3/_standin/runner/register")
				seen, _ := e.proxy.log()
				if slices.Contains(seen, "api.github.com:443") {
					t.Errorf("a GitHub Enterprise Server runner called api.github.com: %v", seen)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			dir := t.TempDir()
			runner := filepath.Join(dir, "actions-runner")
			envFile := filepath.Join(dir, "runner.env")
			start, cycle, envText, r := renderedRunner(t, tc.mode, tc.onNoJob, tc.repoURL, envFile, runner)
			repo := r.Runner.Env["REPO_URL"]
			u, err := url.Parse(repo)
			if err != nil {
				t.Fatal(err)
			}
			ghHost, advertise, prefix := "api.github.com", "https://api.github.com", ""
			if u.Host != "github.com" {
				ghHost, advertise, prefix = u.Host, "https://"+u.Host, "/api/v3"
			}

			p := newPlatform(t, Config{OutcomeTag: contract.TagOutcome, AzEnvironment: tc.cloud})
			m := ghmodel.New(ghmodel.Options{AdvertiseURL: advertise, PathPrefix: prefix, RunnerKeyBits: 1024})
			t.Cleanup(m.Close)
			m.AddToken(pat)
			tap := &tokenTap{h: m.Handler()}
			if err := p.Mount(ghHost, tap); err != nil {
				t.Fatal(err)
			}
			proxy := newConnectProxy(t, p)
			id, err := p.AddIdentity(Identity{Name: "runner-id", ResourceGroup: "runners"})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.AddVault(VaultSpec{Name: "my-keyvault", Secrets: map[string]string{"runner-pat": pat}, Readers: []string{id.ID}}); err != nil {
				t.Fatal(err)
			}

			// The runner as install-runner.sh leaves it: the tarball unpacked.
			tb, err := fakerunner.Build(fakerunner.Options{Version: r.Runner.Version, CACertPEM: p.CACertPEM()})
			if err != nil {
				t.Fatal(err)
			}
			tarPath, err := tb.WriteFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(runner, 0o755); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("tar", "-xzf", tarPath, "-C", runner).CombinedOutput(); err != nil {
				t.Fatalf("tar: %v\n%s", err, out)
			}

			vmName := "runner-" + strings.NewReplacer(" ", "-", ",", "", ".", "").Replace(tc.name)
			if tc.prepare != nil {
				tc.prepare(m, vmName)
			}
			var userData []byte
			var secrets []string // values that must show nowhere
			secrets = append(secrets, pat)
			if tc.mode == contract.RegistrationJIT && !tc.noUserData {
				// Minted as imagebake launch does, through GitHub's name.
				s, err := runnerreg.ParseScope(repo)
				if err != nil {
					t.Fatal(err)
				}
				c, err := runnerreg.New(runnerreg.Options{Scope: s, HTTPClient: httpsClient(t, p), Token: runnerreg.NewSecret(pat)})
				if err != nil {
					t.Fatal(err)
				}
				j, err := c.MintJIT(ctx, vmName, r.Runner.Labels, int64(r.Runner.GroupID), "")
				if err != nil {
					t.Fatal(err)
				}
				userData = []byte(j.EncodedJITConfig.Reveal())
				secrets = append(secrets, string(userData), base64.StdEncoding.EncodeToString(userData))
			}
			tags := map[string]string{"purpose": "ci"}
			if tc.cycle != "" {
				tags[contract.TagCycle] = tc.cycle
			}
			machine := &fakeMachine{}
			vm, err := p.CreateVM(VMSpec{Name: vmName, ResourceGroup: "runners", Tags: tags, Identities: []string{id.ID}, UserData: userData, Machine: machine})
			if err != nil {
				t.Fatal(err)
			}

			ca := filepath.Join(dir, "ca.pem")
			bin := filepath.Join(dir, "bin")
			startPath, cyclePath := filepath.Join(dir, "start-runner.sh"), filepath.Join(dir, "completed-cycle.sh")
			wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --connect-to 169.254.169.254:80:%s --cacert %s \"$@\"\n",
				shellQuote(realCurl), vm.IMDSAddr(), shellQuote(ca))
			for path, content := range map[string]string{ca: string(p.CACertPEM()), envFile: envText, startPath: start, cyclePath: cycle, filepath.Join(bin, "curl"): wrapper} {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			base := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "https_proxy=" + proxy.url, "HOME=" + dir}

			// systemd's order: ExecStart as the runner's user (here the
			// test's; config.sh needs leave to run as root), then
			// ExecStopPost with what ExecStart ended with.
			e := env{p: p, m: m, vm: vm, proxy: proxy, runner: runner}
			e.start = runScript(t, ctx, startPath, append(base, "RUNNER_ALLOW_RUNASROOT=1")...)
			if e.start.code != tc.startExit {
				t.Fatalf("start-runner.sh = %d, want %d\nstdout:\n%s\nstderr:\n%s", e.start.code, tc.startExit, e.start.stdout, e.start.stderr)
			}
			result := "success"
			if e.start.code != 0 {
				result = "exit-code"
			}
			e.cycle = runScript(t, ctx, cyclePath, append(base, "EXIT_CODE=exited", fmt.Sprintf("EXIT_STATUS=%d", e.start.code), "SERVICE_RESULT="+result)...)
			if e.cycle.code != 0 || !strings.Contains(e.cycle.stdout, "imagebake-runner: outcome="+tc.outcome+": ") {
				t.Fatalf("completed-cycle.sh = %d, want outcome %s\nstdout:\n%s\nstderr:\n%s\nstart-runner.sh said:\n%s%s",
					e.cycle.code, tc.outcome, e.cycle.stdout, e.cycle.stderr, e.start.stdout, e.start.stderr)
			}
			if got := vm.Status().Outcome; got != tc.outcome {
				t.Errorf("outcome tag %q, want %q", got, tc.outcome)
			}
			if got := vm.Status().Tags["purpose"]; got != "ci" {
				t.Errorf("the outcome PATCH lost the VM's other tags: %v", vm.Status().Tags)
			}
			if _, err := vm.Wait(ctx, tc.state); err != nil {
				t.Fatalf("%v\ncycle script said:\n%s", err, e.cycle.stdout)
			}
			off, del := machine.counts()
			if want := map[State][2]int{StateDeleted: {0, 1}, StateDeallocated: {1, 0}, StateRunning: {0, 0}}[tc.state]; off != want[0] || del != want[1] {
				t.Errorf("poweroff=%d destroy=%d, want %v for %s", off, del, want, tc.state)
			}
			if tc.check != nil {
				tc.check(t, e)
			}

			if l := m.Leaks(); len(l) != 0 {
				t.Errorf("the runner saw secrets leaked during its job: %+v", l)
			}
			if _, refused := proxy.log(); len(refused) != 0 {
				t.Errorf("the scripts tried hosts the platform does not serve: %v", refused)
			}
			secrets = append(secrets, tap.issued()...)
			if tc.mode == contract.RegistrationKeyVaultPAT && len(tap.issued()) != 1 {
				t.Errorf("registration tokens issued: %d, want 1", len(tap.issued()))
			}
			var events strings.Builder
			for _, ev := range p.Events() {
				events.WriteString(ev.String() + "\n")
			}
			for _, s := range secrets {
				for where, text := range map[string]string{"the platform's events": events.String(),
					"start-runner.sh's output": e.start.stdout + e.start.stderr, "completed-cycle.sh's output": e.cycle.stdout + e.cycle.stderr} {
					if strings.Contains(text, s) {
						t.Errorf("a secret (sha256 %s) is in %s", ghmodel.Fingerprint(s), where)
					}
				}
			}
			t.Logf("start-runner.sh: %d; cycle: %s", e.start.code, strings.TrimSpace(e.cycle.stdout))
		})
	}
}

// wantPaths checks where the GitHub stand-in saw the registration token
// request and config.sh's registration.
func wantPaths(t *testing.T, m *ghmodel.Model, regToken, register string) {
	t.Helper()
	got := map[ghmodel.Endpoint]string{}
	for _, q := range m.Requests() {
		if q.Endpoint == ghmodel.EpRegToken || q.Endpoint == ghmodel.EpRunnerRegister {
			got[q.Endpoint] = fmt.Sprintf("%s %d", q.Path, q.Status)
		}
	}
	if got[ghmodel.EpRegToken] != regToken+" 201" || got[ghmodel.EpRunnerRegister] != register+" 200" {
		t.Errorf("registration-token and register requests: %v, want %s and %s", got, regToken, register)
	}
}

// TestContractCloudsMatchThePlatform: the clouds the scripts are rendered
// with (contract.Clouds) are the ones the stand-in plays, endpoint for
// endpoint, and the token resources the scripts ask for are audiences the
// platform accepts.
func TestContractCloudsMatchThePlatform(t *testing.T) {
	names := map[string]bool{}
	for _, c := range contract.Clouds() {
		names[c.Environment] = true
		pc, ok := LookupCloud(c.Environment)
		if !ok {
			t.Errorf("%s: the platform cannot play it", c.Environment)
			continue
		}
		if pc.ResourceManager != c.ResourceManager || pc.VaultSuffix != c.VaultSuffix {
			t.Errorf("%s: contract %s, %s; platform %s, %s", c.Environment, c.ResourceManager, c.VaultSuffix, pc.ResourceManager, pc.VaultSuffix)
		}
		if len(pc.ARMAudiences) == 0 || pc.ARMAudiences[0] != c.ARMResource {
			t.Errorf("%s: ARM resource %q, platform asks for %v", c.Environment, c.ARMResource, pc.ARMAudiences)
		}
		if !slices.Contains(pc.VaultAudiences, c.VaultResource) {
			t.Errorf("%s: vault resource %q, platform accepts %v", c.Environment, c.VaultResource, pc.VaultAudiences)
		}
	}
	for _, pc := range clouds {
		if !names[pc.Environment] {
			t.Errorf("the platform plays %s, which contract.Clouds lacks", pc.Environment)
		}
	}
	if len(names) == 0 {
		t.Fatal("contract.Clouds is empty")
	}
}
