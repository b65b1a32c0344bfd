package proc

import (
	"os"
	"os/exec"
	"testing"
)

func TestStart(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc here")
	}
	self := Start(os.Getpid())
	if self == "" || self != Start(os.Getpid()) {
		t.Fatalf("Start(self) = %q, not stable", self)
	}
	// A command name with spaces and parentheses must not shift the fields.
	cmd := exec.Command("sh", "-c", "exec -a 'x) (y z' sleep 5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if s := Start(cmd.Process.Pid); s == "" || s == "0" {
		t.Errorf("Start(child) = %q", s)
	}
	if s := Start(1 << 30); s != "" {
		t.Errorf("Start(no such process) = %q, want empty", s)
	}
}
