package qemu

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBase writes a base directory as BuildBase leaves it, with the manifest
// key given.
func fakeBase(t *testing.T, dir, key string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"disk.qcow2", "vmlinuz", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := baseManifest{Key: key, Suite: "bookworm", Disk: "disk.qcow2", Kernel: "vmlinuz", Initrd: "initrd.img", Append: BaseAppend}
	if err := writeJSON(filepath.Join(dir, "base.json"), m); err != nil {
		t.Fatal(err)
	}
}

func TestBuildBaseReusesCache(t *testing.T) {
	cache := t.TempDir()
	dir := BaseDir(cache, "bookworm")
	fakeBase(t, dir, baseKey("bookworm", basePackages()))
	// A cancelled context proves nothing is built.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b, err := BuildBase(ctx, BuildOptions{CacheDir: cache, Suite: "bookworm"})
	if err != nil {
		t.Fatal(err)
	}
	want := Base{Disk: filepath.Join(dir, "disk.qcow2"), Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"), Append: BaseAppend}
	if b != want {
		t.Errorf("BuildBase = %+v, want %+v", b, want)
	}
}

func TestBuildBaseRemovesLeftovers(t *testing.T) {
	cache := t.TempDir()
	dir := BaseDir(cache, "bookworm")
	name := filepath.Base(dir)
	// A killed build and a base whose manifest does not match.
	stale := filepath.Join(cache, ".build-"+name+"-12345")
	if err := os.MkdirAll(filepath.Join(stale, "rootfs", "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	fakeBase(t, dir, "another-key")
	// Another suite's base is not ours to touch.
	other := BaseDir(cache, "trixie")
	fakeBase(t, other, baseKey("trixie", basePackages()))

	// The cancelled context stops the build at mmdebstrap, after cleanup.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := BuildBase(ctx, BuildOptions{CacheDir: cache, Suite: "bookworm"}); err == nil {
		t.Fatal("BuildBase with a cancelled context succeeded")
	}
	entries, _ := os.ReadDir(cache)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != filepath.Base(other) {
		t.Errorf("cache after a failed build holds %v, want only %s", names, filepath.Base(other))
	}
}

func TestBuildBaseOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    BuildOptions
		wantErr string
	}{
		{"suite with a path", BuildOptions{CacheDir: t.TempDir(), Suite: "../etc"}, "invalid suite"},
		{"suite with an option", BuildOptions{CacheDir: t.TempDir(), Suite: "--foo"}, "invalid suite"},
		{"no cache", BuildOptions{Suite: "bookworm"}, "no cache directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildBase(context.Background(), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("BuildBase = %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestBaseKey(t *testing.T) {
	pk := basePackages()
	k := baseKey("bookworm", pk)
	reordered := append([]string{pk[len(pk)-1]}, pk[:len(pk)-1]...)
	if baseKey("bookworm", reordered) != k {
		t.Error("package order changed the key")
	}
	if baseKey("trixie", pk) == k || baseKey("bookworm", append(pk, "curl")) == k {
		t.Error("suite or packages do not change the key")
	}
	if !strings.HasSuffix(BaseDir("/c", "bookworm"), "debian-bookworm-"+k) {
		t.Errorf("BaseDir = %s", BaseDir("/c", "bookworm"))
	}
}

func TestSafeRemoveAllRefusesMounts(t *testing.T) {
	// /proc is always mounted; a directory containing it must be refused
	// (testing with "/" would be reckless, so check the detection only).
	mounts, err := mountsUnder("/proc")
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) == 0 || mounts[0] != "/proc" {
		t.Errorf("mountsUnder(/proc) = %v, want /proc first", mounts)
	}
	if got := unescapeMount(`/tmp/a\040b`); got != "/tmp/a b" {
		t.Errorf("unescapeMount = %q", got)
	}
	d := t.TempDir()
	if err := os.MkdirAll(filepath.Join(d, "x", "y"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safeRemoveAll(d); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d); !os.IsNotExist(err) {
		t.Errorf("%s still exists", d)
	}
}

// TestBaseNetworkHookMasksNetworkd runs the hook's network part for real
// on an empty root: networkd and its wait-online end up masked, so no
// enabled unit can pull them into a boot.
func TestBaseNetworkHookMasksNetworkd(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-euc", baseNetworkHook, "sh", root).CombinedOutput()
	if err != nil {
		t.Fatalf("hook: %v\n%s", err, out)
	}
	for _, u := range []string{"systemd-networkd.service", "systemd-networkd.socket", "systemd-networkd-wait-online.service"} {
		if dst, err := os.Readlink(filepath.Join(root, "etc/systemd/system", u)); err != nil || dst != "/dev/null" {
			t.Errorf("%s not masked: %q, %v", u, dst, err)
		}
	}
	if !strings.HasSuffix(baseCustomizeHook, baseNetworkHook) {
		t.Error("the customize hook does not run the network hook")
	}
}

// TestBaseKeyChangedForNetworkFix: the key of the base that had both
// ifupdown and networkd (fd14f736bc633142) must never match again, or a
// cached base with the 120 s first-boot wait would be reused.
func TestBaseKeyChangedForNetworkFix(t *testing.T) {
	got := baseKey("bookworm", basePackages())
	t.Logf("base key %s", got)
	if got == "fd14f736bc633142" {
		t.Errorf("base key %s is the key of the base before the network fix", got)
	}
}
