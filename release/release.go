// Package release changes which image versions are in use, on any
// gallery.Store: promote a version (make it live, add regions, copy it to
// another gallery), roll "latest" back to an older version, and prune old
// versions. Every operation is idempotent and returns the changes it made,
// so that running it again reports nothing to change.
package release

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/imagebake/imagebake/gallery"
)

// What a Change did.
const (
	WhatLive     = "live"                 // excludeFromLatest cleared
	WhatExcluded = "excluded-from-latest" // excludeFromLatest set
	WhatRegion   = "region"               // a target region added or its replicas raised
	WhatCopied   = "copied"               // created in another gallery or image
	WhatDeleted  = "deleted"
)

// TagCopiedFrom records, on a copied version, the ID of the version it was
// copied from, so that copying again can tell its own earlier copy from an
// unrelated version of the same name.
const TagCopiedFrom = "imagebake.copied-from"

// Change is one change made (or, for a prune plan, to be made) to a version.
type Change struct {
	Version string `json:"version"`
	What    string `json:"what"`
	Before  string `json:"before,omitempty"`
	After   string `json:"after,omitempty"`
}

func (c Change) String() string {
	s := c.Version + ": " + c.What
	if c.Before != "" || c.After != "" {
		s += fmt.Sprintf(" (%s -> %s)", orNone(c.Before), orNone(c.After))
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// getSucceeded reads a version and insists it is usable.
func getSucceeded(ctx context.Context, store gallery.Store, image, version string) (gallery.ImageVersion, error) {
	if _, err := gallery.ParseVersion(version); err != nil {
		return gallery.ImageVersion{}, fmt.Errorf("image %s: %w", image, err)
	}
	iv, err := store.Get(ctx, image, version)
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	if iv.ProvisioningState != gallery.StateSucceeded {
		return gallery.ImageVersion{}, fmt.Errorf("image %s version %s: provisioning state %s, not %s", image, version, iv.ProvisioningState, gallery.StateSucceeded)
	}
	return iv, nil
}

// MakeLive clears excludeFromLatest on a succeeded version. It does not
// check which version "latest" then resolves to: a higher live version
// still wins.
func MakeLive(ctx context.Context, store gallery.Store, image, version string) ([]Change, error) {
	iv, err := getSucceeded(ctx, store, image, version)
	if err != nil {
		return nil, err
	}
	if !iv.ExcludeFromLatest {
		return nil, nil
	}
	if err := setExclude(ctx, store, image, version, false); err != nil {
		return nil, err
	}
	return []Change{{Version: version, What: WhatLive, Before: "excluded", After: "live"}}, nil
}

func setExclude(ctx context.Context, store gallery.Store, image, version string, exclude bool) error {
	iv, err := store.Update(ctx, image, version, gallery.Update{ExcludeFromLatest: &exclude})
	if err != nil {
		return err
	}
	if iv.ExcludeFromLatest != exclude {
		return fmt.Errorf("image %s version %s: the store did not apply excludeFromLatest=%t", image, version, exclude)
	}
	return nil
}

// normRegion compares "East US" and "eastus", as Azure does.
func normRegion(s string) string { return strings.ToLower(strings.ReplaceAll(s, " ", "")) }

func replicas(n int) string { return strconv.Itoa(max(n, 1)) + " replicas" }

// AddRegions makes sure the version replicates to every region given, with
// at least the replicas asked for. It only adds regions and raises replica
// counts, never removes or lowers them.
func AddRegions(ctx context.Context, store gallery.Store, image, version string, regions []gallery.Region) ([]Change, error) {
	iv, err := getSucceeded(ctx, store, image, version)
	if err != nil {
		return nil, err
	}
	target := make([]gallery.Region, 0, len(iv.Regions)+len(regions))
	index := map[string]int{}
	for _, r := range iv.Regions {
		index[normRegion(r.Name)] = len(target)
		target = append(target, gallery.Region{Name: r.Name, Replicas: max(r.Replicas, 1)})
	}
	var changes []Change
	for _, r := range regions {
		if r.Name == "" {
			return nil, fmt.Errorf("image %s version %s: a region without a name", image, version)
		}
		want := max(r.Replicas, 1)
		i, ok := index[normRegion(r.Name)]
		switch {
		case !ok:
			index[normRegion(r.Name)] = len(target)
			target = append(target, gallery.Region{Name: r.Name, Replicas: want, StorageAccountType: r.StorageAccountType})
			changes = append(changes, Change{Version: version, What: WhatRegion + " " + r.Name, Before: "absent", After: replicas(want)})
		case target[i].Replicas < want:
			changes = append(changes, Change{Version: version, What: WhatRegion + " " + target[i].Name, Before: replicas(target[i].Replicas), After: replicas(want)})
			target[i].Replicas = want
		}
	}
	if len(changes) == 0 {
		return nil, nil
	}
	got, err := store.Update(ctx, image, version, gallery.Update{Regions: target})
	if err != nil {
		return nil, err
	}
	// A store may accept regions it cannot change (a local gallery has
	// only "local"): report that instead of a change that did not happen.
	have := map[string]int{}
	for _, r := range got.Regions {
		have[normRegion(r.Name)] = max(r.Replicas, 1)
	}
	for _, r := range target {
		if have[normRegion(r.Name)] < r.Replicas {
			return nil, fmt.Errorf("image %s version %s: the store did not apply region %s with %s", image, version, r.Name, replicas(r.Replicas))
		}
	}
	return changes, nil
}

// Copy creates version in dst's image dstImage from the same version in
// src's image srcImage, with its tags, recipe hash and excludeFromLatest
// plus TagCopiedFrom. A local version (one with a SHA-256) is copied from
// its disk file; any other version is created from its ID (an Azure
// version from another gallery or image definition). Create-only: if dst
// already has a copy of this source, nothing changes; another version of
// the same name is an error wrapping gallery.ErrVersionExists.
func Copy(ctx context.Context, src gallery.Store, srcImage, version string, dst gallery.Store, dstImage string) ([]Change, error) {
	iv, err := getSucceeded(ctx, src, srcImage, version)
	if err != nil {
		return nil, err
	}
	existing, err := dst.Get(ctx, dstImage, version)
	switch {
	case err == nil:
		return nil, checkCopy(dstImage, iv, existing)
	case !errors.Is(err, gallery.ErrNotFound):
		return nil, err
	}
	source := iv.ID
	if iv.SHA256 != "" {
		source = iv.Path
	}
	tags := maps.Clone(iv.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	tags[TagCopiedFrom] = iv.ID
	created, err := dst.Create(ctx, dstImage, gallery.CreateRequest{
		Version: version, Source: source, RecipeHash: iv.RecipeHash, Tags: tags,
		ExcludeFromLatest: iv.ExcludeFromLatest, EndOfLife: iv.EndOfLife,
	})
	if errors.Is(err, gallery.ErrVersionExists) {
		// A concurrent copy may have won: that is fine if it is ours.
		existing, gerr := dst.Get(ctx, dstImage, version)
		if gerr != nil {
			return nil, err
		}
		return nil, checkCopy(dstImage, iv, existing)
	}
	if err != nil {
		return nil, err
	}
	return []Change{{Version: version, What: WhatCopied, Before: iv.ID, After: created.ID}}, nil
}

func checkCopy(dstImage string, src, existing gallery.ImageVersion) error {
	if existing.Tags[TagCopiedFrom] == src.ID {
		return nil
	}
	return fmt.Errorf("image %s version %s: the target has a version of that name that is not a copy of %s: %w", dstImage, src.Name, src.ID, gallery.ErrVersionExists)
}

// Rollback makes "latest" resolve to version to: it makes to live and
// excludes from latest every live, succeeded version numbered above it.
// Nothing is deleted, so promoting a newer version again undoes it.
// Versions above to that are not succeeded are left alone (a store cannot
// update them); if one of them would then win "latest", Rollback fails.
func Rollback(ctx context.Context, store gallery.Store, image, to string) ([]Change, error) {
	target, err := getSucceeded(ctx, store, image, to)
	if err != nil {
		return nil, fmt.Errorf("rollback target: %w", err)
	}
	toVer, _ := target.Version()
	all, err := store.List(ctx, image)
	if err != nil {
		return nil, err
	}
	var changes []Change
	// to goes live first, while "latest" still resolves to a newer
	// version, so there is never a moment without a latest.
	c, err := MakeLive(ctx, store, image, to)
	if err != nil {
		return nil, err
	}
	changes = append(changes, c...)
	// Lowest first: "latest" stays on the current version until the last
	// exclusion, then moves straight to "to", never through the versions
	// in between.
	for _, iv := range all {
		v, err := iv.Version()
		if err != nil || v.Compare(toVer) <= 0 || iv.ExcludeFromLatest || iv.ProvisioningState != gallery.StateSucceeded {
			continue
		}
		if err := setExclude(ctx, store, image, iv.Name, true); err != nil {
			return changes, err
		}
		changes = append(changes, Change{Version: iv.Name, What: WhatExcluded, Before: "live", After: "excluded"})
	}
	after, err := store.List(ctx, image)
	if err != nil {
		return changes, err
	}
	if latest, ok := gallery.Latest(after); !ok || latest.Name != to {
		return changes, fmt.Errorf("image %s: after the rollback \"latest\" resolves to %q, not %s (a newer version may have been published meanwhile)", image, latest.Name, to)
	}
	return changes, nil
}

// PruneOptions say which versions Prune may delete.
type PruneOptions struct {
	// Keep is how many of the highest Succeeded versions (by version
	// number) are always kept; versions still being created, updated or
	// deleted are never pruned either.
	Keep int
	// OlderThan, when positive, limits deletion to versions published
	// more than OlderThan before Now. Versions without a publish time are
	// then kept.
	OlderThan time.Duration
	// Now is the time OlderThan counts back from (default time.Now()).
	Now time.Time
}

// PlanPrune returns the versions Prune would delete, as WhatDeleted
// changes, lowest first. It never plans the version "latest" resolves to,
// nor the Keep highest Succeeded versions, nor a version in progress.
func PlanPrune(ctx context.Context, store gallery.Store, image string, opts PruneOptions) ([]Change, error) {
	if opts.Keep < 0 {
		return nil, fmt.Errorf("image %s: prune: keep %d is negative", image, opts.Keep)
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	all, err := store.List(ctx, image)
	if err != nil {
		return nil, err
	}
	gallery.Sort(all)
	latest, hasLatest := gallery.Latest(all)
	// --keep counts usable versions: a failed or half-made version among
	// the newest must not take the place of a good one.
	keep := map[string]bool{}
	for i := len(all) - 1; i >= 0 && len(keep) < opts.Keep; i-- {
		if all[i].ProvisioningState == gallery.StateSucceeded {
			keep[all[i].Name] = true
		}
	}
	var plan []Change
	for _, iv := range all {
		if keep[iv.Name] || (hasLatest && iv.Name == latest.Name) {
			continue
		}
		switch iv.ProvisioningState {
		case gallery.StateCreating, gallery.StateUpdating, gallery.StateDeleting:
			continue // someone's work in progress
		}
		if opts.OlderThan > 0 && (iv.PublishedAt.IsZero() || opts.Now.Sub(iv.PublishedAt) <= opts.OlderThan) {
			continue
		}
		before := iv.ProvisioningState
		if !iv.PublishedAt.IsZero() {
			before += ", published " + iv.PublishedAt.UTC().Format(time.RFC3339)
		}
		plan = append(plan, Change{Version: iv.Name, What: WhatDeleted, Before: before})
	}
	return plan, nil
}

// ApplyPrune deletes the versions of a plan from PlanPrune and returns
// those it deleted; versions already gone are skipped. Before deleting it
// checks again that no planned version has become "latest".
func ApplyPrune(ctx context.Context, store gallery.Store, image string, plan []Change) ([]Change, error) {
	if len(plan) == 0 {
		return nil, nil
	}
	all, err := store.List(ctx, image)
	if err != nil {
		return nil, err
	}
	latest, hasLatest := gallery.Latest(all)
	var done []Change
	for _, c := range plan {
		if c.What != WhatDeleted {
			return done, fmt.Errorf("image %s version %s: not a prune plan entry: %s", image, c.Version, c.What)
		}
		if hasLatest && c.Version == latest.Name {
			return done, fmt.Errorf("image %s version %s: \"latest\" resolves to it now; refusing to delete it", image, c.Version)
		}
		err := store.Delete(ctx, image, c.Version)
		if errors.Is(err, gallery.ErrNotFound) {
			continue
		}
		if err != nil {
			return done, err
		}
		done = append(done, c)
	}
	return done, nil
}

// Prune plans and applies in one step.
func Prune(ctx context.Context, store gallery.Store, image string, opts PruneOptions) ([]Change, error) {
	plan, err := PlanPrune(ctx, store, image, opts)
	if err != nil {
		return nil, err
	}
	return ApplyPrune(ctx, store, image, plan)
}

// Listed is one version as a listing shows it: with its replication state
// and whether "latest" resolves to it.
type Listed struct {
	gallery.ImageVersion
	Latest bool `json:"latest"`
}

// List returns image's versions in version order, each with its
// replication state, marking the one "latest" resolves to. An image or
// gallery that does not exist is an error wrapping gallery.ErrNotFound, as
// in every other operation here: a misspelt name must not read as "no
// versions".
func List(ctx context.Context, store gallery.Store, image string) ([]Listed, error) {
	all, err := store.List(ctx, image)
	if err != nil {
		return nil, err
	}
	// Azure's list has no replication state; each version's Get (with
	// $expand=ReplicationStatus) has. A failed Get keeps what the list had.
	for i, v := range all {
		if len(v.Regions) > 0 && v.Regions[0].State != gallery.ReplicationUnknown {
			continue
		}
		if full, err := store.Get(ctx, image, v.Name); err == nil {
			all[i].Regions = full.Regions
		}
	}
	latest, _ := gallery.Latest(all)
	out := make([]Listed, 0, len(all))
	for _, v := range all {
		out = append(out, Listed{v, v.Name == latest.Name})
	}
	return out, nil
}

// PromoteOptions say what Promote does to a version; any combination.
type PromoteOptions struct {
	// CopyTo, when its Image is set, copies the version there first.
	CopyTo CopyTarget
	// AddRegions are regions (and replica counts) to replicate to.
	AddRegions []gallery.Region
	// Live clears excludeFromLatest.
	Live bool
}

// CopyTarget is an image in a gallery (the source's own gallery or
// another).
type CopyTarget struct {
	Store gallery.Store
	Image string
}

// Promote puts a version into use: it copies it (Copy), replicates it
// (AddRegions) and makes it live (MakeLive), in that order, so that a
// failed copy or replication leaves "latest" as it was. It returns the
// changes made, also those made before a failure.
func Promote(ctx context.Context, store gallery.Store, image, version string, opts PromoteOptions) ([]Change, error) {
	var steps []func() ([]Change, error)
	if opts.CopyTo.Image != "" {
		steps = append(steps, func() ([]Change, error) {
			return Copy(ctx, store, image, version, opts.CopyTo.Store, opts.CopyTo.Image)
		})
	}
	if len(opts.AddRegions) > 0 {
		steps = append(steps, func() ([]Change, error) {
			return AddRegions(ctx, store, image, version, opts.AddRegions)
		})
	}
	if opts.Live {
		steps = append(steps, func() ([]Change, error) {
			return MakeLive(ctx, store, image, version)
		})
	}
	var changes []Change
	for _, step := range steps {
		ch, err := step()
		changes = append(changes, ch...)
		if err != nil {
			return changes, err
		}
	}
	return changes, nil
}

// Resolve returns image's version named version or, for "" and "latest",
// the version "latest" resolves to (an error when none qualifies).
func Resolve(ctx context.Context, store gallery.Store, image, version string) (gallery.ImageVersion, error) {
	if version != "" && version != "latest" {
		return store.Get(ctx, image, version)
	}
	all, err := store.List(ctx, image)
	if err != nil {
		return gallery.ImageVersion{}, err
	}
	v, ok := gallery.Latest(all)
	if !ok {
		return gallery.ImageVersion{}, fmt.Errorf("image %s has no version that \"latest\" resolves to (%d versions, none succeeded and not excluded)", image, len(all))
	}
	return v, nil
}
