package local_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/release"
)

func create(t *testing.T, s *local.Store, image string, versions ...string) {
	t.Helper()
	for _, v := range versions {
		src := filepath.Join(t.TempDir(), "disk")
		if err := os.WriteFile(src, []byte("disk "+v), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(context.Background(), image, gallery.CreateRequest{Version: v, Source: src}); err != nil {
			t.Fatal(err)
		}
	}
}

func names(vs []gallery.ImageVersion) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

// editMetadata rewrites one field of a version's version.json.
func editMetadata(t *testing.T, dir, key string, value any) {
	t.Helper()
	p := filepath.Join(dir, local.MetadataFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if key == "disk.file" {
		m["disk"].(map[string]any)["file"] = value
	} else {
		m[key] = value
	}
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func exists(t *testing.T, p string) bool {
	t.Helper()
	_, err := os.Lstat(p)
	return err == nil
}

// issue 12 #3: the directory name is the version. Metadata naming another
// version (or image, or disk file) makes a damaged version: listed once,
// under its directory's name, Failed, never latest, and prune keeps the
// real newest versions.
func TestDirectoryNameIsTheVersion(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := local.New(root, nil)
	create(t, s, "img", "1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5")
	img := filepath.Join(root, "img")
	editMetadata(t, filepath.Join(img, "1.0.0"), "version", "1.0.9")
	editMetadata(t, filepath.Join(img, "1.0.1"), "image", "other")
	editMetadata(t, filepath.Join(img, "1.0.2"), "disk.file", "../../../etc/passwd")

	vs, err := s.List(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(vs); !slices.Equal(got, []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4", "1.0.5"}) {
		t.Fatalf("List = %v, want each directory once", got)
	}
	for _, v := range vs[:3] {
		if v.ProvisioningState != gallery.StateFailed || v.Path != "" {
			t.Errorf("damaged %s: state %s path %q, want Failed and no disk", v.Name, v.ProvisioningState, v.Path)
		}
	}
	if l, ok := gallery.Latest(vs); !ok || l.Name != "1.0.5" {
		t.Errorf("Latest = %q, want 1.0.5", l.Name)
	}
	if _, err := s.Get(ctx, "img", "1.0.9"); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("Get of the name only metadata claims: %v, want not found", err)
	}
	yes := true
	if _, err := s.Update(ctx, "img", "1.0.0", gallery.Update{ExcludeFromLatest: &yes}); err == nil {
		t.Error("Update of a damaged version succeeded")
	}

	// The founding report: with 1.0.0 claiming a higher name, prune --keep 2
	// deleted one of the real newest two.
	if _, err := release.Prune(ctx, s, "img", release.PruneOptions{Keep: 2}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.4", "1.0.5"} {
		if !exists(t, filepath.Join(img, v)) {
			t.Errorf("prune --keep 2 deleted %s, one of the newest two", v)
		}
	}
	if !exists(t, "/etc/passwd") {
		t.Fatal("/etc/passwd is gone")
	}
}

// issue 12 #10: symbolic links are never followed (prune never deletes
// outside the gallery), and folders imagebake did not make are not versions.
func TestOnlyWhatImagebakeMade(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := local.New(root, nil)

	// A directory outside the gallery that looks like an image's.
	outside := t.TempDir()
	create(t, local.New(outside, nil), "img", "1.0.0", "1.0.1")
	victim := filepath.Join(outside, "img")

	// A symlinked image folder.
	if err := os.MkdirAll(root, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(root, "linked")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(ctx, "linked"); err == nil {
		t.Error("List followed a symlinked image folder")
	}
	if err := s.Delete(ctx, "linked", "1.0.0"); err == nil {
		t.Error("Delete through a symlinked image folder succeeded")
	}
	if _, err := release.Prune(ctx, s, "linked", release.PruneOptions{Keep: 0}); err == nil {
		t.Error("prune of a symlinked image folder succeeded")
	}
	src := filepath.Join(t.TempDir(), "d")
	if err := os.WriteFile(src, []byte("d"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "linked", gallery.CreateRequest{Version: "1.0.2", Source: src}); err == nil {
		t.Error("Create through a symlinked image folder succeeded")
	}

	// A symlinked version folder, plain folders named like versions, and a
	// symlinked version.json, next to one real version.
	create(t, s, "img", "1.0.0")
	img := filepath.Join(root, "img")
	if err := os.Symlink(filepath.Join(victim, "1.0.1"), filepath.Join(img, "1.0.1")); err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{"1.0.2", "1.0.3"} {
		if err := os.Mkdir(filepath.Join(img, plain), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(img, "1.0.3", "notes.txt"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	create(t, s, "img", "1.0.4")
	meta := filepath.Join(img, "1.0.4", local.MetadataFile)
	if err := os.Remove(meta); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(victim, "1.0.0", local.MetadataFile), meta); err != nil {
		t.Fatal(err)
	}

	vs, err := s.List(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(vs); !slices.Equal(got, []string{"1.0.0", "1.0.4"}) {
		t.Errorf("List = %v, want [1.0.0 1.0.4]", got)
	}
	if len(vs) == 2 && vs[1].ProvisioningState != gallery.StateFailed {
		t.Errorf("1.0.4 with a symlinked version.json: %s, want Failed", vs[1].ProvisioningState)
	}
	for _, v := range []string{"1.0.1", "1.0.2", "1.0.3"} {
		if _, err := s.Get(ctx, "img", v); !errors.Is(err, gallery.ErrNotFound) {
			t.Errorf("Get %s: %v, want not found", v, err)
		}
		if err := s.Delete(ctx, "img", v); !errors.Is(err, gallery.ErrNotFound) {
			t.Errorf("Delete %s: %v, want not found", v, err)
		}
	}
	if _, err := release.Prune(ctx, s, "img", release.PruneOptions{Keep: 0}); err != nil {
		t.Fatal(err)
	}
	for _, kept := range []string{
		filepath.Join(img, "1.0.1"), filepath.Join(img, "1.0.2"), filepath.Join(img, "1.0.3", "notes.txt"),
		filepath.Join(victim, "1.0.0", local.DiskFile), filepath.Join(victim, "1.0.1", local.DiskFile),
	} {
		if !exists(t, kept) {
			t.Errorf("%s was deleted", kept)
		}
	}
	if exists(t, filepath.Join(img, "1.0.4")) {
		t.Error("the damaged 1.0.4 was not pruned")
	}
	// A name a plain folder holds cannot be created; Publish moves past it.
	iv, err := gallery.Publish(ctx, s, "img", "1.0", gallery.CreateRequest{Source: src}, 5)
	if err != nil || iv.Name != "1.0.4" {
		t.Errorf("Publish = %s, %v; want 1.0.4", iv.Name, err)
	}
}

// issue 12 #9: prune never deletes a version a live process is creating.
func TestPruneSparesVersionInProgress(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := local.New(root, nil)
	create(t, s, "img", "1.0.1", "1.0.2")
	// A creation in progress by this (live) process, as Create leaves it
	// while it copies the disk.
	dir := filepath.Join(root, "img", "1.0.0")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	b, _ := json.Marshal(map[string]any{"pid": os.Getpid(), "host": host, "startedAt": "2026-01-01T00:00:00Z"})
	if err := os.WriteFile(filepath.Join(dir, ".creating"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if iv, err := s.Get(ctx, "img", "1.0.0"); err != nil || iv.ProvisioningState != gallery.StateCreating {
		t.Fatalf("in progress: %+v, %v", iv, err)
	}
	_, err := release.Prune(ctx, s, "img", release.PruneOptions{Keep: 1})
	if err != nil && !errors.Is(err, local.ErrInProgress) {
		t.Fatal(err)
	}
	if !exists(t, dir) {
		t.Error("prune deleted a version a live process is creating")
	}
	if err := s.Delete(ctx, "img", "1.0.0"); !errors.Is(err, local.ErrInProgress) {
		t.Errorf("Delete of a version in progress: %v, want ErrInProgress", err)
	}
}

// issue 12 #8: a moved (baked) disk is published 0600, like a copy.
func TestPublishedDiskIsPrivate(t *testing.T) {
	ctx := context.Background()
	s := local.New(t.TempDir(), nil)
	for _, move := range []bool{true, false} {
		src := filepath.Join(t.TempDir(), "captured.qcow2")
		if err := os.WriteFile(src, []byte("disk with host keys"), 0o644); err != nil {
			t.Fatal(err)
		}
		iv, err := gallery.Publish(ctx, s, "img", "1.0", gallery.CreateRequest{Source: src, MoveSource: move}, 1)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(iv.Path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("move=%v: published disk mode %v, want 0600", move, fi.Mode().Perm())
		}
	}
}
