package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/gallery/local"
	"github.com/imagebake/imagebake/release"
)

// runRelease runs the release commands through the real run().
func runRelease(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCLI(t, args...)
}

// releaseGallery makes a local gallery holding versions of demo; names
// ending in "!" are created excluded from latest.
func releaseGallery(t *testing.T, versions ...string) (string, *local.Store) {
	t.Helper()
	root := t.TempDir()
	s := local.New(filepath.Join(root, "gallery"), nil)
	for _, v := range versions {
		name, excluded := strings.CutSuffix(v, "!")
		disk := filepath.Join(root, "disk-"+name)
		if err := os.WriteFile(disk, []byte("fake "+name), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Create(context.Background(), "demo", gallery.CreateRequest{Version: name, Source: disk, ExcludeFromLatest: excluded}); err != nil {
			t.Fatal(err)
		}
	}
	return s.Root(), s
}

func decodeResult(t *testing.T, stdout string) releaseResult {
	t.Helper()
	var res releaseResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	return res
}

func releaseChanges(cs []release.Change) []string {
	out := []string{}
	for _, c := range cs {
		out = append(out, c.Version+" "+c.What)
	}
	return out
}

func TestReleaseCommandsJSON(t *testing.T) {
	tests := []struct {
		name       string
		versions   []string
		args       []string
		want       []string
		applied    bool
		wantLatest string
		left       []string
	}{
		{"promote live", []string{"1.0.0", "1.0.1!"}, []string{"promote", "demo@1.0.1", "--live"},
			[]string{"1.0.1 live"}, true, "1.0.1", []string{"1.0.0", "1.0.1"}},
		{"promote local region", []string{"1.0.0"}, []string{"promote", "demo@1.0.0", "--add-region", "local=1"},
			[]string{}, true, "1.0.0", []string{"1.0.0"}},
		{"rollback", []string{"1.0.0", "1.0.1", "1.0.2"}, []string{"rollback", "demo", "--to", "1.0.0"},
			[]string{"1.0.1 excluded-from-latest", "1.0.2 excluded-from-latest"}, true, "1.0.0", []string{"1.0.0", "1.0.1", "1.0.2"}},
		{"prune plan", []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"}, []string{"prune", "demo", "--keep", "2"},
			[]string{"1.0.0 deleted", "1.0.1 deleted"}, false, "1.0.3", []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"}},
		{"prune yes", []string{"1.0.0", "1.0.1", "1.0.2", "1.0.3"}, []string{"prune", "demo", "--keep", "2", "--yes"},
			[]string{"1.0.0 deleted", "1.0.1 deleted"}, true, "1.0.3", []string{"1.0.2", "1.0.3"}},
		{"prune keeps recent", []string{"1.0.0", "1.0.1"}, []string{"prune", "demo", "--keep", "0", "--older-than", "30d", "--yes"},
			[]string{}, true, "1.0.1", []string{"1.0.0", "1.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, s := releaseGallery(t, tt.versions...)
			args := append(tt.args, "--gallery-dir", dir, "--output", "json")
			code, stdout, stderr := runRelease(t, args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
			}
			res := decodeResult(t, stdout)
			if !reflect.DeepEqual(releaseChanges(res.Changes), tt.want) || res.Applied != tt.applied || res.Latest != tt.wantLatest {
				t.Errorf("result %+v, want changes %q applied %t latest %s", res, tt.want, tt.applied, tt.wantLatest)
			}
			all, err := s.List(context.Background(), "demo")
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, v := range all {
				left = append(left, v.Name)
			}
			if !reflect.DeepEqual(left, tt.left) {
				t.Errorf("versions left %v, want %v", left, tt.left)
			}
			if !tt.applied {
				return
			}
			// Idempotent: the same command again changes nothing.
			code, stdout, stderr = runRelease(t, args...)
			if code != 0 {
				t.Fatalf("second run exit %d\n%s\n%s", code, stdout, stderr)
			}
			if again := decodeResult(t, stdout); len(again.Changes) != 0 {
				t.Errorf("second run changed %q", releaseChanges(again.Changes))
			}
		})
	}
}

func TestReleaseCommandsText(t *testing.T) {
	dir, _ := releaseGallery(t, "1.0.0", "1.0.1")
	code, stdout, stderr := runRelease(t, "rollback", "demo", "--to", "1.0.0", "--gallery-dir", dir)
	if code != 0 || !strings.Contains(stdout, "1.0.1: excluded-from-latest (live -> excluded)") || !strings.Contains(stdout, "latest resolves to 1.0.0") {
		t.Errorf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, _ = runRelease(t, "rollback", "demo", "--to", "1.0.0", "--gallery-dir", dir)
	if code != 0 || !strings.Contains(stdout, "demo: nothing to change") {
		t.Errorf("second rollback: exit %d\n%s", code, stdout)
	}
	code, stdout, _ = runRelease(t, "prune", "demo", "--keep", "0", "--gallery-dir", dir)
	if code != 0 || !strings.Contains(stdout, "would delete 1 versions") || !strings.Contains(stdout, "--yes") {
		t.Errorf("prune plan: exit %d\n%s", code, stdout)
	}
}

func TestReleaseCommandsPromoteCopy(t *testing.T) {
	dir, _ := releaseGallery(t, "1.0.0")
	other := t.TempDir()
	args := []string{"promote", "demo@1.0.0", "--copy-to", "demo-prod", "--copy-to-gallery-dir", other, "--gallery-dir", dir, "--output", "json"}
	for i, want := range [][]string{{"1.0.0 copied"}, {}} {
		code, stdout, stderr := runRelease(t, args...)
		if code != 0 {
			t.Fatalf("run %d: exit %d\n%s\n%s", i, code, stdout, stderr)
		}
		if got := releaseChanges(decodeResult(t, stdout).Changes); !reflect.DeepEqual(got, want) {
			t.Errorf("run %d: changes %q, want %q", i, got, want)
		}
	}
	if _, err := local.New(other, nil).Get(context.Background(), "demo-prod", "1.0.0"); err != nil {
		t.Errorf("copy not in the target gallery: %v", err)
	}
}

func TestReleaseCommandsErrors(t *testing.T) {
	dir, _ := releaseGallery(t, "1.0.0", "1.0.1")
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"promote without action", []string{"promote", "demo@1.0.0"}, exitUsage, "nothing to do"},
		{"promote without version", []string{"promote", "demo", "--live"}, exitUsage, "@VERSION"},
		{"bad region", []string{"promote", "demo@1.0.0", "--add-region", "westus=0"}, exitUsage, "replicas"},
		{"local has no westus", []string{"promote", "demo@1.0.0", "--add-region", "westus=2"}, exitFailed, "local"},
		{"rollback without to", []string{"rollback", "demo"}, exitUsage, "--to"},
		{"rollback to missing", []string{"rollback", "demo", "--to", "9.9.9"}, exitFailed, "not found"},
		{"prune without keep", []string{"prune", "demo"}, exitUsage, "--keep"},
		{"prune bad age", []string{"prune", "demo", "--keep", "1", "--older-than", "soon"}, exitUsage, "--older-than"},
		{"azure without gallery", []string{"rollback", "demo", "--to", "1.0.0", "--target", "azure"}, exitUsage, "--gallery-resource-group"},
		{"bad target", []string{"rollback", "demo", "--to", "1.0.0", "--target", "gcp"}, exitUsage, "--target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runRelease(t, append(tt.args, "--gallery-dir", dir)...)
			if code != tt.code || !strings.Contains(stderr, tt.msg) {
				t.Errorf("exit %d, want %d with %q\nstdout: %s\nstderr: %s", code, tt.code, tt.msg, stdout, stderr)
			}
		})
	}
	// None of that changed the gallery.
	code, stdout, _ := runRelease(t, "rollback", "demo", "--to", "1.0.1", "--gallery-dir", dir)
	if code != 0 || !strings.Contains(stdout, "nothing to change") {
		t.Errorf("gallery changed by failed commands: %s", stdout)
	}
}
