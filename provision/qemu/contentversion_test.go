package qemu

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Replacing a base.local.path file's content changes its version, even
// when the folder, the name, the size and the modification time stay.
func TestContentVersion(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	dir := filepath.Join(t.TempDir(), "fq")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.qcow2")
	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(disk, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(disk, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	write("first disk", mtime)
	v1, err := ContentVersion(ctx, cache, disk, "")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := ContentVersion(ctx, cache, disk); err != nil || again != v1 {
		t.Errorf("same file: %q, %v; want %q", again, err, v1)
	}
	if entries, _ := os.ReadDir(filepath.Join(cache, digestCache)); len(entries) != 1 {
		t.Errorf("digest cache holds %v, want one entry", entries)
	}
	if unc, err := ContentVersion(ctx, "", disk); err != nil || unc != v1 {
		t.Errorf("without a cache: %q, %v; want %q", unc, err, v1)
	}

	// Same size, same mtime, same name and folder: only the content differs.
	write("other disk", mtime)
	v2, err := ContentVersion(ctx, cache, disk)
	if err != nil {
		t.Fatal(err)
	}
	if v2 == v1 {
		t.Errorf("version %q unchanged after the disk's content was replaced", v2)
	}
	if v2 == filepath.Base(dir) || len(v2) != len("sha256-")+16 {
		t.Errorf("version %q, want sha256- and 16 hex digits", v2)
	}

	// A kernel given with the disk is part of the base.
	kernel := filepath.Join(dir, "vmlinuz")
	if err := os.WriteFile(kernel, []byte("k1"), 0o644); err != nil {
		t.Fatal(err)
	}
	vk, err := ContentVersion(ctx, cache, disk, kernel)
	if err != nil || vk == v2 {
		t.Errorf("with a kernel: %q, %v; want a version other than %q", vk, err, v2)
	}

	if _, err := ContentVersion(ctx, cache, filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file has a version")
	}
	if _, err := ContentVersion(ctx, cache, dir); err == nil {
		t.Error("a folder has a version")
	}
}

// A stale cache entry (its file identity no longer matches) is not trusted.
func TestContentVersionIgnoresForgedCache(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	disk := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(disk, []byte("a"), 0o644); err != nil {
		t.Fatal(err)
	}
	v1, err := ContentVersion(ctx, cache, disk)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(cache, digestCache))
	if len(entries) != 1 {
		t.Fatalf("cache %v", entries)
	}
	entry := filepath.Join(cache, digestCache, entries[0].Name())
	b, err := os.ReadFile(entry)
	if err != nil {
		t.Fatal(err)
	}
	var e digestEntry
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	// An entry for another file at this path (another inode) with another sum.
	e.Inode++
	e.SHA256 = strings.Repeat("0", 64)
	if b, err = json.Marshal(e); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(entry, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := ContentVersion(ctx, cache, disk); err != nil || v != v1 {
		t.Errorf("with a cache entry for another inode: %q, %v; want %q", v, err, v1)
	}
	if err := os.WriteFile(entry, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, err := ContentVersion(ctx, cache, disk); err != nil || v != v1 {
		t.Errorf("with a damaged cache entry: %q, %v; want %q", v, err, v1)
	}
}
