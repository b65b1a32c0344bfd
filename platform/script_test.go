package platform

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/contract"
	"github.com/imagebake/imagebake/recipes"
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
