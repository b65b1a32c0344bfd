//go:build unix

package local

import (
	"errors"
	"os"
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
