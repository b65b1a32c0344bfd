package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needQEMU skips tests that run qemu-img and qemu-system-x86_64.
func needQEMU(t *testing.T) {
	t.Helper()
	for _, bin := range []string{"qemu-img", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
}

// tinyBase makes a small empty qcow2 to stand in for a base image: QEMU
// runs its firmware on it, which is all these tests need.
func tinyBase(t *testing.T) Base {
	t.Helper()
	p := filepath.Join(t.TempDir(), "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, out)
	}
	return Base{Disk: p}
}

func imageInfo(t *testing.T, path string) (format, backing string, size int64) {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", "-U", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info struct {
		Format  string `json:"format"`
		Backing string `json:"backing-filename"`
		Size    int64  `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatal(err)
	}
	return info.Format, info.Backing, info.Size
}

func startTiny(t *testing.T, opts MachineOptions) (*Machine, string) {
	t.Helper()
	tmpParent := t.TempDir()
	opts.TempDir = tmpParent
	opts.Accel = AccelTCG
	opts.MemoryMiB = 128
	opts.CPUs = 1
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Destroy() })
	return m, tmpParent
}

func TestMachineOverlayCaptureDestroy(t *testing.T) {
	needQEMU(t)
	base := tinyBase(t)
	logDir := t.TempDir()
	m, tmpParent := startTiny(t, MachineOptions{
		Base: base, DiskSize: "32M", UserData: []byte("#cloud-config\n"), LogDir: logDir,
		StopTimeout: 500 * time.Millisecond,
	})

	format, backing, size := imageInfo(t, m.Overlay())
	if format != "qcow2" || backing != base.Disk || size != 32<<20 {
		t.Errorf("overlay: format %q backing %q size %d, want qcow2 on %s, 32 MiB", format, backing, size, base.Disk)
	}
	if !strings.HasPrefix(m.Overlay(), tmpParent) {
		t.Errorf("overlay %s not in the temp dir %s", m.Overlay(), tmpParent)
	}
	if !strings.HasPrefix(m.Seed().Path(), tmpParent) {
		t.Errorf("seed %s not in the temp dir %s", m.Seed().Path(), tmpParent)
	}

	ctx := context.Background()
	if _, err := m.Capture(ctx, filepath.Join(t.TempDir(), "x.qcow2")); err == nil {
		t.Error("Capture of a running machine succeeded")
	}
	// Firmware alone ignores the power button: Stop must force it.
	if err := m.Stop(ctx); !errors.Is(err, ErrForcedStop) {
		t.Errorf("Stop = %v, want ErrForcedStop", err)
	}
	select {
	case <-m.Exited():
	default:
		t.Fatal("qemu still running after Stop")
	}

	outDir := t.TempDir()
	img, err := m.Capture(ctx, filepath.Join(outDir, "captured.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	format, backing, size = imageInfo(t, img.Path)
	if format != "qcow2" || backing != "" || size != 32<<20 {
		t.Errorf("capture: format %q backing %q size %d, want standalone 32 MiB qcow2", format, backing, size)
	}
	checkCaptured(t, img)

	pid, sshPort := m.cmd.Process.Pid, m.sshPort
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	assertNoLeftovers(t, pid, sshPort, tmpParent)
	if _, err := m.Capture(ctx, filepath.Join(outDir, "again.qcow2")); err == nil {
		t.Error("Capture after Destroy succeeded")
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 1 {
		t.Errorf("capture dir %v, want only the first image", entries)
	}
	for _, f := range []string{"serial.log", "qemu.log"} {
		if _, err := os.Stat(filepath.Join(logDir, f)); err != nil {
			t.Errorf("log %s not kept: %v", f, err)
		}
	}
	if _, err := os.Stat(base.Disk); err != nil {
		t.Errorf("base disk gone: %v", err)
	}
}

func TestMachineDestroyWhileRunning(t *testing.T) {
	needQEMU(t)
	m, tmpParent := startTiny(t, MachineOptions{Base: tinyBase(t)})
	pid, sshPort := m.cmd.Process.Pid, m.sshPort
	// The forwarded port is QEMU's while it runs.
	if _, err := freePortIs(sshPort); err == nil {
		t.Errorf("ssh port %d not held by qemu", sshPort)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, pid, sshPort, tmpParent)
	if err := m.Wait(context.Background()); err == nil {
		t.Error("Wait after a kill reported a clean exit")
	}
}

func TestStartFailureCleansUp(t *testing.T) {
	needQEMU(t)
	tmpParent := t.TempDir()
	notImage := filepath.Join(t.TempDir(), "missing.qcow2")
	ctx := context.Background()
	if _, err := Start(ctx, MachineOptions{Base: Base{Disk: notImage}, TempDir: tmpParent, Accel: AccelTCG}); err == nil {
		t.Fatal("Start on a missing base succeeded")
	}
	// A kernel that does not exist makes qemu itself fail after the overlay
	// and seed exist.
	_, err := Start(ctx, MachineOptions{Base: Base{Disk: tinyBase(t).Disk, Kernel: "/nonexistent/vmlinuz"}, TempDir: tmpParent, Accel: AccelTCG})
	if err == nil || !strings.Contains(err.Error(), "vmlinuz") {
		t.Fatalf("Start with a missing kernel = %v, want an error naming it", err)
	}
	if entries, _ := os.ReadDir(tmpParent); len(entries) != 0 {
		t.Errorf("failed Start left %v", entries)
	}
}

func TestWaitSSHFailsWhenQEMUExits(t *testing.T) {
	needQEMU(t)
	m, _ := startTiny(t, MachineOptions{Base: tinyBase(t)})
	m.signal(syscall.SIGKILL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.WaitSSH(ctx); err == nil || !strings.Contains(err.Error(), "qemu exited") {
		t.Errorf("WaitSSH = %v, want qemu exited", err)
	}
}

// freePortIs tries to listen on port; an error means it is taken.
func freePortIs(port int) (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return 0, err
	}
	ln.Close()
	return port, nil
}

// The seed holds the build VM's SSH host private key: no other local user
// may read it, neither from QEMU's argv (world-readable in /proc) nor from a
// file or a port.
func TestSeedStaysPrivate(t *testing.T) {
	needQEMU(t)
	const secret = "not-for-other-users-7f3a"
	m, tmpParent := startTiny(t, MachineOptions{Base: tinyBase(t), UserData: []byte("#cloud-config\n# " + secret + "\n")})
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(m.cmd.Process.Pid), "cmdline"))
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.ReplaceAll(string(raw), "\x00", " ")
	for _, leak := range []string{secret, "ds=", "s=http", "10.0.2.2"} {
		if strings.Contains(argv, leak) {
			t.Errorf("qemu argv (readable by every user) contains %q: %s", leak, argv)
		}
	}
	if !strings.Contains(argv, m.Seed().Path()) {
		t.Errorf("qemu argv %s does not attach the seed %s", argv, m.Seed().Path())
	}
	fi, err := os.Stat(m.Seed().Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("seed mode %v: readable by others", fi.Mode().Perm())
	}
	di, err := os.Stat(filepath.Dir(m.Seed().Path()))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm()&0o077 != 0 || !strings.HasPrefix(di.Name(), "imagebake-qemu-") || filepath.Dir(filepath.Dir(m.Seed().Path())) != tmpParent {
		t.Errorf("seed folder %s mode %v, want the machine's private temp folder", di.Name(), di.Mode().Perm())
	}
}

// A captured disk holds the guest's host keys: it is the owner's only (a
// copy into the local gallery is 0600 too).
func TestCapturePrivate(t *testing.T) {
	needQEMU(t)
	out := filepath.Join(t.TempDir(), "captured.qcow2")
	img, err := convertImage(context.Background(), tinyBase(t).Disk, out)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("captured disk mode %v, want 0600", fi.Mode().Perm())
	}
}
