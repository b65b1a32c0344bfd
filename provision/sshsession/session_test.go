package sshsession

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/fakevm"
	"golang.org/x/crypto/ssh"
)

func TestShellQuoteThroughRealShell(t *testing.T) {
	inputs := []string{"", "plain", "two words", "it's", "'", "''", `"$HOME" $(id) ` + "`id`", "a\nb", `back\slash`, "*", "-n", "; rm -rf /"}
	for _, in := range inputs {
		out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(in)).Output()
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if string(out) != in {
			t.Errorf("ShellQuote(%q) through sh gave %q", in, out)
		}
	}
}

func TestKeys(t *testing.T) {
	k := newKeys(t)
	if !strings.HasPrefix(k.clientLine, "ssh-ed25519 ") {
		t.Errorf("client line %q", k.clientLine)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.clientLine))
	if err != nil || string(pub.Marshal()) != string(k.client.PublicKey().Marshal()) {
		t.Errorf("client line does not parse to the signer's key: %v", err)
	}
	if !strings.HasPrefix(k.hostPEM, "-----BEGIN OPENSSH PRIVATE KEY-----") {
		t.Errorf("host PEM: %q", k.hostPEM[:40])
	}
	hpub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.hostLine))
	if err != nil || string(hpub.Marshal()) != string(k.hostPub.Marshal()) ||
		string(k.hostSigner.PublicKey().Marshal()) != string(k.hostPub.Marshal()) {
		t.Errorf("host key parts disagree: %v", err)
	}
	k2 := newKeys(t)
	if k2.clientLine == k.clientLine || k2.hostLine == k.hostLine {
		t.Error("keys repeat")
	}
}

func TestDialWaitsForLateServer(t *testing.T) {
	k := newKeys(t)
	addr := freePort(t)
	log, lb := newLogger()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type dialed struct {
		s   *Session
		err error
	}
	got := make(chan dialed, 1)
	go func() {
		s, err := Dial(ctx, Config{Addr: addr, User: "builder", Signer: k.client, HostKey: k.hostPub, Logger: log,
			InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
		got <- dialed{s, err}
	}()
	// Let a few attempts fail on a closed port before the "VM" boots.
	eventually(t, "failed dial attempts", func() bool { return lb.count("ssh dial failed; retrying") >= 3 })
	vm, err := fakevm.New(fakevm.Config{HostKey: k.hostSigner, AuthorizedKeys: []ssh.PublicKey{k.client.PublicKey()},
		User: "builder", Script: fakevm.Script{fakevm.Exact("hostname", fakevm.Reply{Stdout: "buildvm\n"})}})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(addr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	d := <-got
	if d.err != nil {
		t.Fatalf("Dial: %v\n%s", d.err, lb)
	}
	defer d.s.Close()
	res, err := d.s.Run(ctx, "hostname")
	if err != nil || res.Stdout != "buildvm\n" || res.ExitCode != 0 {
		t.Fatalf("Run: %+v %v", res, err)
	}
}

func TestDialHostKeyMismatchIsNotRetried(t *testing.T) {
	vm, cfg := fakeVM(t, nil)
	impostor := newKeys(t)
	cfg.HostKey = impostor.hostPub
	log, lb := newLogger()
	cfg.Logger = log
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := Dial(ctx, cfg)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("err = %v, want ErrHostKeyMismatch", err)
	}
	if ctx.Err() != nil {
		t.Error("Dial waited for ctx instead of failing at once")
	}
	for _, want := range []string{cfg.Addr, ssh.FingerprintSHA256(impostor.hostPub), ssh.FingerprintSHA256(vm.HostKey())} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if n := lb.count("ssh dial attempt"); n != 1 {
		t.Errorf("%d dial attempts, want 1", n)
	}
	if n := vm.Connections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	if vm.Logins() != 0 || len(vm.Commands()) != 0 {
		t.Error("authenticated to an impostor")
	}
}

func TestDialRetriesRejectedKeyUntilCtx(t *testing.T) {
	_, cfg := fakeVM(t, nil)
	other := newKeys(t)
	cfg.Signer = other.client // not (yet) in authorized_keys
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("error %q does not carry the last failure", err)
	}
}

func TestDialValidatesConfig(t *testing.T) {
	k := newKeys(t)
	full := Config{Addr: "127.0.0.1:22", User: "u", Signer: k.client, HostKey: k.hostPub}
	for _, tt := range []struct {
		name string
		mod  func(*Config)
	}{
		{"no addr", func(c *Config) { c.Addr = "" }},
		{"no user", func(c *Config) { c.User = "" }},
		{"no signer", func(c *Config) { c.Signer = nil }},
		{"no host key", func(c *Config) { c.HostKey = nil }},
	} {
		c := full
		tt.mod(&c)
		if _, err := Dial(context.Background(), c); err == nil {
			t.Errorf("%s: Dial accepted it", tt.name)
		}
	}
}

func TestRun(t *testing.T) {
	big := strings.Repeat("x", 10000) + "END"
	_, cfg := fakeVM(t, fakevm.Script{
		fakevm.Exact("ok", fakevm.Reply{Stdout: "out\n", Stderr: "err\n"}),
		fakevm.Exact("fail", fakevm.Reply{Stdout: "partial\n", Stderr: "first\nE: Unable to locate package nope\n", ExitCode: 100}),
		fakevm.Exact("big", fakevm.Reply{Stdout: "START" + big}),
	})
	cfg.MaxOutput = 1000
	s := dialT(t, cfg)
	ctx := context.Background()

	res, err := s.Run(ctx, "ok")
	if err != nil || res.Stdout != "out\n" || res.Stderr != "err\n" || res.ExitCode != 0 || res.Truncated {
		t.Errorf("ok: %+v %v", res, err)
	}

	res, err = s.Run(ctx, "fail")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 100 || res.ExitCode != 100 || res.Stdout != "partial\n" {
		t.Fatalf("fail: %+v %v", res, err)
	}
	if !strings.Contains(err.Error(), "E: Unable to locate package nope") || errors.Is(err, ErrSessionDropped) {
		t.Errorf("fail error %q", err)
	}

	res, err = s.Run(ctx, "big")
	if err != nil || !res.Truncated || !strings.HasPrefix(res.Stdout, "START") || !strings.HasSuffix(res.Stdout, "END") || len(res.Stdout) > 1100 {
		t.Errorf("big: truncated=%v len=%d err=%v", res.Truncated, len(res.Stdout), err)
	}
}

func TestRunCancelClosesChannel(t *testing.T) {
	vm, cfg := fakeVM(t, fakevm.Script{
		fakevm.Exact("apt-get install -y forever", fakevm.Reply{Delay: time.Hour}),
		fakevm.Exact("echo alive", fakevm.Reply{Stdout: "alive\n"}),
	})
	s := dialT(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		eventually(t, "command received", func() bool { return len(vm.Commands()) == 1 })
		cancel()
	}()
	res, err := s.Run(ctx, "apt-get install -y forever")
	if !errors.Is(err, context.Canceled) || res.ExitCode != -1 {
		t.Fatalf("Run: %+v %v, want canceled", res, err)
	}
	eventually(t, "channel closed on the VM", func() bool { return len(vm.Interrupted()) == 1 })
	// The connection survives: only the channel was closed.
	if res, err := s.Run(context.Background(), "echo alive"); err != nil || res.Stdout != "alive\n" {
		t.Errorf("after cancel: %+v %v", res, err)
	}
}

func TestRunSeesDroppedConnection(t *testing.T) {
	_, cfg := fakeVM(t, fakevm.Script{fakevm.Exact("reboot", fakevm.Reply{Drop: true})})
	s := dialT(t, cfg)
	_, err := s.Run(context.Background(), "reboot")
	if !errors.Is(err, ErrSessionDropped) {
		t.Fatalf("err = %v, want ErrSessionDropped", err)
	}
	if _, err := s.Run(context.Background(), "true"); !errors.Is(err, ErrSessionDropped) {
		t.Errorf("after drop: %v", err)
	}
}

func TestKeepaliveNoticesFrozenVM(t *testing.T) {
	vm, cfg := fakeVM(t, fakevm.Script{fakevm.Exact("sleep", fakevm.Reply{Delay: time.Hour})})
	cfg.KeepaliveInterval = 50 * time.Millisecond
	cfg.KeepaliveMaxMissed = 2
	s := dialT(t, cfg)
	go func() {
		eventually(t, "command received", func() bool { return len(vm.Commands()) == 1 })
		vm.Freeze()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.Run(ctx, "sleep")
	if !errors.Is(err, ErrSessionDropped) || !strings.Contains(err.Error(), "keepalive") {
		t.Fatalf("err = %v, want ErrSessionDropped by keepalive", err)
	}
}

func TestCloseIsNotADrop(t *testing.T) {
	_, cfg := fakeVM(t, nil)
	s := dialT(t, cfg)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Run(context.Background(), "true")
	if err == nil || errors.Is(err, ErrSessionDropped) {
		t.Errorf("Run after Close: %v", err)
	}
}

func TestWaitCloudInit(t *testing.T) {
	const probe = `/run/cloud-init/result\.json`
	notYet := fakevm.Regexp(probe, fakevm.Reply{ExitCode: 1}).Times(2)
	tests := []struct {
		name            string
		status          fakevm.Rule
		extra           []fakevm.Rule
		wantStatus      string
		wantErr         bool // Err(false)
		wantErrRecov    bool // Err(true)
		wantErrContains string
	}{
		{
			name:       "done",
			status:     fakevm.Prefix("cloud-init status --format json", fakevm.Reply{Stdout: fakevm.StatusJSON("done", nil, nil)}),
			wantStatus: "done",
		},
		{
			name: "error",
			status: fakevm.Prefix("cloud-init status --format json", fakevm.Reply{ExitCode: 1,
				Stdout: fakevm.StatusJSON("error", []string{"('package_update_upgrade_install', ProcessExecutionError('apt-get install failed'))"}, nil)}),
			wantStatus: "error", wantErr: true, wantErrRecov: true, wantErrContains: "apt-get install failed",
		},
		{
			// Focal's patched cloud-init exits 0 even here: the JSON decides.
			name: "recoverable on focal",
			status: fakevm.Prefix("cloud-init status --format json", fakevm.Reply{ExitCode: 0,
				Stdout: fakevm.StatusJSON("done", nil, map[string][]string{"WARNING": {"Failed to set locale en_US.UTF-8"}, "DEPRECATED": {"key x is deprecated"}})}),
			wantStatus: "done", wantErr: true, wantErrContains: "WARNING: Failed to set locale",
		},
		{
			name: "old cloud-init without --format",
			status: fakevm.Prefix("cloud-init status --format json", fakevm.Reply{ExitCode: 2,
				Stderr: "usage: /usr/bin/cloud-init status [-h] [-l] [-w]\n/usr/bin/cloud-init status: error: unrecognized arguments: --format json\n"}),
			extra: []fakevm.Rule{fakevm.Exact("cloud-init status --long", fakevm.Reply{ExitCode: 1,
				Stdout: "status: error\ntime: Mon, 01 Jan 2024 00:00:00 +0000\ndetail:\n('users-groups', KeyError('githubrunner1'))\n"})},
			wantStatus: "error", wantErr: true, wantErrRecov: true, wantErrContains: "KeyError('githubrunner1')",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vm, cfg := fakeVM(t, append(fakevm.Script{notYet, tt.status}, tt.extra...))
			s := dialT(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := s.WaitCloudInit(ctx, 20*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != tt.wantStatus {
				t.Errorf("Status = %q, want %q", st.Status, tt.wantStatus)
			}
			probes := 0
			for _, c := range vm.Commands() {
				if strings.Contains(c, "/run/cloud-init/result.json") {
					probes++
				}
			}
			if probes != 3 {
				t.Errorf("%d probes, want 3 (two not-yet, one done): %q", probes, vm.Commands())
			}
			err = st.Err(false)
			if (err != nil) != tt.wantErr {
				t.Errorf("Err(false) = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrCloudInitFailed) {
				t.Errorf("Err(false) = %v, not ErrCloudInitFailed", err)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantErrContains) {
				t.Errorf("Err(false) = %v, want it to contain %q", err, tt.wantErrContains)
			}
			if err := st.Err(true); (err != nil) != tt.wantErrRecov {
				t.Errorf("Err(true) = %v, want error %v", err, tt.wantErrRecov)
			}
		})
	}
}

func TestWaitCloudInitCtx(t *testing.T) {
	_, cfg := fakeVM(t, fakevm.Script{fakevm.Regexp(`/run/cloud-init/result\.json`, fakevm.Reply{ExitCode: 1})})
	s := dialT(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := s.WaitCloudInit(ctx, 20*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
}

func TestRunChecksContinuesAfterFailure(t *testing.T) {
	checks := []Check{
		{Name: "runner unpacked", Run: "test -x /home/githubrunner1/actions-runner/config.sh"},
		{Name: "docker group", Run: "id -nG githubrunner1 | grep -qw docker", Sudo: true},
		{Name: "quote's safe", Run: `echo 'it''s' "$HOME"`},
	}
	vm, cfg := fakeVM(t, fakevm.Script{
		fakevm.Exact(checks[1].Command(), fakevm.Reply{Stdout: "githubrunner1\n", Stderr: "grep: no docker\n", ExitCode: 1}),
	})
	s := dialT(t, cfg)
	results := s.RunChecks(context.Background(), checks)
	if len(results) != 3 {
		t.Fatalf("%d results", len(results))
	}
	want := []struct {
		passed bool
		code   int
	}{{true, 0}, {false, 1}, {true, 0}}
	for i, r := range results {
		if r.Passed != want[i].passed || r.ExitCode != want[i].code || r.Err != nil || r.Name != checks[i].Name {
			t.Errorf("check %q: %+v", checks[i].Name, r)
		}
	}
	if !strings.Contains(results[1].Output, "grep: no docker") || !strings.Contains(results[1].Output, "githubrunner1") {
		t.Errorf("failing check output %q", results[1].Output)
	}
	cmds := vm.Commands()
	wantCmds := []string{
		"sh -c 'test -x /home/githubrunner1/actions-runner/config.sh'",
		"sudo -n sh -c 'id -nG githubrunner1 | grep -qw docker'",
		`sh -c 'echo '\''it'\'''\''s'\'' "$HOME"'`,
	}
	if strings.Join(cmds, "\n") != strings.Join(wantCmds, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(cmds, "\n"), strings.Join(wantCmds, "\n"))
	}
}

func TestRunChecksAfterDrop(t *testing.T) {
	_, cfg := fakeVM(t, fakevm.Script{fakevm.Prefix("sh -c 'crash", fakevm.Reply{Drop: true})})
	s := dialT(t, cfg)
	results := s.RunChecks(context.Background(), []Check{{Name: "a", Run: "crash"}, {Name: "b", Run: "true"}})
	if len(results) != 2 {
		t.Fatalf("%d results", len(results))
	}
	for _, r := range results {
		if r.Passed || !errors.Is(r.Err, ErrSessionDropped) || r.ExitCode != -1 {
			t.Errorf("%s: %+v", r.Name, r)
		}
	}
}

func TestDeprovision(t *testing.T) {
	steps := LocalDeprovisionSteps("builder")
	tests := []struct {
		name    string
		reply   *fakevm.Reply // nil: fakevm's default (exit 0, then drop, user deleted)
		ctx     time.Duration
		wantErr error
	}{
		{name: "exit then drop", ctx: 10 * time.Second},
		{name: "drop before exit status", reply: &fakevm.Reply{Drop: true, RefuseLogins: true}, ctx: 10 * time.Second},
		{name: "sudo refused", reply: &fakevm.Reply{ExitCode: 1, Stderr: "sudo: a password is required\n"}, ctx: 10 * time.Second, wantErr: &ExitError{}},
		{name: "no drop", reply: &fakevm.Reply{}, ctx: 300 * time.Millisecond, wantErr: ErrNoDrop},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			script := fakevm.Script{fakevm.Exact("sudo -n cat /run/imagebake-deprovision.log",
				fakevm.Reply{Stdout: "cloud-init: error: unrecognized arguments: --machine-id\n"})}
			if tt.reply != nil {
				script = append(script, fakevm.Regexp(`imagebake-deprovision`, *tt.reply))
			}
			vm, cfg := fakeVM(t, script)
			s := dialT(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctx)
			defer cancel()
			err := s.Deprovision(ctx, steps)
			switch want := tt.wantErr.(type) {
			case nil:
				if err != nil {
					t.Fatalf("Deprovision: %v", err)
				}
				// The VM deleted the login user: nobody gets back in.
				dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				defer dcancel()
				if s2, err := Dial(dctx, cfg); err == nil {
					s2.Close()
					t.Error("logged in again after deprovision")
				}
			case *ExitError:
				if !errors.As(err, &want) || want.Code != 1 || !strings.Contains(err.Error(), "password is required") {
					t.Fatalf("Deprovision: %v, want the sudo failure", err)
				}
			default:
				if !errors.Is(err, want) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "--machine-id") {
					t.Fatalf("Deprovision: %v, want %v with the log tail", err, want)
				}
			}
			cmd := vm.Commands()[0]
			if !strings.HasPrefix(cmd, "sudo -n sh -c ") || !strings.Contains(cmd, "setsid") ||
				!strings.Contains(cmd, "userdel -f -r") || !strings.Contains(cmd, "poweroff") {
				t.Errorf("deprovision command %q", cmd)
			}
		})
	}
}

func TestDeprovisionCommandParses(t *testing.T) {
	evil := `x'; touch /tmp/pwned; echo '`
	for _, steps := range [][]string{AzureDeprovisionSteps(), LocalDeprovisionSteps(evil), {"echo a", "echo 'b'"}} {
		cmd := deprovisionCommand(steps)
		if out, err := exec.Command("sh", "-n", "-c", cmd).CombinedOutput(); err != nil {
			t.Errorf("sh -n rejects %q: %v %s", cmd, err, out)
		}
	}
	// The user name stays one word through both levels of quoting: unwrap
	// the outer sh -c by asking a shell to print its argument.
	steps := LocalDeprovisionSteps(evil)
	if steps[2] != "userdel -f -r "+ShellQuote(evil) {
		t.Errorf("userdel step %q", steps[2])
	}
	if _, err := exec.Command("sh", "-n", "-c", steps[2]).CombinedOutput(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Error("a step ran")
	}
	if err := (&Session{}).Deprovision(context.Background(), nil); err == nil {
		t.Error("empty steps accepted")
	}
}

func TestCollectLogs(t *testing.T) {
	_, cfg := fakeVM(t, fakevm.Script{
		fakevm.Exact("sudo -n cat '/var/log/cloud-init-output.log'", fakevm.Reply{ExitCode: 1, Stderr: "cat: /var/log/cloud-init-output.log: No such file or directory\n"}),
	})
	s := dialT(t, cfg)
	dir := filepath.Join(t.TempDir(), "logs")
	err := s.CollectLogs(context.Background(), dir)
	if err == nil || !strings.Contains(err.Error(), "cloud-init-output.log") || !strings.Contains(err.Error(), "No such file") {
		t.Fatalf("err = %v, want the missing output log named", err)
	}
	b, rerr := os.ReadFile(filepath.Join(dir, "cloud-init.log"))
	if rerr != nil || !strings.Contains(string(b), "Cloud-init v. 24.4.1 finished") {
		t.Fatalf("cloud-init.log: %q %v", b, rerr)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "cloud-init.log")); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(dir, "cloud-init-output.log")); err == nil {
		t.Error("empty file left for the failed copy")
	}
}

// The lead's flow: the renderer puts NewHostKey's key into the cloud-config,
// the fake VM takes it from there, and Dial pins it.
func TestFakeVMFromCloudConfig(t *testing.T) {
	k := newKeys(t)
	var userData strings.Builder
	userData.WriteString("#cloud-config\nssh_deletekeys: false\nssh_keys:\n  ed25519_private: |\n")
	for _, l := range strings.SplitAfter(strings.TrimSuffix(k.hostPEM, "\n"), "\n") {
		userData.WriteString("    " + l)
	}
	userData.WriteString("\n  ed25519_public: " + k.hostLine + "\nssh_authorized_keys:\n  - " + k.clientLine + "\n")
	hostKey, err := fakevm.HostKeyFromCloudConfig([]byte(userData.String()))
	if err != nil {
		t.Fatalf("%v\n%s", err, userData.String())
	}
	vm, err := fakevm.New(fakevm.Config{HostKey: hostKey, AuthorizedKeys: []ssh.PublicKey{k.client.PublicKey()}, User: "builder"})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { vm.Close() })
	s := dialT(t, Config{Addr: vm.Addr(), User: "builder", Signer: k.client, HostKey: k.hostPub})
	st, err := s.WaitCloudInit(context.Background(), 10*time.Millisecond)
	if err != nil || st.Err(false) != nil {
		t.Fatalf("WaitCloudInit: %+v %v", st, err)
	}
	if err := s.Deprovision(context.Background(), AzureDeprovisionSteps()); err != nil {
		t.Fatal(err)
	}
	for _, c := range vm.Commands() {
		if strings.Contains(c, "OPENSSH PRIVATE KEY") || strings.Contains(c, k.hostPEM[40:80]) {
			t.Errorf("host private key sent in a command: %q", c)
		}
	}
}
