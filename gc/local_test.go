package gc

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/imagebake/imagebake/internal/proc"
	"github.com/imagebake/imagebake/provision/qemu"
)

// fakeQEMU is the QEMU executable tests with a scripted process list claim.
const fakeQEMU = "/usr/bin/qemu-system-x86_64"

// nobody is the UID of another user on Debian.
const nobody = 65534

// writeMarker writes a machine marker as provision/qemu does, for creator
// pid with start time pidStart.
func writeMarker(t *testing.T, dir string, uid, pid int, pidStart string) {
	t.Helper()
	host, _ := os.Hostname()
	b, err := json.Marshal(qemu.Marker{PID: pid, PIDStart: pidStart, UID: uid, BuildID: "b1", Host: host, Created: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, qemu.MarkerFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// markDead marks dir as made by a build whose imagebake has exited (this
// PID, but another start time).
func markDead(t *testing.T, dir string) {
	t.Helper()
	writeMarker(t, dir, os.Getuid(), os.Getpid(), "1")
}

func mkdir(t *testing.T, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startProc starts a process and ends it with the test.
func startProc(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Reaped at once, so a killed child does not linger as a zombie.
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return cmd.Process.Pid
}

func alive(pid int) bool {
	// A killed child stays a zombie until reaped: look at its state.
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] != 'Z'
		}
	}
	return true
}

// issue 12 #2: gc acts only on imagebake's own marked folders of the
// caller's UID, and kills only the caller's real QEMU processes.
func TestGCLocalOnlyWhatIsOurs(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to make another user's folder and process")
	}
	qemuBin := defaultQEMU()
	if qemuBin == "" {
		t.Skip("qemu-system-x86_64 not installed")
	}
	tail, err := exec.LookPath("tail")
	if err != nil {
		t.Skip("no tail")
	}
	tmp := t.TempDir()
	if err := os.Chmod(tmp, 0o755); err != nil { // nobody's QEMU must reach its folder
		t.Fatal(err)
	}
	ours := mkdir(t, tmp, "imagebake-qemu-ours")        // our QEMU: killed, folder removed
	idle := mkdir(t, tmp, "imagebake-qemu-idle")        // no process: removed
	byNobody := mkdir(t, tmp, "imagebake-qemu-nobodyq") // nobody's real QEMU names it
	byFake := mkdir(t, tmp, "imagebake-qemu-fake")      // argv[0] says qemu-system-, exe is tail
	foreign := mkdir(t, tmp, "imagebake-qemu-foreign")  // owned by nobody
	unmarked := mkdir(t, tmp, "imagebake-qemu-plain")   // not made by imagebake
	live := mkdir(t, tmp, "imagebake-qemu-live")        // its imagebake still runs
	symMarker := mkdir(t, tmp, "imagebake-qemu-symlink")
	for _, d := range []string{ours, idle, byNobody, byFake} {
		markDead(t, d)
	}
	writeMarker(t, foreign, nobody, os.Getpid(), "1")
	for _, p := range []string{foreign, filepath.Join(foreign, qemu.MarkerFile)} {
		if err := os.Chown(p, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	writeMarker(t, live, os.Getuid(), os.Getpid(), proc.Start(os.Getpid()))
	// A marker that is a symlink to a good marker elsewhere does not count.
	markDead(t, symMarker)
	if err := os.Rename(filepath.Join(symMarker, qemu.MarkerFile), filepath.Join(tmp, "elsewhere.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(tmp, "elsewhere.json"), filepath.Join(symMarker, qemu.MarkerFile)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(byNobody, 0o777); err != nil {
		t.Fatal(err)
	}

	qemuArgs := func(dir string) []string {
		return []string{"-machine", "none", "-nodefaults", "-display", "none", "-S", "-name", "guest,process=" + dir + "/x"}
	}
	ourQEMU := startProc(t, exec.Command(qemuBin, qemuArgs(ours)...))
	nobodyCmd := exec.Command(qemuBin, qemuArgs(byNobody)...)
	nobodyCmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	nobodyQEMU := startProc(t, nobodyCmd)
	if err := os.WriteFile(filepath.Join(byFake, "serial.log"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	fake := startProc(t, &exec.Cmd{Path: tail, Args: []string{"qemu-system-x86_64", "-f", byFake + "/serial.log"}})
	liveQEMU := startProc(t, exec.Command(qemuBin, qemuArgs(live)...))
	time.Sleep(300 * time.Millisecond) // let exec happen, so /proc shows the programs
	for _, pid := range []int{ourQEMU, nobodyQEMU, fake, liveQEMU} {
		if !alive(pid) {
			t.Fatalf("test process %d did not start", pid)
		}
	}

	// Everything is older than the TTL.
	opts := LocalOptions{Options: Options{TTL: time.Hour, Now: time.Now().Add(2 * time.Hour), Delete: true}, TempDir: tmp}
	items, err := Local(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Item{}
	for _, it := range items {
		got[it.Name] = it
	}
	t.Logf("items: %+v", items)
	want := map[string]string{
		ours: ActionDelete, idle: ActionDelete, byNobody: ActionKeep, byFake: ActionKeep, live: ActionKeep,
		strconv.Itoa(ourQEMU): ActionKill, strconv.Itoa(liveQEMU): ActionKeep,
	}
	for name, action := range want {
		if got[name].Action != action {
			t.Errorf("%s: action %q (%s), want %q", name, got[name].Action, got[name].Reason, action)
		}
	}
	for _, never := range []string{foreign, unmarked, symMarker, strconv.Itoa(nobodyQEMU), strconv.Itoa(fake)} {
		if it, ok := got[never]; ok {
			t.Errorf("gc considered %s: %+v", never, it)
		}
	}
	if Failed(items) != 0 {
		t.Errorf("failures: %+v", items)
	}
	if alive(ourQEMU) {
		t.Error("our old QEMU was not killed")
	}
	for _, pid := range []int{nobodyQEMU, fake, liveQEMU} {
		if !alive(pid) {
			t.Errorf("process %d was killed", pid)
		}
	}
	for _, gone := range []string{ours, idle} {
		if _, err := os.Lstat(gone); !os.IsNotExist(err) {
			t.Errorf("%s not removed (%v)", gone, err)
		}
	}
	for _, kept := range []string{byNobody, byFake, foreign, unmarked, live, symMarker, filepath.Join(tmp, "elsewhere.json")} {
		if _, err := os.Lstat(kept); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}
}

func TestProcUID(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc")
	}
	if got := procUID("/proc/self/status"); got != os.Getuid() {
		t.Errorf("procUID(self) = %d, want %d", got, os.Getuid())
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		status string
		want   int
	}{
		{"Name:\tx\nUid:\t1000\t1000\t1000\t1000\n", 1000},
		{"Uid:\t1000\t0\t0\t0\n", -1}, // setuid: real and effective differ
		{"Name:\tx\n", -1},
	} {
		p := filepath.Join(dir, "status")
		if err := os.WriteFile(p, []byte(tc.status), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := procUID(p); got != tc.want {
			t.Errorf("procUID(%q) = %d, want %d", tc.status, got, tc.want)
		}
	}
}
