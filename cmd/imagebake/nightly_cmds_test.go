package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/internal/azmodel"
	"github.com/imagebake/imagebake/internal/aztest"
	"github.com/imagebake/imagebake/provision/qemu"
	"github.com/imagebake/imagebake/recipes"
)

func githubOutput(t *testing.T, env []string) string {
	t.Helper()
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GITHUB_OUTPUT="); ok {
			b, err := os.ReadFile(v)
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatal("no GITHUB_OUTPUT in env")
	return ""
}

// TestNightlyIfChangedAzure checks --if-changed end to end: an unchanged
// recipe is skipped without creating anything, --max-age forces a bake, and
// the tags a real bake writes make the next --if-changed skip.
func TestNightlyIfChangedAzure(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	r, err := recipes.Load("../../recipes/github-runner-focal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	base, err := e.Clients(t).ResolveImage(context.Background(), r.Build.Location, r.Base.Azure)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Model.SeedVersion(aztest.Subscription, "image-gallery-rg", "runner_images", "github-runner-focal", azmodel.VersionSeed{
		Name: "1.0.0", PublishedDate: time.Now().Add(-10 * 24 * time.Hour),
		Tags: map[string]string{gallery.TagRecipeHash: r.Hash(), gallery.TagBaseVersion: base.Version, gallery.TagImagebake: "dev"},
	}); err != nil {
		t.Fatal(err)
	}
	env := azureEnv(t, e)
	args := []string{"bake", "recipes/github-runner-focal.yaml", "--target", "azure", "--resource-manager-endpoint", e.Server.URL(),
		"--ssh-port", strconv.Itoa(e.Port), "--poll-interval", "10ms", "--cache-dir", t.TempDir(), "--if-changed", "--output", "json"}

	res := runBinary(t, env, args...)
	if res.code != 0 {
		t.Fatalf("--if-changed exited %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var out struct{ Result, Reason string }
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, res.stdout)
	}
	if out.Result != "skipped" || !strings.Contains(out.Reason, "1.0.0 was baked from the same recipe") || !strings.Contains(out.Reason, "10 days ago") {
		t.Errorf("skip output: %+v", out)
	}
	if gh := githubOutput(t, env); !strings.Contains(gh, "skipped=true\n") {
		t.Errorf("GITHUB_OUTPUT %q lacks skipped=true", gh)
	}
	if n := e.VMCount.Load(); n != 0 || len(e.Versions()) != 1 || len(e.BuildLeftovers()) != 0 {
		t.Fatalf("a skipped bake did work: %d VMs, %d versions, leftovers %v", n, len(e.Versions()), e.BuildLeftovers())
	}

	// Older than --max-age: bake.
	res = runBinary(t, env, append(args, "--max-age", "7d")...)
	if res.code != 0 || !strings.Contains(res.stdout, `"result": "baked"`) {
		t.Fatalf("--max-age 7d: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "more than the maximum age of 7 days") {
		t.Errorf("no reason for baking:\n%s", res.stderr)
	}

	// What the bake recorded must match what --if-changed computes.
	res = runBinary(t, env, args...)
	if res.code != 0 || !strings.Contains(res.stdout, `"result": "skipped"`) || !strings.Contains(res.stdout, "1.0.1 was baked") {
		t.Fatalf("after a bake, --if-changed did not skip: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if len(e.Versions()) != 2 {
		t.Errorf("want 2 versions, got %d", len(e.Versions()))
	}
}

// TestNightlyIfChangedLocal skips a local bake whose cached base, recipe
// and imagebake match the newest version, without QEMU.
func TestNightlyIfChangedLocal(t *testing.T) {
	r, err := recipes.Load("../../recipes/local-demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cache, gal := t.TempDir(), t.TempDir()
	baseDir := qemu.BaseDir(cache, "bookworm")
	if err := os.MkdirAll(baseDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(baseDir, "base.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(t.TempDir(), "disk.qcow2")
	if err := os.WriteFile(disk, []byte("not really a disk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := local.New(gal, nil).Create(context.Background(), r.Gallery.Image, gallery.CreateRequest{Version: "1.0.0", Source: disk, RecipeHash: r.Hash(),
		Tags: map[string]string{gallery.TagRecipeHash: r.Hash(), gallery.TagBaseVersion: filepath.Base(baseDir), gallery.TagImagebake: "dev"}}); err != nil {
		t.Fatal(err)
	}
	ghOut := filepath.Join(t.TempDir(), "gh")
	env := cleanEnv("GITHUB_OUTPUT=" + ghOut)
	res := runBinary(t, env, "bake", "recipes/local-demo.yaml", "--if-changed", "--gallery-dir", gal, "--cache-dir", cache)
	if res.code != 0 || !strings.Contains(res.stdout, "skipped local-demo: 1.0.0 was baked from the same recipe") {
		t.Fatalf("local --if-changed: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if b, _ := os.ReadFile(ghOut); string(b) != "skipped=true\n" {
		t.Errorf("GITHUB_OUTPUT = %q", b)
	}
}

func TestNightlyMaxAgeUsage(t *testing.T) {
	env := cleanEnv("GITHUB_OUTPUT=" + filepath.Join(t.TempDir(), "gh"))
	res := runBinary(t, env, "bake", "recipes/local-demo.yaml", "--max-age", "7d", "--cache-dir", t.TempDir())
	if res.code != 2 || !strings.Contains(res.stderr, "--max-age only applies with --if-changed") {
		t.Errorf("--max-age without --if-changed: exit %d\n%s", res.code, res.stderr)
	}
	res = runBinary(t, env, "bake", "recipes/local-demo.yaml", "--if-changed", "--max-age", "soon", "--cache-dir", t.TempDir())
	if res.code != 2 || !strings.Contains(res.stderr, "--max-age") {
		t.Errorf("bad --max-age: exit %d\n%s", res.code, res.stderr)
	}
}

func TestGCCommandAzure(t *testing.T) {
	e := aztest.New(t, azmodel.Options{}, nil)
	c := e.Clients(t)
	old := time.Now().Add(-8 * time.Hour).UTC().Format(time.RFC3339)
	for name, tags := range map[string]map[string]string{
		"imagebake-demo-old": {"imagebake.build-id": "old", "imagebake.created": old},
		"imagebake-demo-new": {"imagebake.build-id": "new", "imagebake.created": time.Now().UTC().Format(time.RFC3339)},
		"not-ours":           {"owner": "someone", "imagebake.created": old},
	} {
		if err := c.CreateResourceGroup(context.Background(), name, "eastus", tags); err != nil {
			t.Fatal(err)
		}
	}
	env := azureEnv(t, e)
	gcRegistered(t, env)
	// The "--flag=value" spelling; "--flag value" is covered by TestInterspersed.
	args := []string{"gc", "--target=azure", "--resource-manager-endpoint=" + e.Server.URL(), "--poll-interval=10ms", "--output=json"}
	type gcOut struct {
		Applied bool
		Items   []struct {
			Name, Action string
			Done         bool
		}
	}
	for _, yes := range []bool{false, true} {
		a := args
		if yes {
			a = append(a, "--yes")
		}
		res := runBinary(t, env, a...)
		if res.code != 0 {
			t.Fatalf("gc (yes=%v) exited %d\n%s%s", yes, res.code, res.stdout, res.stderr)
		}
		var out gcOut
		if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
			t.Fatalf("gc output is not JSON: %v\n%s", err, res.stdout)
		}
		var deleted []string
		for _, it := range out.Items {
			if it.Name == "not-ours" {
				t.Errorf("gc listed a group without imagebake.build-id")
			}
			if it.Action == "delete" {
				deleted = append(deleted, it.Name)
				if it.Done != yes {
					t.Errorf("%s done=%v with --yes=%v", it.Name, it.Done, yes)
				}
			}
		}
		if len(deleted) != 1 || deleted[0] != "imagebake-demo-old" || out.Applied != yes {
			t.Errorf("gc (yes=%v): %+v", yes, out)
		}
	}
	var groups []string
	for _, r := range e.Model.Resources() {
		if r.Type == azmodel.TypeResourceGroup {
			groups = append(groups, r.Name)
		}
	}
	if strings.Contains(strings.Join(groups, " "), "imagebake-demo-old") || len(groups) != 3 {
		t.Errorf("groups after gc --yes: %v", groups)
	}
}

// gcRegistered fails when the binary has no gc command.
func gcRegistered(t *testing.T, env []string) {
	t.Helper()
	if res := runBinary(t, env, "gc", "--help"); !strings.Contains(res.stdout, "--ttl") {
		t.Fatalf("the binary has no gc command:\n%s%s", res.stdout, res.stderr)
	}
}

// runApp runs the CLI in-process through the real run().
func runApp(t *testing.T, args ...string) result {
	t.Helper()
	code, stdout, stderr := runCLI(t, args...)
	return result{code, stdout, stderr}
}

func TestGCCommandLocal(t *testing.T) {
	tmp := t.TempDir()
	old := time.Now().Add(-10 * time.Hour)
	for _, name := range []string{"imagebake-qemu-old", "imagebake-qemu-new", "unrelated-old"} {
		dir := filepath.Join(tmp, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// gc only touches folders imagebake marked as its own; this
		// marker names a creator that has exited (PIDStart "1").
		var marker string
		if strings.HasPrefix(name, qemu.TempDirPrefix) {
			host, _ := os.Hostname()
			b, err := json.Marshal(qemu.Marker{PID: os.Getpid(), PIDStart: "1", UID: os.Getuid(), Host: host})
			if err != nil {
				t.Fatal(err)
			}
			marker = filepath.Join(dir, qemu.MarkerFile)
			if err := os.WriteFile(marker, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if name != "imagebake-qemu-new" {
			for _, p := range []string{marker, dir} {
				if p == "" {
					continue
				}
				if err := os.Chtimes(p, old, old); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	t.Setenv("TMPDIR", tmp)
	res := runApp(t, "gc", "--ttl=6h")
	if res.code != 0 || !strings.Contains(res.stdout, "plan only") || !strings.Contains(res.stdout, "imagebake-qemu-old") {
		t.Fatalf("gc plan: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if _, err := os.Stat(filepath.Join(tmp, "imagebake-qemu-old")); err != nil {
		t.Fatal("the plan removed a folder")
	}
	res = runApp(t, "gc", "--yes", "--output=json", "--ttl=6h")
	if res.code != 0 {
		t.Fatalf("gc --yes: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for name, want := range map[string]bool{"imagebake-qemu-old": false, "imagebake-qemu-new": true, "unrelated-old": true} {
		_, err := os.Stat(filepath.Join(tmp, name))
		if (err == nil) != want {
			t.Errorf("%s exists=%v, want %v", name, err == nil, want)
		}
	}
	if !strings.Contains(res.stdout, `"applied": true`) || !strings.Contains(res.stdout, `"done": true`) {
		t.Errorf("gc --yes JSON:\n%s", res.stdout)
	}
	if res := runApp(t, "gc", "--ttl=-1h"); res.code != 2 {
		t.Errorf("negative --ttl: exit %d", res.code)
	}
}
