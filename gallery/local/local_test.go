package local

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imagebake/imagebake/gallery"
	"github.com/imagebake/imagebake/internal/proc"
)

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// writeSource writes a source disk file with the given content.
func writeSource(t testing.TB, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func names(vs []gallery.ImageVersion) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "gallery")
	src := t.TempDir()
	s := New(root, nil)

	// An image nothing was published to is not found, as on Azure (issue
	// 12 #13: a misspelt image must not list as "no versions").
	if vs, err := s.List(ctx, "runner"); !errors.Is(err, gallery.ErrNotFound) || len(vs) != 0 {
		t.Fatalf("List of a new gallery = %v, %v; want gallery.ErrNotFound", vs, err)
	}

	eol := time.Date(2027, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	contents := map[string][]byte{}
	for _, v := range []string{"1.0.10", "1.0.9", "1.0.2", "2.0.0", "1.1.0"} {
		contents[v] = []byte("disk of " + v)
		req := gallery.CreateRequest{
			Version:    v,
			Source:     writeSource(t, src, v+".qcow2", contents[v]),
			RecipeHash: "sha256:abc",
			Tags:       map[string]string{"team": "platform"},
			EndOfLife:  &eol,
			Regions:    []gallery.Region{{Name: "local", Replicas: 1}},
		}
		iv, err := s.Create(ctx, "runner", req)
		if err != nil {
			t.Fatalf("Create %s: %v", v, err)
		}
		if iv.Name != v || iv.ProvisioningState != gallery.StateSucceeded || iv.SHA256 != sum(contents[v]) ||
			iv.SizeBytes != int64(len(contents[v])) || iv.RecipeHash != "sha256:abc" || iv.Tags["team"] != "platform" ||
			iv.EndOfLife == nil || !iv.EndOfLife.Equal(eol) || iv.PublishedAt.IsZero() {
			t.Errorf("Create %s = %+v", v, iv)
		}
		if got := readFile(t, iv.Path); !bytes.Equal(got, contents[v]) {
			t.Errorf("%s disk = %q, want %q", v, got, contents[v])
		}
		if iv.Path != filepath.Join(root, "runner", v, DiskFile) {
			t.Errorf("%s path = %s", v, iv.Path)
		}
		if len(iv.Regions) != 1 || iv.Regions[0] != (gallery.RegionStatus{Name: "local", Replicas: 1, State: gallery.ReplicationCompleted, Progress: 100}) {
			t.Errorf("%s regions = %+v", v, iv.Regions)
		}
		// Copy, not move: the source stays.
		if _, err := os.Stat(req.Source); err != nil {
			t.Errorf("source of %s: %v", v, err)
		}
		// No leftovers of the creation.
		entries, _ := os.ReadDir(filepath.Dir(iv.Path))
		var left []string
		for _, e := range entries {
			left = append(left, e.Name())
		}
		if !slices.Equal(left, []string{DiskFile, MetadataFile}) {
			t.Errorf("%s directory holds %v", v, left)
		}
	}

	vs, err := s.List(ctx, "runner")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := names(vs), []string{"1.0.2", "1.0.9", "1.0.10", "1.1.0", "2.0.0"}; !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if l, ok := gallery.Latest(vs); !ok || l.Name != "2.0.0" {
		t.Errorf("Latest = %s %v, want 2.0.0", l.Name, ok)
	}

	got, err := s.Get(ctx, "runner", "1.0.9")
	if err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != sum(contents["1.0.9"]) || got.Name != "1.0.9" {
		t.Errorf("Get = %+v", got)
	}
	if _, err := s.Get(ctx, "runner", "1.0.3"); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("Get of a missing version: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "other", "1.0.3"); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("Get of a missing image: %v, want ErrNotFound", err)
	}

	// Update: exclude the highest, and latest falls back.
	yes := true
	newEOL := time.Date(2028, 5, 6, 0, 0, 0, 0, time.UTC)
	up, err := s.Update(ctx, "runner", "2.0.0", gallery.Update{ExcludeFromLatest: &yes, EndOfLife: &newEOL, Tags: map[string]string{"state": "retired"}})
	if err != nil {
		t.Fatal(err)
	}
	if !up.ExcludeFromLatest || !up.EndOfLife.Equal(newEOL) || !maps2eq(up.Tags, map[string]string{"state": "retired"}) || up.SHA256 != sum(contents["2.0.0"]) {
		t.Errorf("Update = %+v", up)
	}
	vs, _ = s.List(ctx, "runner")
	if l, ok := gallery.Latest(vs); !ok || l.Name != "1.1.0" {
		t.Errorf("Latest after excluding 2.0.0 = %s %v, want 1.1.0", l.Name, ok)
	}
	// Only the fields set change.
	no := false
	up, err = s.Update(ctx, "runner", "2.0.0", gallery.Update{ExcludeFromLatest: &no})
	if err != nil {
		t.Fatal(err)
	}
	if up.ExcludeFromLatest || !up.EndOfLife.Equal(newEOL) || up.Tags["state"] != "retired" {
		t.Errorf("second Update = %+v", up)
	}
	if _, err := s.Update(ctx, "runner", "2.0.0", gallery.Update{Regions: []gallery.Region{{Name: "eastus"}}}); err == nil {
		t.Error("Update to region eastus accepted")
	}
	if _, err := s.Update(ctx, "runner", "3.0.0", gallery.Update{ExcludeFromLatest: &yes}); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("Update of a missing version: %v, want ErrNotFound", err)
	}

	if err := s.Delete(ctx, "runner", "1.0.9"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, "runner", "1.0.9"); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Get(ctx, "runner", "1.0.9"); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	vs, _ = s.List(ctx, "runner")
	if got, want := names(vs), []string{"1.0.2", "1.0.10", "1.1.0", "2.0.0"}; !slices.Equal(got, want) {
		t.Errorf("List after Delete = %v, want %v", got, want)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "runner"))
	if len(entries) != 4 {
		t.Errorf("image directory holds %d entries after Delete, want 4", len(entries))
	}
	// A deleted name can be created again.
	if _, err := s.Create(ctx, "runner", gallery.CreateRequest{Version: "1.0.9", Source: writeSource(t, src, "again", []byte("again"))}); err != nil {
		t.Errorf("re-Create after Delete: %v", err)
	}
}

func maps2eq(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestCreateNeverOverwrites(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	src := t.TempDir()
	s := New(root, nil)
	first, err := s.Create(ctx, "img", gallery.CreateRequest{Version: "1.0.0", Source: writeSource(t, src, "a", []byte("first disk")), Tags: map[string]string{"n": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Dir(first.Path)
	diskBefore := readFile(t, filepath.Join(dir, DiskFile))
	metaBefore := readFile(t, filepath.Join(dir, MetadataFile))

	tests := []struct {
		name string
		req  gallery.CreateRequest
	}{
		{"copy", gallery.CreateRequest{Version: "1.0.0", Source: writeSource(t, src, "b", []byte("second disk")), Tags: map[string]string{"n": "2"}}},
		{"move", gallery.CreateRequest{Version: "1.0.0", Source: writeSource(t, src, "c", []byte("third disk")), MoveSource: true, ExcludeFromLatest: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Create(ctx, "img", tt.req)
			if !errors.Is(err, gallery.ErrVersionExists) {
				t.Fatalf("second Create: %v, want ErrVersionExists", err)
			}
			if !strings.Contains(err.Error(), "1.0.0") {
				t.Errorf("error %q does not name the version", err)
			}
			if got := readFile(t, filepath.Join(dir, DiskFile)); !bytes.Equal(got, diskBefore) {
				t.Errorf("disk changed: %q", got)
			}
			if got := readFile(t, filepath.Join(dir, MetadataFile)); !bytes.Equal(got, metaBefore) {
				t.Errorf("metadata changed:\n%s\nwas:\n%s", got, metaBefore)
			}
			// A refused move leaves the source where it was.
			if _, err := os.Stat(tt.req.Source); err != nil {
				t.Errorf("source: %v", err)
			}
		})
	}
	got, err := s.Get(ctx, "img", "1.0.0")
	if err != nil || got.Tags["n"] != "1" || got.SHA256 != sum([]byte("first disk")) {
		t.Errorf("Get = %+v, %v", got, err)
	}
}

func TestCreateMove(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	content := bytes.Repeat([]byte("0123456789"), 300_000) // more than one copy buffer
	srcPath := writeSource(t, t.TempDir(), "captured.qcow2", content)
	iv, err := New(root, nil).Create(ctx, "img", gallery.CreateRequest{Version: "1.0.0", Source: srcPath, MoveSource: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srcPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("moved source still there: %v", err)
	}
	if iv.SHA256 != sum(content) || iv.SizeBytes != int64(len(content)) || !bytes.Equal(readFile(t, iv.Path), content) {
		t.Errorf("moved version = %+v", iv)
	}
}

// errAfterCtx is a context whose Err starts failing after n calls: it
// cancels a Create after the name is reserved, in the middle of the copy.
type errAfterCtx struct {
	context.Context
	mu sync.Mutex
	n  int
}

func (c *errAfterCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n <= 0 {
		return context.Canceled
	}
	c.n--
	return nil
}

func TestCreateFailureReleasesName(t *testing.T) {
	content := bytes.Repeat([]byte{7}, 3<<20) // several copy buffers
	for _, move := range []bool{false, true} {
		t.Run(fmt.Sprintf("move=%v", move), func(t *testing.T) {
			root := t.TempDir()
			srcPath := writeSource(t, t.TempDir(), "disk", content)
			s := New(root, nil)
			ctx := &errAfterCtx{Context: context.Background(), n: 2}
			_, err := s.Create(ctx, "img", gallery.CreateRequest{Version: "1.0.0", Source: srcPath, MoveSource: move})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Create = %v, want context.Canceled", err)
			}
			if got := readFile(t, srcPath); !bytes.Equal(got, content) {
				t.Error("source damaged or not returned")
			}
			vs, err := s.List(context.Background(), "img")
			if err != nil || len(vs) != 0 {
				t.Errorf("List after a failed Create = %v, %v; want empty", names(vs), err)
			}
			entries, _ := os.ReadDir(filepath.Join(root, "img"))
			if len(entries) != 0 {
				t.Errorf("leftovers: %v", entries)
			}
			if _, err := s.Create(context.Background(), "img", gallery.CreateRequest{Version: "1.0.0", Source: srcPath}); err != nil {
				t.Errorf("Create after a failed Create: %v", err)
			}
		})
	}
}

func TestCreateRejects(t *testing.T) {
	ctx := context.Background()
	src := writeSource(t, t.TempDir(), "disk", []byte("x"))
	tests := []struct {
		name string
		req  gallery.CreateRequest
	}{
		{"no version", gallery.CreateRequest{Source: src}},
		{"bad version", gallery.CreateRequest{Version: "1.0", Source: src}},
		{"version traversal", gallery.CreateRequest{Version: "../1.0.0", Source: src}},
		{"no source", gallery.CreateRequest{Version: "1.0.0"}},
		{"missing source", gallery.CreateRequest{Version: "1.0.0", Source: src + ".missing"}},
		{"source is a directory", gallery.CreateRequest{Version: "1.0.0", Source: t.TempDir()}},
		{"azure region", gallery.CreateRequest{Version: "1.0.0", Source: src, Regions: []gallery.Region{{Name: "eastus", Replicas: 1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if _, err := New(root, nil).Create(ctx, "img", tt.req); err == nil {
				t.Fatal("Create succeeded")
			}
			if entries, _ := os.ReadDir(filepath.Join(root, "img")); len(entries) != 0 {
				t.Errorf("a refused Create left %v", entries)
			}
		})
	}
}

func TestImageNameTraversalRejected(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	root := filepath.Join(base, "gallery")
	src := writeSource(t, t.TempDir(), "disk", []byte("x"))
	s := New(root, nil)
	yes := true
	for _, image := range []string{"", ".", "..", "../escape", "a/b", "/abs", `a\b`, ".hidden", "a\x00b", "..."} {
		t.Run(fmt.Sprintf("%q", image), func(t *testing.T) {
			if _, err := s.Create(ctx, image, gallery.CreateRequest{Version: "1.0.0", Source: src}); err == nil {
				t.Error("Create accepted it")
			}
			if _, err := s.List(ctx, image); err == nil {
				t.Error("List accepted it")
			}
			if _, err := s.Get(ctx, image, "1.0.0"); err == nil || errors.Is(err, gallery.ErrNotFound) {
				t.Errorf("Get: %v, want a validation error", err)
			}
			if _, err := s.Update(ctx, image, "1.0.0", gallery.Update{ExcludeFromLatest: &yes}); err == nil {
				t.Error("Update accepted it")
			}
			if err := s.Delete(ctx, image, "1.0.0"); err == nil {
				t.Error("Delete accepted it")
			}
		})
	}
	entries, _ := os.ReadDir(base)
	if len(entries) != 0 {
		t.Errorf("rejected names created %v", entries)
	}
}

func TestIncompleteVersions(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := New(root, nil)
	if _, err := s.Create(ctx, "img", gallery.CreateRequest{Version: "1.0.0", Source: writeSource(t, t.TempDir(), "d", []byte("d"))}); err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	// A PID that surely is not running: a child that has exited and been reaped.
	dead := exec.Command(os.Args[0], "-test.run=^$")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * markerGrace)
	tests := []struct {
		version string
		marker  *marker
		mtime   time.Time
		want    string
	}{
		{version: "1.0.1", marker: &marker{PID: os.Getpid(), PIDStart: proc.Start(os.Getpid()), Host: host}, want: gallery.StateCreating},
		{version: "1.0.2", marker: &marker{PID: dead.Process.Pid, Host: host}, want: gallery.StateFailed},
		// Another host's creator cannot be checked: in progress for a day.
		{version: "1.0.3", marker: &marker{PID: dead.Process.Pid, Host: "another-host", StartedAt: time.Now()}, want: gallery.StateCreating},
		{version: "1.0.4", marker: &marker{PID: dead.Process.Pid, Host: "another-host", StartedAt: time.Now().Add(-48 * time.Hour)}, want: gallery.StateFailed},
		// This PID, but another process: the creator's PID was reused.
		{version: "1.0.5", marker: &marker{PID: os.Getpid(), PIDStart: "1", Host: host}, want: gallery.StateFailed},
		{version: "1.0.6", marker: &marker{}, mtime: old, want: gallery.StateFailed}, // damaged marker
	}
	for _, tt := range tests {
		dir := filepath.Join(root, "img", tt.version)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// A half-copied disk, as a crash leaves it.
		if err := os.WriteFile(filepath.Join(dir, "."+DiskFile+".tmp"), []byte("hal"), 0o600); err != nil {
			t.Fatal(err)
		}
		if tt.marker != nil {
			if err := writeJSON(dir, creatingFile, tt.marker, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if !tt.mtime.IsZero() {
			if err := os.Chtimes(filepath.Join(dir, creatingFile), tt.mtime, tt.mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	vs, err := s.List(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1+len(tests) {
		t.Fatalf("List = %v", names(vs))
	}
	for i, tt := range tests {
		if vs[i+1].Name != tt.version || vs[i+1].ProvisioningState != tt.want {
			t.Errorf("version %s: state %s, want %s", vs[i+1].Name, vs[i+1].ProvisioningState, tt.want)
		}
		got, err := s.Get(ctx, "img", tt.version)
		if err != nil || got.ProvisioningState != tt.want {
			t.Errorf("Get %s = %s, %v; want %s", tt.version, got.ProvisioningState, err, tt.want)
		}
	}
	if l, ok := gallery.Latest(vs); !ok || l.Name != "1.0.0" {
		t.Errorf("Latest = %s, want 1.0.0: incomplete versions are never latest", l.Name)
	}
	// Incomplete names are taken: Create refuses them, Publish goes past them.
	if _, err := s.Create(ctx, "img", gallery.CreateRequest{Version: "1.0.2", Source: writeSource(t, t.TempDir(), "d", []byte("d"))}); !errors.Is(err, gallery.ErrVersionExists) {
		t.Errorf("Create over a crashed version: %v, want ErrVersionExists", err)
	}
	yes := true
	if _, err := s.Update(ctx, "img", "1.0.2", gallery.Update{ExcludeFromLatest: &yes}); err == nil || !strings.Contains(err.Error(), gallery.StateFailed) {
		t.Errorf("Update of a crashed version: %v", err)
	}
	iv, err := gallery.Publish(ctx, s, "img", "1.0", gallery.CreateRequest{Source: writeSource(t, t.TempDir(), "d", []byte("d"))}, 3)
	if err != nil || iv.Name != "1.0.7" {
		t.Errorf("Publish = %s, %v; want 1.0.7", iv.Name, err)
	}
	// Crashed versions can be deleted; versions in progress cannot (issue 12 #9).
	if err := s.Delete(ctx, "img", "1.0.2"); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1.0.1", "1.0.3"} {
		if err := s.Delete(ctx, "img", v); !errors.Is(err, ErrInProgress) {
			t.Errorf("Delete of %s, in progress: %v, want ErrInProgress", v, err)
		}
		if _, err := os.Stat(filepath.Join(root, "img", v)); err != nil {
			t.Errorf("%s removed: %v", v, err)
		}
	}
	for _, v := range []string{"1.0.4", "1.0.5", "1.0.6"} {
		if err := s.Delete(ctx, "img", v); err != nil {
			t.Errorf("Delete of crashed %s: %v", v, err)
		}
	}
	if _, err := s.Get(ctx, "img", "1.0.2"); !errors.Is(err, gallery.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
}

func TestListIgnoresOtherEntries(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	var logBuf bytes.Buffer
	s := New(root, slog.New(slog.NewTextHandler(&logBuf, nil)))
	if _, err := s.Create(ctx, "img", gallery.CreateRequest{Version: "1.0.0", Source: writeSource(t, t.TempDir(), "d", []byte("d"))}); err != nil {
		t.Fatal(err)
	}
	imgDir := filepath.Join(root, "img")
	for _, d := range []string{"garbage", "1.0", ".deleting-1.0.1-abcd"} {
		if err := os.Mkdir(filepath.Join(imgDir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(imgDir, "1.0.9"), []byte("a file, not a version"), 0o644); err != nil {
		t.Fatal(err)
	}
	vs, err := s.List(ctx, "img")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(vs); !slices.Equal(got, []string{"1.0.0"}) {
		t.Errorf("List = %v, want [1.0.0]", got)
	}
	for _, n := range []string{"garbage", "1.0", "1.0.9"} {
		if !strings.Contains(logBuf.String(), "name="+n+" ") {
			t.Errorf("ignored entry %s not reported:\n%s", n, logBuf.String())
		}
	}
	if strings.Contains(logBuf.String(), ".deleting") {
		t.Errorf("hidden entries reported:\n%s", logBuf.String())
	}
}

func TestDamagedMetadataIsFailed(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s := New(root, nil)
	iv, err := s.Create(ctx, "img", gallery.CreateRequest{Version: "1.0.0", Source: writeSource(t, t.TempDir(), "d", []byte("d"))})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(iv.Path), MetadataFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "img", "1.0.0")
	if err != nil || got.ProvisioningState != gallery.StateFailed {
		t.Errorf("Get of damaged version = %+v, %v; want Failed", got, err)
	}
	if err := s.Delete(ctx, "img", "1.0.0"); err != nil {
		t.Errorf("Delete of damaged version: %v", err)
	}
}

func TestDefaultRoot(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	tests := []struct{ xdg, want string }{
		{"/data", "/data/imagebake/gallery"},
		{"", "/home/u/.local/share/imagebake/gallery"},
		{"relative/dir", "/home/u/.local/share/imagebake/gallery"},
	}
	for _, tt := range tests {
		t.Setenv("XDG_DATA_HOME", tt.xdg)
		got, err := DefaultRoot()
		if err != nil || got != tt.want {
			t.Errorf("XDG_DATA_HOME=%q: DefaultRoot = %q, %v; want %q", tt.xdg, got, err, tt.want)
		}
	}
}
