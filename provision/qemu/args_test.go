package qemu

import (
	"slices"
	"strings"
	"testing"
)

func TestQemuArgs(t *testing.T) {
	base := qemuConfig{
		MemoryMiB: 2048, CPUs: 2, Disk: "/tmp/m/overlay.qcow2",
		SeedDisk: "/tmp/m/seed.iso", SSHPort: 2222,
		SerialLog: "/logs/serial.log", QMPSocket: "/tmp/m/qmp.sock",
	}
	withKernel := base
	withKernel.Kernel, withKernel.Initrd, withKernel.Append = "/b/vmlinuz", "/b/initrd.img", BaseAppend
	platformNet := base
	platformNet.Netdev = []string{"net=169.254.169.0/24", "guestfwd=tcp:169.254.169.254:80-cmd:'relay' '127.0.0.1:5'"}
	commas := base
	commas.Disk, commas.SerialLog = "/tmp/a,b/overlay.qcow2", "/logs/x,y.log"

	tests := []struct {
		name   string
		accel  Accel
		cfg    qemuConfig
		want   [][]string // option/value pairs that must appear adjacent
		absent []string
	}{
		{"tcg with kernel", AccelTCG, withKernel, [][]string{
			{"-machine", "q35,accel=tcg"}, {"-cpu", "max"},
			{"-m", "2048"}, {"-smp", "2"},
			{"-kernel", "/b/vmlinuz"}, {"-initrd", "/b/initrd.img"},
			{"-append", "root=/dev/vda rw console=ttyS0"},
			{"-drive", "file=/tmp/m/seed.iso,if=virtio,format=raw,readonly=on"},
			{"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22"},
			{"-drive", "file=/tmp/m/overlay.qcow2,if=virtio,format=qcow2,discard=unmap"},
			{"-chardev", "file,id=serial0,path=/logs/serial.log"},
			{"-qmp", "unix:/tmp/m/qmp.sock,server=on,wait=off"},
		}, []string{"-smbios", "accel=kvm", "ds=", "10.0.2.2"}},
		{"kvm with kernel", AccelKVM, withKernel, [][]string{
			{"-machine", "q35,accel=kvm"}, {"-cpu", "host"},
		}, []string{"accel=tcg", "-smbios"}},
		{"bootable disk gets the seed disk too", AccelTCG, base, [][]string{
			{"-drive", "file=/tmp/m/seed.iso,if=virtio,format=raw,readonly=on"},
		}, []string{"-kernel", "-append", "-initrd", "-smbios", "ds="}},
		{"platform network parts follow the ssh forward", AccelTCG, platformNet, [][]string{
			{"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,net=169.254.169.0/24,guestfwd=tcp:169.254.169.254:80-cmd:'relay' '127.0.0.1:5'"},
		}, nil},
		{"commas in paths are doubled", AccelTCG, commas, [][]string{
			{"-drive", "file=/tmp/a,,b/overlay.qcow2,if=virtio,format=qcow2,discard=unmap"},
			{"-chardev", "file,id=serial0,path=/logs/x,,y.log"},
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Accel = tc.accel
			args := qemuArgs(cfg)
			for _, pair := range tc.want {
				i := slices.Index(args, pair[0])
				found := false
				for ; i >= 0 && i+1 < len(args); i++ {
					if args[i] == pair[0] && args[i+1] == pair[1] {
						found = true
						break
					}
				}
				if !found {
					t.Errorf("missing %s %q in %q", pair[0], pair[1], args)
				}
			}
			joined := strings.Join(args, " ")
			for _, a := range tc.absent {
				if strings.Contains(joined, a) {
					t.Errorf("unexpected %q in %q", a, args)
				}
			}
			for _, must := range []string{"-no-reboot", "-nodefaults"} {
				if !slices.Contains(args, must) {
					t.Errorf("missing %s", must)
				}
			}
		})
	}
}

// The seed disk follows the root disk, so the root stays /dev/vda.
func TestQemuArgsSeedAfterRoot(t *testing.T) {
	args := qemuArgs(qemuConfig{Disk: "/m/overlay.qcow2", SeedDisk: "/m/seed.iso", Kernel: "/b/vmlinuz", Append: BaseAppend})
	root, seed := -1, -1
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "file=/m/overlay.qcow2"):
			root = i
		case strings.HasPrefix(a, "file=/m/seed.iso"):
			seed = i
		}
	}
	if root < 0 || seed < 0 || seed < root {
		t.Errorf("root drive at %d, seed drive at %d in %q; want the seed after the root", root, seed, args)
	}
}
