package qemu

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrForcedStop reports that the guest did not power off in time and QEMU
// had to be terminated; the disk may then hold an unclean filesystem.
var ErrForcedStop = errors.New("guest did not power off; qemu terminated")

// MachineOptions configures Start.
type MachineOptions struct {
	// Base is the disk the machine boots from (the backing file of a fresh
	// qcow2 overlay; Base.Disk itself is never written) and, for bases
	// without a boot loader, the kernel, initrd and command line.
	Base Base
	// DiskSize optionally grows the overlay beyond the base's virtual size
	// ("10G"); cloud-init's growpart/resizefs then grow the filesystem.
	DiskSize  string
	UserData  []byte // cloud-config given to the guest as NoCloud user-data
	Hostname  string // local-hostname in meta-data; "imagebake" when empty
	MemoryMiB int    // 2048 when zero
	CPUs      int    // 2 when zero
	// LogDir keeps serial.log (the guest console) and qemu.log after
	// Destroy. When empty they live in the machine's temporary directory
	// and go with it.
	LogDir string
	// TempDir is where the machine's temporary directory (overlay, QMP
	// socket) is created; os.TempDir() when empty.
	TempDir string
	// BuildID is recorded in the temporary directory's marker (MarkerFile).
	BuildID string
	// Accel forces an accelerator; when empty KVM is used if it works.
	Accel Accel
	// StopTimeout bounds how long Stop waits for the guest to power off
	// before terminating QEMU; 3 minutes when zero.
	StopTimeout time.Duration
	// Netdev adds parts to the guest's "-netdev user,…" option (already
	// escaped for QEMU's option syntax), such as the platform stand-in's
	// network and guestfwd rules (platform.VM.NetdevOptions).
	Netdev []string
	// Disk, when set, is where the overlay is created instead of the
	// temporary directory, and Destroy keeps it: a runner VM that is
	// deallocated keeps its disk, as on Azure. It must not exist yet.
	Disk   string
	Logger *slog.Logger
}

// Machine is a running (or exited) QEMU guest. Destroy must always be called.
type Machine struct {
	log         *slog.Logger
	dir         string // temporary directory: overlay, QMP socket
	overlay     string
	qmpSocket   string
	serialLog   string
	qemuLog     string
	sshPort     int
	accel       Accel
	stopTimeout time.Duration
	seed        *Seed
	ownDisk     bool // overlay is MachineOptions.Disk: Destroy keeps it

	cmd *exec.Cmd
	// started is when the qemu process that runs the guest was started
	// (the last attempt's): where a boot-to-ready time begins.
	started time.Time
	done    chan struct{} // closed when qemu has exited
	waitErr error         // qemu's exit, valid once done is closed

	mu        sync.Mutex
	destroyed bool
}

// Captured describes a captured disk image.
type Captured struct {
	Path   string
	Size   int64
	SHA256 string
}

// Start creates an overlay on opts.Base, writes the seed and boots QEMU. It
// returns once QEMU is up (QMP answers), not once the guest is: use WaitSSH.
// On error everything Start created is already removed.
func Start(ctx context.Context, opts MachineOptions) (m *Machine, err error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Base.Disk == "" {
		return nil, errors.New("qemu machine: no base disk")
	}
	baseDisk, err := filepath.Abs(opts.Base.Disk)
	if err != nil {
		return nil, fmt.Errorf("qemu machine: base disk: %w", err)
	}
	if opts.MemoryMiB == 0 {
		opts.MemoryMiB = 2048
	}
	if opts.CPUs == 0 {
		opts.CPUs = 2
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 3 * time.Minute
	}
	format, err := imageFormat(ctx, baseDisk)
	if err != nil {
		return nil, fmt.Errorf("qemu machine: base disk %s: %w", baseDisk, err)
	}

	dir, err := os.MkdirTemp(opts.TempDir, TempDirPrefix)
	if err != nil {
		return nil, fmt.Errorf("qemu machine: %w", err)
	}
	// Marked at once: gc touches only directories imagebake marked.
	if err := markDir(dir, opts.BuildID); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("qemu machine: %w", err)
	}
	m = &Machine{
		log:         log,
		dir:         dir,
		overlay:     filepath.Join(dir, "overlay.qcow2"),
		qmpSocket:   filepath.Join(dir, "qmp.sock"),
		stopTimeout: opts.StopTimeout,
		done:        make(chan struct{}),
	}
	defer func() {
		if err != nil {
			_ = m.Destroy()
			m = nil
		}
	}()
	if opts.Disk != "" {
		disk, err := filepath.Abs(opts.Disk)
		if err != nil {
			return m, fmt.Errorf("qemu machine: disk: %w", err)
		}
		if _, err := os.Lstat(disk); err == nil {
			return m, fmt.Errorf("qemu machine: disk %s already exists", disk)
		}
		m.overlay, m.ownDisk = disk, true
	}
	logDir := opts.LogDir
	if logDir == "" {
		logDir = dir
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return m, fmt.Errorf("qemu machine: log dir: %w", err)
	}
	m.serialLog = filepath.Join(logDir, "serial.log")
	m.qemuLog = filepath.Join(logDir, "qemu.log")

	create := []string{"create", "-q", "-f", "qcow2", "-b", baseDisk, "-F", format, m.overlay}
	if opts.DiskSize != "" {
		create = append(create, opts.DiskSize)
	}
	if err := runCmd(ctx, "qemu-img", create...); err != nil {
		if m.ownDisk {
			os.Remove(m.overlay)
		}
		return m, fmt.Errorf("qemu machine: overlay: %w", err)
	}
	if m.ownDisk {
		// A kept disk holds the guest's host keys and whatever its jobs
		// wrote: the owner's only.
		if err := os.Chmod(m.overlay, 0o600); err != nil {
			os.Remove(m.overlay)
			return m, fmt.Errorf("qemu machine: disk: %w", err)
		}
	}

	// MkdirTemp made dir 0700: the seed (it holds the host private key)
	// and the overlay are the caller's alone.
	m.seed, err = WriteSeed(seedFile(dir), SeedConfig{UserData: opts.UserData, Hostname: opts.Hostname})
	if err != nil {
		return m, fmt.Errorf("qemu machine: %w", err)
	}

	m.accel = opts.Accel
	if m.accel == "" {
		m.accel = DetectAccel(log)
	}
	// Free-port selection races with other processes: if QEMU cannot bind
	// the forwarded port, pick another. If KVM fails despite the probe,
	// fall back to TCG once.
	for attempt := 1; ; attempt++ {
		m.sshPort, err = freePort()
		if err != nil {
			return m, fmt.Errorf("qemu machine: %w", err)
		}
		cfg := qemuConfig{
			Accel: m.accel, MemoryMiB: opts.MemoryMiB, CPUs: opts.CPUs, Disk: m.overlay,
			Kernel: opts.Base.Kernel, Initrd: opts.Base.Initrd, Append: opts.Base.Append,
			SeedDisk: m.seed.Path(), SSHPort: m.sshPort, Netdev: opts.Netdev,
			SerialLog: m.serialLog, QMPSocket: m.qmpSocket,
		}
		out, startErr := m.launch(ctx, qemuArgs(cfg))
		if startErr == nil {
			break
		}
		switch {
		case attempt < 4 && strings.Contains(out, "host forwarding"):
			log.Debug("qemu: ssh port taken, retrying", "port", m.sshPort)
		case attempt < 4 && m.accel == AccelKVM && strings.Contains(strings.ToLower(out), "kvm"):
			log.Warn("KVM failed in qemu, using TCG emulation (slow)", "reason", strings.TrimSpace(out))
			m.accel = AccelTCG
		default:
			return m, fmt.Errorf("qemu machine: %w", startErr)
		}
		m.done = make(chan struct{})
	}
	log.Info("qemu started", "accel", m.accel, "ssh", m.SSHAddr(), "seed", m.seed.Path(),
		"serial", m.serialLog, "pid", m.cmd.Process.Pid)
	return m, nil
}

// launch starts qemu and waits until its QMP monitor answers. On failure it
// returns what qemu wrote to its log during this attempt.
func (m *Machine) launch(ctx context.Context, args []string) (string, error) {
	logf, err := os.OpenFile(m.qemuLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	offset, _ := logf.Seek(0, io.SeekEnd)
	fmt.Fprintf(logf, "+ qemu-system-x86_64 %s\n", strings.Join(args, " "))

	// Not CommandContext: the machine outlives Start's ctx and is ended by
	// Stop or Destroy.
	cmd := exec.Command("qemu-system-x86_64", args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group: a Ctrl-C on imagebake's terminal does not reach
	// qemu directly (imagebake's cleanup stops it), and Destroy can kill the
	// whole group. Pdeathsig: if imagebake dies, qemu dies with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("qemu-system-x86_64: %w", err)
	}
	m.cmd, m.started = cmd, started
	done := m.done
	go func() {
		m.waitErr = cmd.Wait()
		close(done)
	}()

	readLog := func() string {
		b, _ := os.ReadFile(m.qemuLog)
		if int64(len(b)) > offset {
			return string(b[offset:])
		}
		return ""
	}
	deadline := time.NewTimer(60 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, qerr := qmpCommand(qctx, m.qmpSocket, "query-status")
		cancel()
		if qerr == nil {
			return "", nil
		}
		select {
		case <-done:
			out := readLog()
			return out, fmt.Errorf("qemu exited at start (%v): %s", m.waitErr, strings.TrimSpace(lastLines(out, 5)))
		case <-ctx.Done():
			m.kill()
			return readLog(), ctx.Err()
		case <-deadline.C:
			m.kill()
			return readLog(), fmt.Errorf("qemu did not answer on QMP within 60s: %v", qerr)
		case <-tick.C:
		}
	}
}

// SSHAddr is the host address forwarded to the guest's SSH port.
func (m *Machine) SSHAddr() string { return fmt.Sprintf("127.0.0.1:%d", m.sshPort) }

// Started is when QEMU was launched: the start of the VM's boot as the
// host sees it.
func (m *Machine) Started() time.Time { return m.started }

// Accel is the accelerator QEMU runs with.
func (m *Machine) Accel() Accel { return m.accel }

// Seed is the machine's NoCloud seed.
func (m *Machine) Seed() *Seed { return m.seed }

// PID is QEMU's process ID (0 before it started): what a record of a
// long-lived runner VM keeps to find its process again.
func (m *Machine) PID() int {
	if m.cmd == nil || m.cmd.Process == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Overlay is the disk the guest writes to (removed by Destroy).
func (m *Machine) Overlay() string { return m.overlay }

// SerialLog is the guest console log.
func (m *Machine) SerialLog() string { return m.serialLog }

// Exited is closed when QEMU has exited.
func (m *Machine) Exited() <-chan struct{} { return m.done }

// Wait waits for QEMU to exit, which with -no-reboot is when the guest
// powers off or reboots. It returns QEMU's exit error, if any.
func (m *Machine) Wait(ctx context.Context) error {
	select {
	case <-m.done:
		if m.waitErr != nil {
			return fmt.Errorf("qemu: %w", m.waitErr)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("qemu: waiting for power-off: %w", ctx.Err())
	}
}

// WaitSSH waits until the guest's SSH server sends its banner (a TCP
// connect alone proves nothing: QEMU's user network accepts connections on
// the forwarded port before the guest listens) and returns the banner.
func (m *Machine) WaitSSH(ctx context.Context) (string, error) {
	for {
		banner, err := sshBanner(ctx, m.SSHAddr())
		if err == nil {
			return banner, nil
		}
		select {
		case <-m.done:
			return "", fmt.Errorf("qemu exited before SSH answered (%v); console:\n%s", m.waitErr, lastLines(readFile(m.serialLog), 15))
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for SSH on %s: %w (last: %v)", m.SSHAddr(), ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// sshBanner connects to addr and reads the SSH identification line.
func sshBanner(ctx context.Context, addr string) (string, error) {
	d := net.Dialer{Timeout: 3 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("ssh banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-") {
		return "", fmt.Errorf("ssh banner: unexpected %q", line)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// Stop powers the guest off: an ACPI power button press via QMP, then
// SIGTERM to QEMU when the guest has not powered off within StopTimeout (or
// ctx ends first), then SIGKILL. It returns an error wrapping ErrForcedStop
// when it had to terminate QEMU.
func (m *Machine) Stop(ctx context.Context) error {
	select {
	case <-m.done:
		return nil
	default:
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err := qmpCommand(qctx, m.qmpSocket, "system_powerdown")
	cancel()
	if err != nil {
		select {
		case <-m.done: // powered off on its own meanwhile
			return nil
		default:
		}
		m.log.Warn("qemu: power button press failed", "err", err)
	} else {
		t := time.NewTimer(m.stopTimeout)
		defer t.Stop()
		select {
		case <-m.done:
			return nil
		case <-t.C:
		case <-ctx.Done():
		}
	}
	m.log.Warn("qemu: guest did not power off, terminating", "timeout", m.stopTimeout)
	m.signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(10 * time.Second):
		m.kill()
	}
	return fmt.Errorf("qemu: %w", ErrForcedStop)
}

// signal sends sig to QEMU's process group.
func (m *Machine) signal(sig syscall.Signal) {
	if m.cmd != nil && m.cmd.Process != nil {
		_ = syscall.Kill(-m.cmd.Process.Pid, sig)
	}
}

// kill SIGKILLs QEMU's process group and waits (bounded) for it to be reaped.
func (m *Machine) kill() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	select {
	case <-m.done:
		return
	default:
	}
	m.signal(syscall.SIGKILL)
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
		m.log.Error("qemu: not reaped after SIGKILL", "pid", m.cmd.Process.Pid)
	}
}

// Capture flattens and compresses the overlay (with its base) into dst.
// QEMU must have exited (Wait or Stop first) so the disk is consistent. dst
// appears atomically: the image is written to a temporary file beside it.
func (m *Machine) Capture(ctx context.Context, dst string) (Captured, error) {
	select {
	case <-m.done:
	default:
		return Captured{}, errors.New("capture: qemu is still running; Stop or Wait first")
	}
	m.mu.Lock()
	destroyed := m.destroyed
	m.mu.Unlock()
	if destroyed {
		return Captured{}, errors.New("capture: machine already destroyed")
	}
	return convertImage(ctx, m.overlay, dst)
}

// convertImage runs `qemu-img convert -O qcow2 -c src` into dst via a
// temporary file and returns the result's size and sha256.
func convertImage(ctx context.Context, src, dst string) (Captured, error) {
	dst, err := filepath.Abs(dst)
	if err != nil {
		return Captured{}, fmt.Errorf("capture %s: %w", dst, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".capture-*")
	if err != nil {
		return Captured{}, fmt.Errorf("capture %s: %w", dst, err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	keep := false
	defer func() {
		if !keep {
			os.Remove(tmpName)
		}
	}()
	if err := runCmd(ctx, "qemu-img", "convert", "-O", "qcow2", "-c", src, tmpName); err != nil {
		return Captured{}, fmt.Errorf("capture %s: %w", dst, err)
	}
	f, err := os.Open(tmpName)
	if err != nil {
		return Captured{}, fmt.Errorf("capture %s: %w", dst, err)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return Captured{}, fmt.Errorf("capture %s: %w", dst, err)
	}
	// The disk holds the guest's SSH host private keys: the owner's only,
	// like a copy in the local gallery.
	if err := os.Chmod(tmpName, 0o600); err != nil {
		return Captured{}, fmt.Errorf("capture %s: %w", dst, err)
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return Captured{}, fmt.Errorf("capture %s: %w", dst, err)
	}
	keep = true
	return Captured{Path: dst, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// Destroy kills QEMU and removes the overlay, the seed and the temporary
// directory. Logs in MachineOptions.LogDir and a MachineOptions.Disk are
// kept (remove that disk with os.Remove once QEMU has exited). It needs no
// context so that it can run from any cleanup, and it is idempotent.
func (m *Machine) Destroy() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.destroyed {
		return nil
	}
	m.destroyed = true
	m.kill()
	if err := os.RemoveAll(m.dir); err != nil {
		return fmt.Errorf("qemu machine destroy: %w", err)
	}
	return nil
}

// imageFormat asks qemu-img for a disk image's format, so a downloaded raw
// image and a qcow2 both work as a backing file.
func imageFormat(ctx context.Context, path string) (string, error) {
	cmd := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("qemu-img info: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("qemu-img info: %w", err)
	}
	var info struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format == "" {
		return "", fmt.Errorf("qemu-img info: unexpected output %q", out)
	}
	return info.Format, nil
}

// runCmd runs a short command, returning its output in the error.
func runCmd(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
