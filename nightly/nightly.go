// Package nightly decides whether a scheduled bake has anything new to
// bake: a nightly job that rebuilds an unchanged recipe on an unchanged base
// with the same imagebake only adds a version nobody needs.
package nightly

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/recipes"
)

// Current is what a bake would record now, to compare with what the newest
// version recorded.
type Current struct {
	RecipeHash, BaseVersion, Imagebake string
}

// Check is the --if-changed decision on a gallery: it lists image's
// versions in store (a missing image or gallery means nothing was baked
// yet) and decides with ShouldSkip.
func Check(ctx context.Context, store gallery.Store, image string, cur Current, maxAge time.Duration, now time.Time) (skip bool, reason string, err error) {
	versions, err := store.List(ctx, image)
	if err != nil && !errors.Is(err, gallery.ErrNotFound) {
		return false, "", err
	}
	skip, reason = ShouldSkip(versions, cur.RecipeHash, cur.BaseVersion, cur.Imagebake, maxAge, now)
	return skip, reason, nil
}

// ShouldSkip reports whether a bake can be skipped because the newest
// succeeded version (by version order, not date) was baked from the same
// recipe hash, the same resolved base version and the same imagebake
// version, and is not older than maxAge (maxAge <= 0: no age limit). The
// reason is one sentence saying why, whatever the outcome.
func ShouldSkip(versions []gallery.ImageVersion, recipeHash, baseVersion, imagebakeVersion string, maxAge time.Duration, now time.Time) (skip bool, reason string) {
	succeeded := make([]gallery.ImageVersion, 0, len(versions))
	for _, v := range versions {
		if v.ProvisioningState != gallery.StateSucceeded {
			continue
		}
		if _, err := v.Version(); err != nil {
			continue
		}
		succeeded = append(succeeded, v)
	}
	if len(succeeded) == 0 {
		return false, "there is no succeeded version yet"
	}
	gallery.Sort(succeeded)
	newest := succeeded[len(succeeded)-1]

	gotHash := newest.RecipeHash
	if gotHash == "" {
		gotHash = newest.Tags[gallery.TagRecipeHash]
	}
	gotBase := newest.Tags[gallery.TagBaseVersion]
	gotImagebake := newest.Tags[gallery.TagImagebake]
	switch {
	case gotHash != recipeHash:
		return false, fmt.Sprintf("the recipe changed since %s (hash %s, now %s)", newest.Name, short(gotHash), short(recipeHash))
	case gotBase != baseVersion:
		return false, fmt.Sprintf("the base changed since %s (%s, now %s)", newest.Name, orUnknown(gotBase), orUnknown(baseVersion))
	case gotImagebake != imagebakeVersion:
		return false, fmt.Sprintf("imagebake changed since %s (%s, now %s)", newest.Name, orUnknown(gotImagebake), orUnknown(imagebakeVersion))
	}
	age := now.Sub(newest.PublishedAt)
	if maxAge > 0 && age > maxAge {
		return false, fmt.Sprintf("%s is unchanged but was baked %s ago, more than the maximum age of %s", newest.Name, HumanDuration(age), HumanDuration(maxAge))
	}
	return true, fmt.Sprintf("%s was baked from the same recipe (hash %s), base %s and imagebake %s %s ago",
		newest.Name, short(recipeHash), orUnknown(baseVersion), orUnknown(imagebakeVersion), HumanDuration(age))
}

func short(h string) string {
	if h == "" {
		return "unknown"
	}
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// HumanDuration rounds d to the largest whole unit that fits: "3 days",
// "5 hours", "12 minutes", "40 seconds".
func HumanDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	switch {
	case d >= 24*time.Hour:
		return unit(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour:
		return unit(int64(d/time.Hour), "hour")
	case d >= time.Minute:
		return unit(int64(d/time.Minute), "minute")
	default:
		return unit(int64(d/time.Second), "second")
	}
}

// LocalBaseVersion is the base version a local bake of r would record
// (the built-in base's folder name; for base.local.path the content digest
// qemu.ContentVersion gives, as bake.Local records it), without building or
// downloading anything. ok is false when the base is not available yet;
// the caller then bakes, since a missing base means something new.
func LocalBaseVersion(r *recipes.Recipe, cacheDir string) (version string, ok bool) {
	l := r.Base.Local
	switch {
	case l.Builtin != "":
		dir := qemu.BaseDir(cacheDir, strings.TrimPrefix(l.Builtin, "debian-"))
		// A finished base has base.json; builds happen elsewhere and are
		// renamed into place, so its presence means the base is complete.
		if _, err := os.Stat(filepath.Join(dir, "base.json")); err != nil {
			return "", false
		}
		return filepath.Base(dir), true
	case l.URL != "":
		// Downloads are pinned by sha256 (part of the recipe hash) and kept
		// in the downloads folder, whose name bake records as the version.
		return "downloads", true
	case l.Path != "":
		// The folder's name says nothing about the disk in it: a replaced
		// disk must count as a new base. The digest is cached in cacheDir.
		v, err := qemu.ContentVersion(context.Background(), cacheDir, l.Path, l.Kernel, l.Initrd)
		if err != nil {
			return "", false
		}
		return v, true
	}
	return "", false
}
