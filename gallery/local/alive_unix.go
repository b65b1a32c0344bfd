//go:build unix

package local

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// openNoFollow makes an open fail on a symbolic link.
const openNoFollow = syscall.O_NOFOLLOW

// processAlive reports whether pid is a live process on this host.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	// EPERM: it exists but belongs to someone else.
	return err == nil || errors.Is(err, syscall.EPERM)
}

// procStart is field 22 (starttime) of /proc/PID/stat, or "" where there
// is no /proc: with the PID it tells a process from a later one that
// reuses the PID. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func procStart(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return ""
	}
	return f[19]
}
