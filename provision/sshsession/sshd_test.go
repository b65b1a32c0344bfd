package sshsession

// Tests against a real OpenSSH server (Debian package openssh-server) run as
// the current user on 127.0.0.1, with the host key NewHostKey made.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const sshdPath = "/usr/sbin/sshd"

type realSSHD struct {
	addr string
	pid  int
	user string
	log  *logBuffer
}

func startSSHD(t *testing.T, k keys) *realSSHD {
	t.Helper()
	if _, err := os.Stat(sshdPath); err != nil {
		t.Skipf("real-sshd tests need %s: install the Debian package openssh-server", sshdPath)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd refuses to start as root without its privilege separation
		// directory, which the package's systemd unit normally creates.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(hostKey, []byte(k.hostPEM), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(authKeys, []byte(k.clientLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	host, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf(`ListenAddress %s
Port %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
AllowUsers %s
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel VERBOSE
`, host, port, hostKey, filepath.Join(dir, "sshd.pid"), authKeys, u.Username)
	confPath := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	lb := &logBuffer{}
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", confPath)
	cmd.Stdout, cmd.Stderr = lb, lb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &realSSHD{addr: addr, pid: cmd.Process.Pid, user: u.Username, log: lb}
	t.Cleanup(func() {
		// Collect the whole tree first: once sshd dies its children are
		// reparented and no longer found under it.
		for _, p := range append(descendants(d.pid), proc{pid: d.pid}) {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		cmd.Wait()
		if t.Failed() {
			t.Logf("sshd log:\n%s", lb)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(lb.String(), "Server listening on") {
		if time.Now().After(deadline) {
			t.Fatalf("sshd did not start listening:\n%s", lb)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d
}

func (d *realSSHD) config(k keys) Config {
	log, _ := newLogger()
	return Config{
		Addr: d.addr, User: d.user, Signer: k.client, HostKey: k.hostPub, Logger: log,
		InitialBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, AttemptTimeout: 5 * time.Second,
	}
}

type proc struct {
	pid  int
	comm string
}

// descendants lists every process below pid, from /proc.
func descendants(pid int) []proc {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]proc{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		children[ppid] = append(children[ppid], proc{pid: p, comm: s[open+1 : closing]})
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
		queue = queue[1:]
	}
	return out
}

func byComm(ps []proc, comm string) []proc {
	var out []proc
	for _, p := range ps {
		if p.comm == comm {
			out = append(out, p)
		}
	}
	return out
}

func TestRealSSHDRun(t *testing.T) {
	k := newKeys(t)
	d := startSSHD(t, k)
	s := dialT(t, d.config(k))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	res, err := s.Run(ctx, "id -un; echo $((6*7))")
	if err != nil || res.Stdout != d.user+"\n42\n" {
		t.Fatalf("Run: %+v %v", res, err)
	}

	res, err = s.Run(ctx, "echo out; echo oops >&2; exit 3")
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.StderrTail != "oops" || res.Stdout != "out\n" {
		t.Errorf("exit 3: %+v %v", res, err)
	}

	weird := `it's "$HOME" $(id) ` + "`id` \\ \n; *"
	res, err = s.Run(ctx, "printf %s "+ShellQuote(weird))
	if err != nil || res.Stdout != weird {
		t.Errorf("quoted round trip: %q %v", res.Stdout, err)
	}

	cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer ccancel()
	if _, err := s.Run(cctx, "sleep 20"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled sleep: %v", err)
	}
	time.Sleep(200 * time.Millisecond)
	// OpenSSH 9.2 ignores the signal request for a non-pty session, so the
	// remote sleep outlives the closed channel: end it ourselves.
	left := byComm(descendants(d.pid), "sleep")
	t.Logf("sleep processes left after cancel: %d", len(left))
	for _, p := range left {
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	if res, err := s.Run(ctx, "echo still here"); err != nil || res.Stdout != "still here\n" {
		t.Errorf("after cancel: %+v %v", res, err)
	}

	checks := []Check{
		{Name: "root exists", Run: "test -d /"},
		{Name: "fails", Run: "echo 'nope'; exit 4"},
		{Name: "quoted", Run: `test "$(printf %s 'a b')" = 'a b'`},
	}
	results := s.RunChecks(ctx, checks)
	if len(results) != 3 || !results[0].Passed || results[1].Passed || results[1].ExitCode != 4 ||
		results[1].Output != "nope\n" || !results[2].Passed {
		t.Errorf("checks: %+v", results)
	}
}

func TestRealSSHDCloudInitStatus(t *testing.T) {
	if _, err := exec.LookPath("cloud-init"); err != nil {
		t.Skip("needs cloud-init installed locally (Debian package cloud-init)")
	}
	k := newKeys(t)
	d := startSSHD(t, k)
	s := dialT(t, d.config(k))
	// This machine did not boot with cloud-init: the real command reports
	// it has not run, which must not pass as done.
	st, err := s.ReadCloudInitStatus(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Format != "json" || (st.Status != "not run" && st.Status != "not started") {
		t.Errorf("status %+v", st)
	}
	if st.Err(true) == nil {
		t.Error("a cloud-init that never ran passed")
	}
}

func TestRealSSHDHostKeyMismatch(t *testing.T) {
	k := newKeys(t)
	d := startSSHD(t, k)
	cfg := d.config(k)
	cfg.HostKey = newKeys(t).hostPub
	log, lb := newLogger()
	cfg.Logger = log
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Dial(ctx, cfg)
	if !errors.Is(err, ErrHostKeyMismatch) || ctx.Err() != nil {
		t.Fatalf("err = %v (ctx %v), want ErrHostKeyMismatch at once", err, ctx.Err())
	}
	if n := lb.count("ssh dial attempt"); n != 1 {
		t.Errorf("%d attempts, want 1:\n%s", n, lb)
	}
	// sshd saw us hang up during key exchange, never a login.
	if strings.Contains(d.log.String(), "Accepted publickey") {
		t.Error("logged in to a server with the wrong host key")
	}
}

func TestRealSSHDKilledMidSession(t *testing.T) {
	k := newKeys(t)
	d := startSSHD(t, k)
	s := dialT(t, d.config(k))
	done := make(chan error, 1)
	go func() {
		_, err := s.Run(context.Background(), "sleep 30")
		done <- err
	}()
	var sleeps []proc
	eventually(t, "remote sleep", func() bool {
		sleeps = byComm(descendants(d.pid), "sleep")
		return len(sleeps) > 0
	})
	t.Cleanup(func() {
		for _, p := range sleeps {
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
	})
	for _, p := range append(byComm(descendants(d.pid), "sshd"), proc{pid: d.pid}) {
		syscall.Kill(p.pid, syscall.SIGKILL)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrSessionDropped) {
			t.Fatalf("err = %v, want ErrSessionDropped", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not notice sshd dying")
	}
}

func TestRealSSHDDeprovision(t *testing.T) {
	k := newKeys(t)
	d := startSSHD(t, k)
	s := dialT(t, d.config(k))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if os.Geteuid() != 0 && exec.Command("sudo", "-n", "true").Run() != nil {
		// No passwordless sudo: the refusal must come back as an error.
		var ee *ExitError
		if err := s.Deprovision(ctx, []string{"true"}); !errors.As(err, &ee) {
			t.Fatalf("Deprovision without sudo: %v, want an exit error", err)
		}
		return
	}
	if _, err := os.Stat(deprovisionLog); errors.Is(err, os.ErrNotExist) {
		t.Cleanup(func() { os.Remove(deprovisionLog) })
	}
	// The processes serving this connection; killing them is what
	// deleting the login user or powering off does to the session.
	var pids []string
	for _, p := range byComm(descendants(d.pid), "sshd") {
		pids = append(pids, strconv.Itoa(p.pid))
	}
	if len(pids) == 0 {
		t.Fatal("no sshd process serving the session")
	}
	// A short-lived pre-auth process may be listed too and be gone by now.
	steps := []string{"sleep 0.3", "echo detached steps ran", "kill -9 " + strings.Join(pids, " ") + " 2>/dev/null || true"}
	if err := s.Deprovision(ctx, steps); err != nil {
		t.Fatalf("Deprovision: %v", err)
	}
	if _, err := s.Run(ctx, "true"); !errors.Is(err, ErrSessionDropped) {
		t.Errorf("session after deprovision: %v", err)
	}
	if b, err := os.ReadFile(deprovisionLog); err != nil || string(b) != "detached steps ran\n" {
		t.Errorf("steps log: %q %v", b, err)
	}
}
