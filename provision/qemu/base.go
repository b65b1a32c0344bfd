// Package qemu is imagebake's local build target: it builds or downloads a
// base image, boots it under QEMU with a NoCloud seed served over HTTP, and
// captures the resulting disk.
package qemu

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"
)

// baseFormatVersion changes whenever the way a base is built changes in a
// way the package list does not show (hooks, mkfs options, file layout), so
// that an old cached base is not reused. (The customize hook is part of the
// key too; 2 marks the base that runs one network manager.)
const baseFormatVersion = 2

// baseDiskSize is the size of the root filesystem; the build VM's overlay may
// grow it and cloud-init's resizefs then grows the filesystem.
const baseDiskSize = "3G"

// BaseAppend is the kernel command line every Debian base needs; the seed
// location is appended per boot.
const BaseAppend = "root=/dev/vda rw console=ttyS0"

// Base is a bootable base image. Kernel, Initrd and Append are empty for a
// disk that boots by itself (a cloud image with its own boot loader).
type Base struct {
	Disk   string // qcow2 image, never written to (the build VM uses an overlay)
	Kernel string
	Initrd string
	Append string
}

// BuildOptions configures BuildBase.
type BuildOptions struct {
	CacheDir string // the base is built into and reused from here
	Suite    string // Debian suite, e.g. "bookworm"
	Logger   *slog.Logger
}

// basePackages is what a Debian base needs for cloud-init to provision it
// from a NoCloud seed and to be reached over SSH. e2fsprogs lets cc_resizefs
// work and locales lets cc_locale work; without either cloud-init ends in
// "error" (see FACTS.md).
func basePackages() []string {
	return []string{
		"linux-image-cloud-amd64", "cloud-init", "openssh-server", "sudo",
		"systemd-sysv", "ifupdown", "isc-dhcp-client", "netbase", "iproute2",
		"e2fsprogs", "locales",
		// systemd-logind needs D-Bus; without logind nothing acts on the
		// ACPI power button and Stop's graceful power-off is ignored.
		"dbus",
	}
}

// baseCustomizeHook runs inside mmdebstrap with the root directory as $1.
// It is a constant: nothing user-provided reaches this shell.
const baseCustomizeHook = `set -eu
echo 'en_US.UTF-8 UTF-8' > "$1/etc/locale.gen"
chroot "$1" locale-gen
echo 'LANG=en_US.UTF-8' > "$1/etc/default/locale"
echo 'LABEL=rootfs / ext4 defaults,errors=remount-ro 0 1' > "$1/etc/fstab"
echo 'localhost' > "$1/etc/hostname"
# cloud-init writes the NIC's DHCP configuration to interfaces.d from its
# fallback network config; ifupdown must read that directory.
printf 'auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n' > "$1/etc/network/interfaces"
mkdir -p "$1/etc/network/interfaces.d" "$1/etc/cloud/cloud.cfg.d"
# Only NoCloud (seed from the kernel command line or SMBIOS) is ever used
# locally; probing cloud metadata services would only cost boot time.
printf 'datasource_list: [ NoCloud, None ]\n' > "$1/etc/cloud/cloud.cfg.d/90-imagebake-datasource.cfg"
# Map the hostname in /etc/hosts, or sudo warns "unable to resolve host".
printf 'manage_etc_hosts: localhost\n' > "$1/etc/cloud/cloud.cfg.d/90-imagebake-hosts.cfg"
# A fresh machine-id per instance.
: > "$1/etc/machine-id"
# "cloud-init clean --machine-id" leaves "uninitialized" in /etc/machine-id,
# which makes the image's next boot a systemd first boot; Debian's
# systemd-firstboot then waits at the console for a locale, a time zone and
# a root password, and the boot never finishes. cloud-init configures those.
ln -sf /dev/null "$1/etc/systemd/system/systemd-firstboot.service"
rm -f "$1/var/lib/dbus/machine-id"
` + baseNetworkHook

// baseNetworkHook is the part of baseCustomizeHook that leaves the base
// one network manager. It is separate so that a test can run it.
//
// Why ifupdown and not networkd: cloud-init 22.4 on Debian picks its eni
// renderer and brings the NIC up through networking.service, which the
// base already needs (FACTS.md); networking.service (and
// ifupdown-wait-online.service, once presets have enabled it) back
// network-online.target. Switching to networkd instead would need a
// .network file for en*/eth* and cloud-init's renderer choice to follow
// it. The base as mmdebstrap builds it does not enable
// networkd; the published image does, by itself: deprovisioning's
// `cloud-init clean --machine-id` leaves /etc/machine-id "uninitialized", so
// the image's first boot is a systemd first boot ("Detected first boot",
// "Populated /etc with preset unit settings" on a verify boot's console),
// and Debian's presets enable systemd-networkd, its socket and
// wait-online. Disabling them in the base would be undone by those
// presets; a masked unit is left alone. The hook's text is part of
// baseKey, so a base built before it is never reused.
const baseNetworkHook = `# One network manager only: ifupdown. cloud-init renders the NIC for
# ifupdown (interfaces.d above), so systemd-networkd, which bookworm's
# systemd also enables, manages no link, and its wait-online never
# succeeds: once any enabled unit wants network-online.target it holds
# cloud-init.service (ordered after it) for its full 120 s and then fails,
# so every first boot of an image paid two minutes and ended degraded.
# Masking beats disabling: presets and package upgrades cannot re-enable
# a masked unit. ifupdown-wait-online.service still backs
# network-online.target.
for u in systemd-networkd.service systemd-networkd.socket systemd-networkd-wait-online.service; do
	ln -sf /dev/null "$1/etc/systemd/system/$u"
done
`

// baseManifest is written last into a finished base directory: its presence
// (with matching key) is what marks the base complete.
type baseManifest struct {
	Key      string    `json:"key"`
	Suite    string    `json:"suite"`
	Packages []string  `json:"packages"`
	Format   int       `json:"format"`
	Built    time.Time `json:"built"`
	Disk     string    `json:"disk"`
	Kernel   string    `json:"kernel"`
	Initrd   string    `json:"initrd"`
	Append   string    `json:"append"`
}

var suiteRe = regexp.MustCompile(`^[a-z][a-z0-9-]{1,31}$`)

// baseKey derives the cache key from everything that determines the base.
func baseKey(suite string, packages []string) string {
	pk := append([]string(nil), packages...)
	sort.Strings(pk)
	h := sha256.New()
	fmt.Fprintf(h, "format=%d\nsuite=%s\nsize=%s\npackages=%s\nhook=%s\n",
		baseFormatVersion, suite, baseDiskSize, strings.Join(pk, ","), baseCustomizeHook)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// BaseDir is where BuildBase keeps (or will keep) the base for suite in cacheDir.
func BaseDir(cacheDir, suite string) string {
	return filepath.Join(cacheDir, "debian-"+suite+"-"+baseKey(suite, basePackages()))
}

// BuildBase returns the cached Debian base for opts.Suite, building it with
// mmdebstrap first when it is missing. A build happens in a temporary
// directory renamed into place at the end, so an interrupted build never
// leaves a half base behind.
func BuildBase(ctx context.Context, opts BuildOptions) (Base, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	suite := opts.Suite
	if suite == "" {
		suite = "bookworm"
	}
	if !suiteRe.MatchString(suite) {
		return Base{}, fmt.Errorf("debian base: invalid suite %q", suite)
	}
	if opts.CacheDir == "" {
		return Base{}, errors.New("debian base: no cache directory")
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return Base{}, fmt.Errorf("debian base: cache directory: %w", err)
	}
	pkgs := basePackages()
	key := baseKey(suite, pkgs)
	name := "debian-" + suite + "-" + key
	dir := filepath.Join(opts.CacheDir, name)

	if b, err := loadBase(dir, key); err == nil {
		log.Info("debian base cached", "dir", dir)
		return b, nil
	}

	// Locking the cache directory itself leaves no lock file behind.
	unlock, err := lockDir(ctx, opts.CacheDir)
	if err != nil {
		return Base{}, fmt.Errorf("debian base %s: %w", name, err)
	}
	defer unlock()
	// Another process may have finished the build while we waited.
	if b, err := loadBase(dir, key); err == nil {
		log.Info("debian base cached", "dir", dir)
		return b, nil
	}
	// We hold the lock, so any build directory for this key is left over
	// from a build that was killed.
	if stale, _ := filepath.Glob(filepath.Join(opts.CacheDir, ".build-"+name+"-*")); len(stale) > 0 {
		for _, s := range stale {
			if err := safeRemoveAll(s); err != nil {
				return Base{}, fmt.Errorf("debian base %s: stale build: %w", name, err)
			}
		}
	}
	// A directory without a valid manifest is not ours to trust.
	if _, err := os.Stat(dir); err == nil {
		if err := safeRemoveAll(dir); err != nil {
			return Base{}, fmt.Errorf("debian base %s: incomplete base: %w", name, err)
		}
	}

	tmp, err := os.MkdirTemp(opts.CacheDir, ".build-"+name+"-")
	if err != nil {
		return Base{}, fmt.Errorf("debian base %s: %w", name, err)
	}
	defer func() {
		if err := safeRemoveAll(tmp); err != nil {
			log.Warn("debian base: build directory left behind", "dir", tmp, "err", err)
		}
	}()

	start := time.Now()
	log.Info("building debian base", "suite", suite, "dir", dir)
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return Base{}, fmt.Errorf("debian base %s: %w", name, err)
	}
	rootfs := filepath.Join(tmp, "rootfs")
	buildLog := filepath.Join(tmp, "build.log")
	args := []string{
		"--variant=apt",
		"--include=" + strings.Join(pkgs, ","),
		"--customize-hook=" + baseCustomizeHook,
		"--format=directory",
		suite, rootfs,
	}
	t := time.Now()
	if err := runLogged(ctx, buildLog, true, "mmdebstrap", args...); err != nil {
		return Base{}, fmt.Errorf("debian base %s: mmdebstrap: %w", name, err)
	}
	log.Info("debian base: rootfs built", "took", time.Since(t).Round(time.Second))

	kernel, initrd, err := bootFiles(rootfs)
	if err != nil {
		return Base{}, fmt.Errorf("debian base %s: %w", name, err)
	}
	if err := copyFile(kernel, filepath.Join(out, "vmlinuz"), 0o644); err != nil {
		return Base{}, fmt.Errorf("debian base %s: kernel: %w", name, err)
	}
	if err := copyFile(initrd, filepath.Join(out, "initrd.img"), 0o644); err != nil {
		return Base{}, fmt.Errorf("debian base %s: initrd: %w", name, err)
	}

	raw := filepath.Join(tmp, "rootfs.raw")
	t = time.Now()
	if err := runLogged(ctx, buildLog, false, "mkfs.ext4", "-F", "-q", "-L", "rootfs", "-d", rootfs, raw, baseDiskSize); err != nil {
		return Base{}, fmt.Errorf("debian base %s: mkfs.ext4: %w", name, err)
	}
	if err := safeRemoveAll(rootfs); err != nil {
		return Base{}, fmt.Errorf("debian base %s: removing rootfs: %w", name, err)
	}
	if err := runLogged(ctx, buildLog, false, "qemu-img", "convert", "-O", "qcow2", raw, filepath.Join(out, "disk.qcow2")); err != nil {
		return Base{}, fmt.Errorf("debian base %s: qemu-img convert: %w", name, err)
	}
	if err := os.Remove(raw); err != nil {
		return Base{}, fmt.Errorf("debian base %s: %w", name, err)
	}
	log.Info("debian base: disk image written", "took", time.Since(t).Round(time.Second))

	m := baseManifest{
		Key: key, Suite: suite, Packages: pkgs, Format: baseFormatVersion, Built: time.Now().UTC(),
		Disk: "disk.qcow2", Kernel: "vmlinuz", Initrd: "initrd.img", Append: BaseAppend,
	}
	if err := writeJSON(filepath.Join(out, "base.json"), m); err != nil {
		return Base{}, fmt.Errorf("debian base %s: manifest: %w", name, err)
	}
	if err := os.Rename(out, dir); err != nil {
		return Base{}, fmt.Errorf("debian base %s: %w", name, err)
	}
	log.Info("debian base built", "dir", dir, "took", time.Since(start).Round(time.Second))
	return loadBase(dir, key)
}

// loadBase returns the base in dir when its manifest is complete and matches key.
func loadBase(dir, key string) (Base, error) {
	b, err := os.ReadFile(filepath.Join(dir, "base.json"))
	if err != nil {
		return Base{}, err
	}
	var m baseManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Base{}, fmt.Errorf("%s: %w", filepath.Join(dir, "base.json"), err)
	}
	if m.Key != key {
		return Base{}, fmt.Errorf("%s: key %q, want %q", dir, m.Key, key)
	}
	base := Base{
		Disk:   filepath.Join(dir, m.Disk),
		Kernel: filepath.Join(dir, m.Kernel),
		Initrd: filepath.Join(dir, m.Initrd),
		Append: m.Append,
	}
	for _, f := range []string{base.Disk, base.Kernel, base.Initrd} {
		if _, err := os.Stat(f); err != nil {
			return Base{}, err
		}
	}
	return base, nil
}

// bootFiles finds the newest kernel and its initrd in rootfs/boot.
func bootFiles(rootfs string) (kernel, initrd string, err error) {
	ks, _ := filepath.Glob(filepath.Join(rootfs, "boot", "vmlinuz-*"))
	if len(ks) == 0 {
		return "", "", errors.New("no kernel in rootfs/boot")
	}
	sort.Strings(ks)
	kernel = ks[len(ks)-1]
	version := strings.TrimPrefix(filepath.Base(kernel), "vmlinuz-")
	initrd = filepath.Join(rootfs, "boot", "initrd.img-"+version)
	if _, err := os.Stat(initrd); err != nil {
		return "", "", fmt.Errorf("initrd for kernel %s: %w", version, err)
	}
	return kernel, initrd, nil
}

// runLogged runs a command with its output appended to logPath, and returns
// the tail of that log in the error. With privateMounts the command gets its
// own mount and PID namespaces, so mounts it makes (mmdebstrap mounts /proc,
// /sys and /dev inside the rootfs) and processes it starts vanish with it
// even if it is killed.
func runLogged(ctx context.Context, logPath string, privateMounts bool, name string, args ...string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "+ %s %s\n", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if privateMounts {
		// Go makes the new namespace's mounts private before exec. The new
		// PID namespace makes the command its init: when it dies (even by
		// Pdeathsig after imagebake was SIGKILLed) the kernel kills apt,
		// dpkg and every other process it left, so none keeps writing into
		// a build directory being removed.
		cmd.SysProcAttr.Unshareflags = syscall.CLONE_NEWNS
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	}
	// Terminate the whole process group (mmdebstrap runs apt and dpkg),
	// gently first so that tools can clean up.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return fmt.Errorf("%w; log tail:\n%s", err, lastLines(readFile(logPath), 20))
	}
	return nil
}

// safeRemoveAll removes dir unless something is still mounted below it:
// deleting through a bind mount of /dev or /sys would damage the host.
func safeRemoveAll(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	mounts, err := mountsUnder(abs)
	if err != nil {
		return err
	}
	// Deepest first.
	sort.Slice(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	for _, m := range mounts {
		_ = syscall.Unmount(m, syscall.MNT_DETACH)
	}
	if left, err := mountsUnder(abs); err != nil {
		return err
	} else if len(left) > 0 {
		return fmt.Errorf("%s: still mounted below it: %s", abs, strings.Join(left, ", "))
	}
	return os.RemoveAll(abs)
}

// mountsUnder lists mount points at or below dir.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// lockDir takes an exclusive flock on a directory, waiting until ctx is
// done. It serializes builds and downloads between imagebake processes
// sharing a cache.
func lockDir(ctx context.Context, path string) (func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
