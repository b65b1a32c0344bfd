package qemu

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
)

// Accel is a QEMU accelerator.
type Accel string

const (
	AccelKVM Accel = "kvm"
	AccelTCG Accel = "tcg"
)

// KVM ioctls from linux/kvm.h (_IO(KVMIO, n) with KVMIO = 0xAE).
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	kvmCreateVCPU    = 0xAE41
	kvmAPIVersion    = 12
)

// ProbeKVM reports whether KVM can usefully run a guest here: the CPU must
// advertise hardware virtualization (vmx or svm in /proc/cpuinfo), and
// /dev/kvm must create a VM and a vCPU.
//
// The ioctls alone are not enough. On a Firecracker guest without vmx,
// /dev/kvm created VMs and even ran a small long-mode guest to HLT, yet a
// Linux kernel took 90 s to get through early boot, far slower than TCG.
func ProbeKVM() error {
	return probeKVM("/dev/kvm", "/proc/cpuinfo")
}

func probeKVM(dev, cpuinfo string) error {
	if err := hasVirtFlag(cpuinfo); err != nil {
		return err
	}
	return probeKVMDevice(dev)
}

// hasVirtFlag checks the CPU flags for VT-x (vmx) or AMD-V (svm).
func hasVirtFlag(cpuinfo string) error {
	b, err := os.ReadFile(cpuinfo)
	if err != nil {
		return fmt.Errorf("kvm: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, flags, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "flags" {
			continue
		}
		for _, f := range strings.Fields(flags) {
			if f == "vmx" || f == "svm" {
				return nil
			}
		}
		return errors.New("kvm: CPU flags have neither vmx nor svm (no hardware virtualization)")
	}
	return fmt.Errorf("kvm: no CPU flags in %s", cpuinfo)
}

// probeKVMDevice opens the KVM device and creates a VM and a vCPU: the
// device node existing is not enough (permissions, module without
// hardware support).
func probeKVMDevice(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("kvm: %w", err)
	}
	defer f.Close()
	v, err := ioctl(f.Fd(), kvmGetAPIVersion, 0)
	if err != nil {
		return fmt.Errorf("kvm %s: KVM_GET_API_VERSION: %w", path, err)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("kvm %s: API version %d, want %d", path, v, kvmAPIVersion)
	}
	vm, err := ioctl(f.Fd(), kvmCreateVM, 0)
	if err != nil {
		return fmt.Errorf("kvm %s: KVM_CREATE_VM: %w", path, err)
	}
	defer syscall.Close(int(vm))
	vcpu, err := ioctl(vm, kvmCreateVCPU, 0)
	if err != nil {
		return fmt.Errorf("kvm %s: KVM_CREATE_VCPU: %w", path, err)
	}
	syscall.Close(int(vcpu))
	return nil
}

func ioctl(fd, req, arg uintptr) (uintptr, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, req, arg)
	if errno != 0 {
		return 0, errno
	}
	return r, nil
}

// DetectAccel picks KVM when /dev/kvm can run a guest and TCG otherwise,
// with one warning line, since TCG is several times slower.
func DetectAccel(log *slog.Logger) Accel {
	if err := ProbeKVM(); err != nil {
		if log != nil {
			log.Warn("KVM unusable, using TCG emulation (slow)", "reason", err)
		}
		return AccelTCG
	}
	return AccelKVM
}
