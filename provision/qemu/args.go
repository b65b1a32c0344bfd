package qemu

import (
	"fmt"
	"strconv"
	"strings"
)

// qemuConfig is everything qemuArgs needs; kept apart from Machine so the
// command line can be tested without starting anything.
type qemuConfig struct {
	Accel     Accel
	MemoryMiB int
	CPUs      int
	Disk      string // the overlay the guest writes to
	Kernel    string // empty: boot from the disk's own boot loader
	Initrd    string
	Append    string
	SeedDisk  string // the cidata ISO image; empty: no seed
	SSHPort   int    // host loopback port forwarded to the guest's port 22
	SerialLog string
	QMPSocket string
	Netdev    []string // extra -netdev user parts, already escaped
}

// optEscape escapes a value for QEMU's comma-separated option syntax, in
// which a literal comma is written twice.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// qemuArgs builds the qemu-system-x86_64 command line. Nothing here passes
// through a shell: values only need QEMU's own comma escaping.
func qemuArgs(c qemuConfig) []string {
	args := []string{"-nodefaults", "-display", "none", "-no-reboot", "-no-user-config"}
	switch c.Accel {
	case AccelKVM:
		args = append(args, "-machine", "q35,accel=kvm", "-cpu", "host")
	default:
		args = append(args, "-machine", "q35,accel=tcg", "-cpu", "max")
	}
	args = append(args,
		"-m", strconv.Itoa(c.MemoryMiB),
		"-smp", strconv.Itoa(c.CPUs),
		"-drive", "file="+optEscape(c.Disk)+",if=virtio,format=qcow2,discard=unmap",
		"-netdev", strings.Join(append([]string{"user", "id=net0", fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-:22", c.SSHPort)}, c.Netdev...), ","),
		"-device", "virtio-net-pci,netdev=net0",
		// Entropy for sshd's and cloud-init's key generation early in boot.
		"-object", "rng-random,id=rng0,filename=/dev/urandom",
		"-device", "virtio-rng-pci,rng=rng0",
		"-chardev", "file,id=serial0,path="+optEscape(c.SerialLog),
		"-serial", "chardev:serial0",
		"-qmp", "unix:"+optEscape(c.QMPSocket)+",server=on,wait=off",
	)
	if c.SeedDisk != "" {
		// After the root disk, so the root stays /dev/vda (BaseAppend).
		// NoCloud finds the seed by its label; nothing about it goes on
		// the kernel command line, which every local user can read in
		// QEMU's argv.
		args = append(args, "-drive", "file="+optEscape(c.SeedDisk)+",if=virtio,format=raw,readonly=on")
	}
	if c.Kernel != "" {
		args = append(args, "-kernel", c.Kernel)
		if c.Initrd != "" {
			args = append(args, "-initrd", c.Initrd)
		}
		args = append(args, "-append", c.Append)
	}
	return args
}
