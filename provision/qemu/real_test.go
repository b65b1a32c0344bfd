package qemu

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// realTests gates the tests that build a base with mmdebstrap and boot real
// VMs: they take minutes and need root, network access to Debian's mirror
// and QEMU.
func realTests(t *testing.T) {
	t.Helper()
	if os.Getenv("IMAGEBAKE_QEMU_TESTS") != "1" {
		t.Skip("set IMAGEBAKE_QEMU_TESTS=1 to build a base and boot a VM")
	}
}

// testCacheDir is where real tests keep the base between runs.
func testCacheDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("IMAGEBAKE_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("user cache dir: %v", err)
	}
	return filepath.Join(d, "imagebake")
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestBuildBaseReal(t *testing.T) {
	realTests(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	b, err := BuildBase(ctx, BuildOptions{CacheDir: testCacheDir(t), Suite: "bookworm", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("base %+v in %s", b, time.Since(start))
	for _, f := range []string{b.Disk, b.Kernel, b.Initrd} {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("base file %s: %v", f, err)
		}
	}
	if b.Append != BaseAppend {
		t.Errorf("Append = %q, want %q", b.Append, BaseAppend)
	}
}

// realAccel lets a run force TCG (IMAGEBAKE_QEMU_ACCEL=tcg) on a machine
// with KVM, to see what CI without KVM will see.
func realAccel() Accel { return Accel(os.Getenv("IMAGEBAKE_QEMU_ACCEL")) }

// TestBootCaptureReal boots the Debian base with a cloud-config, checks it
// over SSH, powers it off, captures it, boots the capture again and checks
// that Destroy leaves nothing behind.
func TestBootCaptureReal(t *testing.T) {
	realTests(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	log := testLogger(t)

	start := time.Now()
	base, err := BuildBase(ctx, BuildOptions{CacheDir: testCacheDir(t), Suite: "bookworm", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: base ready in %s", time.Since(start).Round(time.Millisecond))

	signer, authorized := newClientKey(t)
	userData := fmt.Sprintf(`#cloud-config
users:
  - default
  - name: bake
    shell: /bin/bash
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys:
      - %s
write_files:
  - path: /etc/imagebake-test
    content: "baked by imagebake\n"
    permissions: "0644"
`, authorized)

	tmpParent := t.TempDir()
	logDir := t.TempDir()
	start = time.Now()
	m, err := Start(ctx, MachineOptions{
		Base: base, DiskSize: "4G", UserData: []byte(userData), Hostname: "bake-test",
		MemoryMiB: 2048, CPUs: 2, LogDir: logDir, TempDir: tmpParent, Accel: realAccel(), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	destroyed := false
	defer func() {
		if !destroyed {
			m.Destroy()
		}
	}()
	pid := m.cmd.Process.Pid
	sshPort := m.sshPort
	t.Logf("accel %s, ssh %s, seed %s", m.Accel(), m.SSHAddr(), m.Seed().Path())

	banner, err := m.WaitSSH(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bootToSSH := time.Since(start)
	t.Logf("timing: boot to SSH banner %s (%s)", bootToSSH.Round(time.Millisecond), banner)

	client := dialSSH(ctx, t, m.SSHAddr(), "bake", signer)
	defer client.Close()
	t.Logf("timing: boot to SSH login as bake %s", time.Since(start).Round(time.Millisecond))

	// status --wait can answer early (FACTS.md): wait for result.json.
	for {
		if _, err := run(client, "test -e /run/cloud-init/result.json"); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("cloud-init never finished")
		}
		time.Sleep(2 * time.Second)
	}
	cloudInitDone := time.Since(start)
	t.Logf("timing: boot to cloud-init finished %s", cloudInitDone.Round(time.Millisecond))
	out, err := run(client, "cloud-init status --format json")
	if err != nil {
		t.Fatalf("cloud-init status: %v\n%s", err, out)
	}
	var st struct {
		Status string   `json:"status"`
		Errors []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("cloud-init status output %q: %v", out, err)
	}
	if st.Status != "done" || len(st.Errors) > 0 {
		t.Errorf("cloud-init status %q errors %v\n%s", st.Status, st.Errors, out)
	}
	if out, err := run(client, "cat /etc/imagebake-test && hostname && sudo -n true && echo sudo-ok"); err != nil ||
		out != "baked by imagebake\nbake-test\nsudo-ok\n" {
		t.Errorf("guest checks: %q, %v", out, err)
	}
	if out, err := run(client, "df --output=size -B1G / | tail -1"); err == nil {
		t.Logf("root filesystem size (GiB): %s", strings.TrimSpace(out))
	}
	// The guest took its seed from the cidata disk, with this boot's
	// instance-id.
	if out, err := run(client, "sudo -n cloud-init query v1.instance_id"); err != nil || strings.TrimSpace(out) != m.Seed().InstanceID() {
		t.Errorf("instance-id in the guest %q (%v), want %s", out, err, m.Seed().InstanceID())
	}
	client.Close()

	start = time.Now()
	if err := m.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := m.Wait(ctx); err != nil {
		t.Errorf("wait: %v", err)
	}
	t.Logf("timing: power-off %s", time.Since(start).Round(time.Millisecond))

	outDir := t.TempDir()
	start = time.Now()
	img, err := m.Capture(ctx, filepath.Join(outDir, "captured.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timing: capture %s (%d bytes, sha256 %s)", time.Since(start).Round(time.Millisecond), img.Size, img.SHA256)
	checkCaptured(t, img)

	if err := m.Destroy(); err != nil {
		t.Errorf("destroy: %v", err)
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second destroy: %v", err)
	}
	destroyed = true
	assertNoLeftovers(t, pid, sshPort, tmpParent)
	if entries, _ := os.ReadDir(outDir); len(entries) != 1 {
		t.Errorf("capture dir holds %d entries, want only the image", len(entries))
	}
	if _, err := os.Stat(filepath.Join(logDir, "serial.log")); err != nil {
		t.Errorf("serial log not kept: %v", err)
	}

	// The captured image boots on its own overlay with a new instance-id.
	start = time.Now()
	m2, err := Start(ctx, MachineOptions{
		Base:     Base{Disk: img.Path, Kernel: base.Kernel, Initrd: base.Initrd, Append: base.Append},
		UserData: []byte("#cloud-config\n"), LogDir: t.TempDir(), TempDir: tmpParent, Accel: realAccel(), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Destroy()
	client2 := dialSSH(ctx, t, m2.SSHAddr(), "bake", signer)
	out, err = run(client2, "cat /etc/imagebake-test")
	client2.Close()
	if err != nil || out != "baked by imagebake\n" {
		t.Errorf("captured image: %q, %v", out, err)
	}
	t.Logf("timing: captured image boot to SSH login %s", time.Since(start).Round(time.Millisecond))
	pid2, ssh2 := m2.cmd.Process.Pid, m2.sshPort
	if err := m2.Destroy(); err != nil {
		t.Errorf("destroy running machine: %v", err)
	}
	assertNoLeftovers(t, pid2, ssh2, tmpParent)
	if _, err := os.Stat(img.Path); err != nil {
		t.Errorf("captured image gone after destroying the machine booted from it: %v", err)
	}
}

func newClientKey(t *testing.T) (ssh.Signer, string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
}

// dialSSH retries until the user exists and accepts the key: sshd answers
// before cloud-init has created the user.
func dialSSH(ctx context.Context, t *testing.T, addr, user string, signer ssh.Signer) *ssh.Client {
	t.Helper()
	cfg := &ssh.ClientConfig{
		User: user,
		Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		// A VM this test just created, reached over loopback only.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
		Timeout:         15 * time.Second,
	}
	var last error
	for ctx.Err() == nil {
		c, err := ssh.Dial("tcp", addr, cfg)
		if err == nil {
			return c
		}
		last = err
		time.Sleep(2 * time.Second)
	}
	t.Fatalf("ssh %s@%s: %v", user, addr, last)
	return nil
}

// run returns a command's stdout; stderr goes into the error. (Separate
// buffers: the session copies stdout and stderr concurrently.)
func run(c *ssh.Client, cmd string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout = &stdout
	s.Stderr = &stderr
	if err := s.Run(cmd); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	if stderr.Len() > 0 {
		return stdout.String(), fmt.Errorf("%s: unexpected stderr: %s", cmd, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// checkCaptured verifies a captured image: a standalone compressed qcow2
// whose recorded size and sha256 match the file.
func checkCaptured(t *testing.T, img Captured) {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", img.Path).Output()
	if err != nil {
		t.Fatalf("qemu-img info: %v", err)
	}
	var info struct {
		Format  string `json:"format"`
		Backing string `json:"backing-filename"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.Backing != "" {
		t.Errorf("captured image: format %q backing %q, want standalone qcow2", info.Format, info.Backing)
	}
	fi, err := os.Stat(img.Path)
	if err != nil || fi.Size() != img.Size {
		t.Errorf("captured size %d, file %v (%v)", img.Size, fi, err)
	}
	if ok, err := verifyFile(img.Path, img.SHA256); !ok {
		t.Errorf("captured sha256 %s does not match the file (%v)", img.SHA256, err)
	}
}

// assertNoLeftovers checks that a destroyed machine left no process, no
// listening port and no temporary files.
func assertNoLeftovers(t *testing.T, pid, sshPort int, tmpParent string) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("qemu pid %d still exists (kill 0: %v)", pid, err)
	}
	for _, port := range []int{sshPort} {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Errorf("port %d still in use: %v", port, err)
			continue
		}
		ln.Close()
	}
	if entries, _ := os.ReadDir(tmpParent); len(entries) != 0 {
		t.Errorf("temporary files left in %s: %v", tmpParent, entries)
	}
}
