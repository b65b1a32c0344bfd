package gc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/imagebake/imagebake/provision/qemu"
)

// DirPrefix names the folders provision/qemu creates for a build VM
// (overlay, seed, QMP socket, serial log).
const DirPrefix = qemu.TempDirPrefix

// Process is a running process as gc sees it.
type Process struct {
	PID     int
	Args    []string
	Started time.Time
	// UID is the process's user when its real and effective UIDs agree,
	// else -1.
	UID int
	// Exe is where /proc/PID/exe points; empty when it cannot be read
	// (another user's process, for a caller who is not root).
	Exe string
}

// LocalOptions configure local gc.
type LocalOptions struct {
	Options
	// TempDir is where build folders are; default os.TempDir().
	TempDir string
	// Processes lists running processes; default: read /proc.
	Processes func() ([]Process, error)
	// Kill stops a process; default SIGTERM, then SIGKILL after KillWait.
	Kill func(ctx context.Context, pid int) error
	// QEMU is the real QEMU executable, symlinks resolved; default:
	// qemu-system-x86_64 on PATH. Only processes running it are killed.
	QEMU string
}

// Local plans (and with opts.Delete, carries out) the removal of build
// folders TempDir/imagebake-qemu-* older than the TTL whose QEMU is gone,
// and the killing of QEMU processes older than the TTL whose command line
// names such a folder. A folder whose QEMU is killed is removed too.
//
// It acts only on what is imagebake's and the caller's: a real directory
// (not a symlink) owned by the caller's UID that carries the marker
// provision/qemu writes when it creates the folder, and whose creating
// imagebake process is gone; and processes of the caller's UID whose
// /proc/PID/exe is the real QEMU executable (argv[0] is whatever the
// process says it is) and whose arguments name such a folder. Any other
// process naming the folder keeps it, and is never killed.
func Local(ctx context.Context, opts LocalOptions) ([]Item, error) {
	now := opts.now()
	tmp := opts.TempDir
	if tmp == "" {
		tmp = os.TempDir()
	}
	procsFn := opts.Processes
	if procsFn == nil {
		procsFn = func() ([]Process, error) { return ProcProcesses("/proc") }
	}
	kill := opts.Kill
	if kill == nil {
		kill = terminate
	}
	qemuExe := opts.QEMU
	if qemuExe == "" {
		qemuExe = defaultQEMU()
	}
	uid := os.Getuid()
	matches, err := filepath.Glob(filepath.Join(tmp, DirPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("build folders in %s: %w", tmp, err)
	}
	procs, err := procsFn()
	if err != nil {
		return nil, fmt.Errorf("process list: %w", err)
	}
	ours := func(p Process) bool { return p.UID == uid && isQEMU(p, qemuExe) }

	var items []Item
	for _, dir := range matches {
		fi, err := os.Lstat(dir)
		// Symlinks and files are not ours to follow or remove.
		if err != nil || !fi.IsDir() {
			continue
		}
		if owner, ok := ownerUID(fi); !ok || owner != uid {
			continue // another user's, whatever its name
		}
		mk, err := qemu.ReadMarker(dir)
		if err != nil {
			continue // not made by imagebake
		}
		last := lastActivity(dir, fi.ModTime())
		old := now.Sub(last) > opts.TTL
		var users []Process
		var others []string
		for _, p := range procs {
			if !namesDir(p.Args, dir) {
				continue
			}
			if ours(p) {
				users = append(users, p)
			} else {
				others = append(others, strconv.Itoa(p.PID))
			}
		}
		creatorAlive := mk.CreatorAlive()
		allKilled := true
		for _, p := range users {
			pit := Item{Kind: "qemu-process", Name: strconv.Itoa(p.PID), Created: p.Started, Age: age(now.Sub(p.Started)), Action: ActionKeep}
			switch {
			case creatorAlive:
				allKilled = false
				pit.Reason = fmt.Sprintf("QEMU of %s, whose imagebake (pid %d) is still running", dir, mk.PID)
			case !p.Started.IsZero() && now.Sub(p.Started) > opts.TTL:
				pit.Action = ActionKill
				pit.Reason = fmt.Sprintf("QEMU of %s has run %s, more than the TTL of %s", dir, pit.Age, opts.TTL)
			default:
				allKilled = false
				pit.Reason = fmt.Sprintf("QEMU of %s is younger than the TTL of %s (a build may be running)", dir, opts.TTL)
			}
			items = append(items, pit)
		}
		dit := Item{Kind: "temp-dir", Name: dir, Created: last, Age: age(now.Sub(last)), Action: ActionKeep}
		switch {
		case creatorAlive:
			dit.Reason = fmt.Sprintf("its imagebake (pid %d) is still running", mk.PID)
		case !old:
			dit.Reason = fmt.Sprintf("last written %s ago, within the TTL of %s", dit.Age, opts.TTL)
		case len(others) > 0:
			dit.Reason = "in use by process " + strings.Join(others, ", ") + ", which is not a QEMU of yours"
		case len(users) > 0 && !allKilled:
			dit.Reason = "its QEMU is still running"
		case len(users) > 0:
			dit.Action = ActionDelete
			dit.Reason = fmt.Sprintf("last written %s ago, more than the TTL of %s; its QEMU is killed first", dit.Age, opts.TTL)
		default:
			dit.Action = ActionDelete
			dit.Reason = fmt.Sprintf("last written %s ago, more than the TTL of %s, and no QEMU uses it", dit.Age, opts.TTL)
		}
		items = append(items, dit)
	}
	if !opts.Delete {
		return items, nil
	}
	// Kill first, so the folders they use can go.
	for i := range items {
		it := &items[i]
		if it.Kind != "qemu-process" || it.Action != ActionKill {
			continue
		}
		pid, _ := strconv.Atoi(it.Name)
		if err := kill(ctx, pid); err != nil {
			it.Error = fmt.Sprintf("qemu process %d: %v", pid, err)
			continue
		}
		it.Done = true
	}
	for i := range items {
		it := &items[i]
		if it.Kind != "temp-dir" || it.Action != ActionDelete {
			continue
		}
		if blocker := failedKill(items, procs, it.Name, ours); blocker != "" {
			it.Error = "not removed: its QEMU (pid " + blocker + ") could not be killed"
			continue
		}
		if err := os.RemoveAll(it.Name); err != nil {
			it.Error = fmt.Sprintf("build folder %s: %v", it.Name, err)
			continue
		}
		it.Done = true
	}
	return items, nil
}

// defaultQEMU is the QEMU provision/qemu runs: qemu-system-x86_64 on PATH,
// with symlinks resolved as /proc/PID/exe shows them.
func defaultQEMU() string {
	p, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		return ""
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	return p
}

func ownerUID(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// failedKill returns the PID of a QEMU using dir that was to be killed
// but was not.
func failedKill(items []Item, procs []Process, dir string, ours func(Process) bool) string {
	for _, p := range procs {
		if !ours(p) || !namesDir(p.Args, dir) {
			continue
		}
		for _, it := range items {
			if it.Kind == "qemu-process" && it.Name == strconv.Itoa(p.PID) && !it.Done {
				return it.Name
			}
		}
	}
	return ""
}

// lastActivity is the newest modification time of dir and its direct
// entries: a running build keeps writing its serial log.
func lastActivity(dir string, dirTime time.Time) time.Time {
	last := dirTime
	entries, err := os.ReadDir(dir)
	if err != nil {
		return last
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().After(last) {
			last = fi.ModTime()
		}
	}
	return last
}

// isQEMU reports whether p runs the QEMU executable exe. A binary
// replaced by a package upgrade shows as "PATH (deleted)".
func isQEMU(p Process, exe string) bool {
	return exe != "" && strings.TrimSuffix(p.Exe, " (deleted)") == exe
}

// namesDir reports whether an argument is dir or a path inside it (QEMU's
// options embed paths, e.g. file=DIR/overlay.qcow2,if=virtio).
func namesDir(args []string, dir string) bool {
	clean := filepath.Clean(dir)
	for _, a := range args[1:] {
		i := strings.Index(a, clean)
		if i < 0 {
			continue
		}
		rest := a[i+len(clean):]
		if rest == "" || rest[0] == '/' || rest[0] == ',' {
			return true
		}
	}
	return false
}

// ProcProcesses reads the processes in a /proc filesystem.
func ProcProcesses(proc string) ([]Process, error) {
	entries, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	boot, err := bootTime(proc)
	if err != nil {
		return nil, err
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue // gone, or a kernel thread
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		p := Process{PID: pid, Args: args, UID: procUID(filepath.Join(proc, e.Name(), "status"))}
		p.Exe, _ = os.Readlink(filepath.Join(proc, e.Name(), "exe"))
		if stat, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat")); err == nil {
			p.Started = startTime(string(stat), boot)
		}
		out = append(out, p)
	}
	return out, nil
}

// procUID reads the real and effective UIDs from /proc/PID/status; -1
// when unreadable or when they differ.
func procUID(status string) int {
	b, err := os.ReadFile(status)
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) < 2 || f[0] != f[1] {
			return -1
		}
		uid, err := strconv.Atoi(f[0])
		if err != nil {
			return -1
		}
		return uid
	}
	return -1
}

// clockTicks is USER_HZ, 100 on every Linux architecture Go supports.
const clockTicks = 100

func bootTime(proc string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(proc, "stat"))
	if err != nil {
		return time.Time{}, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("%s/stat btime: %w", proc, err)
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, errors.New(proc + "/stat: no btime")
}

// startTime reads field 22 (starttime, in clock ticks since boot) of
// /proc/PID/stat. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func startTime(stat string, boot time.Time) time.Time {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return time.Time{}
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return time.Time{}
	}
	return boot.Add(time.Duration(ticks) * time.Second / clockTicks)
}

// killWait is how long a QEMU gets to exit after SIGTERM.
const killWait = 10 * time.Second

func terminate(ctx context.Context, pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return err
	}
	deadline := time.Now().Add(killWait)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return nil
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
