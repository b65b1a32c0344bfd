// Package proc reads what /proc says about a process, for the markers that
// tell imagebake's own live work (a version being created, a build's QEMU
// folder) from what a dead process left behind.
package proc

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Start returns field 22 (starttime) of /proc/PID/stat, or "" when the
// process does not exist or there is no /proc: with the PID it tells a
// process from a later one that reuses the PID. The command name (field 2)
// may hold spaces and parentheses, so fields are counted after its last ')'.
func Start(pid int) string {
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
