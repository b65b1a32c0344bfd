package release_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/imagebake/imagebake/gallery"
	galleryazure "github.com/imagebake/imagebake/gallery/azure"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	"github.com/imagebake/imagebake/release"
)

const image = "github-runner-focal"

// now is the fixed clock seeds count their ages back from.
var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// seed is a version a test starts with.
type seed struct {
	name    string
	exclude bool
	failed  bool
	age     time.Duration // before now
}

// backend makes a store of one kind holding the seeded versions of image.
type backend struct {
	name string
	new  func(t *testing.T, seeds []seed) gallery.Store
}

var backends = []backend{{"local", newLocal}, {"azure", newAzure}}

func newLocal(t *testing.T, seeds []seed) gallery.Store {
	t.Helper()
	root := t.TempDir()
	s := local.New(filepath.Join(root, "gallery"), nil)
	seedLocal(t, s, root, image, seeds)
	return s
}

func seedLocal(t *testing.T, s *local.Store, root, img string, seeds []seed) {
	t.Helper()
	ctx := context.Background()
	for _, sd := range seeds {
		dir := filepath.Join(s.Root(), img, sd.name)
		if sd.failed {
			// A version directory with the store's creation marker
			// (.creating) but no metadata, whose creator is long gone, is
			// listed as Failed. A bare directory is not a version at all.
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			mk := filepath.Join(dir, ".creating")
			if err := os.WriteFile(mk, []byte(`{"pid":1,"pidStart":"1","host":"gone"}`), 0o644); err != nil {
				t.Fatal(err)
			}
			old := time.Now().Add(-48 * time.Hour)
			for _, p := range []string{mk, dir} {
				if err := os.Chtimes(p, old, old); err != nil {
					t.Fatal(err)
				}
			}
			continue
		}
		disk := filepath.Join(root, "disk-"+sd.name)
		if err := os.WriteFile(disk, []byte("fake disk "+sd.name), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(ctx, img, gallery.CreateRequest{Version: sd.name, Source: disk, ExcludeFromLatest: sd.exclude,
			Tags: map[string]string{gallery.TagRecipeHash: "h-" + sd.name}}); err != nil {
			t.Fatal(err)
		}
		// The local store stamps the real time; age the version by
		// rewriting its metadata.
		path := filepath.Join(dir, local.MetadataFile)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatal(err)
		}
		m["createdAt"] = now.Add(-sd.age).Format(time.RFC3339Nano)
		if data, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newAzure(t *testing.T, seeds []seed) gallery.Store {
	t.Helper()
	e := aztest.New(t, azmodel.Options{}, nil)
	seedAzure(t, e, image, seeds)
	return galleryazure.New(e.Clients(t), "image-gallery-rg", "runner_images", "eastus")
}

func seedAzure(t *testing.T, e *aztest.Env, img string, seeds []seed) {
	t.Helper()
	for _, sd := range seeds {
		if err := e.Model.SeedVersion(aztest.Subscription, "image-gallery-rg", "runner_images", img, azmodel.VersionSeed{
			Name: sd.name, ExcludeFromLatest: sd.exclude, Failed: sd.failed, PublishedDate: now.Add(-sd.age),
			Tags: map[string]string{gallery.TagRecipeHash: "h-" + sd.name}}); err != nil {
			t.Fatal(err)
		}
	}
}

func latestName(t *testing.T, s gallery.Store) string {
	t.Helper()
	all, err := s.List(context.Background(), image)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := gallery.Latest(all)
	return l.Name
}

func names(t *testing.T, s gallery.Store) []string {
	t.Helper()
	all, err := s.List(context.Background(), image)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, iv := range all {
		out = append(out, iv.Name)
	}
	return out
}

// summary reduces changes to "version what" for comparison.
func summary(cs []release.Change) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Version+" "+c.What)
	}
	return out
}

func TestRollback(t *testing.T) {
	day := 24 * time.Hour
	tests := []struct {
		name    string
		seeds   []seed
		to      string
		want    []string
		wantErr error // errors.Is target; nil means success
		errAny  bool  // any error will do
	}{
		{
			name:  "excludes the newer live versions",
			seeds: []seed{{name: "1.0.0"}, {name: "1.0.1"}, {name: "1.0.2"}, {name: "1.0.3", exclude: true}, {name: "1.1.0"}},
			to:    "1.0.1",
			want:  []string{"1.0.2 excluded-from-latest", "1.1.0 excluded-from-latest"},
		},
		{
			name:  "makes an excluded target live",
			seeds: []seed{{name: "1.0.0"}, {name: "1.0.1", exclude: true}, {name: "1.0.2"}},
			to:    "1.0.1",
			want:  []string{"1.0.1 live", "1.0.2 excluded-from-latest"},
		},
		{
			name:  "already latest",
			seeds: []seed{{name: "1.0.0"}, {name: "1.0.1"}, {name: "1.0.2", exclude: true}},
			to:    "1.0.1",
			want:  []string{},
		},
		{
			name:  "a failed newer version is left alone",
			seeds: []seed{{name: "1.0.0"}, {name: "1.0.1", age: day}, {name: "1.0.2", failed: true}},
			to:    "1.0.0",
			want:  []string{"1.0.1 excluded-from-latest"},
		},
		{
			name:    "missing target",
			seeds:   []seed{{name: "1.0.0"}},
			to:      "1.0.9",
			wantErr: gallery.ErrNotFound,
		},
		{
			name:   "failed target",
			seeds:  []seed{{name: "1.0.0"}, {name: "1.0.1", failed: true}},
			to:     "1.0.1",
			errAny: true,
		},
	}
	for _, b := range backends {
		for _, tt := range tests {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				ctx := context.Background()
				s := b.new(t, tt.seeds)
				before := latestName(t, s)
				got, err := release.Rollback(ctx, s, image, tt.to)
				if tt.wantErr != nil || tt.errAny {
					if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
						t.Fatalf("Rollback: err %v, want %v", err, tt.wantErr)
					}
					if l := latestName(t, s); l != before {
						t.Errorf("a failed rollback moved latest from %s to %s", before, l)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(summary(got), tt.want) {
					t.Errorf("changes %q, want %q", summary(got), tt.want)
				}
				if l := latestName(t, s); l != tt.to {
					t.Errorf("latest %s, want %s", l, tt.to)
				}
				again, err := release.Rollback(ctx, s, image, tt.to)
				if err != nil || len(again) != 0 {
					t.Errorf("second rollback: %q, %v; want no changes", summary(again), err)
				}
				if !slices.Equal(names(t, s), seedNames(tt.seeds)) {
					t.Errorf("versions %v, want all of %v kept", names(t, s), seedNames(tt.seeds))
				}
			})
		}
	}
}

func seedNames(seeds []seed) []string {
	var out []string
	for _, s := range seeds {
		out = append(out, s.name)
	}
	return out
}

func TestPromoteMakeLive(t *testing.T) {
	tests := []struct {
		name       string
		seeds      []seed
		version    string
		want       []string
		wantLatest string
		errAny     bool
	}{
		{"excluded highest becomes latest", []seed{{name: "1.0.0"}, {name: "1.0.1", exclude: true}}, "1.0.1", []string{"1.0.1 live"}, "1.0.1", false},
		{"already live", []seed{{name: "1.0.0"}, {name: "1.0.1"}}, "1.0.0", []string{}, "1.0.1", false},
		{"live but lower stays behind latest", []seed{{name: "1.0.0", exclude: true}, {name: "1.0.1"}}, "1.0.0", []string{"1.0.0 live"}, "1.0.1", false},
		{"failed", []seed{{name: "1.0.0"}, {name: "1.0.1", failed: true}}, "1.0.1", nil, "1.0.0", true},
		{"missing", []seed{{name: "1.0.0"}}, "2.0.0", nil, "1.0.0", true},
	}
	for _, b := range backends {
		for _, tt := range tests {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				ctx := context.Background()
				s := b.new(t, tt.seeds)
				got, err := release.MakeLive(ctx, s, image, tt.version)
				if tt.errAny {
					if err == nil {
						t.Fatal("MakeLive succeeded, want an error")
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(summary(got), tt.want) {
						t.Errorf("changes %q, want %q", summary(got), tt.want)
					}
					again, err := release.MakeLive(ctx, s, image, tt.version)
					if err != nil || len(again) != 0 {
						t.Errorf("second MakeLive: %q, %v; want no changes", summary(again), err)
					}
				}
				if l := latestName(t, s); l != tt.wantLatest {
					t.Errorf("latest %s, want %s", l, tt.wantLatest)
				}
			})
		}
	}
}

func TestPromoteAddRegions(t *testing.T) {
	tests := []struct {
		backend string
		name    string
		regions []gallery.Region
		want    []string
		errAny  bool
	}{
		{"azure", "adds a region", []gallery.Region{{Name: "westus", Replicas: 2}}, []string{"1.0.0 region westus"}, false},
		{"azure", "raises replicas and adds", []gallery.Region{{Name: "East US", Replicas: 3}, {Name: "westeurope"}}, []string{"1.0.0 region eastus", "1.0.0 region westeurope"}, false},
		{"azure", "present already", []gallery.Region{{Name: "eastus", Replicas: 1}}, []string{}, false},
		{"local", "local is always there", []gallery.Region{{Name: "local"}}, []string{}, false},
		{"local", "no other region", []gallery.Region{{Name: "westus"}}, nil, true},
		{"local", "no more replicas", []gallery.Region{{Name: "local", Replicas: 2}}, nil, true},
	}
	for _, b := range backends {
		for _, tt := range tests {
			if tt.backend != b.name {
				continue
			}
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				ctx := context.Background()
				s := b.new(t, []seed{{name: "1.0.0"}})
				got, err := release.AddRegions(ctx, s, image, "1.0.0", tt.regions)
				if tt.errAny {
					if err == nil {
						t.Fatalf("AddRegions succeeded with %q, want an error", summary(got))
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(summary(got), tt.want) {
					t.Errorf("changes %q, want %q", summary(got), tt.want)
				}
				iv, err := s.Get(ctx, image, "1.0.0")
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range tt.regions {
					found := false
					for _, have := range iv.Regions {
						if normalize(have.Name) == normalize(r.Name) && have.Replicas >= max(r.Replicas, 1) {
							found = true
						}
					}
					if !found {
						t.Errorf("region %s x%d missing from %+v", r.Name, r.Replicas, iv.Regions)
					}
				}
				again, err := release.AddRegions(ctx, s, image, "1.0.0", tt.regions)
				if err != nil || len(again) != 0 {
					t.Errorf("second AddRegions: %q, %v; want no changes", summary(again), err)
				}
			})
		}
	}
}

func normalize(s string) string {
	out := []rune{}
	for _, r := range s {
		if r != ' ' {
			if r >= 'A' && r <= 'Z' {
				r += 'a' - 'A'
			}
			out = append(out, r)
		}
	}
	return string(out)
}

func TestPrune(t *testing.T) {
	day := 24 * time.Hour
	five := []seed{
		{name: "1.0.0", age: 90 * day}, {name: "1.0.1", age: 60 * day}, {name: "1.0.2", age: 40 * day},
		{name: "1.0.3", age: 10 * day, exclude: true}, {name: "1.0.4", age: day, exclude: true},
	}
	tests := []struct {
		name  string
		seeds []seed
		opts  release.PruneOptions
		want  []string // deleted
	}{
		{"keep 2 protects latest below them", five, release.PruneOptions{Keep: 2}, []string{"1.0.0", "1.0.1"}},
		{"keep 1", five, release.PruneOptions{Keep: 1}, []string{"1.0.0", "1.0.1", "1.0.3"}},
		{"older than 50 days", five, release.PruneOptions{Keep: 0, OlderThan: 50 * day}, []string{"1.0.0", "1.0.1"}},
		{"older than 70 days, keep 1", five, release.PruneOptions{Keep: 1, OlderThan: 70 * day}, []string{"1.0.0"}},
		{"keep all", five, release.PruneOptions{Keep: 5}, []string{}},
		{"keep more than exist", five, release.PruneOptions{Keep: 10}, []string{}},
		{"failed versions go too", []seed{{name: "1.0.0", age: 90 * day}, {name: "1.0.1", failed: true}, {name: "1.0.2"}, {name: "1.0.3"}},
			release.PruneOptions{Keep: 1}, []string{"1.0.0", "1.0.1", "1.0.2"}},
		// Issue 12 #9: a failed version among the newest does not count as kept.
		{"keep counts usable versions only", []seed{{name: "1.0.0", age: 90 * day}, {name: "1.0.1", age: 60 * day}, {name: "1.0.2", failed: true}},
			release.PruneOptions{Keep: 2}, []string{"1.0.2"}},
	}
	for _, b := range backends {
		for _, tt := range tests {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				ctx := context.Background()
				s := b.new(t, tt.seeds)
				tt.opts.Now = now
				latestBefore := latestName(t, s)
				plan, err := release.PlanPrune(ctx, s, image, tt.opts)
				if err != nil {
					t.Fatal(err)
				}
				if got := versionsOf(plan); !slices.Equal(got, tt.want) {
					t.Fatalf("plan %q, want %q", got, tt.want)
				}
				if !slices.Equal(names(t, s), seedNames(tt.seeds)) {
					t.Fatalf("planning deleted something: %v", names(t, s))
				}
				done, err := release.ApplyPrune(ctx, s, image, plan)
				if err != nil {
					t.Fatal(err)
				}
				if got := versionsOf(done); !slices.Equal(got, tt.want) {
					t.Errorf("deleted %q, want %q", got, tt.want)
				}
				var left []string
				for _, n := range seedNames(tt.seeds) {
					if !slices.Contains(tt.want, n) {
						left = append(left, n)
					}
				}
				if got := names(t, s); !slices.Equal(got, left) {
					t.Errorf("left %v, want %v", got, left)
				}
				if l := latestName(t, s); l != latestBefore {
					t.Errorf("latest %s after prune, was %s", l, latestBefore)
				}
				again, err := release.Prune(ctx, s, image, tt.opts)
				if err != nil || len(again) != 0 {
					t.Errorf("second prune: %q, %v; want no changes", summary(again), err)
				}
			})
		}
	}
}

func versionsOf(cs []release.Change) []string {
	out := []string{}
	for _, c := range cs {
		if c.What != release.WhatDeleted {
			continue
		}
		out = append(out, c.Version)
	}
	return out
}

func TestPruneRefusesLatest(t *testing.T) {
	s := newLocal(t, []seed{{name: "1.0.0"}, {name: "1.0.1"}})
	plan := []release.Change{{Version: "1.0.1", What: release.WhatDeleted}}
	if _, err := release.ApplyPrune(context.Background(), s, image, plan); err == nil {
		t.Fatal("ApplyPrune deleted the latest version")
	}
	if got := names(t, s); !slices.Equal(got, []string{"1.0.0", "1.0.1"}) {
		t.Errorf("versions %v", got)
	}
	if _, err := release.PlanPrune(context.Background(), s, image, release.PruneOptions{Keep: -1}); err == nil {
		t.Error("PlanPrune accepted a negative keep")
	}
}

func TestPromoteCopyLocal(t *testing.T) {
	ctx := context.Background()
	src := newLocal(t, []seed{{name: "1.0.0"}, {name: "1.0.1", exclude: true}})
	dst := local.New(t.TempDir(), nil)
	got, err := release.Copy(ctx, src, image, "1.0.1", dst, "other-image")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(summary(got), []string{"1.0.1 copied"}) {
		t.Errorf("changes %q", summary(got))
	}
	a, _ := src.Get(ctx, image, "1.0.1")
	b, err := dst.Get(ctx, "other-image", "1.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 == "" || a.SHA256 != b.SHA256 || !b.ExcludeFromLatest || b.Tags[release.TagCopiedFrom] != a.ID || b.Tags[gallery.TagRecipeHash] != "h-1.0.1" {
		t.Errorf("copy %+v of %+v", b, a)
	}
	again, err := release.Copy(ctx, src, image, "1.0.1", dst, "other-image")
	if err != nil || len(again) != 0 {
		t.Errorf("second copy: %q, %v; want no changes", summary(again), err)
	}
	// Another version of that name in the target is not overwritten.
	if _, err := release.Copy(ctx, src, image, "1.0.0", dst, "other-image"); err != nil {
		t.Fatal(err)
	}
	other := newLocal(t, []seed{{name: "1.0.0"}})
	if _, err := release.Copy(ctx, other, image, "1.0.0", dst, "other-image"); !errors.Is(err, gallery.ErrVersionExists) {
		t.Errorf("copy over an unrelated version: %v, want ErrVersionExists", err)
	}
}

func TestPromoteCopyAzure(t *testing.T) {
	ctx := context.Background()
	e := aztest.New(t, azmodel.Options{}, nil)
	if err := e.Model.SeedGallery(azmodel.GallerySeed{SubscriptionID: aztest.Subscription, ResourceGroup: "image-gallery-rg", Location: "eastus",
		Gallery: "runner_images", Image: "github-runner-focal-prod"}); err != nil {
		t.Fatal(err)
	}
	seedAzure(t, e, image, []seed{{name: "1.0.0"}})
	s := galleryazure.New(e.Clients(t), "image-gallery-rg", "runner_images", "eastus")
	got, err := release.Copy(ctx, s, image, "1.0.0", s, "github-runner-focal-prod")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(summary(got), []string{"1.0.0 copied"}) {
		t.Errorf("changes %q", summary(got))
	}
	srcV, _ := s.Get(ctx, image, "1.0.0")
	vs := e.Model.GalleryVersions(azmodel.GalleryImageID(aztest.Subscription, "image-gallery-rg", "runner_images", "github-runner-focal-prod"))
	if len(vs) != 1 || vs[0].Name != "1.0.0" || !sameID(vs[0].Source, srcV.ID) {
		t.Fatalf("target versions %+v, want 1.0.0 from %s", vs, srcV.ID)
	}
	again, err := release.Copy(ctx, s, image, "1.0.0", s, "github-runner-focal-prod")
	if err != nil || len(again) != 0 {
		t.Errorf("second copy: %q, %v; want no changes", summary(again), err)
	}
}

func sameID(a, b string) bool { return normalize(a) == normalize(b) }

func TestList(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.new(t, []seed{{name: "1.0.0"}, {name: "1.0.2", exclude: true}, {name: "1.0.1"}})
			got, err := release.List(context.Background(), s, image)
			if err != nil {
				t.Fatal(err)
			}
			var rows []string
			for _, v := range got {
				row := v.Name
				if v.Latest {
					row += "*"
				}
				if len(v.Regions) == 0 || v.Regions[0].State == gallery.ReplicationUnknown {
					t.Errorf("%s: no replication state: %+v", v.Name, v.Regions)
				}
				rows = append(rows, row)
			}
			if want := []string{"1.0.0", "1.0.1*", "1.0.2"}; !reflect.DeepEqual(rows, want) {
				t.Errorf("rows %q, want %q", rows, want)
			}
			// The JSON shape versions list prints: the version's fields and latest.
			data, err := json.Marshal(got[1])
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil || m["latest"] != true || m["name"] != "1.0.1" {
				t.Errorf("JSON %s (%v)", data, err)
			}
		})
	}
}

// TestListMissingGallery is issue 12 item 13 at the release layer: a
// gallery that does not exist is not found, not an empty list.
func TestListMissingGallery(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	s := galleryazure.New(e.Clients(t), "image-gallery-rg", "typo", "eastus")
	if got, err := release.List(context.Background(), s, image); !errors.Is(err, gallery.ErrNotFound) {
		t.Fatalf("List in a missing gallery: %v, %v; want ErrNotFound", got, err)
	}
}

func TestPromote(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		opts       func(dst gallery.Store) release.PromoteOptions
		want       []string
		wantErr    bool
		wantLatest string
	}{
		{"copy, region and live in that order", func(dst gallery.Store) release.PromoteOptions {
			return release.PromoteOptions{CopyTo: release.CopyTarget{Store: dst, Image: "other"}, AddRegions: []gallery.Region{{Name: "local"}}, Live: true}
		}, []string{"1.0.1 copied", "1.0.1 live"}, false, "1.0.1"},
		// The regions step fails before live: "latest" stays where it was.
		{"failed regions leave latest", func(gallery.Store) release.PromoteOptions {
			return release.PromoteOptions{AddRegions: []gallery.Region{{Name: "westus"}}, Live: true}
		}, []string{}, true, "1.0.0"},
		// The copy fails first: nothing else happens.
		{"failed copy changes nothing", func(dst gallery.Store) release.PromoteOptions {
			return release.PromoteOptions{CopyTo: release.CopyTarget{Store: dst, Image: "taken"}, Live: true}
		}, []string{}, true, "1.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newLocal(t, []seed{{name: "1.0.0"}, {name: "1.0.1", exclude: true}})
			dstRoot := t.TempDir()
			dst := local.New(filepath.Join(dstRoot, "g"), nil)
			seedLocal(t, dst, dstRoot, "taken", []seed{{name: "1.0.1"}})
			got, err := release.Promote(ctx, src, image, "1.0.1", tt.opts(dst))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %t", err, tt.wantErr)
			}
			if !reflect.DeepEqual(summary(got), tt.want) {
				t.Errorf("changes %q, want %q", summary(got), tt.want)
			}
			if l := latestName(t, src); l != tt.wantLatest {
				t.Errorf("latest %s, want %s", l, tt.wantLatest)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.new(t, []seed{{name: "1.0.0"}, {name: "1.0.1"}, {name: "1.0.2", exclude: true}})
			for in, want := range map[string]string{"": "1.0.1", "latest": "1.0.1", "1.0.2": "1.0.2"} {
				v, err := release.Resolve(ctx, s, image, in)
				if err != nil || v.Name != want {
					t.Errorf("Resolve(%q) = %s, %v; want %s", in, v.Name, err, want)
				}
			}
			if _, err := release.Resolve(ctx, s, image, "9.9.9"); !errors.Is(err, gallery.ErrNotFound) {
				t.Errorf("Resolve(9.9.9): %v, want ErrNotFound", err)
			}
			none := b.new(t, []seed{{name: "1.0.0", exclude: true}})
			if _, err := release.Resolve(ctx, none, image, "latest"); err == nil {
				t.Error("Resolve(latest) with every version excluded succeeded")
			}
		})
	}
}
