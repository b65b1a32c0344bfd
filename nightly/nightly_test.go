package nightly

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/recipes"
)

func TestShouldSkip(t *testing.T) {
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	ver := func(name, state, hash, base, ib string, age time.Duration) gallery.ImageVersion {
		return gallery.ImageVersion{Name: name, ProvisioningState: state, RecipeHash: hash, PublishedAt: now.Add(-age),
			Tags: map[string]string{gallery.TagRecipeHash: hash, gallery.TagBaseVersion: base, gallery.TagImagebake: ib}}
	}
	const ok = gallery.StateSucceeded
	same := ver("1.0.4", ok, "hash1234567890abcdef", "base-1", "v1.2.0", 3*24*time.Hour)
	older := ver("1.0.3", ok, "oldhash", "base-0", "v1.1.0", 9*24*time.Hour)
	tests := []struct {
		name     string
		versions []gallery.ImageVersion
		maxAge   time.Duration
		skip     bool
		reason   string
	}{
		{"same", []gallery.ImageVersion{older, same}, 0, true, "1.0.4 was baked from the same recipe (hash hash12345678), base base-1 and imagebake v1.2.0 3 days ago"},
		{"same within max age", []gallery.ImageVersion{same}, 7 * 24 * time.Hour, true, "3 days ago"},
		{"recipe changed", []gallery.ImageVersion{ver("1.0.4", ok, "other", "base-1", "v1.2.0", time.Hour)}, 0, false, "recipe changed"},
		{"base changed", []gallery.ImageVersion{ver("1.0.4", ok, "hash1234567890abcdef", "base-2", "v1.2.0", time.Hour)}, 0, false, "base changed since 1.0.4 (base-2, now base-1)"},
		{"imagebake changed", []gallery.ImageVersion{ver("1.0.4", ok, "hash1234567890abcdef", "base-1", "v1.1.9", time.Hour)}, 0, false, "imagebake changed"},
		{"older than max age", []gallery.ImageVersion{ver("1.0.4", ok, "hash1234567890abcdef", "base-1", "v1.2.0", 8*24*time.Hour)}, 7 * 24 * time.Hour, false, "more than the maximum age of 7 days"},
		{"no versions", nil, 0, false, "no succeeded version"},
		{"failed newest ignored", []gallery.ImageVersion{same, ver("1.0.5", gallery.StateFailed, "other", "base-9", "v9", time.Minute)}, 0, true, "1.0.4 was baked"},
		{"only failed", []gallery.ImageVersion{ver("1.0.5", gallery.StateFailed, "hash1234567890abcdef", "base-1", "v1.2.0", time.Minute)}, 0, false, "no succeeded version"},
		// Version order, not list order or date, decides the newest.
		{"version order", []gallery.ImageVersion{ver("1.0.10", ok, "other", "base-1", "v1.2.0", 5*24*time.Hour), ver("1.0.9", ok, "hash1234567890abcdef", "base-1", "v1.2.0", time.Hour)}, 0, false, "recipe changed since 1.0.10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skip, reason := ShouldSkip(tt.versions, "hash1234567890abcdef", "base-1", "v1.2.0", tt.maxAge, now)
			if skip != tt.skip {
				t.Errorf("skip = %v, want %v (reason %q)", skip, tt.skip, reason)
			}
			if !strings.Contains(reason, tt.reason) {
				t.Errorf("reason = %q, want it to contain %q", reason, tt.reason)
			}
		})
	}
}

func TestShouldSkipRecipeHashFromTags(t *testing.T) {
	// Versions listed without the RecipeHash field still carry the tag.
	now := time.Now()
	v := gallery.ImageVersion{Name: "1.0.0", ProvisioningState: gallery.StateSucceeded, PublishedAt: now,
		Tags: map[string]string{gallery.TagRecipeHash: "h", gallery.TagBaseVersion: "b", gallery.TagImagebake: "i"}}
	if skip, reason := ShouldSkip([]gallery.ImageVersion{v}, "h", "b", "i", 0, now); !skip {
		t.Fatalf("want skip, got %q", reason)
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		72 * time.Hour: "3 days", 25 * time.Hour: "1 day", 5 * time.Hour: "5 hours", 90 * time.Second: "1 minute", 0: "0 seconds",
	} {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestLocalBaseVersion(t *testing.T) {
	cache := t.TempDir()
	r := &recipes.Recipe{}
	r.Base.Local.Builtin = "debian-bookworm"
	if _, ok := LocalBaseVersion(r, cache); ok {
		t.Fatal("uncached builtin base reported as available")
	}
	dir := qemu.BaseDir(cache, "bookworm")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "base.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, ok := LocalBaseVersion(r, cache); !ok || v != filepath.Base(dir) {
		t.Fatalf("cached builtin base: got %q, %v; want %q", v, ok, filepath.Base(dir))
	}

	p := &recipes.Recipe{}
	p.Base.Local.Path = filepath.Join(cache, "mybase", "disk.qcow2")
	if _, ok := LocalBaseVersion(p, cache); ok {
		t.Fatal("missing base path reported as available")
	}
	if err := os.MkdirAll(filepath.Dir(p.Base.Local.Path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Base.Local.Path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	v1, ok := LocalBaseVersion(p, cache)
	if !ok || !strings.HasPrefix(v1, "sha256-") {
		t.Fatalf("base path: got %q, %v; want a content digest", v1, ok)
	}
	// issue 12 #4: a replaced disk in the same folder is a new base.
	if err := os.WriteFile(p.Base.Local.Path, []byte("another disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v2, ok := LocalBaseVersion(p, cache); !ok || v2 == v1 {
		t.Fatalf("base path after replacing the disk: got %q, %v; want other than %q", v2, ok, v1)
	}
}

// listStore is a gallery whose List answers vs, err; nothing else is used.
type listStore struct {
	gallery.Store
	vs  []gallery.ImageVersion
	err error
}

func (s listStore) List(context.Context, string) ([]gallery.ImageVersion, error) { return s.vs, s.err }

func TestCheck(t *testing.T) {
	now := time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC)
	cur := Current{RecipeHash: "h1", BaseVersion: "b1", Imagebake: "v1"}
	same := gallery.ImageVersion{Name: "1.0.0", ProvisioningState: gallery.StateSucceeded, RecipeHash: "h1", PublishedAt: now.Add(-time.Hour),
		Tags: map[string]string{gallery.TagBaseVersion: "b1", gallery.TagImagebake: "v1"}}
	boom := errors.New("list failed")
	tests := []struct {
		name    string
		store   listStore
		skip    bool
		reason  string
		wantErr error
	}{
		{"unchanged", listStore{vs: []gallery.ImageVersion{same}}, true, "1.0.0 was baked from the same recipe", nil},
		// A gallery or image that does not exist yet: bake (and create it).
		{"not found", listStore{err: fmt.Errorf("gallery g image i: %w", gallery.ErrNotFound)}, false, "no succeeded version", nil},
		{"list fails", listStore{err: boom}, false, "", boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			skip, reason, err := Check(context.Background(), tt.store, "i", cur, 0, now)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if skip != tt.skip || !strings.Contains(reason, tt.reason) {
				t.Errorf("skip %v reason %q, want %v %q", skip, reason, tt.skip, tt.reason)
			}
		})
	}
}
