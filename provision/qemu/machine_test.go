package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
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
	// The seed is served while the machine runs.
	resp, err := http.Get(m.Seed().URL() + "user-data")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "#cloud-config\n" {
		t.Errorf("seed user-data = %q", body)
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

	pid, sshPort, seedPort := m.cmd.Process.Pid, m.sshPort, m.Seed().Port()
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	if err := m.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	assertNoLeftovers(t, pid, sshPort, seedPort, tmpParent)
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
	pid, sshPort, seedPort := m.cmd.Process.Pid, m.sshPort, m.Seed().Port()
	// The forwarded port is QEMU's while it runs.
	if _, err := freePortIs(sshPort); err == nil {
		t.Errorf("ssh port %d not held by qemu", sshPort)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	assertNoLeftovers(t, pid, sshPort, seedPort, tmpParent)
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
